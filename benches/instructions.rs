//! `cargo bench --bench instructions`: CPU instructions per request, counted by callgrind, for
//! the GraphQL read and for the plain baseline handler. Unlike throughput, an instruction count
//! hardly moves with other load on the machine, so a change to the hot path shows its cost.
//!
//! Each server runs under `valgrind --tool=callgrind`. One client connection sends requests
//! one after another, cycling through the tenants in order. Counters are dumped with
//! `callgrind_control` after a warm-up (start-up and cold caches are thrown away), after N
//! requests and after 2N more: per request = (I(2N) − I(N)) / N, so whatever a dump window
//! costs regardless of requests cancels out. Only the server's user-space instructions count
//! (its kernel work, PostgreSQL and the client do not).

#[allow(dead_code, reason = "each bench target uses its own part of the shared harness")]
mod support;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Parser;
use support::load::Connection;
use support::report::{self, Figure};
use support::server::ChildServer;
use support::{BenchDb, Common, plain, read_request, setup};
use tenantry::db::migrate::MigrationSet;

#[derive(Debug, Parser)]
#[command(about = "CPU instructions per request (callgrind): GraphQL read and plain handler")]
struct Args {
    #[command(flatten)]
    common: Common,
    /// Tenants the requests cycle through (created if missing).
    #[arg(long, default_value_t = 100)]
    tenants: usize,
    /// N: requests in the first measured window; the second has 2N.
    #[arg(long, default_value_t = 500)]
    requests: usize,
    /// Unmeasured requests first (fills the server's caches and statement caches).
    #[arg(long, default_value_t = 300)]
    warmup: usize,
    /// Keep callgrind's output files (for `callgrind_annotate`) and print where they are.
    #[arg(long)]
    keep: bool,
}

fn main() -> anyhow::Result<()> {
    if plain::serve_if_asked()? {
        return Ok(());
    }
    support::init_logs();
    let args = Args::parse();
    tokio::runtime::Runtime::new()?.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    for tool in ["valgrind", "callgrind_control"] {
        if std::process::Command::new(tool).arg("--version").output().is_err() {
            bail!("{tool} is missing: apt-get install valgrind");
        }
    }
    let db = BenchDb::open(&args.common).await?;
    setup::ensure_tenants(&db.pool, &MigrationSet::tenant(), args.tenants, 10, 4).await?;
    let out = std::env::temp_dir().join(format!("tenantry-callgrind-{}", std::process::id()));
    std::fs::create_dir_all(&out)?;
    // A small pool: one client connection keeps reusing the same database connection.
    let pool_size = 4;

    let graphql = Callgrind::new(&out, "graphql");
    let server = read_request::spawn_server(
        &db.url,
        pool_size,
        &[],
        &graphql.wrapper().each_ref().map(String::as_str),
    )
    .await?;
    let graphql_ir = measure(&server, &graphql, &args).await?;
    server.stop().await?;

    let baseline = Callgrind::new(&out, "plain");
    let plain =
        plain::spawn(&db.url, args.tenants, pool_size, &baseline.wrapper().each_ref().map(String::as_str))
            .await?;
    let plain_ir = measure(&plain, &baseline, &args).await?;
    plain.stop().await?;
    if args.keep {
        eprintln!("callgrind output kept in {}", out.display());
    } else {
        let _ = std::fs::remove_dir_all(&out);
    }

    let row = |name, ir: PerRequest| {
        Figure::plain(name, format!("{:.0} (first window alone: {:.0})", ir.marginal, ir.first_window))
    };
    report::print(
        &format!(
            "Instructions per request (callgrind): {} tenants in turn, N = {}, 1 connection",
            args.tenants, args.requests
        ),
        &[
            row("GraphQL read `project(id)`", graphql_ir),
            row("plain handler, same SQL", plain_ir),
            Figure::plain(
                "GraphQL ÷ plain",
                format!(
                    "{:.2} ({:.0} instructions more)",
                    graphql_ir.marginal / plain_ir.marginal,
                    graphql_ir.marginal - plain_ir.marginal
                ),
            ),
        ],
    );
    Ok(())
}

#[derive(Debug, Clone, Copy)]
struct PerRequest {
    /// (I(2N) − I(N)) / N.
    marginal: f64,
    /// I(N) / N.
    first_window: f64,
}

/// Warm-up, N and 2N requests against `server`, with a callgrind dump after each.
async fn measure(server: &ChildServer, callgrind: &Callgrind, args: &Args) -> anyhow::Result<PerRequest> {
    let authorization = read_request::authorization()?;
    let shots = read_request::shots(0..args.tenants)?;
    let mut connection = Connection::open(&read_request::target(server.addr, &authorization, &shots)).await?;
    let pid = server.pid()?;
    connection.sequence(args.warmup).await?;
    callgrind.dump(pid, 1).await?;
    connection.sequence(args.requests).await?;
    let once = callgrind.dump(pid, 2).await?;
    connection.sequence(2 * args.requests).await?;
    let twice = callgrind.dump(pid, 3).await?;
    let n = args.requests as f64;
    eprintln!("{}: I(N) = {once}, I(2N) = {twice}", callgrind.name);
    Ok(PerRequest { marginal: (twice as f64 - once as f64) / n, first_window: once as f64 / n })
}

/// Where one server's callgrind output goes.
struct Callgrind {
    name: &'static str,
    prefix: PathBuf,
}

impl Callgrind {
    fn new(dir: &Path, name: &'static str) -> Self {
        Self { name, prefix: dir.join(name) }
    }

    /// The command that runs a server under callgrind.
    fn wrapper(&self) -> [String; 4] {
        let out = format!("--callgrind-out-file={}.%p", self.prefix.display());
        ["valgrind".into(), "--tool=callgrind".into(), "--quiet".into(), out]
    }

    /// Dumps (and zeroes) the counters of process `pid`; returns the instructions counted
    /// since the previous dump. Dump `part` is the `part`-th of this process.
    async fn dump(&self, pid: u32, part: u32) -> anyhow::Result<u64> {
        let status = tokio::process::Command::new("callgrind_control")
            .arg(format!("--dump=part{part}"))
            .arg(pid.to_string())
            .stdout(std::process::Stdio::null())
            .status()
            .await?;
        anyhow::ensure!(status.success(), "callgrind_control --dump failed for pid {pid}");
        let path = PathBuf::from(format!("{}.{pid}.{part}", self.prefix.display()));
        // The file is written by the server's process after the command returns.
        for _ in 0..100 {
            if let Ok(text) = tokio::fs::read_to_string(&path).await
                && let Some(total) = text.lines().find_map(|line| line.strip_prefix("totals: "))
            {
                return total.trim().parse().with_context(|| format!("totals in {}", path.display()));
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        bail!("callgrind wrote no {}", path.display())
    }
}
