//! Servers under test run as child processes of the harness, so their memory (RSS) is their
//! own and the load generator does not share their runtime.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

/// A child server on 127.0.0.1; killed when dropped.
pub struct ChildServer {
    child: Child,
    pub addr: SocketAddr,
}

impl ChildServer {
    /// Runs `exe` with `args` and `envs`, `BIND` set to a free loopback port, and waits until
    /// `GET /livez` answers. With a `wrapper` (e.g. `["valgrind", "--tool=callgrind"]`) the
    /// wrapper runs `exe`; it must exec it in-process, so the pid stays the server's.
    pub async fn spawn(
        exe: &Path,
        args: &[&str],
        envs: &[(&str, &str)],
        wrapper: &[&str],
    ) -> anyhow::Result<Self> {
        let addr = free_loopback_port()?;
        let mut command = match wrapper.split_first() {
            Some((program, flags)) => {
                let mut command = Command::new(program);
                command.args(flags).arg(exe);
                command
            }
            None => Command::new(exe),
        };
        command
            .args(args)
            .env("BIND", addr.to_string())
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true);
        let child = command.spawn().with_context(|| format!("starting {}", exe.display()))?;
        let server = Self { child, addr };
        server.wait_ready().await?;
        Ok(server)
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        // Generous: under valgrind start-up is some 50 times slower.
        for _ in 0..1200 {
            if let Ok(mut stream) = tokio::net::TcpStream::connect(self.addr).await {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                stream
                    .write_all(b"GET /livez HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
                    .await?;
                let mut response = Vec::new();
                stream.read_to_end(&mut response).await?;
                if response.starts_with(b"HTTP/1.1 200") {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("the server under test did not become ready on {}", self.addr)
    }

    pub fn pid(&self) -> anyhow::Result<u32> {
        self.child.id().context("the server under test has exited")
    }

    /// CPU time (user + system) the process has used so far.
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()?))?;
        // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
        let fields: Vec<&str> =
            stat.rsplit_once(')').context("malformed /proc/<pid>/stat")?.1.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
        let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?
            .and_then(|t| u64::try_from(t).ok())
            .unwrap_or(100);
        Ok(Duration::from_secs_f64(ticks as f64 / per_second as f64))
    }

    /// Resident memory now, in bytes.
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        rss_of(self.pid()?)
    }

    /// Samples RSS every 100 ms until the returned guard is finished; returns the peak.
    pub fn sample_peak_rss(&self) -> anyhow::Result<PeakRss> {
        let pid = self.pid()?;
        let peak = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn({
            let peak = peak.clone();
            async move {
                let mut tick = tokio::time::interval(Duration::from_millis(100));
                loop {
                    tick.tick().await;
                    if let Ok(rss) = rss_of(pid) {
                        peak.fetch_max(rss, Ordering::Relaxed);
                    }
                }
            }
        });
        Ok(PeakRss { peak, task })
    }

    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}

/// A running RSS sampler.
pub struct PeakRss {
    peak: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl PeakRss {
    pub fn finish(self) -> u64 {
        self.task.abort();
        self.peak.load(Ordering::Relaxed)
    }
}

fn rss_of(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .context("no VmRSS in /proc/<pid>/status")?;
    Ok(kib * 1024)
}

fn free_loopback_port() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}
