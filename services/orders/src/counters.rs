//! [`Counters`]: what the service has seen, and the `/stats` document.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::json;

/// Message counters since the process started (they restart at zero with the process; the
/// durable record of invalid messages is the `orders.invalid` stream).
#[derive(Debug, Default)]
pub struct Counters {
    /// Messages fetched from JetStream (redeliveries included).
    pub received: AtomicU64,
    /// Messages that were not valid orders.
    pub invalid: AtomicU64,
    /// Valid orders made durable in PostgreSQL and handed to the edge to be acked.
    pub stored: AtomicU64,
    /// Valid orders whose id was already known (redeliveries, resent orders).
    pub duplicates: AtomicU64,
}

/// Adds `n` to a counter.
pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// The `/stats` JSON: the counters, the cache size and lifostore's `Stats`.
pub fn stats_json(counters: &Counters, cached: usize, storage: &lifostore::Stats) -> String {
    let secs = |d: Option<std::time::Duration>| d.map(|d| d.as_secs_f64());
    json!({
        "received": get(&counters.received),
        "invalid": get(&counters.invalid),
        "stored": get(&counters.stored),
        "duplicates": get(&counters.duplicates),
        "cached": cached,
        "lifostore": {
            "pushes": storage.pushes,
            "db_push_calls": storage.db_push_calls,
            "items_flushed": storage.items_flushed,
            "db_failures": storage.db_failures,
            "push_waits": storage.push_waits,
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
