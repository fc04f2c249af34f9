//! Fault injection for testing code built on lifostore: wrap any [`Db`] to make it fail,
//! fail batches half way, stall, panic, or go down, and to record when items arrived.
//!
//! # What a failing or panicking Db does to a [`Storage`](crate::Storage)
//! * A failed write keeps its items buffered; the flusher retries with exponential backoff
//!   (capped at min(window / 8, 1 s)). A batch that stored a prefix (reported honestly in
//!   [`PushBatchError::stored`]) keeps exactly the unstored suffix: nothing lost, nothing
//!   written twice.
//! * A failed pop takes nothing and returns [`Error::Db`](crate::Error::Db) to its caller.
//! * A panic inside a Db call is caught by the storage and becomes
//!   [`DbError::Panicked`]: the flusher thread survives, the caller whose call panicked gets
//!   the error, and a panicking write counts as storing nothing (it cannot say how far it
//!   got, so its items are kept and written again: possibly twice, never lost).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::db::{Db, DbError, PushBatchError};
use crate::sync::Mutex;

/// What a [`FaultyDb`] injects; all rates are probabilities in `0.0..=1.0`.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Fraction of calls that fail with an error before touching the inner Db.
    pub fail_rate: f64,
    /// Fraction of batch pushes that store the first half of their items and then fail.
    pub half_batch_rate: f64,
    /// Fraction of calls that stall for `spike` first.
    pub spike_rate: f64,
    /// Length of a latency spike.
    pub spike: Duration,
    /// Fraction of calls that panic (before touching the inner Db).
    pub panic_rate: f64,
}

/// Counts of what a [`FaultyDb`] injected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Calls that failed outright (including while down).
    pub failures: u64,
    /// Batches that stored half and failed.
    pub half_batches: u64,
    /// Latency spikes.
    pub spikes: u64,
    /// Panics.
    pub panics: u64,
}

impl FaultCounts {
    /// All injected faults.
    pub fn total(&self) -> u64 {
        self.failures + self.half_batches + self.spikes + self.panics
    }
}

/// A [`Db`] wrapper that injects faults, deterministically from a seed.
///
/// ```
/// use lifostore::testing::{FaultyDb, Faults};
/// use lifostore::{Db, MemDb};
///
/// let db = FaultyDb::new(MemDb::new(), 42).with_faults(Faults { fail_rate: 0.5, ..Faults::default() });
/// let results: Vec<bool> = (0..20).map(|i| db.push(&[i]).is_ok()).collect();
/// assert!(results.contains(&true) && results.contains(&false));
/// assert_eq!(db.inner().len() as u64, results.iter().filter(|ok| **ok).count() as u64);
/// db.set_down(true);
/// assert!(db.pop().is_err());
/// ```
#[derive(Debug)]
pub struct FaultyDb<D> {
    inner: D,
    faults: Faults,
    rng: AtomicU64,
    down: AtomicBool,
    failures: AtomicU64,
    half_batches: AtomicU64,
    spikes: AtomicU64,
    panics: AtomicU64,
}

impl<D: Db> FaultyDb<D> {
    /// Wraps `inner`, injecting nothing until [`with_faults`](Self::with_faults); `seed` makes
    /// the fault sequence reproducible.
    pub fn new(inner: D, seed: u64) -> Self {
        FaultyDb {
            inner,
            faults: Faults::default(),
            rng: AtomicU64::new(seed | 1),
            down: AtomicBool::new(false),
            failures: AtomicU64::new(0),
            half_batches: AtomicU64::new(0),
            spikes: AtomicU64::new(0),
            panics: AtomicU64::new(0),
        }
    }

    /// Sets what to inject.
    pub fn with_faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }

    /// While `down`, every call fails (an outage).
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// The wrapped Db.
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// What was injected so far.
    pub fn counts(&self) -> FaultCounts {
        FaultCounts {
            failures: self.failures.load(Ordering::Relaxed),
            half_batches: self.half_batches.load(Ordering::Relaxed),
            spikes: self.spikes.load(Ordering::Relaxed),
            panics: self.panics.load(Ordering::Relaxed),
        }
    }

    /// A uniform draw in `[0, 1)` from a shared xorshift64 sequence.
    fn draw(&self) -> f64 {
        let mut x = self.rng.load(Ordering::Relaxed);
        loop {
            let mut next = x;
            next ^= next << 13;
            next ^= next >> 7;
            next ^= next << 17;
            match self
                .rng
                .compare_exchange_weak(x, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return (next >> 11) as f64 / (1u64 << 53) as f64,
                Err(seen) => x = seen,
            }
        }
    }

    /// Spikes, panics or fails as configured; `Ok` means go ahead.
    fn before_call(&self) -> Result<(), DbError> {
        if self.faults.spike_rate > 0.0 && self.draw() < self.faults.spike_rate {
            self.spikes.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(self.faults.spike);
        }
        if self.faults.panic_rate > 0.0 && self.draw() < self.faults.panic_rate {
            self.panics.fetch_add(1, Ordering::Relaxed);
            panic!("FaultyDb: injected panic");
        }
        let fail = self.down.load(Ordering::SeqCst)
            || (self.faults.fail_rate > 0.0 && self.draw() < self.faults.fail_rate);
        if fail {
            self.failures.fetch_add(1, Ordering::Relaxed);
            return Err(DbError::msg("FaultyDb: injected failure"));
        }
        Ok(())
    }
}

impl<D: Db> Db for FaultyDb<D> {
    fn push(&self, data: &[u8]) -> Result<(), DbError> {
        self.before_call()?;
        self.inner.push(data)
    }

    fn pop(&self) -> Result<Option<Vec<u8>>, DbError> {
        self.before_call()?;
        self.inner.pop()
    }

    fn push_batch(&self, items: &[&[u8]]) -> Result<(), PushBatchError> {
        self.before_call()
            .map_err(|source| PushBatchError { stored: 0, source })?;
        if items.len() >= 2
            && self.faults.half_batch_rate > 0.0
            && self.draw() < self.faults.half_batch_rate
        {
            let half = items.len() / 2;
            self.inner.push_batch(&items[..half])?;
            self.half_batches.fetch_add(1, Ordering::Relaxed);
            return Err(PushBatchError {
                stored: half,
                source: DbError::msg("FaultyDb: injected failure half way through a batch"),
            });
        }
        self.inner.push_batch(items)
    }

    fn pop_batch(&self, max: usize) -> Result<Vec<Vec<u8>>, DbError> {
        self.before_call()?;
        self.inner.pop_batch(max)
    }

    fn is_shared(&self) -> bool {
        self.inner.is_shared()
    }
}

/// A [`Db`] wrapper that records when each item arrived, to measure how long items waited in
/// memory.
///
/// ```
/// use lifostore::testing::StampedDb;
/// use lifostore::{Db, MemDb};
///
/// let db = StampedDb::new(MemDb::new());
/// db.push(b"x").unwrap();
/// assert_eq!(db.arrivals()[0].0, b"x");
/// ```
#[derive(Debug)]
pub struct StampedDb<D> {
    inner: D,
    arrivals: Mutex<Vec<(Vec<u8>, Instant)>>,
}

impl<D: Db> StampedDb<D> {
    /// Wraps `inner`.
    pub fn new(inner: D) -> Self {
        StampedDb {
            inner,
            arrivals: Mutex::new(Vec::new()),
        }
    }

    /// Every item stored so far with the instant its write returned, in arrival order.
    pub fn arrivals(&self) -> Vec<(Vec<u8>, Instant)> {
        self.arrivals.lock().clone()
    }

    /// The wrapped Db.
    pub fn inner(&self) -> &D {
        &self.inner
    }

    fn stamp(&self, items: &[&[u8]]) {
        let now = Instant::now();
        self.arrivals
            .lock()
            .extend(items.iter().map(|i| (i.to_vec(), now)));
    }
}

impl<D: Db> Db for StampedDb<D> {
    fn push(&self, data: &[u8]) -> Result<(), DbError> {
        self.inner.push(data)?;
        self.stamp(&[data]);
        Ok(())
    }

    fn pop(&self) -> Result<Option<Vec<u8>>, DbError> {
        self.inner.pop()
    }

    fn push_batch(&self, items: &[&[u8]]) -> Result<(), PushBatchError> {
        match self.inner.push_batch(items) {
            Ok(()) => {
                self.stamp(items);
                Ok(())
            }
            Err(e) => {
                self.stamp(&items[..e.stored.min(items.len())]);
                Err(e)
            }
        }
    }

    fn pop_batch(&self, max: usize) -> Result<Vec<Vec<u8>>, DbError> {
        self.inner.pop_batch(max)
    }

    fn is_shared(&self) -> bool {
        self.inner.is_shared()
    }
}
