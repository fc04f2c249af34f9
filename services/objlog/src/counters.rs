//! [`Counters`]: what a worker has done, for `logs.stats` and its periodic stderr line.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Monotonic counters of one worker process.
#[derive(Debug, Default)]
pub struct Counters {
    requests: AtomicU64,
    redelivered: AtomicU64,
    batches: AtomicU64,
    appended: AtomicU64,
    queries: AtomicU64,
    refused: AtomicU64,
    conflicts: AtomicU64,
    failed_batches: AtomicU64,
}

impl Counters {
    /// A batch of `n` requests arrived, `redelivered` of them not for the first time.
    pub fn batch(&self, n: usize, redelivered: usize) {
        self.batches.fetch_add(1, Relaxed);
        self.requests.fetch_add(n as u64, Relaxed);
        self.redelivered.fetch_add(redelivered as u64, Relaxed);
    }
    /// `n` appends reached the table.
    pub fn appended(&self, n: usize) {
        self.appended.fetch_add(n as u64, Relaxed);
    }
    /// A query was answered.
    pub fn queried(&self) {
        self.queries.fetch_add(1, Relaxed);
    }
    /// `n` malformed requests were refused.
    pub fn refused(&self, n: usize) {
        self.refused.fetch_add(n as u64, Relaxed);
    }
    /// `n` appends were already stored (redeliveries).
    pub fn conflicts(&self, n: usize) {
        self.conflicts.fetch_add(n as u64, Relaxed);
    }
    /// A batch could not be stored.
    pub fn failed_batch(&self) {
        self.failed_batches.fetch_add(1, Relaxed);
    }

    /// The counters as a JSON object.
    pub fn to_json(&self) -> serde_json::Map<String, serde_json::Value> {
        let g = |c: &AtomicU64| serde_json::Value::from(c.load(Relaxed));
        [
            ("requests", g(&self.requests)),
            ("redelivered", g(&self.redelivered)),
            ("batches", g(&self.batches)),
            ("appended", g(&self.appended)),
            ("queries", g(&self.queries)),
            ("refused", g(&self.refused)),
            ("already_stored", g(&self.conflicts)),
            ("failed_batches", g(&self.failed_batches)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}
