//! The accept loop: HTTP/1 with bounded request heads and a header read timeout, graceful
//! drain, and websocket upgrades.
//!
//! `axum::serve` offers none of hyper's limits, so connections are served here with hyper's own
//! `http1::Builder`. hyper answers a head it cannot accept (too large, too many headers, not
//! HTTP) with an empty body of its own, and drops a connection whose head is too slow without
//! any answer; [`EdgeIo`] gives both the GraphQL-shaped body every other refusal has.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
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
    let io = EdgeIo::new(stream);
    let state = io.shared.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(remote));
        let router = router.clone();
        async move {
            match router.oneshot(req.map(axum::body::Body::new)).await {
                Ok(response) => Ok::<_, Infallible>(response),
                Err(never) => match never {},
            }
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_head_bytes.max(HYPER_MIN_BUF))
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
    if timed_out && shared.mid_request.load(Ordering::Relaxed) {
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
    let reason = axum::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Bad Request");
    let body =
        serde_json::json!({ "errors": [{ "message": message, "extensions": { "code": code } }] }).to_string();
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/graphql-response+json; charset=utf-8\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// What hyper's automatic answer for `status` should have said.
fn explain(status: u16) -> &'static str {
    match status {
        431 => "the request head is too large or has too many headers; send fewer or shorter headers",
        414 => "the URL is too long; send the query in a POST body instead",
        _ => "the request is not valid HTTP/1.1; check the request line and the headers",
    }
}

struct Shared {
    stream: TcpStream,
    /// Bytes of a request arrived since the last response was written.
    mid_request: AtomicBool,
}

/// The connection's socket: reads and writes through, except that hyper's own bodiless error
/// answers are replaced by [`refusal`]s.
struct EdgeIo {
    shared: Arc<Shared>,
    /// A replacement answer still being written, and how many bytes of hyper's it stands for.
    replacing: Option<(Vec<u8>, usize)>,
}

impl EdgeIo {
    fn new(stream: TcpStream) -> Self {
        Self { shared: Arc::new(Shared { stream, mid_request: AtomicBool::new(false) }), replacing: None }
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

/// The status of one of hyper's automatic answers (`HTTP/1.1 4xx …` with an empty body and
/// none of the headers every routed response gets), if `buf` is one.
fn hyper_refusal(buf: &[u8]) -> Option<u16> {
    let head = std::str::from_utf8(buf.strip_prefix(b"HTTP/1.1 ")?.get(..3)?).ok()?;
    let status: u16 = head.parse().ok()?;
    let text = String::from_utf8_lossy(buf).to_ascii_lowercase();
    let automatic = matches!(status, 400 | 414 | 431)
        && text.contains("\r\ncontent-length: 0\r\n")
        && !text.contains("\r\nx-request-id:")
        && text.ends_with("\r\n\r\n");
    automatic.then_some(status)
}

impl AsyncRead for EdgeIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            ready!(self.shared.stream.poll_read_ready(cx))?;
            // hyper hands over fresh spare capacity on every read: zeroing it first
            // (`initialize_unfilled`) cost ~8,000 instructions per request. Read into it as it is.
            let unfilled = {
                // SAFETY: the bytes are only written (by the kernel, through `read(2)`), never
                // read, before `assume_init` below covers exactly the ones written; this is how
                // tokio's own `TcpStream::poll_read` reads into a `ReadBuf`.
                let spare = unsafe { buf.unfilled_mut() };
                // SAFETY: `MaybeUninit<u8>` has the layout of `u8`; see above for the contents.
                unsafe { std::slice::from_raw_parts_mut(spare.as_mut_ptr().cast::<u8>(), spare.len()) }
            };
            match self.shared.stream.try_read(unfilled) {
                Ok(read) => {
                    if read > 0 {
                        self.shared.mid_request.store(true, Ordering::Relaxed);
                    }
                    // SAFETY: the kernel initialised the first `read` bytes of the unfilled part.
                    unsafe { buf.assume_init(read) };
                    buf.advance(read);
                    return Poll::Ready(Ok(()));
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) => return Poll::Ready(Err(err)),
            }
        }
    }
}

impl AsyncWrite for EdgeIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.replacing.is_none() {
            if let Some(status) = hyper_refusal(buf) {
                let code = if status == 400 { "VALIDATION" } else { "PAYLOAD_TOO_LARGE" };
                self.replacing = Some((refusal(status, code, explain(status)), buf.len()));
            } else {
                self.shared.mid_request.store(false, Ordering::Relaxed);
                return self.write_some(cx, buf);
            }
        }
        // Write the whole replacement, then tell hyper its answer went out.
        loop {
            let Some((pending, claimed)) = self.replacing.take() else { return Poll::Ready(Ok(0)) };
            if pending.is_empty() {
                return Poll::Ready(Ok(claimed));
            }
            match self.write_some(cx, &pending) {
                Poll::Ready(Ok(written)) => self.replacing = Some((pending[written..].to_vec(), claimed)),
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => {
                    self.replacing = Some((pending, claimed));
                    return Poll::Pending;
                }
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // hyper's automatic answers are a lone head; anything else goes out as it is, without
        // copying a response's head and body into one buffer first.
        let mut parts = bufs.iter().filter(|buf| !buf.is_empty());
        if let (Some(first), None) = (parts.next(), parts.next())
            && (self.replacing.is_some() || hyper_refusal(first).is_some())
        {
            return self.poll_write(cx, first);
        }
        if self.replacing.is_some() {
            return self.poll_write(cx, &[]);
        }
        self.shared.mid_request.store(false, Ordering::Relaxed);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_own_bodiless_refusals_are_replaced() {
        let automatic =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        assert_eq!(hyper_refusal(automatic), Some(431));
        let routed = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nx-request-id: a\r\n\r\n";
        assert_eq!(hyper_refusal(routed), None);
        let with_body = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n";
        assert_eq!(hyper_refusal(with_body), None);
        assert_eq!(hyper_refusal(b"\x81\x05hello"), None);
        let replaced = String::from_utf8(refusal(431, "PAYLOAD_TOO_LARGE", explain(431))).unwrap();
        assert!(replaced.contains("\"code\":\"PAYLOAD_TOO_LARGE\""), "{replaced}");
        let (head, body) = replaced.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())), "{replaced}");
    }
}
