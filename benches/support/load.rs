//! The loopback load generator: a fixed number of HTTP/1.1 keep-alive connections for a fixed
//! time, either as fast as the server answers (closed loop) or at a fixed total rate.
//!
//! At a fixed rate, latency is measured from when a request was due, not when it was sent, so a
//! stalled server shows up in the percentiles instead of silently lowering the offered load.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper_util::rt::TokioIo;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::TcpStream;
use tokio::time::{Instant, MissedTickBehavior};

/// One request the generator may send: a tenant header and a JSON body.
#[derive(Clone)]
pub struct Shot {
    pub tenant: HeaderValue,
    pub body: Bytes,
}

/// What to send and where. Every request is `POST /graphql` with the same bearer token.
pub struct Target {
    pub addr: SocketAddr,
    pub authorization: HeaderValue,
    /// Each request picks one of these uniformly at random.
    pub shots: Arc<Vec<Shot>>,
    /// A successful response body starts with this.
    pub expect_prefix: &'static [u8],
}

#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub connections: usize,
    pub duration: Duration,
    /// Total requests per second across all connections; `None` for as fast as possible.
    pub rate: Option<f64>,
}

/// Counts and latencies of one run.
pub struct LoadResult {
    pub ok: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Microseconds.
    pub latency: Histogram<u64>,
}

impl LoadResult {
    pub fn rps(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    pub fn percentile_ms(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }
}

/// Runs `load` against `target` and merges what every connection saw.
pub async fn run(target: &Target, load: Load) -> anyhow::Result<LoadResult> {
    let mut connections = Vec::with_capacity(load.connections);
    for _ in 0..load.connections {
        connections.push(Connection::open(target).await?);
    }
    let start = Instant::now();
    let deadline = start + load.duration;
    let tasks: Vec<_> = connections
        .into_iter()
        .enumerate()
        .map(|(n, connection)| {
            let schedule = load.rate.map(|rate| {
                // Each connection carries an equal share, offset so sends interleave evenly.
                let period = Duration::from_secs_f64(load.connections as f64 / rate);
                (start + period.mul_f64(n as f64 / load.connections as f64), period)
            });
            tokio::spawn(connection.drive(n as u64, deadline, schedule))
        })
        .collect();
    let mut total = LoadResult { ok: 0, errors: 0, elapsed: Duration::ZERO, latency: new_histogram()? };
    for task in tasks {
        let part = task.await??;
        total.ok += part.ok;
        total.errors += part.errors;
        total.latency.add(&part.latency)?;
    }
    total.elapsed = start.elapsed().min(load.duration).max(Duration::from_millis(1));
    Ok(total)
}

fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 60_000_000, 3)?)
}

/// One keep-alive HTTP/1.1 connection to a target; also usable alone, e.g. for a fixed number
/// of requests in a fixed order (`sequence`).
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    authorization: HeaderValue,
    shots: Arc<Vec<Shot>>,
    expect_prefix: &'static [u8],
}

impl Connection {
    pub async fn open(target: &Target) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(target.addr)
            .await
            .with_context(|| format!("connecting to {}", target.addr))?;
        stream.set_nodelay(true)?;
        let (sender, driver) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.context("HTTP handshake")?;
        tokio::spawn(driver);
        Ok(Self {
            sender,
            authorization: target.authorization.clone(),
            shots: target.shots.clone(),
            expect_prefix: target.expect_prefix,
        })
    }

    /// Sends shot `index` and reads the whole answer; `Ok(None)` for a successful answer,
    /// `Ok(Some(body))` for an unexpected one.
    pub async fn send(&mut self, index: usize) -> anyhow::Result<Option<Bytes>> {
        let shot = &self.shots[index];
        let request = Request::post("/graphql")
            .header(HOST, "127.0.0.1")
            .header(CONTENT_TYPE, "application/json")
            .header(AUTHORIZATION, self.authorization.clone())
            .header("x-tenant", shot.tenant.clone())
            .body(Full::new(shot.body.clone()))?;
        self.sender.ready().await.context("connection closed")?;
        let response = self.sender.send_request(request).await?;
        let status_ok = response.status().is_success();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((!(status_ok && body.starts_with(self.expect_prefix))).then_some(body))
    }

    /// Sends `count` requests one after another, cycling through the shots in order, and fails
    /// on the first unexpected answer.
    pub async fn sequence(&mut self, count: usize) -> anyhow::Result<()> {
        for n in 0..count {
            if let Some(body) = self.send(n % self.shots.len()).await? {
                bail!("unexpected response: {}", String::from_utf8_lossy(&body));
            }
        }
        Ok(())
    }

    async fn drive(
        mut self,
        seed: u64,
        deadline: Instant,
        schedule: Option<(Instant, Duration)>,
    ) -> anyhow::Result<LoadResult> {
        let mut ticker = schedule.map(|(first, period)| {
            let mut ticker = tokio::time::interval_at(first, period);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
            ticker
        });
        let mut rng = StdRng::seed_from_u64(seed);
        let mut result = LoadResult { ok: 0, errors: 0, elapsed: Duration::ZERO, latency: new_histogram()? };
        loop {
            let due = match ticker.as_mut() {
                Some(ticker) => ticker.tick().await,
                None => Instant::now(),
            };
            if due >= deadline {
                break;
            }
            let unexpected = self.send(rng.random_range(0..self.shots.len())).await?;
            let finished = Instant::now();
            if finished > deadline {
                break;
            }
            match unexpected {
                None => {
                    result.ok += 1;
                    let micros = u64::try_from((finished - due).as_micros()).unwrap_or(u64::MAX);
                    result.latency.saturating_record(micros.max(1));
                }
                Some(body) => {
                    result.errors += 1;
                    if result.errors == 1 {
                        tracing::warn!(body = %String::from_utf8_lossy(&body), "unexpected response");
                    }
                }
            }
        }
        Ok(result)
    }
}
