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
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{Method, StatusCode, Uri};
use futures::task::AtomicWaker;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt as _;

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

/// The longest URI hyper accepts (`MAX_URI_LEN` in hyper's HTTP/1 parser).
const MAX_URI_LEN: usize = (u16::MAX - 1) as usize;

/// The largest `Content-Length` hyper accepts (`MAX_LEN` of its decoded lengths).
const MAX_CONTENT_LENGTH: u64 = u64::MAX - 2;

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

/// A request head refused at the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Refused {
    status: u16,
    code: &'static str,
    message: String,
}

impl Refused {
    fn too_large(message: String) -> Self {
        Self { status: 431, code: "PAYLOAD_TOO_LARGE", message }
    }

    fn malformed(what: &str) -> Self {
        let message =
            format!("the request is not valid HTTP/1.1 ({what}); check the request line and the headers");
        Self { status: 400, code: "VALIDATION", message }
    }
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

/// Where the request stream is: which bytes are a head (checked), a body or a tunnel (passed).
/// Bodies are framed as hyper frames a request's (RFC 9112 §6.3): `Transfer-Encoding` ending in
/// `chunked`, else `Content-Length`, else none. A body hyper cannot decode makes hyper close the
/// connection, so the framing of a broken body never matters and is kept simple.
struct Framing {
    limits: EdgeLimits,
    phase: Phase,
    /// A head received in part (empty when none is).
    partial: Vec<u8>,
    /// The last head asked for an upgrade (websocket, CONNECT).
    upgrade_asked: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Head,
    /// Bytes of a `Content-Length` body still to come.
    Body(u64),
    Chunked(Chunk),
    /// Upgraded: no longer HTTP.
    Tunnel,
}

/// Where a chunked body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// The chunk-size line: the size so far, and whether its hex digits have ended.
    Size { size: u64, ended: bool },
    /// Chunk data still to come.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer lines after the last chunk, until an empty line; bytes of the current line.
    Trailers(usize),
}

/// What a complete, accepted head says about what follows it.
struct Head {
    len: usize,
    body: Phase,
    upgrade: bool,
}

/// Headers parsed on the stack before a heap array is needed (hyper's own default limit).
const STACK_HEADERS: usize = 100;

impl Framing {
    fn new(limits: EdgeLimits) -> Self {
        Self { limits, phase: Phase::Head, partial: Vec::new(), upgrade_asked: false }
    }

    /// Whether part of a head has arrived, not all of it.
    fn mid_head(&self) -> bool {
        self.phase == Phase::Head && !self.partial.is_empty()
    }

    /// Follows `data`, the next bytes read: how many of them may go to hyper, and the refusal of
    /// the head at that point if one is refused.
    fn scan(&mut self, mut data: &[u8], upgraded: bool) -> (usize, Option<Refused>) {
        let mut passed = 0;
        while !data.is_empty() {
            let used = match &mut self.phase {
                Phase::Tunnel => data.len(),
                Phase::Body(left) => {
                    let used = usize::try_from(*left).unwrap_or(usize::MAX).min(data.len());
                    *left -= used as u64;
                    if *left == 0 {
                        self.phase = Phase::Head;
                    }
                    used
                }
                Phase::Chunked(chunk) => {
                    let (used, done) = chunk.follow(data);
                    if done {
                        self.phase = Phase::Head;
                    }
                    used
                }
                Phase::Head if self.upgrade_asked && upgraded && self.partial.is_empty() => {
                    self.phase = Phase::Tunnel;
                    continue;
                }
                Phase::Head => match self.head(data) {
                    Ok(used) => used,
                    Err(refused) => {
                        self.partial.clear();
                        return (passed, Some(refused));
                    }
                },
            };
            passed += used;
            data = &data[used..];
        }
        (passed, None)
    }

    /// Takes head bytes from `data`: how many, once they are known to be a good head or part of
    /// one.
    fn head(&mut self, data: &[u8]) -> Result<usize, Refused> {
        let max = self.limits.max_head_bytes;
        let before = self.partial.len();
        let parsed = if before == 0 {
            check_head(data, &self.limits)?
        } else {
            // At most one byte past the limit is kept: enough to know it is passed.
            let take = data.len().min((max + 1).saturating_sub(before));
            self.partial.extend_from_slice(&data[..take]);
            check_head(&self.partial, &self.limits)?
        };
        match parsed {
            Some(head) => {
                self.partial.clear();
                self.upgrade_asked = head.upgrade;
                self.phase = head.body;
                Ok(head.len - before)
            }
            None if before == 0 && data.len() > max || before + data.len() > max => Err(head_too_large(max)),
            None => {
                if before == 0 {
                    self.partial.extend_from_slice(data);
                }
                Ok(data.len())
            }
        }
    }
}

fn head_too_large(max: usize) -> Refused {
    Refused::too_large(format!("the request head is larger than {max} bytes; send fewer or shorter headers"))
}

/// Checks `bytes`, the start of a request head, as hyper's HTTP/1 parser would: `None` if the
/// head is not complete yet (and nothing in it is wrong so far).
fn check_head(bytes: &[u8], limits: &EdgeLimits) -> Result<Option<Head>, Refused> {
    let mut stack = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; STACK_HEADERS];
    let mut heap = Vec::new();
    let slots = if limits.max_headers <= STACK_HEADERS {
        &mut stack[..limits.max_headers]
    } else {
        heap.resize_with(limits.max_headers, MaybeUninit::uninit);
        &mut heap[..]
    };
    let mut req = httparse::Request::new(&mut []);
    let len =
        match httparse::ParserConfig::default().parse_request_with_uninit_headers(&mut req, bytes, slots) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                let max = limits.max_headers;
                return Err(Refused::too_large(format!(
                    "the request has more than {max} headers; send fewer headers"
                )));
            }
            Err(httparse::Error::Token) if req.method.is_none() => return Err(Refused::malformed("method")),
            Err(httparse::Error::Token) => return Err(Refused::malformed("request target")),
            Err(err) => return Err(Refused::malformed(&err.to_string())),
        };
    if len > limits.max_head_bytes {
        return Err(head_too_large(limits.max_head_bytes));
    }
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(Refused::malformed("request line"));
    };
    if target.len() > MAX_URI_LEN {
        let message = "the URL is too long; send the query in a POST body instead".to_owned();
        return Err(Refused { status: 414, code: "PAYLOAD_TOO_LARGE", message });
    }
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| Refused::malformed("method"))?;
    Uri::try_from(target).map_err(|_| Refused::malformed("request target"))?;
    let http11 = version == 1;
    let mut upgrade = method == Method::CONNECT;
    let (mut chunked, mut te, mut length) = (false, false, None);
    for header in req.headers.iter() {
        let name = header.name.as_bytes();
        if name.len() > usize::from(u16::MAX) {
            return Err(Refused::too_large("a header name is longer than 65,535 bytes".into()));
        }
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            if !http11 {
                return Err(Refused::malformed("transfer-encoding in HTTP/1.0"));
            }
            te = true;
            length = None;
            chunked = std::str::from_utf8(header.value).is_ok_and(|value| {
                value.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
                    && value
                        .rsplit(',')
                        .next()
                        .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
            });
        } else if name.eq_ignore_ascii_case(b"content-length") {
            if te {
                continue;
            }
            let len = content_length(header.value).ok_or_else(|| Refused::malformed("content-length"))?;
            if length.is_some_and(|earlier| earlier != len) {
                return Err(Refused::malformed("content-length"));
            }
            if len > MAX_CONTENT_LENGTH {
                return Err(Refused::too_large("the declared content-length is out of range".into()));
            }
            length = Some(len);
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            upgrade = http11;
        }
    }
    if te && !chunked {
        return Err(Refused::malformed("transfer-encoding must end in chunked"));
    }
    let body = match length {
        _ if chunked => Phase::Chunked(Chunk::Size { size: 0, ended: false }),
        Some(len) if len > 0 => Phase::Body(len),
        _ => Phase::Head,
    };
    Ok(Some(Head { len, body, upgrade }))
}

/// A `Content-Length` value as hyper reads it: decimal digits only.
fn content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |len, &b| {
        let digit = (b as char).to_digit(10)?;
        len.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

impl Chunk {
    /// Follows chunked body bytes: how many of `data` belong to the body, and whether it ended.
    fn follow(&mut self, data: &[u8]) -> (usize, bool) {
        let mut at = 0;
        while at < data.len() {
            match self {
                Chunk::Data(left) => {
                    let used = usize::try_from(*left).unwrap_or(usize::MAX).min(data.len() - at);
                    *left -= used as u64;
                    at += used;
                    if *left == 0 {
                        *self = Chunk::DataEnd;
                    }
                    continue;
                }
                Chunk::Size { size, ended } => match data[at] {
                    b'\n' if *size == 0 => *self = Chunk::Trailers(0),
                    b'\n' => *self = Chunk::Data(*size),
                    b if !*ended && b.is_ascii_hexdigit() => {
                        let digit = u64::from((b as char).to_digit(16).unwrap_or(0));
                        *size = size.saturating_mul(16).saturating_add(digit);
                    }
                    _ => *ended = true,
                },
                Chunk::DataEnd => {
                    if data[at] == b'\n' {
                        *self = Chunk::Size { size: 0, ended: false };
                    }
                }
                Chunk::Trailers(line) => match data[at] {
                    b'\n' if *line <= 1 => return (at + 1, true),
                    b'\n' => *line = 0,
                    _ => *line += 1,
                },
            }
            at += 1;
        }
        (at, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framing() -> Framing {
        Framing::new(EdgeLimits {
            max_head_bytes: 1024,
            max_headers: 4,
            header_read_timeout: Duration::from_secs(1),
        })
    }

    #[test]
    fn pipelined_requests_are_framed_as_hyper_frames_them() {
        let mut framing = framing();
        let stream = b"POST / HTTP/1.1\r\ncontent-length: 5\r\n\r\nhelloPOST / HTTP/1.1\r\n\
            transfer-encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nt: 1\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        // Byte by byte, as a slow client sends it, and at once.
        for step in [1, stream.len()] {
            for part in stream.chunks(step) {
                assert_eq!(framing.scan(part, false), (part.len(), None));
            }
            assert_eq!(framing.phase, Phase::Head);
            assert!(!framing.mid_head());
        }
        // A body that looks like a bad head is still a body.
        let (passed, refused) =
            framing.scan(b"POST / HTTP/1.1\r\ncontent-length: 4\r\n\r\n\x00\x01\r\n", false);
        assert_eq!((passed, refused), (42, None));
    }

    #[test]
    fn bad_heads_are_refused_before_hyper_sees_them() {
        let refused = |bytes: &[u8]| framing().scan(bytes, false).1.map(|r| r.status);
        assert_eq!(refused(b"GET / HTTP/1.1\r\nho st: x\r\n\r\n"), Some(400));
        assert_eq!(refused(b"GET / HTTP/1.1\r\na: 1\r\nb: 1\r\nc: 1\r\nd: 1\r\ne: 1\r\n\r\n"), Some(431));
        assert_eq!(refused(format!("GET / HTTP/1.1\r\nx: {}", "a".repeat(2000)).as_bytes()), Some(431));
        assert_eq!(refused(b"GET / HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n"), Some(400));
        assert_eq!(refused(b"GET / HTTP/1.1\r\ntransfer-encoding: gzip\r\n\r\n"), Some(400));
        assert_eq!(refused(b"GET :/ HTTP/1.1\r\n\r\n"), Some(400));
        assert_eq!(refused(b"GET / HTTP/2.0\r\n\r\n"), Some(400));
        assert_eq!(refused(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"), None);

        // A head sent in parts is refused once its parts pass the limit; the request before it
        // goes through first.
        let mut framing = framing();
        assert_eq!(framing.scan(b"GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nx: ", false), (37, None));
        assert!(framing.mid_head());
        let (passed, refused) = framing.scan(&[b'a'; 1100], false);
        assert_eq!((passed, refused.map(|r| r.status)), (0, Some(431)));
    }

    #[test]
    fn an_upgraded_connection_is_passed_through() {
        let mut framing = framing();
        let head = b"GET /ws HTTP/1.1\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n";
        assert_eq!(framing.scan(head, false), (head.len(), None));
        assert_eq!(framing.scan(b"\x81\x05hello", true), (7, None));
        assert_eq!(framing.phase, Phase::Tunnel);
    }

    #[test]
    fn refusals_are_complete_graphql_shaped_responses() {
        let replaced = String::from_utf8(refusal(431, "PAYLOAD_TOO_LARGE", "too large")).unwrap();
        assert!(replaced.contains("\"code\":\"PAYLOAD_TOO_LARGE\""), "{replaced}");
        let (head, body) = replaced.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())), "{replaced}");
    }
}
