//! The bench's output: a Markdown table, ready to paste into `docs/BENCHMARKS.md`.

/// One line of the table.
pub struct Figure {
    pub name: &'static str,
    pub measured: String,
    pub baseline: String,
    pub ratio: Option<f64>,
    /// The target as text; `met` says whether it held (`None`: a figure without a target).
    pub target: &'static str,
    pub met: Option<bool>,
}

impl Figure {
    /// A measurement without a ratio or target.
    pub fn plain(name: &'static str, measured: String) -> Self {
        Self { name, measured, baseline: String::new(), ratio: None, target: "", met: None }
    }

    /// `measured ÷ baseline` against a minimum ratio.
    pub fn ratio(
        name: &'static str,
        measured: f64,
        baseline: f64,
        unit: &str,
        target: &'static str,
        min: f64,
    ) -> Self {
        let ratio = measured / baseline;
        Self {
            name,
            measured: format!("{measured:.0} {unit}"),
            baseline: format!("{baseline:.0} {unit}"),
            ratio: Some(ratio),
            target,
            met: Some(ratio >= min),
        }
    }
}

pub fn print(title: &str, figures: &[Figure]) {
    println!("\n### {title}\n");
    println!("| figure | measured | baseline | ratio | target | met |");
    println!("|---|---|---|---|---|---|");
    for f in figures {
        let ratio = f.ratio.map(|r| format!("{r:.2}")).unwrap_or_default();
        let met = match f.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "",
        };
        println!("| {} | {} | {} | {} | {} | {} |", f.name, f.measured, f.baseline, ratio, f.target, met);
    }
}

pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
