//! [`Metrics`]: the worker's `/metrics` (Prometheus text format, `prometheus-client`), served
//! on `--metrics ADDR` by a small blocking HTTP listener.
//!
//! Counters and the latency histogram are updated where things happen; lifostore's `Stats`
//! are read at each scrape into a second registry, so nothing goes stale and nothing polls.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::counters::Counters;
use crate::error::Error;
use crate::handler::Shared;

/// The kind of request: the label of the latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Op {
    /// `append`, `query` or `invalid`.
    pub op: &'static str,
}

impl Op {
    /// The kind of a request on `subject`.
    pub fn of(subject: &str) -> Op {
        let op = match subject {
            crate::wire::APPEND_SUBJECT => "append",
            crate::wire::QUERY_SUBJECT => "query",
            _ => "invalid",
        };
        Op { op }
    }
}

fn buckets() -> Histogram {
    // 100 µs to ~3.3 s: a batched append waits for one flush (milliseconds), a redelivered
    // one for its AckWait.
    Histogram::new(exponential_buckets(1e-4, 2.0, 16))
}

/// Request latency, from the pull to the ack, by kind.
pub type Latency = Family<Op, Histogram, fn() -> Histogram>;

/// The worker's registered metrics.
pub struct Metrics {
    registry: Registry,
    /// Request latency from the pull to the ack.
    pub latency: Latency,
}

impl Metrics {
    /// Registers the counters of `counters` and the latency histogram.
    pub fn new(counters: &Counters) -> Metrics {
        let mut r = Registry::with_prefix("objlog");
        let list: [(&str, &str, &Counter); 8] = [
            (
                "requests_received",
                "Requests pulled, redeliveries included",
                &counters.requests,
            ),
            (
                "requests_invalid",
                "Malformed requests, answered with an error and acked",
                &counters.refused,
            ),
            (
                "appends_stored",
                "Appends whose row is in PostgreSQL",
                &counters.appended,
            ),
            (
                "requests_redelivered",
                "Requests JetStream delivered more than once",
                &counters.redelivered,
            ),
            ("queries_answered", "Queries answered", &counters.queries),
            ("batches", "Batches handled", &counters.batches),
            (
                "batches_failed",
                "Batches not stored (their requests are redelivered)",
                &counters.failed_batches,
            ),
            (
                "appends_answered_with_other_ts",
                "Appends answered with another delivery's stored timestamp",
                &counters.other_ts,
            ),
        ];
        for (name, help, counter) in list {
            r.register(name, help, counter.clone());
        }
        let latency: Latency = Family::new_with_constructor(buckets);
        r.register(
            "request_duration_seconds",
            "Request latency in the worker, from the pull to the ack, by kind",
            latency.clone(),
        );
        Metrics {
            registry: r,
            latency,
        }
    }

    /// The text exposition: the registered metrics, then the readings of `shared` now.
    pub fn render(&self, shared: &Shared) -> String {
        let mut text = String::new();
        let sampled = sample(shared);
        // Writing into a String cannot fail.
        let _ = encode_registry(&mut text, &self.registry)
            .and_then(|()| encode_registry(&mut text, &sampled))
            .and_then(|()| encode_eof(&mut text));
        text
    }
}

fn sample(shared: &Shared) -> Registry {
    let mut r = Registry::with_prefix("objlog");
    let s = shared.storage.stats();
    let db = shared.storage.db();
    let gauge = |r: &mut Registry, name: &str, help: &str, v: f64| {
        r.register(name, help, ConstGauge::new(v))
    };
    let total = |r: &mut Registry, name: &str, help: &str, v: u64| {
        r.register(name, help, ConstCounter::new(v))
    };
    total(
        &mut r,
        "appends_already_stored",
        "Appends found in the table already (redeliveries)",
        db.already_stored(),
    );
    gauge(
        &mut r,
        "appends_awaiting_ts",
        "Appends whose handlers wait for their stored timestamp",
        db.awaited() as f64,
    );
    lifostore_prometheus::register_stats(&mut r, &s);
    r
}

/// Serves `GET /metrics` on `addr` from a detached thread, for as long as the process lives.
pub fn serve(addr: &str, metrics: Arc<Metrics>, shared: Arc<Shared>) -> Result<(), Error> {
    let server = tiny_http::Server::http(addr).map_err(|e| Error::Metrics {
        addr: addr.to_string(),
        source: e,
    })?;
    std::thread::Builder::new()
        .name("objlog-metrics".into())
        .spawn(move || {
            for request in server.incoming_requests() {
                let response = if request.url() == "/metrics" {
                    let header = tiny_http::Header::from_bytes(
                        &b"Content-Type"[..],
                        &b"application/openmetrics-text; version=1.0.0; charset=utf-8"[..],
                    );
                    let r = tiny_http::Response::from_string(metrics.render(&shared));
                    match header {
                        Ok(h) => r.with_header(h),
                        Err(()) => r,
                    }
                } else {
                    tiny_http::Response::from_string("only /metrics is served here\n")
                        .with_status_code(404)
                };
                // A scraper that hung up is not our failure.
                let _ = request.respond(response);
            }
        })?;
    Ok(())
}
