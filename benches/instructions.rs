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
use std::sync::Arc;

use support::load::{Connection, Shot};
use support::report::{self, Figure};
use support::server::ChildServer;
use support::{BenchDb, Common, app_server, plain, read_request, setup};
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
    /// Measure only these variants (numbered from 0 in the order of the report), e.g. `--only 2`
    /// for the plain handler alone while profiling it. The ratios need variant 2 (plain).
    #[arg(long, value_delimiter = ',')]
    only: Vec<usize>,
}

fn main() -> anyhow::Result<()> {
    if plain::serve_if_asked()? || app_server::serve_if_asked()? {
        return Ok(());
    }
    support::init_logs();
    let args = Args::parse();
    tokio::runtime::Runtime::new()?.block_on(run(args))
}

/// One server configuration measured.
struct Variant {
    name: &'static str,
    /// Requests name the trusted document by id (else they send its text).
    trusted: bool,
    /// `RUST_LOG` of the server: `info` writes a JSON line per request, as shipped.
    log: &'static str,
    server: Server,
}

enum Server {
    /// `tenantry serve`.
    Product,
    /// The same application in this bench binary, with metering and rate limits off.
    MeteringOff,
    /// The plain baseline.
    Plain,
}

const VARIANTS: [Variant; 5] = [
    Variant {
        name: "GraphQL read, document as text (ad hoc)",
        trusted: false,
        log: "info",
        server: Server::Product,
    },
    Variant {
        name: "GraphQL read, trusted document by id",
        trusted: true,
        log: "info",
        server: Server::Product,
    },
    Variant { name: "plain handler, same SQL", trusted: false, log: "info", server: Server::Plain },
    Variant {
        name: "ad hoc, request log lines off (RUST_LOG=warn)",
        trusted: false,
        log: "warn",
        server: Server::Product,
    },
    Variant {
        name: "ad hoc, metering and rate limits off",
        trusted: false,
        log: "info",
        server: Server::MeteringOff,
    },
];

async fn run(args: Args) -> anyhow::Result<()> {
    for tool in ["valgrind", "callgrind_control"] {
        if std::process::Command::new(tool).arg("--version").output().is_err() {
            bail!("{tool} is missing: apt-get install valgrind");
        }
    }
    let db = BenchDb::open(&args.common).await?;
    warn_if_superuser(&db).await?;
    setup::ensure_tenants(&db.pool, &MigrationSet::tenant(), args.tenants, 10, 4).await?;
    let out = std::env::temp_dir().join(format!("tenantry-callgrind-{}", std::process::id()));
    std::fs::create_dir_all(&out)?;
    let manifest = read_request::manifest(&out)?;
    let manifest = manifest.to_string_lossy().into_owned();
    // A small pool: one client connection keeps reusing the same database connection.
    let pool_size = 4;

    let mut measured = Vec::new();
    for (i, variant) in VARIANTS.iter().enumerate() {
        if !args.only.is_empty() && !args.only.contains(&i) {
            measured.push(PerRequest { marginal: f64::NAN, first_window: f64::NAN });
            continue;
        }
        let callgrind = Callgrind::new(&out, i);
        let wrapper = callgrind.wrapper();
        let wrapper = wrapper.each_ref().map(String::as_str);
        let mut envs = read_request::server_envs(&db.url, &pool_size.to_string());
        envs.push(("RUST_LOG", variant.log.to_owned()));
        if variant.trusted {
            envs.push(("TRUSTED_DOCUMENTS_FILE", manifest.clone()));
        }
        let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let server = match variant.server {
            Server::Product => {
                ChildServer::spawn(support::tenantry_exe(), &["serve"], &envs, &wrapper).await?
            }
            Server::MeteringOff => app_server::spawn(&envs, false, &wrapper).await?,
            Server::Plain => plain::spawn(&db.url, args.tenants, pool_size, &wrapper).await?,
        };
        let shots = if variant.trusted {
            read_request::trusted_shots(0..args.tenants)?
        } else {
            read_request::shots(0..args.tenants)?
        };
        let ir = measure(&server, &callgrind, &shots, &args).await?;
        server.stop().await?;
        eprintln!("{}: {:.0} instructions per request", variant.name, ir.marginal);
        measured.push(ir);
    }
    if args.keep {
        eprintln!("callgrind output kept in {} (part 3 of each: the 2N window)", out.display());
    } else {
        let _ = std::fs::remove_dir_all(&out);
    }

    let plain_ir = measured[2].marginal;
    let mut rows: Vec<Figure> = VARIANTS
        .iter()
        .zip(&measured)
        .map(|(variant, ir)| {
            Figure::plain(
                variant.name,
                format!(
                    "{:.0} (÷ plain {:.2}; first window alone: {:.0})",
                    ir.marginal,
                    ir.marginal / plain_ir,
                    ir.first_window
                ),
            )
        })
        .collect();
    let ad_hoc = measured[0].marginal;
    let costs = [
        (1, "cost of a document sent as text (ad hoc − trusted)"),
        (3, "cost of the request log line (info − warn)"),
        (4, "cost of metering and rate limits (on − off)"),
    ];
    for (i, feature) in costs {
        rows.push(Figure::plain(
            feature,
            format!("{:.0} instructions per request", ad_hoc - measured[i].marginal),
        ));
    }
    report::print(
        &format!(
            "Instructions per request (callgrind): {} tenants in turn, N = {}, 1 connection",
            args.tenants, args.requests
        ),
        &rows,
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

/// A superuser login role is not what the product runs as, and it changes the figures: each
/// tenant transaction switches to a role that is not a superuser and back, so PostgreSQL reports
/// `is_superuser` twice per transaction (two `ParameterStatus` messages the driver decodes and
/// stores, about 8,000 instructions per request). Measure as the login role the product is
/// deployed with (`LOGIN CREATEROLE`, owning the bench database; docs/BENCHMARKS.md).
async fn warn_if_superuser(db: &BenchDb) -> anyhow::Result<()> {
    let client = db.pool.get().await?;
    let row = client.query_one("select rolsuper from pg_roles where rolname = current_user", &[]).await?;
    if row.get::<_, bool>(0) {
        eprintln!(
            "warning: measuring as a superuser; each tenant transaction's role switch makes \
             PostgreSQL report is_superuser twice, which a deployed login role does not cost"
        );
    }
    Ok(())
}

/// Warm-up, N and 2N requests against `server`, with a callgrind dump after each.
async fn measure(
    server: &ChildServer,
    callgrind: &Callgrind,
    shots: &Arc<Vec<Shot>>,
    args: &Args,
) -> anyhow::Result<PerRequest> {
    let authorization = read_request::authorization()?;
    let mut connection = Connection::open(&read_request::target(server.addr, &authorization, shots)).await?;
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
    name: String,
    prefix: PathBuf,
}

impl Callgrind {
    fn new(dir: &Path, variant: usize) -> Self {
        let name = format!("variant{variant}");
        Self { prefix: dir.join(&name), name }
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
