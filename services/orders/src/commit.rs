//! The committer (one blocking thread): makes every processed batch durable with ONE
//! `Storage::flush` for all batches waiting, then hands them to the edge to ack.

use crossbeam_channel::Receiver;
use std::time::Instant;

use lifostore::{CancelToken, Error, Storage};
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::mpsc;

use crate::backoff::Backoff;
use crate::counters::{Counters, add};
use crate::edge::Settled;
use crate::error_chain::chain;
use crate::orders_db::OrdersDb;

/// Runs until every worker has hung up. A flush that fails (PostgreSQL down) is retried with
/// backoff while the batches stay unacked; batches that arrive meanwhile join the next flush,
/// up to `max_held` messages. Past that the committer stops taking batches, the bounded
/// channels fill and the edge stops fetching, so messages held for the next flush (invalid
/// ones too, which take no room in the storage) cannot pile up during a long outage.
/// On shutdown with PostgreSQL still down, the unflushed batches are left unacked:
/// JetStream redelivers them to the next process.
///
/// `abort_after` is fault injection for the tests: abort the process right after that many
/// successful flushes, between durable and acked.
pub fn run(
    storage: &Storage<OrdersDb>,
    token: &CancelToken,
    (counters, flush_time): (&Counters, &Histogram),
    processed: Receiver<Settled>,
    edge: mpsc::Sender<Settled>,
    (max_held, mut backoff, abort_after): (usize, Backoff, Option<u64>),
) {
    let mut pending: Vec<Settled> = Vec::new();
    let mut flushes = 0u64;
    while let Ok(first) = processed.recv() {
        let mut held = first.len();
        pending.push(first);
        loop {
            while held < max_held {
                let Ok(more) = processed.try_recv() else {
                    break;
                };
                held += more.len();
                pending.push(more);
            }
            let started = Instant::now();
            match storage.flush(token) {
                Ok(()) => {
                    flush_time.observe(started.elapsed().as_secs_f64());
                    break;
                }
                Err(e @ Error::Db(_)) => {
                    eprintln!(
                        "orders: flush to PostgreSQL failed ({}); retrying",
                        chain(&e)
                    );
                    if !backoff.wait() {
                        return;
                    }
                }
                Err(e) => return eprintln!("orders: committer stops: {}", chain(&e)),
            }
        }
        backoff.reset();
        flushes += 1;
        if abort_after == Some(flushes) {
            eprintln!("orders: --abort-after-flushes {flushes}: aborting before the ack");
            std::process::abort();
        }
        for settled in pending.drain(..) {
            add(&counters.stored, settled.valid.len() as u64);
            if edge.blocking_send(settled).is_err() {
                return;
            }
        }
    }
}
