//! A private PgBouncer (`pool_mode = transaction`) in front of a database, for the pooler bench
//! and the pooler test. Runs as the `postgres` OS user when we are root (PgBouncer refuses root).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How to install PgBouncer, for messages about its absence.
pub const INSTALL: &str = "apt-get install pgbouncer (Debian, Ubuntu), dnf install pgbouncer (Fedora), brew install pgbouncer (macOS)";

/// The `pgbouncer` program: on PATH, else in /usr/sbin or /usr/local/sbin (where Debian puts it,
/// off most users' PATH). `None`: not installed.
pub fn program() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|dir| dir.join("pgbouncer"))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Stopped (and its files removed) on drop.
pub struct PgBouncer {
    child: Child,
    dir: PathBuf,
    pub port: u16,
    user: String,
    dbname: String,
}

impl PgBouncer {
    /// Listens on a free loopback port with `server_connections` server connections to `db_url`.
    pub async fn start(db_url: &str, server_connections: u16) -> anyhow::Result<Self> {
        // Before anything is waited on: a missing program is named, not timed out on.
        let exe = program().with_context(|| format!("pgbouncer is not installed; {INSTALL}"))?;
        let pg: tokio_postgres::Config = db_url.parse()?;
        let host = match pg.get_hosts().first().context("the database URL names no host")? {
            tokio_postgres::config::Host::Tcp(host) => host.clone(),
            tokio_postgres::config::Host::Unix(dir) => dir.display().to_string(),
        };
        let port = pg.get_ports().first().copied().unwrap_or(5432);
        let user = pg.get_user().unwrap_or("postgres").to_owned();
        let dbname = pg.get_dbname().context("the database URL names no database")?.to_owned();
        let listen = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        // Outside the worktree: when we are root, PgBouncer runs as `postgres` and must read it.
        let dir = std::env::temp_dir().join(format!("tenantry-pgbouncer-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("userlist.txt"), format!("\"{user}\" \"\"\n"))?;
        let ini = format!(
            "[databases]\n{dbname} = host={host} port={port} dbname={dbname} user={user}\n\n\
             [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {listen}\nunix_socket_dir =\n\
             auth_type = trust\nauth_file = {dir}/userlist.txt\npool_mode = transaction\n\
             default_pool_size = {server_connections}\nmax_client_conn = 1000\n\
             ignore_startup_parameters = extra_float_digits,options\n\
             logfile = {dir}/pgbouncer.log\npidfile = {dir}/pgbouncer.pid\n",
            dir = dir.display()
        );
        std::fs::write(dir.join("pgbouncer.ini"), ini)?;
        let mut command = if nix::unistd::geteuid().is_root() {
            let postgres = nix::unistd::User::from_name("postgres")?.context("no `postgres` OS user")?;
            nix::unistd::chown(&dir, Some(postgres.uid), Some(postgres.gid))?;
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let child = command
            .arg(dir.join("pgbouncer.ini"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let bouncer = Self { child, dir, port: listen, user, dbname };
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", listen)).await.is_err() {
            if started.elapsed() > Duration::from_secs(20) {
                bail!(
                    "pgbouncer did not listen within 20 s; see {}",
                    bouncer.dir.join("pgbouncer.log").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(bouncer)
    }

    /// The URL clients use to reach the database through this PgBouncer.
    pub fn url(&self) -> String {
        format!("host=127.0.0.1 port={} user={} dbname={}", self.port, self.user, self.dbname)
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        // Under runuser the pgbouncer process is a grandchild: signal it by its pid file.
        let pid = std::fs::read_to_string(self.dir.join("pgbouncer.pid"));
        if let Some(pid) = pid.ok().and_then(|pid| pid.trim().parse::<i32>().ok()) {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
