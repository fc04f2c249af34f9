//! [`Metrics`]: `/metrics` in the Prometheus text format, through `prometheus-client`.
//!
//! Counters and histograms live in a registry and are updated where things happen; values
//! that are a reading of the moment (the cache, lifostore's `Stats`) are sampled at each
//! scrape into a second registry, so nothing goes stale and nothing polls.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::counters::{Counters, StatsView};

/// The HTTP route a request took: the label of the latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Route {
    /// `order`, `newest`, `page`, `stats`, `health`, `metrics` or `other`.
    pub route: &'static str,
}

fn latency_buckets() -> Histogram {
    // 25 µs to ~0.8 s: a cache hit is tens of µs, a flush to PostgreSQL milliseconds.
    Histogram::new(exponential_buckets(25e-6, 2.0, 16))
}

/// The service's registered metrics.
pub struct Metrics {
    registry: Registry,
    /// HTTP request latency, by route, from the request read to the response handed over.
    pub http: Family<Route, Histogram, fn() -> Histogram>,
    /// Time a committer flush took (one group commit of every batch waiting).
    pub flush: Histogram,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Registers the counters of `counters` and the histograms.
    pub fn new(counters: &Counters) -> Metrics {
        let mut registry = Registry::with_prefix("orders");
        let count = |r: &mut Registry,
                     name: &str,
                     help: &str,
                     c: &prometheus_client::metrics::counter::Counter| {
            r.register(name, help, c.clone())
        };
        count(
            &mut registry,
            "messages_received",
            "Messages fetched from JetStream, redeliveries included",
            &counters.received,
        );
        count(
            &mut registry,
            "messages_invalid",
            "Messages that were not valid orders (acked after their reason was recorded)",
            &counters.invalid,
        );
        count(
            &mut registry,
            "orders_stored",
            "Valid orders durable in PostgreSQL and handed over to be acked",
            &counters.stored,
        );
        count(
            &mut registry,
            "messages_redelivered",
            "Messages JetStream delivered more than once",
            &counters.redelivered,
        );
        let http: Family<Route, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_buckets);
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            http.clone(),
        );
        let flush = latency_buckets();
        registry.register(
            "flush_duration_seconds",
            "Committer flushes: every batch waiting made durable in PostgreSQL",
            flush.clone(),
        );
        Metrics {
            registry,
            http,
            flush,
        }
    }

    /// The text exposition: the registered metrics, then the readings of `view` and `storage`.
    pub fn render(&self, view: &StatsView<'_>) -> String {
        let mut text = String::new();
        let sampled = sample(view);
        // Writing into a String cannot fail.
        let _ = encode_registry(&mut text, &self.registry)
            .and_then(|()| encode_registry(&mut text, &sampled))
            .and_then(|()| encode_eof(&mut text));
        text
    }
}

fn sample(view: &StatsView<'_>) -> Registry {
    let mut r = Registry::with_prefix("orders");
    let s = view.storage;
    let gauge = |r: &mut Registry, name: &str, help: &str, v: f64| {
        r.register(name, help, ConstGauge::new(v))
    };
    let total = |r: &mut Registry, name: &str, help: &str, v: u64| {
        r.register(name, help, ConstCounter::new(v))
    };
    gauge(
        &mut r,
        "cached_orders",
        "Orders the cache serves",
        view.cached as f64,
    );
    gauge(
        &mut r,
        "pending_orders",
        "Valid orders read from the stream, not yet seen stored in PostgreSQL",
        view.pending as f64,
    );
    total(
        &mut r,
        "orders_duplicate",
        "Orders written that changed nothing: the same or an earlier copy was stored",
        view.duplicates,
    );
    total(
        &mut r,
        "orders_replaced",
        "Orders written that replaced a stored copy from later in the stream",
        view.replaced,
    );
    lifostore_prometheus::register_stats(&mut r, s);
    r
}
