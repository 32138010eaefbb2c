//! The accept loop: HTTP/1 with bounded request heads and a header read timeout, graceful
//! drain, and websocket upgrades.
//!
//! `axum::serve` offers none of hyper's limits, so connections are served here with hyper's own
//! `http1::Builder`. Left to itself, hyper answers a head it cannot accept (too large, too many
//! headers, not HTTP) with an empty body of its own. Here it never gets to: every byte hyper
//! reads passes through [`EdgeIo`], whose [`Framing`] follows the request stream (heads, and the
//! `Content-Length` or chunked bodies between them, as hyper frames them) and checks each request
//! head *before* hyper sees it, with the same parser hyper uses (`httparse`, default settings)
//! and the same further checks (URI length and syntax, method, `Content-Length` and
//! `Transfer-Encoding`):
//!
//! - a head larger than `MAX_HEADER_BYTES` (refused as soon as that many bytes arrive without its
//!   end) or with more than `MAX_HEADERS` headers: 431 `PAYLOAD_TOO_LARGE`;
//! - a URI longer than hyper's 65,534 bytes: 414 `PAYLOAD_TOO_LARGE`;
//! - anything hyper would not parse: 400 `VALIDATION`.
//!
//! A refused head is not handed to hyper: the read fails with an I/O error instead, which hyper
//! does not answer (its automatic answers are for its own parse errors only), and the connection
//! task writes the GraphQL-shaped refusal itself once hyper has let go of the socket. Bytes of
//! earlier requests in the same read are handed over first, and the error waits until hyper has
//! dropped the body of every response in flight ([`InFlight`]), so pipelined requests before the
//! refused one are answered as before. (A response hyper has taken whole but not yet flushed to
//! a full socket when the error comes can still be cut short: pipelining clients are rare.)
//! hyper's own limits are set so they cannot trip first: its buffer holds one byte more than the
//! largest head let through, its header count is ours.
//!
//! hyper drops a connection whose head is too slow (`HEADER_READ_TIMEOUT_SECS`) without any
//! answer; if the client had begun a head (the framing holds part of one), the connection task
//! writes a 408. A connection upgraded to a websocket (hyper answered 101) is passed through
//! unchecked from then on.
//!
//! Reads go into a buffer of the connection's own, initialised once, and are copied into hyper's:
//! hyper hands over fresh uninitialised capacity on every read, and zeroing it first cost ~8,000
//! instructions per request, while copying what was read costs a few hundred. No `unsafe`.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{Method, StatusCode};
use futures::task::AtomicWaker;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt as _;

use super::framing::{Framing, Refused};

/// Limits on what a client may send before any handler runs.
#[derive(Debug, Clone, Copy)]
pub struct EdgeLimits {
    /// Bytes of a request head (request line and all headers together).
    pub max_head_bytes: usize,
    /// Headers in one request.
    pub max_headers: usize,
    /// Time a client has to send a complete request head.
    pub header_read_timeout: Duration,
}

/// hyper refuses a read buffer smaller than this.
const HYPER_MIN_BUF: usize = 8192;

/// The connection's own read buffer (hyper asks for 8 KiB at first and more as reads fill it).
const READ_CHUNK: usize = 16 * 1024;

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting and waits for
/// the open connections to finish their requests (the caller bounds that wait).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: EdgeLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Each connection task holds a sender; when all are gone, every connection has finished.
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<()>(1);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %err, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let stop = stop_rx.clone();
        let done = done_tx.clone();
        tokio::spawn(async move {
            serve_connection(stream, remote, router, limits, stop).await;
            drop(done);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(done_tx);
    let _ = done_rx.recv().await;
}

async fn serve_connection(
    stream: TcpStream,
    remote: SocketAddr,
    router: Router,
    limits: EdgeLimits,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let io = EdgeIo::new(stream, limits);
    let state = io.shared.clone();
    let upgrades = io.shared.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(remote));
        let router = router.clone();
        let upgrades = upgrades.clone();
        async move {
            let connect = req.method() == Method::CONNECT;
            let in_flight = InFlight::new(upgrades.clone());
            let Ok(response) = router.oneshot(req.map(axum::body::Body::new)).await;
            // hyper hands the socket over after these (a websocket's 101): stop framing it.
            let status = response.status();
            if status == StatusCode::SWITCHING_PROTOCOLS || (connect && status.is_success()) {
                upgrades.upgraded.store(true, Ordering::Relaxed);
            }
            Ok::<_, Infallible>(response.map(|body| Tracked { body, _in_flight: in_flight }))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // Never reached: `Framing` lets no head through that is longer than `max_head_bytes`
        // or has more than `max_headers` headers.
        .max_buf_size((limits.max_head_bytes + 1).max(HYPER_MIN_BUF))
        .max_headers(limits.max_headers);
    let conn = builder.serve_connection(TokioIo::new(io), service).with_upgrades();
    let mut conn = Box::pin(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = async { stop.wait_for(|stop| *stop).await.is_ok() } => {
            conn.as_mut().graceful_shutdown();
            conn.as_mut().await
        }
    };
    drop(conn);
    let timed_out = result.is_err_and(|err| err.is_timeout());
    // hyper has let go of the socket unless it was upgraded (a websocket owns it then).
    let Ok(shared) = Arc::try_unwrap(state) else { return };
    let mut stream = shared.stream;
    if let Some(refused) = shared.refused.into_inner() {
        let _ = stream.write_all(&refusal(refused.status, refused.code, &refused.message)).await;
    } else if timed_out && shared.mid_head.load(Ordering::Relaxed) {
        // A client that began a request but did not finish its head in time hears why.
        let message = "the request head was not received in time; send it faster, or retry";
        let _ = stream.write_all(&refusal(408, "VALIDATION", message)).await;
    }
    linger(stream).await;
}

/// Closes the write side, then reads (and drops) what the client is still sending for a
/// moment: closing a socket with unread input resets it, and the client could lose the answer
/// it was sent (a 413 while it is still uploading).
async fn linger(mut stream: TcpStream) {
    use tokio::io::AsyncReadExt as _;
    if stream.shutdown().await.is_err() {
        return;
    }
    let mut sink = [0u8; 8192];
    let mut left = LINGER_BYTES;
    let drain = async {
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(read) => left = left.saturating_sub(read),
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}

/// How long and how much a closing connection keeps reading.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 4 << 20;

/// A complete HTTP/1.1 response with the GraphQL-shaped body, closing the connection.
pub fn refusal(status: u16, code: &str, message: &str) -> Vec<u8> {
    let reason =
        StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("Bad Request");
    let body =
        serde_json::json!({ "errors": [{ "message": message, "extensions": { "code": code } }] }).to_string();
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/graphql-response+json; charset=utf-8\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

struct Shared {
    stream: TcpStream,
    /// Part of a request head has arrived, not all of it.
    mid_head: AtomicBool,
    /// hyper handed the socket over (a websocket): it is no longer HTTP.
    upgraded: AtomicBool,
    /// The head refused at the edge, answered once hyper lets go of the socket.
    refused: OnceLock<Refused>,
    /// Requests dispatched whose response body hyper still holds (see [`InFlight`]).
    in_flight: AtomicUsize,
    /// Woken when `in_flight` drops to zero: a read holding back a refusal waits for that.
    idle: AtomicWaker,
}

/// Counts a request from its dispatch until hyper drops its response body (written, or
/// abandoned). A refused head that arrives while a response is still on its way fails hyper's
/// read only afterwards: hyper reads while it answers (to notice a client that went away), and
/// an error then would cut that answer short.
struct InFlight(Arc<Shared>);

impl InFlight {
    fn new(shared: Arc<Shared>) -> Self {
        shared.in_flight.fetch_add(1, Ordering::AcqRel);
        Self(shared)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.wake();
        }
    }
}

/// A response body that keeps its request counted in flight.
struct Tracked {
    body: axum::body::Body,
    _in_flight: InFlight,
}

impl HttpBody for Tracked {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The connection's socket, as hyper sees it: reads pass through [`Framing`]; writes go straight
/// to the socket.
struct EdgeIo {
    shared: Arc<Shared>,
    framing: Framing,
    /// Read into first (initialised once), then copied into hyper's buffer.
    chunk: Box<[u8]>,
    /// A head was refused: every read from now on fails (once no response is in flight).
    refusing: bool,
}

impl EdgeIo {
    fn new(stream: TcpStream, limits: EdgeLimits) -> Self {
        let shared = Shared {
            stream,
            mid_head: AtomicBool::new(false),
            upgraded: AtomicBool::new(false),
            refused: OnceLock::new(),
            in_flight: AtomicUsize::new(0),
            idle: AtomicWaker::new(),
        };
        Self {
            shared: Arc::new(shared),
            framing: Framing::new(limits),
            chunk: vec![0; READ_CHUNK].into_boxed_slice(),
            refusing: false,
        }
    }

    fn write_some(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.shared.stream.poll_write_ready(cx))?;
            match self.shared.stream.try_write(buf) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                other => return Poll::Ready(other),
            }
        }
    }
}

impl EdgeIo {
    /// Fails hyper's read for the refused head, once no response is in flight.
    fn poll_refuse(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.shared.in_flight.load(Ordering::Acquire) > 0 {
            self.shared.idle.register(cx.waker());
            if self.shared.in_flight.load(Ordering::Acquire) > 0 {
                return Poll::Pending;
            }
        }
        Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, "request head refused at the edge")))
    }
}

impl AsyncRead for EdgeIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.refusing {
            return this.poll_refuse(cx);
        }
        loop {
            ready!(this.shared.stream.poll_read_ready(cx))?;
            let want = buf.remaining().min(this.chunk.len());
            match this.shared.stream.try_read(&mut this.chunk[..want]) {
                Ok(read) => {
                    let upgraded = this.shared.upgraded.load(Ordering::Relaxed);
                    let (pass, refused) = this.framing.scan(&this.chunk[..read], upgraded);
                    buf.put_slice(&this.chunk[..pass]);
                    this.shared.mid_head.store(this.framing.mid_head(), Ordering::Relaxed);
                    let Some(refused) = refused else { return Poll::Ready(Ok(())) };
                    let _ = this.shared.refused.set(refused);
                    this.refusing = true;
                    // The bytes before the refused head (a request's end) go to hyper first.
                    if pass > 0 {
                        return Poll::Ready(Ok(()));
                    }
                    return this.poll_refuse(cx);
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) => return Poll::Ready(Err(err)),
            }
        }
    }
}

impl AsyncWrite for EdgeIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.write_some(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // A response's head and body go out together, without being copied into one buffer.
        loop {
            ready!(self.shared.stream.poll_write_ready(cx))?;
            match self.shared.stream.try_write_vectored(bufs) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                other => return Poll::Ready(other),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Writes go straight to the socket.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The connection task closes the socket once hyper lets go of it (see `linger`).
        Poll::Ready(Ok(()))
    }
}
