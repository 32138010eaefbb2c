//! Where a connection's request stream is — which bytes are a request head (checked before hyper
//! reads them, with hyper's own parser and limits), a body, or a tunnel (passed through) — for
//! the accept loop's `EdgeIo` (`serve.rs`, whose module doc tells the whole design).

use std::mem::MaybeUninit;

use axum::http::{Method, Uri};

use super::serve::EdgeLimits;

/// The longest URI hyper accepts (`MAX_URI_LEN` in hyper's HTTP/1 parser).
const MAX_URI_LEN: usize = (u16::MAX - 1) as usize;

/// The largest `Content-Length` hyper accepts (`MAX_LEN` of its decoded lengths).
const MAX_CONTENT_LENGTH: u64 = u64::MAX - 2;

/// A request head refused at the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Refused {
    pub(super) status: u16,
    pub(super) code: &'static str,
    pub(super) message: String,
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

/// Where the request stream is: which bytes are a head (checked), a body or a tunnel (passed).
/// Bodies are framed as hyper frames a request's (RFC 9112 §6.3): `Transfer-Encoding` ending in
/// `chunked`, else `Content-Length`, else none. A body hyper cannot decode makes hyper close the
/// connection, so the framing of a broken body never matters and is kept simple.
pub(super) struct Framing {
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
    pub(super) fn new(limits: EdgeLimits) -> Self {
        Self { limits, phase: Phase::Head, partial: Vec::new(), upgrade_asked: false }
    }

    /// Whether part of a head has arrived, not all of it.
    pub(super) fn mid_head(&self) -> bool {
        self.phase == Phase::Head && !self.partial.is_empty()
    }

    /// Follows `data`, the next bytes read: how many of them may go to hyper, and the refusal of
    /// the head at that point if one is refused.
    pub(super) fn scan(&mut self, mut data: &[u8], upgraded: bool) -> (usize, Option<Refused>) {
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
    use std::time::Duration;

    use super::super::serve::refusal;
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
