//! [`Server`]: a blocking HTTP/1.1 server, one thread per connection, with a cap on
//! connections.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::exchange::Exchange;

/// Answers requests. Called on the connection's thread; may block (it is the request's
/// own thread).
pub trait Handler: Send + Sync + 'static {
    /// Answers one request through `exchange` (reading its body as needed).
    fn handle(&self, exchange: &mut Exchange<'_>);
}

/// Time limits of a connection.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long an idle keep-alive connection stays open waiting for its next request.
    pub idle_timeout: Duration,
    /// How long one read or write inside a request may block (a stalled client).
    pub io_timeout: Duration,
    /// Most connections served at once; beyond it a new connection gets `503` and is closed.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            idle_timeout: Duration::from_secs(60),
            io_timeout: Duration::from_secs(60),
            max_connections: 512,
        }
    }
}

/// A bound listener and its handler; [`run`](Self::run) serves until the process ends.
pub struct Server {
    listener: TcpListener,
    handler: Arc<dyn Handler>,
    limits: Limits,
}

impl Server {
    /// Binds `addr` (port 0 picks a free port; see [`local_addr`](Self::local_addr)).
    pub fn bind(addr: &str, handler: Arc<dyn Handler>, limits: Limits) -> std::io::Result<Server> {
        let listener = TcpListener::bind(addr)?;
        Ok(Server {
            listener,
            handler,
            limits,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts connections forever, each on a thread of its own.
    pub fn run(self) {
        let open = Arc::new(AtomicUsize::new(0));
        for stream in self.listener.incoming() {
            let Ok(stream) = stream else {
                // EMFILE and friends: the connection is gone; keep accepting.
                continue;
            };
            if open.fetch_add(1, Ordering::AcqRel) >= self.limits.max_connections {
                open.fetch_sub(1, Ordering::AcqRel);
                refuse(stream);
                continue;
            }
            let (handler, limits, count) =
                (Arc::clone(&self.handler), self.limits, Arc::clone(&open));
            let spawned = std::thread::Builder::new()
                .name("http-conn".into())
                .spawn(move || {
                    super::conn::serve(stream, handler, limits);
                    count.fetch_sub(1, Ordering::AcqRel);
                });
            if spawned.is_err() {
                open.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    /// Serves on a background thread; returns the address.
    pub fn spawn(self) -> std::io::Result<SocketAddr> {
        let addr = self.local_addr()?;
        std::thread::Builder::new()
            .name("http-accept".into())
            .spawn(move || self.run())?;
        Ok(addr)
    }
}

/// Answers `503` to a connection over the cap and closes it.
fn refuse(stream: TcpStream) {
    use std::io::Write;
    let body = r#"{"error":"busy","reason":"too many connections; retry later"}"#;
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = write!(
        &stream,
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\nRetry-After: 1\r\n\r\n{body}",
        body.len()
    );
}
