//! One HTTP/1.1 connection: reads request heads with `httparse`, hands each request to the
//! handler as an [`Exchange`], and keeps the connection alive when the exchange left it in a
//! clean state (body read or small enough to drain, response complete).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use super::exchange::{Exchange, Head, Next};
use super::server::{Handler, Limits};

/// Largest request head (request line plus headers) accepted.
const MAX_HEAD: usize = 16 << 10;
/// Most headers in one request.
const MAX_HEADERS: usize = 64;
/// A request body left unread by the handler is drained up to this many bytes so the
/// connection can be reused; a longer one closes the connection instead.
pub(crate) const MAX_DRAIN: u64 = 256 << 10;

/// The read side of a connection: a buffer of bytes received but not consumed yet, then the
/// socket.
pub(crate) struct Input {
    stream: TcpStream,
    buf: Vec<u8>,
    pos: usize,
}

impl Input {
    fn new(stream: TcpStream) -> Input {
        Input {
            stream,
            buf: Vec::with_capacity(MAX_HEAD),
            pos: 0,
        }
    }

    /// Reads more bytes into the buffer; `Ok(0)` at end of stream.
    fn fill(&mut self) -> io::Result<usize> {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let old = self.buf.len();
        self.buf.resize(old + 8192, 0);
        let n = loop {
            match self.stream.read(&mut self.buf[old..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        self.buf.truncate(old + *n.as_ref().unwrap_or(&0));
        n
    }
}

impl Read for Input {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos < self.buf.len() {
            let n = out.len().min(self.buf.len() - self.pos);
            out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
            self.pos += n;
            if self.pos == self.buf.len() {
                self.buf.clear();
                self.pos = 0;
            }
            return Ok(n);
        }
        self.stream.read(out)
    }
}

/// What reading a request head gave.
enum NextHead {
    Head(Head),
    /// The client closed the connection between requests.
    Closed,
    /// A malformed or oversized head: answered with this status and a reason, then closed.
    Bad(u16, String),
}

/// Serves requests on `stream` until the client closes, an exchange leaves the connection
/// unusable, or a read times out.
pub(crate) fn serve(stream: TcpStream, handler: Arc<dyn Handler>, limits: Limits) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(limits.idle_timeout));
    let _ = stream.set_write_timeout(Some(limits.io_timeout));
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut input = Input::new(stream);
    let mut output = io::BufWriter::with_capacity(64 << 10, write_half);
    loop {
        let head = match read_head(&mut input) {
            NextHead::Head(head) => head,
            NextHead::Closed => return,
            NextHead::Bad(status, reason) => {
                let _ = super::exchange::write_simple_error(&mut output, status, &reason);
                return linger(&mut input);
            }
        };
        let _ = input.stream.set_read_timeout(Some(limits.io_timeout));
        let mut exchange = Exchange::new(head, &mut input, &mut output);
        handler.handle(&mut exchange);
        let next = exchange.finish(MAX_DRAIN);
        if next == Next::Abort {
            return;
        }
        if output.flush().is_err() {
            return;
        }
        if next == Next::Close {
            return linger(&mut input);
        }
        let _ = input.stream.set_read_timeout(Some(limits.idle_timeout));
    }
}

/// Reads and parses the next request head.
fn read_head(input: &mut Input) -> NextHead {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&input.buf[input.pos..]) {
            Ok(httparse::Status::Complete(used)) => {
                let head = Head::from_parsed(&req);
                input.pos += used;
                return match head {
                    Ok(head) => NextHead::Head(head),
                    Err((status, reason)) => NextHead::Bad(status, reason),
                };
            }
            Ok(httparse::Status::Partial) => {}
            Err(e) => return NextHead::Bad(400, format!("malformed request head: {e}")),
        }
        if input.buf.len() - input.pos >= MAX_HEAD {
            return NextHead::Bad(431, format!("request head longer than {MAX_HEAD} bytes"));
        }
        match input.fill() {
            Ok(0) | Err(_) => return NextHead::Closed,
            Ok(_) => {}
        }
    }
}

/// Most bytes read and discarded while closing a connection gracefully.
const LINGER_BYTES: usize = 16 << 20;

/// Closes gracefully: sends FIN, then reads and discards what the client still sends (up to
/// [`LINGER_BYTES`], for up to 2 s), so that closing with unread request bytes does not
/// reset the connection before the client has read the response.
fn linger(input: &mut Input) {
    let _ = input.stream.shutdown(std::net::Shutdown::Write);
    let _ = input
        .stream
        .set_read_timeout(Some(std::time::Duration::from_secs(2)));
    let mut sink = vec![0u8; 64 << 10];
    let mut total = 0;
    while total < LINGER_BYTES {
        match input.stream.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(n) => total += n,
        }
    }
}

/// Makes the coming close of the connection a reset (SO_LINGER 0): the peer sees the
/// connection aborted, never a clean end of a short body. The caller then stops serving it.
pub(crate) fn abort(input: &Input) {
    let sock = socket2::SockRef::from(&input.stream);
    let _ = sock.set_linger(Some(std::time::Duration::ZERO));
}

/// Whether the client has closed or reset the connection (checked without consuming
/// anything: a non-blocking peek). Bytes waiting (a pipelined request) mean it is there.
pub(crate) fn peer_gone(input: &Input) -> bool {
    if input.stream.set_nonblocking(true).is_err() {
        return false;
    }
    let mut probe = [0u8; 1];
    let gone = match input.stream.peek(&mut probe) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != io::ErrorKind::WouldBlock && e.kind() != io::ErrorKind::Interrupted,
    };
    let _ = input.stream.set_nonblocking(false);
    gone
}
