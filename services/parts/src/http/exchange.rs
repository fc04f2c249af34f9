//! [`Exchange`]: one request and its response, as a handler sees them.

use std::io::{self, BufWriter, Read, Write};
use std::net::TcpStream;

use super::conn::{Input, abort, peer_gone};

/// A parsed request head.
#[derive(Debug, Clone)]
pub struct Head {
    /// The method, as sent (`GET`, `PUT`, ...).
    pub method: String,
    /// The path part of the target, still percent-encoded.
    pub path: String,
    /// The query string (after `?`), still percent-encoded; empty if none.
    pub query: String,
    /// Headers with lower-cased names, in order.
    pub headers: Vec<(String, String)>,
    /// `Content-Length`, if sent.
    pub content_length: Option<u64>,
    keep_alive: bool,
    expect_continue: bool,
}

impl Head {
    /// Builds a head from `httparse`'s parse; `Err` with a reason for a request the server
    /// does not accept.
    pub(crate) fn from_parsed(req: &httparse::Request<'_, '_>) -> Result<Head, (u16, String)> {
        let method = req.method.unwrap_or("").to_string();
        let target = req.path.unwrap_or("/");
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let mut headers = Vec::with_capacity(req.headers.len());
        for h in req.headers.iter() {
            let value = String::from_utf8_lossy(h.value).trim().to_string();
            headers.push((h.name.to_ascii_lowercase(), value));
        }
        let find = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v);
        if find("transfer-encoding").is_some_and(|v| !v.eq_ignore_ascii_case("identity")) {
            let why = "chunked request bodies are not supported: send Content-Length";
            return Err((411, why.into()));
        }
        let content_length = match find("content-length") {
            None => None,
            Some(v) => Some(
                v.parse::<u64>()
                    .map_err(|_| (400, format!("bad Content-Length {v:?}")))?,
            ),
        };
        let connection = find("connection").map(|v| v.to_ascii_lowercase());
        let keep_alive = match req.version {
            Some(1) => !connection.as_deref().is_some_and(|c| c.contains("close")),
            _ => connection
                .as_deref()
                .is_some_and(|c| c.contains("keep-alive")),
        };
        let expect_continue =
            find("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
        Ok(Head {
            method,
            path: path.to_string(),
            query: query.to_string(),
            content_length,
            keep_alive,
            expect_continue,
            headers,
        })
    }

    /// The first header named `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The query parameter `name`, percent-decoded (`+` is a space, as in forms).
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k) == name).then(|| decode(v))
        })
    }
}

/// Percent-decodes a query component (`+` is a space).
fn decode(s: &str) -> String {
    let spaced = s.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

/// A response with its whole body in memory.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Headers besides `Content-Length` and `Connection`, which the server writes.
    pub headers: Vec<(String, String)>,
    /// The body (not sent for `HEAD`, but its length is).
    pub body: Vec<u8>,
}

impl Response {
    /// A response with `status`, no headers and no body.
    pub fn empty(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A JSON response.
    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: value.to_string().into_bytes(),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Response {
        self.headers.push((name.to_string(), value.into()));
        self
    }
}

/// One request being answered: its head, its body (read on demand), and the response.
pub struct Exchange<'a> {
    head: Head,
    input: &'a mut Input,
    output: &'a mut BufWriter<TcpStream>,
    body_left: u64,
    continue_pending: bool,
    responded: bool,
    /// The connection cannot carry another request (aborted, or the body is in an unknown
    /// state).
    broken: bool,
    /// The connection was aborted (reset): nothing more may be written or read.
    aborted: bool,
}

/// What happens to a connection after an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Read the next request.
    KeepAlive,
    /// Close it gracefully (the response is complete; unread request bytes may follow).
    Close,
    /// It was aborted: drop it at once.
    Abort,
}

impl<'a> Exchange<'a> {
    pub(crate) fn new(
        head: Head,
        input: &'a mut Input,
        output: &'a mut BufWriter<TcpStream>,
    ) -> Exchange<'a> {
        Exchange {
            body_left: head.content_length.unwrap_or(0),
            continue_pending: head.expect_continue,
            head,
            input,
            output,
            responded: false,
            broken: false,
            aborted: false,
        }
    }

    /// The request head.
    pub fn head(&self) -> &Head {
        &self.head
    }

    /// Whether the client closed or reset the connection meanwhile (e.g. it gave up
    /// waiting for the answer).
    pub fn client_gone(&self) -> bool {
        peer_gone(self.input)
    }

    /// Bytes of the request body not read yet.
    pub fn body_left(&self) -> u64 {
        self.body_left
    }

    /// Reads the request body (at most `Content-Length` bytes; a client that closes early
    /// gives an `UnexpectedEof` error). Sends `100 Continue` first if the client asked for it.
    pub fn read_body(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.body_left == 0 || buf.is_empty() {
            return Ok(0);
        }
        if std::mem::take(&mut self.continue_pending) {
            self.output.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
            self.output.flush()?;
        }
        let want = buf
            .len()
            .min(usize::try_from(self.body_left).unwrap_or(usize::MAX));
        let n = match self.input.read(&mut buf[..want]) {
            Ok(0) => {
                self.broken = true;
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("client closed with {} body bytes unsent", self.body_left),
                ));
            }
            Ok(n) => n,
            Err(e) => {
                self.broken = true;
                return Err(e);
            }
        };
        self.body_left -= n as u64;
        Ok(n)
    }

    /// The whole body, if it is at most `limit` bytes (small JSON bodies); `Err` with a reason
    /// otherwise.
    pub fn read_small_body(&mut self, limit: u64) -> Result<Vec<u8>, String> {
        if self.body_left > limit {
            return Err(format!(
                "body of {} bytes, at most {limit} accepted",
                self.body_left
            ));
        }
        let mut body = vec![0; self.body_left as usize];
        let mut at = 0;
        while at < body.len() {
            match self.read_body(&mut body[at..]) {
                Ok(n) => at += n,
                Err(e) => return Err(format!("reading the body: {e}")),
            }
        }
        Ok(body)
    }

    /// Sends `response` (for `HEAD`, the head only).
    pub fn respond(&mut self, response: Response) {
        let len = response.body.len() as u64;
        let body = response.body;
        self.respond_stream(response.status, &response.headers, len, |w| {
            w.write_all(&body)
        });
    }

    /// Sends a head announcing `len` body bytes, then lets `body` write them (skipped for
    /// `HEAD`). If `body` fails or writes another number of bytes, the connection is aborted
    /// (a reset): the client can never take a short body for a complete one.
    pub fn respond_stream(
        &mut self,
        status: u16,
        headers: &[(String, String)],
        len: u64,
        body: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) {
        if self.responded {
            return;
        }
        self.responded = true;
        let close = !self.head.keep_alive || self.must_close();
        if write_head(self.output, status, headers, len, close).is_err() {
            self.broken = true;
            return;
        }
        if close {
            self.broken = true;
        }
        if self.head.method == "HEAD" {
            return;
        }
        let mut counted = Counted {
            inner: &mut *self.output,
            written: 0,
        };
        let result = body(&mut counted);
        if result.is_err() || counted.written != len {
            self.abort();
        }
    }

    /// Aborts the connection (a reset): for a failure after the head went out.
    pub fn abort(&mut self) {
        self.responded = true;
        self.broken = true;
        self.aborted = true;
        abort(self.input);
    }

    /// Whether the connection must close after this response: a body too long to drain, or
    /// one the client may not send at all (it asked to wait for `100 Continue`).
    fn must_close(&self) -> bool {
        self.body_left > 0 && (self.continue_pending || self.body_left > super::conn::MAX_DRAIN)
    }

    /// Ends the exchange: answers 500 if the handler did not answer, drains a small unread
    /// body. Says what to do with the connection.
    pub(crate) fn finish(&mut self, max_drain: u64) -> Next {
        if !self.responded {
            self.respond(Response::json(
                500,
                &serde_json::json!({"error": "internal", "reason": "the handler gave no response"}),
            ));
        }
        if self.aborted {
            return Next::Abort;
        }
        if self.broken || self.continue_pending && self.body_left > 0 || self.body_left > max_drain
        {
            return Next::Close;
        }
        let mut sink = [0u8; 8192];
        while self.body_left > 0 {
            if self.read_body(&mut sink).is_err() {
                return Next::Close;
            }
        }
        Next::KeepAlive
    }
}

/// Counts the bytes a streaming body writes.
struct Counted<'w> {
    inner: &'w mut BufWriter<TcpStream>,
    written: u64,
}

impl Write for Counted<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes a response head.
fn write_head(
    out: &mut impl Write,
    status: u16,
    headers: &[(String, String)],
    len: u64,
    close: bool,
) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {len}\r\n"));
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())
}

/// Answers a request the server could not parse, then the caller closes.
pub(crate) fn write_simple_error(
    out: &mut BufWriter<TcpStream>,
    status: u16,
    why: &str,
) -> io::Result<()> {
    let body = serde_json::json!({"error": "bad_request", "reason": why}).to_string();
    let headers = [("Content-Type".to_string(), "application/json".to_string())];
    write_head(out, status, &headers, body.len() as u64, true)?;
    out.write_all(body.as_bytes())?;
    out.flush()
}

/// The reason phrase of the status codes the services use.
fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        206 => "Partial Content",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        416 => "Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        507 => "Insufficient Storage",
        _ => "Status",
    }
}
