//! Embedded PostgreSQL: a private cluster under DATA_DIR, reachable only on a unix socket there.
//!
//! `initdb` and `postgres` refuse to run as root; when this process is root they run as the
//! `postgres` OS user (Debian's package creates it), with the cluster directories owned by it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context, bail};
use nix::unistd::{Uid, User};

use super::pg_bin::find_bin_dir;
use super::supervise::Supervisor;

const INSTALL_HINT: &str = "PostgreSQL server binaries (initdb, pg_ctl) were not found on PATH or \
under /usr/lib/postgresql/*/bin. Install them (Debian/Ubuntu: `apt-get install postgresql`; \
macOS: `brew install postgresql@15`) or set DATABASE_URL to use an existing server.";

/// The port only names the socket file; the cluster never listens on TCP.
const PORT: u16 = 5432;

/// Tuning for throwaway clusters: durability traded for speed. Never used by `serve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    Durable,
    Throwaway,
}

/// A running private cluster. `stop` it (drop stops it too, as a fallback).
#[derive(Debug)]
pub struct EmbeddedPostgres {
    cluster: Cluster,
    /// Only a cluster this process started is stopped (and supervised) by it; an adopted one
    /// serves others too.
    owned: bool,
    /// Set once stopped on purpose; shared with the supervisor, which restarts only while unset.
    stopped: Arc<Mutex<bool>>,
}

/// Where the cluster lives and how its programs are run.
#[derive(Debug, Clone)]
pub(super) struct Cluster {
    bin_dir: PathBuf,
    pgdata: PathBuf,
    socket_dir: PathBuf,
    run_as: Option<User>,
}

impl EmbeddedPostgres {
    /// Creates the cluster under `data_dir` on first use, then starts it (or adopts a running one).
    pub fn start(data_dir: &Path, durability: Durability) -> anyhow::Result<Self> {
        let bin_dir = locate(find_bin_dir(&["initdb", "pg_ctl"]))?;
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating DATA_DIR {}", data_dir.display()))?;
        let data_dir = data_dir.canonicalize()?;
        let run_as = if Uid::effective().is_root() {
            let user = User::from_name("postgres")?.context(
                "running as root, but there is no `postgres` OS user to run PostgreSQL as \
                 (create one, or run tenantry as an ordinary user)",
            )?;
            tracing::info!("running as root: the embedded PostgreSQL runs as OS user `postgres`");
            Some(user)
        } else {
            None
        };
        if let Some(user) = &run_as
            && let Some(dir) = unreachable_ancestor(&data_dir, user.uid.as_raw(), user.gid.as_raw())
        {
            bail!(
                "DATA_DIR {} is out of reach of the `postgres` OS user, which runs the embedded \
                 PostgreSQL when tenantry runs as root: it cannot enter {}. Choose a DATA_DIR it \
                 can reach (e.g. /var/lib/tenantry), or let it through with `chmod o+x {}`",
                data_dir.display(),
                dir.display(),
                dir.display()
            );
        }
        let cluster =
            Cluster { bin_dir, pgdata: data_dir.join("postgres"), socket_dir: data_dir.join("run"), run_as };
        let mut pg = Self { cluster, owned: false, stopped: Arc::new(Mutex::new(false)) };
        let cl = &pg.cluster;
        let socket = cl.socket_dir.join(format!(".s.PGSQL.{PORT}"));
        if socket.as_os_str().len() > 100 {
            bail!(
                "DATA_DIR path is too long for a unix socket ({}); choose a shorter DATA_DIR",
                socket.display()
            );
        }
        cl.prepare_dirs()?;
        if !cl.pgdata.join("PG_VERSION").exists() {
            cl.initdb()?;
        }
        cl.write_settings(durability)?;
        if cl.is_running() {
            tracing::info!(pgdata = %cl.pgdata.display(), "adopting the running embedded PostgreSQL");
        } else {
            cl.pg_ctl_start()?;
            pg.owned = true;
        }
        Ok(pg)
    }

    /// Restarts the cluster whenever it dies, until it is stopped; `None` for an adopted
    /// cluster (its owner supervises it).
    pub fn supervisor(&self) -> Option<Supervisor> {
        self.owned.then(|| Supervisor::new(self.cluster.clone(), self.stopped.clone()))
    }

    /// A libpq connection string for the socket, as the superuser `postgres`, database `dbname`.
    pub fn connection_string(&self, dbname: &str) -> String {
        format!("host={} port={PORT} user=postgres dbname={dbname}", self.cluster.socket_dir.display())
    }

    /// Stops the cluster if this process started it (fast shutdown: open transactions roll
    /// back, committed data is kept).
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if !self.owned {
            return Ok(());
        }
        self.owned = false;
        // Held while stopping, so the supervisor cannot start the cluster again meanwhile.
        let mut stopped = self.stopped.lock().unwrap_or_else(PoisonError::into_inner);
        *stopped = true;
        let cl = &self.cluster;
        let out = cl.run(cl.pg_ctl().args(["stop", "-m", "fast", "-w", "-D"]).arg(&cl.pgdata))?;
        if !out.status.success() && cl.is_running() {
            bail!("pg_ctl stop failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        tracing::info!("embedded PostgreSQL stopped");
        Ok(())
    }

    pub fn pgdata(&self) -> &Path {
        &self.cluster.pgdata
    }
}

impl Cluster {
    fn prepare_dirs(&self) -> anyhow::Result<()> {
        for dir in [&self.pgdata, &self.socket_dir] {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            if let Some(user) = &self.run_as {
                nix::unistd::chown(dir, Some(user.uid), Some(user.gid))
                    .with_context(|| format!("giving {} to the postgres user", dir.display()))?;
            }
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&self.pgdata, std::fs::Permissions::from_mode(0o700))?;
        Ok(())
    }

    fn initdb(&self) -> anyhow::Result<()> {
        tracing::info!(pgdata = %self.pgdata.display(), "creating the embedded PostgreSQL cluster");
        let mut cmd = self.command("initdb");
        cmd.args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-instructions", "-D"])
            .arg(&self.pgdata);
        let out = self.run(&mut cmd)?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        // Settings that depend on where DATA_DIR is live in an include rewritten at every start.
        let conf = self.pgdata.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf)?;
        text.push_str("\ninclude_if_exists = 'tenantry.conf'\n");
        std::fs::write(&conf, text)?;
        Ok(())
    }

    fn write_settings(&self, durability: Durability) -> anyhow::Result<()> {
        let mut settings = format!(
            "listen_addresses = ''\nport = {PORT}\nunix_socket_directories = '{}'\nmax_connections = 200\n",
            self.socket_dir.display().to_string().replace('\'', "''"),
        );
        if durability == Durability::Throwaway {
            settings.push_str("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n");
        }
        let path = self.pgdata.join("tenantry.conf");
        std::fs::write(&path, settings)?;
        if let Some(user) = &self.run_as {
            nix::unistd::chown(&path, Some(user.uid), Some(user.gid))?;
        }
        Ok(())
    }

    pub(super) fn is_running(&self) -> bool {
        self.run(self.pg_ctl().args(["status", "-D"]).arg(&self.pgdata))
            .map(|out| out.status.success())
            .unwrap_or(false)
    }

    pub(super) fn pg_ctl_start(&self) -> anyhow::Result<()> {
        let log = self.socket_dir.join("postgres.log");
        let out = self.run(
            self.pg_ctl().args(["start", "-w", "-t", "60", "-l"]).arg(&log).arg("-D").arg(&self.pgdata),
        )?;
        if !out.status.success() {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(5).collect();
            bail!(
                "pg_ctl start failed: {}\nlast lines of {}:\n{}",
                String::from_utf8_lossy(&out.stderr).trim(),
                log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        tracing::info!(socket_dir = %self.socket_dir.display(), "embedded PostgreSQL started");
        Ok(())
    }

    fn pg_ctl(&self) -> Command {
        self.command("pg_ctl")
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin_dir.join(program));
        cmd.env("LC_ALL", "C").env_remove("PGDATA").current_dir(&self.socket_dir);
        if let Some(user) = &self.run_as {
            use std::os::unix::process::CommandExt;
            cmd.uid(user.uid.as_raw()).gid(user.gid.as_raw()).env("HOME", &user.dir);
        }
        cmd
    }

    fn run(&self, cmd: &mut Command) -> anyhow::Result<Output> {
        // pg_ctl's postmaster inherits stdout/stderr unless they are redirected, and would then hold
        // the caller's pipes open; it logs to its own file, so give it none.
        cmd.stdin(std::process::Stdio::null());
        cmd.output().with_context(|| format!("running {:?}", cmd.get_program()))
    }
}

/// The first directory on the way to `path` (itself included) that user `uid`/`gid` may not
/// enter, judged by its mode bits (supplementary groups are not considered).
fn unreachable_ancestor(path: &Path, uid: u32, gid: u32) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let mut ancestors: Vec<&Path> = path.ancestors().collect();
    ancestors.reverse();
    ancestors.into_iter().find_map(|dir| {
        let meta = std::fs::metadata(dir).ok()?;
        let search = if meta.uid() == uid {
            0o100
        } else if meta.gid() == gid {
            0o010
        } else {
            0o001
        };
        (meta.mode() & search == 0).then(|| dir.to_owned())
    })
}

/// The server binaries' directory, or the error that tells a person how to get them.
fn locate(found: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    found.ok_or_else(|| anyhow::anyhow!(INSTALL_HINT))
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        if let Err(err) = self.stop() {
            tracing::error!(error = format!("{err:#}"), "stopping the embedded PostgreSQL");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binaries_say_how_to_install_them() {
        let err = locate(None).unwrap_err().to_string();
        assert!(err.contains("apt-get install postgresql") && err.contains("DATABASE_URL"), "{err}");
    }

    #[test]
    fn a_private_directory_on_the_way_is_found_for_another_user() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let base = std::env::temp_dir().join(format!("tenantry-reach-{}", std::process::id()));
        let private = base.join("private");
        let data = private.join("data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
        let owner = std::fs::metadata(&private).unwrap();
        let stranger = owner.uid().wrapping_add(4242);
        let found = unreachable_ancestor(&data, stranger, owner.gid().wrapping_add(4242));
        let for_owner = unreachable_ancestor(&data, owner.uid(), owner.gid());
        std::fs::remove_dir_all(&base).unwrap();
        assert_eq!(found, Some(private));
        assert_eq!(for_owner, None);
    }
}
