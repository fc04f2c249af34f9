//! The HTTP API and the page, on `tiny_http` (blocking) with a few worker threads.
//!
//! Until the cache is rebuilt, `/health` answers `503 {"status":"loading"}` and every other
//! endpoint but `/metrics` `503`; then `/health` is `200 {"status":"ready"}`.

use std::io::Cursor;
use std::net::ToSocketAddrs;
use std::sync::Arc;

use lifostore::Storage;
use tiny_http::{Header, Method, Request, Response, Server, StatusCode};

use crate::cache::NEWEST_KEPT;
use crate::counters::{Counters, StatsView, stats_json};
use crate::metrics::{Metrics, Route};
use crate::order::check_uid;
use crate::orders_db::OrdersDb;
use crate::view::View;

const PAGE: &str = include_str!("../page/index.html");

/// What the handlers read.
pub struct Shared {
    /// The cache, and what decides what it shows.
    pub view: Arc<View>,
    /// Message counters.
    pub counters: Counters,
    /// The storage, for its `Stats`.
    pub storage: Storage<OrdersDb>,
    /// Histograms and the `/metrics` text.
    pub metrics: Metrics,
}

impl Shared {
    /// What `/stats` and `/metrics` report besides the counters, read now.
    fn reading<T>(&self, f: impl FnOnce(&StatsView<'_>) -> T) -> T {
        let storage = self.storage.stats();
        f(&StatsView {
            cached: self.view.cache().len(),
            pending: self.view.pending(),
            duplicates: self.storage.db().unchanged(),
            replaced: self.storage.db().replaced(),
            storage: &storage,
        })
    }
}

/// Why the HTTP server did not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for HTTP on {addr}: {detail}; pick a free address with --http")]
pub struct HttpError {
    /// The address asked for.
    pub addr: String,
    /// The server's message.
    pub detail: String,
}

/// A listener with `TCP_NODELAY` set, which Linux passes on to every accepted socket:
/// tiny_http writes a response's headers and body separately, and without it Nagle's
/// algorithm holds the body until the client's delayed ACK (40 ms per request).
fn listener(addr: &str) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let addr = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other("the address resolves to nothing"))?;
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// Binds `addr` and serves on `threads` threads (detached: they live as long as the process).
pub fn serve(addr: &str, threads: usize, shared: Arc<Shared>) -> Result<(), HttpError> {
    let failed = |detail: String| HttpError {
        addr: addr.to_string(),
        detail,
    };
    let listener = listener(addr).map_err(|e| failed(e.to_string()))?;
    let server = Server::from_listener(listener, None).map_err(|e| failed(e.to_string()))?;
    let server = Arc::new(server);
    for i in 0..threads.max(1) {
        let (server, shared) = (Arc::clone(&server), Arc::clone(&shared));
        let spawned = std::thread::Builder::new()
            .name(format!("orders-http-{i}"))
            .spawn(move || {
                for request in server.incoming_requests() {
                    handle(&shared, request);
                }
            });
        if let Err(e) = spawned {
            return Err(failed(format!("cannot start a thread: {e}")));
        }
    }
    Ok(())
}

type Reply = Response<Cursor<Arc<[u8]>>>;

fn reply(status: u16, content_type: &'static str, body: Arc<[u8]>) -> Reply {
    let len = body.len();
    let header = Header::from_bytes(&b"Content-Type"[..], content_type.as_bytes());
    Response::new(
        StatusCode(status),
        header.into_iter().collect(),
        Cursor::new(body),
        Some(len),
        None,
    )
}

fn json(status: u16, body: String) -> Reply {
    reply(status, "application/json", body.into_bytes().into())
}

fn error(status: u16, message: &str) -> Reply {
    json(status, serde_json::json!({ "error": message }).to_string())
}

fn handle(shared: &Shared, request: Request) {
    let started = std::time::Instant::now();
    let (route, response) = route(shared, request.method(), request.url());
    // A client that hung up is not our failure; there is nothing left to tell it.
    let _ = request.respond(response);
    let took = started.elapsed().as_secs_f64();
    shared
        .metrics
        .http
        .get_or_create(&Route { route })
        .observe(took);
}

/// The answer, and the route's name for the latency histogram.
fn route(shared: &Shared, method: &Method, url: &str) -> (&'static str, Reply) {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    if *method != Method::Get {
        return ("other", error(405, "only GET is served"));
    }
    let ready = shared.view.cache().is_ready();
    match path {
        "/health" if ready => ("health", json(200, r#"{"status":"ready"}"#.into())),
        "/health" => ("health", json(503, r#"{"status":"loading"}"#.into())),
        "/metrics" => ("metrics", metrics(shared)),
        _ if !ready => (
            "other",
            error(503, "loading the cache from PostgreSQL; retry shortly"),
        ),
        "/" => (
            "page",
            reply(200, "text/html; charset=utf-8", PAGE.as_bytes().into()),
        ),
        "/stats" => (
            "stats",
            json(200, shared.reading(|v| stats_json(&shared.counters, v))),
        ),
        "/orders" => ("newest", newest(shared, query)),
        _ => match path.strip_prefix("/orders/") {
            Some(uid) => ("order", by_id(shared, uid)),
            None => (
                "other",
                error(404, "no such endpoint; try /orders/{order_uid}"),
            ),
        },
    }
}

fn metrics(shared: &Shared) -> Reply {
    let text = shared.reading(|v| shared.metrics.render(v));
    reply(
        200,
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        text.into_bytes().into(),
    )
}

fn by_id(shared: &Shared, uid: &str) -> Reply {
    if check_uid(uid).is_err() {
        return error(
            400,
            "an order_uid is 1 to 64 characters of A-Z a-z 0-9 . _ -",
        );
    }
    match shared.view.cache().get(uid) {
        Some(body) => reply(200, "application/json", body),
        None => error(404, &format!("no order with order_uid {uid}")),
    }
}

fn newest(shared: &Shared, query: &str) -> Reply {
    let mut limit = 10;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("limit", n)) => match n.parse::<usize>() {
                Ok(n) if (1..=NEWEST_KEPT).contains(&n) => limit = n,
                _ => return error(400, &format!("limit must be 1 to {NEWEST_KEPT}")),
            },
            _ => return error(400, "the only parameter is limit=N"),
        }
    }
    let ids = shared.view.cache().newest(limit);
    json(200, serde_json::json!({ "order_uids": ids }).to_string())
}
