//! [`Counters`]: what a worker has done, for `logs.stats`, its periodic stderr line and
//! `/metrics` (they are Prometheus counters, so all three read the same numbers).

use prometheus_client::metrics::counter::Counter;

/// Monotonic counters of one worker process.
#[derive(Debug, Default)]
pub struct Counters {
    /// Requests pulled (redeliveries included).
    pub requests: Counter,
    /// Requests JetStream delivered more than once.
    pub redelivered: Counter,
    /// Batches handled.
    pub batches: Counter,
    /// Appends whose row is in the table.
    pub appended: Counter,
    /// Queries answered.
    pub queries: Counter,
    /// Malformed requests refused (answered with an error and acked).
    pub refused: Counter,
    /// Batches that could not be stored (their requests are redelivered).
    pub failed_batches: Counter,
    /// Appends answered with the timestamp of another delivery of the same request (the one
    /// the table holds), not their own.
    pub other_ts: Counter,
}

impl Counters {
    /// A batch of `n` requests arrived, `redelivered` of them not for the first time.
    pub fn batch(&self, n: usize, redelivered: usize) {
        self.batches.inc();
        self.requests.inc_by(n as u64);
        self.redelivered.inc_by(redelivered as u64);
    }
    /// `n` appends reached the table.
    pub fn appended(&self, n: usize) {
        self.appended.inc_by(n as u64);
    }
    /// A query was answered.
    pub fn queried(&self) {
        self.queries.inc();
    }
    /// `n` malformed requests were refused.
    pub fn refused(&self, n: usize) {
        self.refused.inc_by(n as u64);
    }
    /// A batch could not be stored.
    pub fn failed_batch(&self) {
        self.failed_batches.inc();
    }

    /// The counters as a JSON object.
    pub fn to_json(&self) -> serde_json::Map<String, serde_json::Value> {
        [
            ("requests", &self.requests),
            ("redelivered", &self.redelivered),
            ("batches", &self.batches),
            ("appended", &self.appended),
            ("queries", &self.queries),
            ("refused", &self.refused),
            ("failed_batches", &self.failed_batches),
            ("answered_with_other_ts", &self.other_ts),
        ]
        .into_iter()
        .map(|(k, c)| (k.to_string(), serde_json::Value::from(c.get())))
        .collect()
    }
}
