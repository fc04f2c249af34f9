//! [`Counters`]: what the gateway counts, for `GET /stats` and the tests.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Event counters (monotonic, since the gateway started).
        #[derive(Debug, Default)]
        pub struct Counters {
            $($(#[$doc])* pub $name: AtomicU64,)*
        }

        impl Counters {
            /// Every counter by name, as JSON.
            pub fn to_json(&self) -> serde_json::Value {
                let mut map = serde_json::Map::new();
                $(map.insert(stringify!($name).into(), self.$name.load(Ordering::Relaxed).into());)*
                serde_json::Value::Object(map)
            }
        }
    };
}

counters! {
    /// Uploads answered `201`.
    uploads_ok,
    /// Uploads that failed (any error after the placement).
    uploads_failed,
    /// Parts sent again to another node (node down, slow, or wrong checksum).
    part_retries,
    /// Downloads (GET) whose body was sent whole.
    downloads_ok,
    /// Downloads refused before the head or aborted after it.
    downloads_failed,
    /// Blocks whose checksum did not match (flipped bytes).
    checksum_mismatches,
    /// Parts missing on their node or shorter than recorded.
    missing_parts,
    /// Cleanup jobs done (a copy removed from its node).
    jobs_done,
    /// Cleanup attempts that failed (retried later).
    job_failures,
    /// Cleanup jobs given up on (dead-lettered).
    jobs_dead,
    /// Rebalancing moves finished.
    moves_done,
    /// Rebalancing moves that failed and were abandoned.
    moves_failed,
    /// Bytes moved by the rebalancer.
    bytes_moved,
}

impl Counters {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
