//! [`run`]: wires the parts together in start-up order.
//!
//! PostgreSQL table -> storage -> HTTP (answering "loading") -> LISTEN -> NATS (the ack
//! floor) -> cache rebuild -> ready -> NATS edge and the view's tail -> ingest workers and
//! committer. Returns after a SIGINT/SIGTERM has drained.

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use lifostore::{CancelToken, DbError, Storage};
use tokio::sync::mpsc;

use crate::backoff::Backoff;
use crate::commit;
use crate::config::Config;
use crate::counters::Counters;
use crate::edge::{ConnectedRuntime, Edge, EdgeError, EdgeRuntime};
use crate::http::{self, HttpError, Shared};
use crate::ingest::Ingest;
use crate::listen::{self, ListenError};
use crate::metrics::Metrics;
use crate::orders_db::OrdersDb;
use crate::rebuild::rebuild;
use crate::tail::Tailed;
use crate::view::View;

/// Why the service could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// PostgreSQL could not be reached at start, or the cache rebuild failed.
    #[error("PostgreSQL is not usable")]
    Postgres(#[from] DbError),
    /// The HTTP server could not start.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The NATS edge could not start.
    #[error(transparent)]
    Edge(#[from] EdgeError),
    /// LISTEN for stored orders could not start.
    #[error(transparent)]
    Listen(#[from] ListenError),
    /// Closing the storage at shutdown failed: unflushed orders stay unacked and JetStream
    /// redelivers them to the next process.
    #[error("closing the write-behind buffer failed; unacked orders will be redelivered")]
    Close(#[source] lifostore::Error),
    /// The write-behind buffer could not start (its flusher thread could not be spawned).
    #[error("the write-behind buffer could not start; the system is out of threads or memory")]
    Storage(#[source] lifostore::Error),
}

/// Runs the service until a shutdown signal has been handled.
pub fn run(cfg: Config) -> Result<(), ServiceError> {
    let edge = EdgeRuntime::new()?;
    let db = OrdersDb::open(&cfg.postgres_url, cfg.insert_mode)?;
    let storage = Storage::builder()
        .max_unflushed_age(cfg.window)
        .max_buffered_items(cfg.buffer_items)
        .max_batch(cfg.db_batch)
        // At shutdown nothing unacked needs the buffer (JetStream redelivers it), so a
        // PostgreSQL that is down then holds the exit for 5 s, not a whole window.
        .close_timeout(Duration::from_secs(5))
        .build(db)
        .map_err(ServiceError::Storage)?;
    let counters = Counters::default();
    let shared = Arc::new(Shared {
        view: Arc::new(View::new(cfg.buffer_items)),
        metrics: Metrics::new(&counters),
        counters,
        storage,
    });
    http::serve(&cfg.http, cfg.http_threads, Arc::clone(&shared))?;
    eprintln!("orders: http on {} (loading the cache)", cfg.http);
    // LISTEN before the snapshot: a row committed after it is notified, one before is read.
    listen::start(&cfg.postgres_url, Arc::clone(&shared.view))?;
    let edge = edge.connect(&cfg.edge)?;
    shared.view.start_at(edge.floor());
    let rebuilt = rebuild(&cfg.postgres_url, &shared.view)?;
    shared.view.cache().set_ready();
    eprintln!(
        "orders: cache rebuilt: {} rows read, {} served, in {:.3} s (ack floor {}); ready",
        rebuilt.orders,
        shared.view.cache().len(),
        rebuilt.took.as_secs_f64(),
        edge.floor()
    );
    ingest(edge, &cfg, &shared)?;
    shared.storage.close().map_err(ServiceError::Close)?;
    eprintln!("orders: stopped cleanly");
    Ok(())
}

/// The view's thread: reads what the tail hands over, in stream order.
fn start_view(view: Arc<View>) -> Result<crossbeam_channel::Sender<Vec<Tailed>>, EdgeError> {
    let (tx, rx) = crossbeam_channel::bounded::<Vec<Tailed>>(4);
    std::thread::Builder::new()
        .name("orders-view".into())
        .spawn(move || {
            for batch in rx {
                for m in batch {
                    view.read(m.seq, &m.payload);
                }
            }
        })
        .map_err(EdgeError::Runtime)?;
    Ok(tx)
}

/// Starts the edge, the workers and the committer; returns when they have all finished.
fn ingest(edge: ConnectedRuntime, cfg: &Config, shared: &Shared) -> Result<(), ServiceError> {
    let (batches_tx, batches_rx) = crossbeam_channel::bounded(cfg.workers * 2);
    let (processed_tx, processed_rx) = crossbeam_channel::bounded(64);
    let (settled_tx, settled_rx) = mpsc::channel(64);
    let (stopping_tx, stopping_rx) = crossbeam_channel::bounded::<()>(0);
    let tail = start_view(Arc::clone(&shared.view))?;
    let edge = Edge::start(
        edge,
        cfg.edge.clone(),
        batches_tx,
        settled_rx,
        (stopping_tx, tail),
    )?;
    eprintln!(
        "orders: consuming {} (stream {}, consumer {})",
        cfg.edge.subject, cfg.edge.stream, cfg.edge.consumer
    );
    let token = CancelToken::new();
    let work = Ingest {
        storage: &shared.storage,
        counters: &shared.counters,
        token: &token,
    };
    thread::scope(|s| {
        for _ in 0..cfg.workers {
            let (rx, tx, stop) = (
                batches_rx.clone(),
                processed_tx.clone(),
                stopping_rx.clone(),
            );
            let work = &work;
            s.spawn(move || work.run(rx, tx, Backoff::new(stop)));
        }
        drop((batches_rx, processed_tx));
        let hold = (
            cfg.buffer_items,
            Backoff::new(stopping_rx),
            cfg.abort_after_flushes,
        );
        let (storage, token) = (&shared.storage, &token);
        let measured = (&shared.counters, &shared.metrics.flush);
        s.spawn(move || commit::run(storage, token, measured, processed_rx, settled_tx, hold));
    });
    edge.join();
    Ok(())
}
