//! [`Counters`]: what the service has seen, and the `/stats` document.
//!
//! The counters are Prometheus counters (shared atomics), so `/stats` and `/metrics` read the
//! same numbers.

use prometheus_client::metrics::counter::Counter;
use serde_json::json;

/// Message counters since the process started (they restart at zero with the process; the
/// durable record of invalid messages is the `orders.invalid` stream).
#[derive(Debug, Default)]
pub struct Counters {
    /// Messages fetched from JetStream (redeliveries included).
    pub received: Counter,
    /// Messages that were not valid orders.
    pub invalid: Counter,
    /// Valid orders made durable in PostgreSQL and handed to the edge to be acked.
    pub stored: Counter,
    /// Messages JetStream delivered more than once (the ack of an earlier delivery did not
    /// arrive within ack-wait, or the process that had it died).
    pub redelivered: Counter,
}

/// Adds `n` to a counter.
pub fn add(counter: &Counter, n: u64) {
    counter.inc_by(n);
}

/// What `/stats` shows besides the counters.
pub struct StatsView<'a> {
    /// Orders the cache serves.
    pub cached: usize,
    /// Valid orders read from the stream and not yet seen stored in PostgreSQL.
    pub pending: usize,
    /// Orders written that changed nothing in PostgreSQL (a copy with the same or a lower
    /// stream sequence was stored already).
    pub duplicates: u64,
    /// Orders written that replaced a stored copy with a later stream sequence (a near
    /// duplicate written before its original).
    pub replaced: u64,
    /// lifostore's statistics.
    pub storage: &'a lifostore::Stats,
}

/// The `/stats` JSON: the counters, the cache size and lifostore's `Stats`.
pub fn stats_json(counters: &Counters, view: &StatsView<'_>) -> String {
    let secs = |d: Option<std::time::Duration>| d.map(|d| d.as_secs_f64());
    let storage = view.storage;
    json!({
        "received": counters.received.get(),
        "invalid": counters.invalid.get(),
        "stored": counters.stored.get(),
        "redelivered": counters.redelivered.get(),
        "duplicates": view.duplicates,
        "replaced": view.replaced,
        "cached": view.cached,
        "pending": view.pending,
        "lifostore": {
            "pushes": storage.pushes,
            "db_push_calls": storage.db_push_calls,
            "items_flushed": storage.items_flushed,
            "db_failures": storage.db_failures,
            "push_waits": storage.push_waits,
            "dead_letters": storage.dead_letters,
            "buffered_items": storage.buffered_items,
            "buffered_bytes": storage.buffered_bytes,
            "in_flight_items": storage.in_flight_items,
            "oldest_unflushed_age_s": secs(storage.oldest_unflushed_age),
            "db_items_per_sec": storage.db_items_per_sec,
            "db_failing_for_s": secs(storage.db_failing_for),
        }
    })
    .to_string()
}
