//! The load generator and checker behind the `load` binary: publishes appends from several
//! threads, collects every response from the `RESPONSES` stream, and checks the outcome in
//! PostgreSQL and through paged queries.

mod check;
mod publisher;
mod tracker;

use std::sync::Arc;
use std::time::{Duration, Instant};

pub use check::{CheckReport, check};
pub use tracker::{Tracker, follow_responses};

use crate::client::Client;
use crate::error::Error;
use crate::log_row::now_micros;

/// What a load run does.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Appends to publish.
    pub total: usize,
    /// Objects they are spread over (append k goes to object `base + k % objects`).
    pub objects: u64,
    /// Publisher threads.
    pub threads: usize,
    /// Publishes each thread keeps waiting for their stream ack.
    pub in_flight: usize,
    /// Length of each log message (at least the tag `r<run>-<k>`).
    pub log_bytes: usize,
    /// Longest the run waits for all responses.
    pub timeout: Duration,
    /// A `progress N` line goes to stdout every this many responses.
    pub progress_every: usize,
    /// Appends per second over all threads; 0 publishes as fast as the stream acks.
    pub rate: u64,
}

/// The identity of one load run: its tag prefix and its objects.
#[derive(Debug, Clone, Copy)]
pub struct RunId {
    /// Unique per run (microseconds at start).
    pub run: u64,
    /// First object id of the run.
    pub object_base: u64,
}

impl RunId {
    /// A fresh run id; object ids `base .. base + 1000` belong to it alone.
    pub fn fresh() -> RunId {
        let run = now_micros().max(1) as u64;
        RunId {
            run,
            object_base: run * 1000,
        }
    }

    /// Request id and log tag of append `k`.
    pub fn tag(&self, k: usize) -> String {
        format!("r{}-{}", self.run, k)
    }

    /// Index `k` of a tag of this run, from a request id or log message.
    pub fn index_of(&self, text: &str) -> Option<usize> {
        let rest = text.strip_prefix(&format!("r{}-", self.run))?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    }
}

/// Throughput and latency of a run.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// Appends published.
    pub published: usize,
    /// Distinct appends answered.
    pub answered: usize,
    /// From the first publish to the last response.
    pub elapsed: Duration,
    /// Median publish-to-response latency.
    pub p50: Duration,
    /// 99th percentile publish-to-response latency.
    pub p99: Duration,
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "objlog load: appends {} answered {} in {:.2} s = {:.0} appends/s, latency p50 {:.1} ms p99 {:.1} ms",
            self.published,
            self.answered,
            self.elapsed.as_secs_f64(),
            self.rate(),
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3
        )
    }
}

impl LoadReport {
    /// Appends answered per second.
    pub fn rate(&self) -> f64 {
        self.answered as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Publishes `cfg.total` appends and waits for their responses (or the timeout).
pub fn run(
    client: &Client,
    cfg: &LoadConfig,
    id: RunId,
) -> Result<(LoadReport, Arc<Tracker>), Error> {
    if cfg.objects == 0 || cfg.objects > 1000 {
        return Err(Error::Config(format!(
            "--objects {} must be 1..=1000",
            cfg.objects
        )));
    }
    let tracker = Arc::new(Tracker::new(id, cfg.total, cfg.progress_every));
    let follower = client
        .handle()
        .block_on(follow_responses(client.jetstream(), tracker.clone()))?;
    let start = Instant::now();
    publisher::publish_all(client, cfg, id, &tracker)?;
    let all = tracker.wait_all(cfg.timeout);
    let report = tracker.report(start);
    if !all {
        eprintln!(
            "objlog load: only {} of {} appends answered within {:?}",
            report.answered, cfg.total, cfg.timeout
        );
    }
    tracker.keep_following(follower);
    Ok((report, tracker))
}
