//! lifostore's [`Stats`] as Prometheus metrics, for the services' `/metrics`.
//!
//! The services read `Storage::stats()` at each scrape and register the reading here, into a
//! registry made for that scrape, so every value is of the moment and nothing polls.
//!
//! ```
//! use prometheus_client::registry::Registry;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let storage = lifostore::Storage::new(lifostore::MemDb::new())?;
//! let mut registry = Registry::with_prefix("svc");
//! lifostore_prometheus::register_stats(&mut registry, &storage.stats());
//! let mut text = String::new();
//! prometheus_client::encoding::text::encode(&mut text, &registry)?;
//! assert!(text.contains("svc_lifostore_buffered_items 0"));
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

use lifostore::Stats;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

fn secs(d: Option<Duration>) -> f64 {
    d.map_or(0.0, |d| d.as_secs_f64())
}

/// Registers `stats` under `<registry's prefix>_lifostore_`: the buffer's items, bytes and
/// oldest unflushed age, the measured Db write rate, how long the Db has been failing (gauges,
/// 0 when there is nothing to say), and the dead letters, Db failures, Db write calls, items
/// written and pushes that waited (counters, `_total`).
pub fn register_stats(registry: &mut Registry, stats: &Stats) {
    let r = registry.sub_registry_with_prefix("lifostore");
    let gauges: [(&str, &str, f64); 5] = [
        (
            "buffered_items",
            "Items in the lifostore buffer (buffered plus in flight)",
            stats.buffered_items as f64,
        ),
        (
            "buffered_bytes",
            "Bytes in the lifostore buffer",
            stats.buffered_bytes as f64,
        ),
        (
            "oldest_unflushed_age_seconds",
            "Age of the oldest item waiting in memory (0: none)",
            secs(stats.oldest_unflushed_age),
        ),
        (
            "db_write_rate_items_per_second",
            "Measured Db write speed (0: no write yet)",
            stats.db_items_per_sec.unwrap_or(0.0),
        ),
        (
            "db_failing_seconds",
            "How long Db writes have been failing (0: they are not)",
            secs(stats.db_failing_for),
        ),
    ];
    for (name, help, value) in gauges {
        r.register(name, help, ConstGauge::new(value));
    }
    let counters: [(&str, &str, u64); 5] = [
        (
            "dead_letters",
            "Items the Db refused for good, set aside",
            stats.dead_letters,
        ),
        ("db_failures", "Failed Db writes", stats.db_failures),
        (
            "db_push_calls",
            "Db write calls (one per batch)",
            stats.db_push_calls,
        ),
        (
            "items_flushed",
            "Items written to the Db",
            stats.items_flushed,
        ),
        (
            "push_waits",
            "Pushes that waited for room in the buffer",
            stats.push_waits,
        ),
    ];
    for (name, help, value) in counters {
        r.register(name, help, ConstCounter::new(value));
    }
}
