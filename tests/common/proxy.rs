//! A TCP proxy for fault tests: forwards connections from 127.0.0.1 to a server, and can be
//! armed to cut a connection at the worst moment for a client: after the server executed a
//! request and sent its reply, before the client got any of it. The reply is dropped and both
//! sides are closed. It can also cut a request before the server sees it, a fault the client
//! cannot tell apart from the first.
//!
//! Bounded: at most [`MAX_CONNS`] connections at once (more are refused by closing them), two
//! threads and two 16 KiB buffers per connection, and the reply being withheld is parsed as it
//! streams, never buffered.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Most connections open through one proxy at once.
pub const MAX_CONNS: usize = 32;

/// How the proxy finds "the reply to the request that executed" in the server's stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// Redis (RESP): the server executes a command completely before it writes a byte of the
    /// reply, so the first reply byte after arming starts the withheld reply. It is cut there.
    Redis,
    /// PostgreSQL (v3 protocol): the reply of an executed statement starts with BindComplete
    /// (`2`) and ends with ReadyForQuery (`Z`), which the server sends only after the implicit
    /// transaction committed. The proxy withholds from `2` and cuts when `Z` arrives. Replies
    /// to a prepare (`1`, `t`, `T`, `n`, `Z`) pass through.
    Postgres,
}

struct Shared {
    upstream: SocketAddr,
    protocol: Protocol,
    /// Set by [`Proxy::cut_next_reply`]; taken by the first connection that sees a reply.
    armed: AtomicBool,
    /// Set by [`Proxy::cut_next_request`]; taken by the first connection that sees a request.
    request_armed: AtomicBool,
    cuts: AtomicUsize,
    stop: AtomicBool,
    /// Open connections (id, client side, server side), so drop can close them.
    conns: Mutex<Vec<(u64, TcpStream, TcpStream)>>,
    next_id: AtomicU64,
}

/// A running proxy; stops (closing every connection) on drop.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Listens on 127.0.0.1 (a free port) and forwards to `upstream` (a loopback address).
    pub fn start(upstream: impl ToSocketAddrs, protocol: Protocol) -> Proxy {
        let upstream = upstream
            .to_socket_addrs()
            .expect("upstream address")
            .find(|a| a.ip().is_loopback())
            .expect("the proxy forwards to loopback servers only");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            upstream,
            protocol,
            armed: AtomicBool::new(false),
            request_armed: AtomicBool::new(false),
            cuts: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            conns: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
        });
        let acceptor = {
            let shared = shared.clone();
            std::thread::spawn(move || accept_loop(listener, shared))
        };
        Proxy {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// The proxy's `host:port`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Arms the proxy: the next reply to an executed request (see [`Protocol`]) is dropped and
    /// its connection closed on both sides. Arm only while the client is idle.
    pub fn cut_next_reply(&self) {
        self.shared.armed.store(true, Ordering::SeqCst);
    }

    /// Arms the proxy: the next request a client sends is dropped before the server sees any
    /// of it, and its connection closed on both sides (the call never ran; the client cannot
    /// tell this from a lost reply). Arm only while the client is idle.
    pub fn cut_next_request(&self) {
        self.shared.request_armed.store(true, Ordering::SeqCst);
    }

    /// Whether the armed cut is still waiting for its reply.
    pub fn is_armed(&self) -> bool {
        self.shared.armed.load(Ordering::SeqCst)
    }

    /// How many replies were cut so far.
    pub fn cuts(&self) -> usize {
        self.shared.cuts.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes the acceptor
        for (_, a, b) in self
            .shared
            .conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            let _ = a.shutdown(Shutdown::Both);
            let _ = b.shutdown(Shutdown::Both);
        }
        if let Some(handle) = self.acceptor.take() {
            let _ = handle.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        let Ok(server) = TcpStream::connect(shared.upstream) else {
            continue; // the client sees its connection closed, as with a dead server
        };
        let mut conns = shared.conns.lock().unwrap_or_else(|e| e.into_inner());
        if conns.len() >= MAX_CONNS {
            continue; // dropping both streams closes them
        }
        let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
            continue;
        };
        let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
        conns.push((id, c2, s2));
        drop(conns);
        spawn_pumps(id, client, server, shared.clone());
    }
}

fn spawn_pumps(id: u64, client: TcpStream, server: TcpStream, shared: Arc<Shared>) {
    let (Ok(client_in), Ok(server_out)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let for_requests = shared.clone();
    std::thread::spawn(move || requests(client_in, server_out, &for_requests));
    std::thread::spawn(move || {
        let (c, s) = (client.try_clone(), server.try_clone());
        replies(server, client, &shared);
        // The server's side ended (or was cut): end the client's too, and forget the pair.
        for stream in [c, s].into_iter().flatten() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        let mut conns = shared.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.retain(|(i, _, _)| *i != id);
    });
}

/// Forwards the client's requests to the server, cutting an armed one.
fn requests(mut client: TcpStream, mut server: TcpStream, shared: &Shared) {
    let mut buf = [0u8; 16 * 1024];
    while let Ok(n) = client.read(&mut buf) {
        if n == 0 {
            break;
        }
        if shared.request_armed.swap(false, Ordering::SeqCst) {
            shared.cuts.fetch_add(1, Ordering::SeqCst);
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
            return;
        }
        if server.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = server.shutdown(Shutdown::Write);
}

/// Forwards the server's replies to the client, withholding and cutting an armed one.
fn replies(mut server: TcpStream, mut client: TcpStream, shared: &Shared) {
    let mut buf = [0u8; 16 * 1024];
    let mut frames = Frames::default();
    let mut withholding = false;
    loop {
        let n = match server.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut forward = &buf[..n];
        if !withholding && shared.armed.load(Ordering::SeqCst) {
            if let Some(start) = reply_start(shared.protocol, &mut frames, forward) {
                // Only one connection may take the armed cut.
                if shared.armed.swap(false, Ordering::SeqCst) {
                    withholding = true;
                    if client.write_all(&forward[..start]).is_err() {
                        break;
                    }
                    forward = &forward[start..];
                } else {
                    frames.scan(&forward[start..], |_| false);
                }
            }
        } else if !withholding && shared.protocol == Protocol::Postgres {
            frames.scan(forward, |_| false);
        }
        if withholding {
            let done = match shared.protocol {
                Protocol::Redis => true,
                Protocol::Postgres => frames.scan(forward, |kind| kind == b'Z').is_some(),
            };
            if done {
                shared.cuts.fetch_add(1, Ordering::SeqCst);
                let _ = client.shutdown(Shutdown::Both);
                let _ = server.shutdown(Shutdown::Both);
                return;
            }
            continue;
        }
        if client.write_all(forward).is_err() {
            break;
        }
    }
    let _ = client.shutdown(Shutdown::Write);
}

/// Where, in `chunk`, the reply to cut starts (if it does).
fn reply_start(protocol: Protocol, frames: &mut Frames, chunk: &[u8]) -> Option<usize> {
    match protocol {
        // A pub/sub message (a storage's wake-up connection) answers no request: not a reply.
        Protocol::Redis if chunk.starts_with(b"*3\r\n$7\r\nmessage\r\n") => None,
        Protocol::Redis => Some(0),
        Protocol::Postgres => frames.scan(chunk, |kind| kind == b'2'),
    }
}

/// A streaming splitter of PostgreSQL backend messages (type byte, then a big-endian length
/// that counts itself). Every backend message is typed, from the first one on.
#[derive(Default)]
struct Frames {
    /// Bytes of the current message's header seen so far (up to 5).
    header: Vec<u8>,
    /// Body bytes of the current message still to skip.
    skip: usize,
}

impl Frames {
    /// Advances over `chunk`; returns the offset of the first message whose type byte makes
    /// `stop` true, having consumed the chunk only up to it (the caller rescans from there).
    fn scan(&mut self, chunk: &[u8], mut stop: impl FnMut(u8) -> bool) -> Option<usize> {
        let mut i = 0;
        while i < chunk.len() {
            if self.skip > 0 {
                let step = self.skip.min(chunk.len() - i);
                self.skip -= step;
                i += step;
                continue;
            }
            if self.header.is_empty() && stop(chunk[i]) {
                return Some(i);
            }
            self.header.push(chunk[i]);
            i += 1;
            if self.header.len() == 5 {
                let len = u32::from_be_bytes([
                    self.header[1],
                    self.header[2],
                    self.header[3],
                    self.header[4],
                ]);
                self.skip = (len as usize).saturating_sub(4);
                self.header.clear();
            }
        }
        None
    }
}
