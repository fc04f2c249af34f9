//! [`Cache`]: every known order's JSON by id, and the ids of the newest orders.
//!
//! Sharded `RwLock<HashMap>`s so readers on many HTTP threads rarely meet a writer; values
//! are shared byte slices served as they are, without a copy or a JSON round trip.

use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use chrono::{DateTime, Utc};
use parking_lot::{Mutex, RwLock};

const SHARDS: usize = 32;

/// One shard: order id to the order's JSON.
type Shard = RwLock<HashMap<Box<str>, Arc<[u8]>>>;

/// How many of the newest ids [`Cache::newest`] can return.
pub const NEWEST_KEPT: usize = 1000;

/// The in-memory copy of the orders table.
pub struct Cache {
    hasher: RandomState,
    shards: Vec<Shard>,
    len: AtomicUsize,
    newest: Mutex<BTreeSet<(DateTime<Utc>, Box<str>)>>,
    ready: AtomicBool,
}

impl Default for Cache {
    fn default() -> Self {
        Cache {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            len: AtomicUsize::new(0),
            newest: Mutex::new(BTreeSet::new()),
            ready: AtomicBool::new(false),
        }
    }
}

impl Cache {
    fn shard(&self, uid: &str) -> &Shard {
        let i = self.hasher.hash_one(uid) as usize % SHARDS;
        &self.shards[i]
    }

    /// The order's JSON, if known.
    pub fn get(&self, uid: &str) -> Option<Arc<[u8]>> {
        self.shard(uid).read().get(uid).cloned()
    }

    /// Whether the order is known.
    pub fn contains(&self, uid: &str) -> bool {
        self.shard(uid).read().contains_key(uid)
    }

    /// Adds an order; the first copy of an id wins (orders are immutable). Returns whether it
    /// was new.
    pub fn insert(&self, uid: &str, created: DateTime<Utc>, json: &[u8]) -> bool {
        {
            let mut shard = self.shard(uid).write();
            if shard.contains_key(uid) {
                return false;
            }
            shard.insert(uid.into(), json.into());
        }
        self.len.fetch_add(1, Ordering::Relaxed);
        let mut newest = self.newest.lock();
        let newer = newest.first().is_none_or(|(oldest, _)| created > *oldest);
        if newest.len() < NEWEST_KEPT || newer {
            newest.insert((created, uid.into()));
            if newest.len() > NEWEST_KEPT {
                newest.pop_first();
            }
        }
        true
    }

    /// Up to `limit` ids, newest `date_created` first.
    pub fn newest(&self, limit: usize) -> Vec<String> {
        let newest = self.newest.lock();
        newest
            .iter()
            .rev()
            .take(limit)
            .map(|(_, uid)| uid.to_string())
            .collect()
    }

    /// Number of cached orders.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Whether the cache holds no order.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Marks the rebuild from PostgreSQL finished: the HTTP endpoints start answering.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// Whether the rebuild has finished.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}
