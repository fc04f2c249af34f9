//! [`NodeClient`]: the gateway's calls to nodes (write, read, remove a copy), with errors
//! sorted by what the gateway should do about them.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::node::store::Written;

/// Why a call to a node failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The node could not be reached or the connection broke (refused, reset): it is down.
    #[error("node {addr} unreachable: {why}")]
    Unreachable {
        /// The node's address.
        addr: String,
        /// The transport error.
        why: String,
    },
    /// The node did not answer in time: it is slow.
    #[error("node {addr} missed its deadline: {why}")]
    TimedOut {
        /// The node's address.
        addr: String,
        /// What timed out.
        why: String,
    },
    /// The node answered with an error status.
    #[error("node {addr} answered {status}: {body}")]
    Status {
        /// The node's address.
        addr: String,
        /// The status code.
        status: u16,
        /// The body (its JSON error, shortened).
        body: String,
    },
    /// The node's answer made no sense.
    #[error("node {addr} answered something unexpected: {why}")]
    BadReply {
        /// The node's address.
        addr: String,
        /// What was wrong.
        why: String,
    },
}

impl CallError {
    /// The node's address.
    pub fn addr(&self) -> &str {
        match self {
            CallError::Unreachable { addr, .. }
            | CallError::TimedOut { addr, .. }
            | CallError::Status { addr, .. }
            | CallError::BadReply { addr, .. } => addr,
        }
    }
}

/// Sorts a `ureq` error.
fn sort(addr: &str, err: ureq::Error) -> CallError {
    let addr = addr.to_string();
    match err {
        ureq::Error::Status(status, response) => {
            let mut body = response.into_string().unwrap_or_default();
            body.truncate(500);
            CallError::Status { addr, status, body }
        }
        ureq::Error::Transport(t) => {
            let why = t.to_string();
            let timed_out = io_kind(&t).is_some_and(|k| {
                matches!(
                    k,
                    std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                )
            });
            if timed_out {
                CallError::TimedOut { addr, why }
            } else {
                CallError::Unreachable { addr, why }
            }
        }
    }
}

/// The kind of the `io::Error` under a transport error, if there is one.
fn io_kind(t: &ureq::Transport) -> Option<std::io::ErrorKind> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(t);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        source = err.source();
    }
    None
}

/// Calls to nodes: writes on connections of their own, the rest over a pool of kept-alive
/// connections.
#[derive(Clone)]
pub struct NodeClient {
    agent: ureq::Agent,
    stall: Duration,
}

/// Bytes written to a node at a time from a reader.
const PUT_CHUNK: usize = 1 << 20;

/// A request body for [`NodeClient::put`].
pub trait Body {
    /// Writes exactly `len` bytes to `out`.
    fn send(&mut self, out: &mut TcpStream, len: u64) -> std::io::Result<()>;
}

impl Body for crate::spool::SpoolReader {
    fn send(&mut self, out: &mut TcpStream, _len: u64) -> std::io::Result<()> {
        self.send_to(out)
    }
}

/// A body read from any reader, written in 1 MiB pieces.
pub struct ReadBody<R>(pub R);

impl<R: Read> Body for ReadBody<R> {
    fn send(&mut self, out: &mut TcpStream, len: u64) -> std::io::Result<()> {
        let mut buf = vec![0u8; PUT_CHUNK];
        let mut left = len;
        while left > 0 {
            let want = buf.len().min(left as usize);
            let n = self.0.read(&mut buf[..want])?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "body ended early",
                ));
            }
            out.write_all(&buf[..n])?;
            left -= n as u64;
        }
        Ok(())
    }
}
/// Largest reply head or body to a write.
const MAX_REPLY: usize = 64 << 10;

/// Sorts an I/O error: a timeout is a slow node, anything else an unreachable one.
fn io_error(addr: &str, e: &std::io::Error) -> CallError {
    let (addr, why) = (addr.to_string(), e.to_string());
    match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
            CallError::TimedOut { addr, why }
        }
        _ => CallError::Unreachable { addr, why },
    }
}

/// Reads a reply (status and body, by `Content-Length`) from a connection the node closes.
fn read_reply(stream: &mut TcpStream) -> std::io::Result<(u16, Vec<u8>)> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut reply = httparse::Response::new(&mut headers);
        let bad = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidData, why);
        if let httparse::Status::Complete(at) = reply.parse(&buf).map_err(|e| bad(e.to_string()))? {
            let status = reply.code.unwrap_or(0);
            let len = reply
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| {
                    std::str::from_utf8(h.value)
                        .ok()?
                        .trim()
                        .parse::<usize>()
                        .ok()
                })
                .unwrap_or(0)
                .min(MAX_REPLY);
            let mut body = buf[at..].to_vec();
            while body.len() < len {
                let n = stream.read(&mut chunk)?;
                if n == 0 {
                    return Err(bad("reply body cut short".into()));
                }
                body.extend_from_slice(&chunk[..n]);
            }
            body.truncate(len);
            return Ok((status, body));
        }
        if buf.len() > MAX_REPLY {
            return Err(bad("reply head too long".into()));
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "no reply",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

impl NodeClient {
    /// A client whose reads and writes each time out after `stall` without progress.
    pub fn new(stall: Duration) -> NodeClient {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(2).min(stall))
            .timeout_read(stall)
            .timeout_write(stall)
            .max_idle_connections(512)
            .max_idle_connections_per_host(64)
            .no_delay(true)
            .build();
        NodeClient { agent, stall }
    }

    /// Writes copy `copy` of `len` bytes from `body` to the node at `addr`; returns what the
    /// node wrote (durably).
    ///
    /// A plain connection of its own, the body written by [`Body::send`] (1 MiB pieces, or
    /// `sendfile` from a spool): `ureq` copies a request body through an 8 KiB buffer, which
    /// for 1 GiB is 131 072 writes (and as many spool reads).
    pub fn put(
        &self,
        addr: &str,
        copy: i64,
        len: u64,
        body: &mut dyn Body,
    ) -> Result<Written, CallError> {
        let fail = |e: std::io::Error| io_error(addr, &e);
        let mut stream = self.connect(addr)?;
        let head = format!(
            "PUT /parts/{copy} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).map_err(fail)?;
        body.send(&mut stream, len).map_err(fail)?;
        let (status, reply) = read_reply(&mut stream).map_err(fail)?;
        if status != 201 {
            let mut body = String::from_utf8_lossy(&reply).into_owned();
            body.truncate(500);
            return Err(CallError::Status {
                addr: addr.to_string(),
                status,
                body,
            });
        }
        let reply: serde_json::Value =
            serde_json::from_slice(&reply).map_err(|e| CallError::BadReply {
                addr: addr.to_string(),
                why: format!("reply to a write is not JSON: {e}"),
            })?;
        match (reply["len"].as_u64(), reply["crc"].as_u64()) {
            (Some(len), Some(crc)) => Ok(Written {
                len,
                crc: crc as u32,
            }),
            _ => Err(CallError::BadReply {
                addr: addr.to_string(),
                why: format!("reply to a write lacks len/crc: {reply}"),
            }),
        }
    }

    /// A connection to `addr` with the stall timeouts set.
    fn connect(&self, addr: &str) -> Result<TcpStream, CallError> {
        let fail = |e: std::io::Error| io_error(addr, &e);
        let target = addr
            .to_socket_addrs()
            .map_err(fail)?
            .next()
            .ok_or_else(|| CallError::Unreachable {
                addr: addr.to_string(),
                why: "no address".into(),
            })?;
        let stream = TcpStream::connect_timeout(&target, self.stall.min(Duration::from_secs(2)))
            .map_err(fail)?;
        stream.set_nodelay(true).map_err(fail)?;
        stream.set_write_timeout(Some(self.stall)).map_err(fail)?;
        stream.set_read_timeout(Some(self.stall)).map_err(fail)?;
        Ok(stream)
    }

    /// Reads `len` bytes of copy `copy` from `offset`; returns a reader of exactly those bytes
    /// (a short body is an error when read) and the copy's stored length.
    pub fn get(
        &self,
        addr: &str,
        copy: i64,
        offset: u64,
        len: u64,
    ) -> Result<(Box<dyn Read + Send + Sync>, u64), CallError> {
        let response = self
            .agent
            .get(&format!(
                "http://{addr}/parts/{copy}?offset={offset}&len={len}"
            ))
            .call()
            .map_err(|e| sort(addr, e))?;
        let stored = response.header("X-Part-Len").and_then(|v| v.parse().ok());
        let Some(stored) = stored else {
            return Err(CallError::BadReply {
                addr: addr.to_string(),
                why: "no X-Part-Len header".into(),
            });
        };
        Ok((response.into_reader(), stored))
    }

    /// Removes copy `copy` from the node; `Ok(existed)`.
    pub fn delete(&self, addr: &str, copy: i64) -> Result<bool, CallError> {
        let response = self
            .agent
            .delete(&format!("http://{addr}/parts/{copy}"))
            .call()
            .map_err(|e| sort(addr, e))?;
        let reply: serde_json::Value = response.into_json().map_err(|e| CallError::BadReply {
            addr: addr.to_string(),
            why: format!("reply to a delete is not JSON: {e}"),
        })?;
        Ok(reply["existed"].as_bool().unwrap_or(false))
    }
}
