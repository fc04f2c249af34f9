//! The worker process: configuration, startup, handler threads and shutdown.

use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use lifostore::Storage;

use crate::counters::Counters;
use crate::edge::{Edge, EdgeConfig, StatsFn};
use crate::error::Error;
use crate::handler::{Handler, Mode, Shared};
use crate::log_db::LogDb;
use crate::log_table::LogTable;
use crate::metrics::{self, Metrics};

/// Everything a worker needs to know.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Name in logs and stats.
    pub name: String,
    /// NATS URL.
    pub nats_url: String,
    /// PostgreSQL URLs: one per shard, in the same order on every worker (one = no sharding).
    pub pg_urls: Vec<String>,
    /// lifostore window (`max_unflushed_age`); default 50 ms.
    pub window: Duration,
    /// Handler threads; default 2.
    pub handlers: usize,
    /// Most requests per batch; default 1000.
    pub max_batch: usize,
    /// Consumer AckWait; default 10 s.
    pub ack_wait: Duration,
    /// Batched (lifostore) or the one-INSERT-per-append baseline.
    pub mode: Mode,
    /// How often a stats line goes to stderr; default 5 s.
    pub stats_every: Duration,
    /// Fault injection for tests (`--fault exit-before-ack`): see [`EdgeConfig`].
    pub exit_before_ack: bool,
    /// Where to serve `/metrics` (`--metrics ADDR`), if anywhere.
    pub metrics: Option<String>,
}

fn stats_fn(name: String, shared: Arc<Shared>) -> StatsFn {
    Arc::new(move || {
        let s = shared.storage.stats();
        let mut fields = serde_json::Map::new();
        fields.insert("worker".into(), name.clone().into());
        fields.extend(shared.counters.to_json());
        let db = shared.storage.db();
        fields.insert("already_stored".into(), db.already_stored().into());
        fields.insert("db_push_calls".into(), s.db_push_calls.into());
        fields.insert("items_flushed".into(), s.items_flushed.into());
        fields.insert("db_failures".into(), s.db_failures.into());
        fields.insert("buffered".into(), s.buffered_items.into());
        serde_json::Value::Object(fields).to_string()
    })
}

/// Runs a worker until SIGTERM/SIGINT: answers every batch handed over before the signal,
/// writes the buffer to PostgreSQL, and returns.
pub fn run(cfg: WorkerConfig) -> Result<(), Error> {
    let storage = Storage::builder()
        .max_unflushed_age(cfg.window)
        .max_buffered_items(cfg.max_batch * cfg.handlers.max(1) * 4)
        .build(LogDb::new(connect_shards(&cfg.pg_urls)?))?;
    let shared = Arc::new(Shared {
        storage,
        mode: cfg.mode,
        counters: Counters::default(),
        flush_timeout: cfg.ack_wait / 2,
    });
    let stats = stats_fn(cfg.name.clone(), shared.clone());
    let metrics = Arc::new(Metrics::new(&shared.counters));
    if let Some(addr) = &cfg.metrics {
        metrics::serve(addr, Arc::clone(&metrics), Arc::clone(&shared))?;
        eprintln!(
            "objlog worker {}: /metrics on http://{addr}/metrics",
            cfg.name
        );
    }
    let edge = Arc::new(Edge::start(EdgeConfig {
        nats_url: cfg.nats_url.clone(),
        ack_wait: cfg.ack_wait,
        max_batch: cfg.max_batch,
        queued_batches: cfg.handlers.max(1),
        stats: stats.clone(),
        exit_before_ack: cfg.exit_before_ack,
        latency: metrics.latency.clone(),
    })?);
    eprintln!(
        "objlog worker {}: running ({:?}, window {:?}, {} handlers)",
        cfg.name, cfg.mode, cfg.window, cfg.handlers
    );
    let (stop_stats, stats_rx) = mpsc::channel::<()>();
    let reporter = std::thread::Builder::new()
        .name("objlog-stats".into())
        .spawn(move || report(stats, stats_rx, cfg.stats_every))?;
    let mut threads = Vec::new();
    for i in 0..cfg.handlers.max(1) {
        let handler = Handler::new(
            shared.clone(),
            connect_shards(&cfg.pg_urls)?,
            edge.max_payload(),
        );
        let edge = edge.clone();
        let thread = std::thread::Builder::new().name(format!("objlog-handler-{i}"));
        threads.push(thread.spawn(move || handle_batches(handler, &edge))?);
    }
    for t in threads {
        let _ = t.join();
    }
    let closed = shared.storage.close();
    if let Ok(edge) = Arc::try_unwrap(edge) {
        edge.finish();
    }
    drop(stop_stats);
    let _ = reporter.join();
    eprintln!("objlog worker {}: stopped", cfg.name);
    Ok(closed?)
}

fn connect_shards(urls: &[String]) -> Result<Vec<LogTable>, Error> {
    if urls.is_empty() {
        return Err(Error::Config("no PostgreSQL URL given".into()));
    }
    Ok(urls
        .iter()
        .map(|u| LogTable::connect(u))
        .collect::<Result<_, _>>()?)
}

fn handle_batches(mut handler: Handler, edge: &Edge) {
    while let Some(batch) = edge.next_batch() {
        let answers = handler.handle(batch);
        if edge.complete(answers).is_err() {
            break;
        }
    }
    edge.stop();
}

fn report(stats: StatsFn, stop: mpsc::Receiver<()>, every: Duration) {
    loop {
        match stop.recv_timeout(every) {
            Err(RecvTimeoutError::Timeout) => eprintln!("objlog stats {}", stats()),
            _ => return eprintln!("objlog stats {}", stats()),
        }
    }
}
