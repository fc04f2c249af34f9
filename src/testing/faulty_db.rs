//! [`FaultyDb`]: a Db wrapper that injects failures, partial batches, latency spikes and
//! panics, deterministically from a seed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use super::{INJECTED_FAILURE, INJECTED_PANIC};
use crate::db::{Capabilities, Db, DbLease, DbLeases, DbWatch, LeaseId};
use crate::error::{DbError, PushBatchError};

/// Counts of what a [`FaultyDb`] injected.
///
/// ```
/// use lifostore::testing::FaultyDb;
/// use lifostore::{Db, MemDb};
///
/// let db = FaultyDb::new(MemDb::new(), 1);
/// db.set_down(true);
/// let _ = db.push(b"x");
/// assert_eq!(db.counts().failures, 1);
/// assert_eq!(db.counts().total(), 1);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FaultCounts {
    /// Calls that failed outright, without touching the inner Db (random ones and those made
    /// while down).
    pub failures: u64,
    /// Batches that stored their first half in the inner Db and then failed.
    pub half_batches: u64,
    /// Latency spikes.
    pub spikes: u64,
    /// Panics (random ones and chosen calls).
    pub panics: u64,
}

impl FaultCounts {
    /// All injected faults.
    ///
    /// ```
    /// let counts = lifostore::testing::FaultCounts::default();
    /// assert_eq!(counts.total(), 0);
    /// ```
    pub fn total(&self) -> u64 {
        self.failures + self.half_batches + self.spikes + self.panics
    }
}

/// A [`Db`] wrapper that injects faults, deterministically from a seed.
///
/// Configure it builder-style; nothing is injected until a rate or a chosen call is set:
///
/// * [`fail_rate`](Self::fail_rate): that fraction of calls fails with [`INJECTED_FAILURE`]
///   before reaching the inner Db;
/// * [`half_batch_rate`](Self::half_batch_rate): that fraction of batch pushes (of two items or
///   more) stores the first half through the inner Db, then returns
///   [`PushBatchError`] with the honest `stored` count;
/// * [`latency_spikes`](Self::latency_spikes): that fraction of calls sleeps first;
/// * [`panic_rate`](Self::panic_rate) / [`panic_on_call`](Self::panic_on_call): panic (with
///   [`INJECTED_PANIC`]) on a fraction of calls or on chosen call numbers, before reaching
///   the inner Db;
/// * [`writes_only`](Self::writes_only): random faults hit writes only, pops pass through;
/// * [`set_down`](Self::set_down), at run time: every call fails while down (an outage).
///
/// Every Db call (`push`, `pop`, `push_batch`, `pop_batch`) is numbered from 1 in arrival order
/// ([`calls`](Self::calls)). The random draws come from one xorshift64 sequence seeded by
/// `seed`: a single-threaded run is reproducible; a multi-threaded one is as reproducible as
/// the order of its calls.
///
/// ```
/// use lifostore::testing::FaultyDb;
/// use lifostore::{Db, MemDb};
///
/// let db = FaultyDb::new(MemDb::new(), 42).fail_rate(0.5);
/// let results: Vec<bool> = (0..20).map(|i| db.push(&[i]).is_ok()).collect();
/// assert!(results.contains(&true) && results.contains(&false));
/// // Failed calls never reached the inner Db.
/// assert_eq!(db.inner().len(), results.iter().filter(|ok| **ok).count());
/// assert_eq!(db.counts().failures as usize, results.iter().filter(|ok| !**ok).count());
/// db.set_down(true);
/// assert!(db.pop().is_err());
/// ```
#[derive(Debug)]
pub struct FaultyDb<D> {
    inner: D,
    fail_rate: f64,
    half_batch_rate: f64,
    spike_rate: f64,
    spike: Duration,
    panic_rate: f64,
    panic_on: Vec<u64>,
    writes_only: bool,
    reject: Option<Rejector>,
    rng: AtomicU64,
    down: AtomicBool,
    calls: AtomicU64,
    failures: AtomicU64,
    half_batches: AtomicU64,
    spikes: AtomicU64,
    panics: AtomicU64,
}

/// Picks the items a [`FaultyDb`] refuses.
type Refuse = dyn Fn(&[u8]) -> bool + Send + Sync;

/// Which items a [`FaultyDb`] refuses for good, and whether a batch holding one stores its
/// prefix first.
struct Rejector {
    refuse: Box<Refuse>,
    prefix: bool,
}

impl std::fmt::Debug for Rejector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rejector")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn rate(r: f64) -> f64 {
    if r.is_nan() { 0.0 } else { r.clamp(0.0, 1.0) }
}

impl<D: Db> FaultyDb<D> {
    /// Wraps `inner`, injecting nothing until configured; `seed` fixes the random sequence.
    ///
    /// ```
    /// use lifostore::testing::FaultyDb;
    /// use lifostore::{Db, MemDb};
    ///
    /// let db = FaultyDb::new(MemDb::new(), 7);
    /// db.push(b"a").unwrap(); // no faults configured: a transparent wrapper
    /// assert_eq!(db.pop().unwrap(), Some(b"a".to_vec()));
    /// ```
    pub fn new(inner: D, seed: u64) -> Self {
        FaultyDb {
            inner,
            fail_rate: 0.0,
            half_batch_rate: 0.0,
            spike_rate: 0.0,
            spike: Duration::ZERO,
            panic_rate: 0.0,
            panic_on: Vec::new(),
            writes_only: false,
            reject: None,
            // xorshift64 must not start at 0; mix the seed so nearby seeds diverge at once.
            rng: AtomicU64::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
            down: AtomicBool::new(false),
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            half_batches: AtomicU64::new(0),
            spikes: AtomicU64::new(0),
            panics: AtomicU64::new(0),
        }
    }

    /// Fails this fraction (`0.0..=1.0`, clamped) of calls with [`INJECTED_FAILURE`], before
    /// they reach the inner Db (a failed batch push reports `stored: 0`).
    ///
    /// ```
    /// use lifostore::testing::FaultyDb;
    /// use lifostore::{Db, MemDb};
    ///
    /// let db = FaultyDb::new(MemDb::new(), 1).fail_rate(1.0);
    /// assert!(db.push(b"x").is_err());
    /// assert!(db.inner().is_empty());
    /// ```
    pub fn fail_rate(mut self, fraction: f64) -> Self {
        self.fail_rate = rate(fraction);
        self
    }

    /// Makes this fraction of batch pushes of two items or more store the first half (through
    /// the inner Db's `push_batch`) and then fail with `PushBatchError { stored: half, .. }`.
    ///
    /// ```
    /// use lifostore::testing::FaultyDb;
    /// use lifostore::{Db, MemDb};
    ///
    /// let db = FaultyDb::new(MemDb::new(), 1).half_batch_rate(1.0);
    /// let err = db.push_batch(&[b"a", b"b", b"c", b"d"]).unwrap_err();
    /// assert_eq!(err.stored, 2);
    /// assert_eq!(db.inner().snapshot(), vec![b"a".to_vec(), b"b".to_vec()]);
    /// ```
    pub fn half_batch_rate(mut self, fraction: f64) -> Self {
        self.half_batch_rate = rate(fraction);
        self
    }

    /// Makes this fraction of calls sleep `spike` before doing anything else.
    ///
    /// ```
    /// use lifostore::testing::FaultyDb;
    /// use lifostore::{Db, MemDb};
    /// use std::time::{Duration, Instant};
    ///
    /// let db = FaultyDb::new(MemDb::new(), 1).latency_spikes(1.0, Duration::from_millis(5));
    /// let t = Instant::now();
    /// db.push(b"x").unwrap();
    /// assert!(t.elapsed() >= Duration::from_millis(5));
    /// assert_eq!(db.counts().spikes, 1);
    /// ```
    pub fn latency_spikes(mut self, fraction: f64, spike: Duration) -> Self {
        self.spike_rate = rate(fraction);
        self.spike = spike;
        self
    }

    /// Panics (with [`INJECTED_PANIC`]) on this fraction of calls, before they reach the inner
    /// Db.
    ///
    /// ```
    /// use lifostore::testing::{FaultyDb, quiet_injected_panics};
    /// use lifostore::{Db, MemDb};
    ///
    /// quiet_injected_panics();
    /// let db = FaultyDb::new(MemDb::new(), 1).panic_rate(1.0);
    /// let call = || db.push(b"x");
    /// assert!(std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)).is_err());
    /// assert!(db.inner().is_empty());
    /// ```
    pub fn panic_rate(mut self, fraction: f64) -> Self {
        self.panic_rate = rate(fraction);
        self
    }

    /// Panics (with [`INJECTED_PANIC`]) on call number `n` (counted from 1 over all methods),
    /// before it reaches the inner Db. Call it again to choose more calls.
    ///
    /// ```
    /// use lifostore::testing::{FaultyDb, quiet_injected_panics};
    /// use lifostore::{Db, MemDb};
    ///
    /// quiet_injected_panics();
    /// let db = FaultyDb::new(MemDb::new(), 1).panic_on_call(2);
    /// db.push(b"a").unwrap(); // call 1
    /// let second = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| db.push(b"b")));
    /// assert!(second.is_err()); // call 2 panicked
    /// db.push(b"c").unwrap(); // call 3
    /// assert_eq!(db.inner().len(), 2);
    /// ```
    pub fn panic_on_call(mut self, n: u64) -> Self {
        self.panic_on.push(n);
        self
    }

    /// Restricts the random faults (failures, half batches, spikes, random panics) to writes:
    /// `pop` and `pop_batch` pass through unless the Db is down or the call was chosen with
    /// [`panic_on_call`](Self::panic_on_call).
    ///
    /// ```
    /// use lifostore::testing::FaultyDb;
    /// use lifostore::{Db, MemDb};
    ///
    /// let inner = MemDb::new();
    /// inner.push(b"a").unwrap();
    /// let db = FaultyDb::new(inner, 1).fail_rate(1.0).writes_only();
    /// assert!(db.push(b"b").is_err());
    /// assert_eq!(db.pop().unwrap(), Some(b"a".to_vec()));
    /// ```
    pub fn writes_only(mut self) -> Self {
        self.writes_only = true;
        self
    }

    /// Refuses for good every item `refuse` picks, with [`DbError::Rejected`] (a permanent
    /// error), as a server rejects a value. A batch holding such an item stores nothing
    /// (an atomic backend), unless `prefix_stored` is set: then it stores the items before
    /// the first refused one and reports them in [`PushBatchError::stored`].
    ///
    /// ```
    /// use lifostore::testing::FaultyDb;
    /// use lifostore::{Db, MemDb};
    ///
    /// let db = FaultyDb::new(MemDb::new(), 1).reject_items(|item| item == b"bad", false);
    /// assert!(db.push(b"bad").unwrap_err().is_permanent());
    /// let err = db.push_batch(&[b"ok", b"bad"]).unwrap_err();
    /// assert_eq!(err.stored, 0);
    /// db.push(b"ok").unwrap();
    /// ```
    pub fn reject_items(
        mut self,
        refuse: impl Fn(&[u8]) -> bool + Send + Sync + 'static,
        prefix_stored: bool,
    ) -> Self {
        self.reject = Some(Rejector {
            refuse: Box::new(refuse),
            prefix: prefix_stored,
        });
        self
    }

    /// The index of the first item this Db refuses for good, if any.
    fn first_refused(&self, items: &[&[u8]]) -> Option<usize> {
        let r = self.reject.as_ref()?;
        items.iter().position(|item| (r.refuse)(item))
    }

    /// While `down`, every call fails with [`INJECTED_FAILURE`] without reaching the inner Db
    /// (an outage); `set_down(false)` ends it.
    ///
    /// ```
    /// use lifostore::testing::FaultyDb;
    /// use lifostore::{Db, MemDb};
    ///
    /// let db = FaultyDb::new(MemDb::new(), 1);
    /// db.set_down(true);
    /// assert!(db.push(b"x").is_err());
    /// db.set_down(false);
    /// db.push(b"x").unwrap();
    /// ```
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Whether the Db is down ([`set_down`](Self::set_down)).
    ///
    /// ```
    /// let db = lifostore::testing::FaultyDb::new(lifostore::MemDb::new(), 1);
    /// assert!(!db.is_down());
    /// ```
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::SeqCst)
    }

    /// The wrapped Db.
    ///
    /// ```
    /// use lifostore::{Db, MemDb};
    ///
    /// let db = lifostore::testing::FaultyDb::new(MemDb::new(), 1);
    /// db.push(b"x").unwrap();
    /// assert_eq!(db.inner().len(), 1);
    /// ```
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// Unwraps the inner Db.
    ///
    /// ```
    /// let db = lifostore::testing::FaultyDb::new(lifostore::MemDb::new(), 1);
    /// let mem: lifostore::MemDb = db.into_inner();
    /// assert!(mem.is_empty());
    /// ```
    pub fn into_inner(self) -> D {
        self.inner
    }

    /// Db calls received so far (all methods, faulty or not).
    ///
    /// ```
    /// use lifostore::{Db, MemDb};
    ///
    /// let db = lifostore::testing::FaultyDb::new(MemDb::new(), 1);
    /// db.push(b"x").unwrap();
    /// db.pop().unwrap();
    /// assert_eq!(db.calls(), 2);
    /// ```
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// What was injected so far.
    ///
    /// ```
    /// use lifostore::testing::FaultyDb;
    /// use lifostore::{Db, MemDb};
    ///
    /// let db = FaultyDb::new(MemDb::new(), 1).fail_rate(1.0);
    /// let _ = db.pop();
    /// assert_eq!(db.counts().failures, 1);
    /// ```
    pub fn counts(&self) -> FaultCounts {
        FaultCounts {
            failures: self.failures.load(Ordering::Relaxed),
            half_batches: self.half_batches.load(Ordering::Relaxed),
            spikes: self.spikes.load(Ordering::Relaxed),
            panics: self.panics.load(Ordering::Relaxed),
        }
    }

    /// A uniform draw in `[0, 1)` from the shared xorshift64 sequence.
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

    fn chance(&self, fraction: f64) -> bool {
        fraction > 0.0 && self.draw() < fraction
    }

    /// Numbers the call, then spikes, panics or fails as configured; `Ok` means go ahead.
    fn before_call(&self, write: bool) -> Result<(), DbError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let random = write || !self.writes_only;
        if random && self.chance(self.spike_rate) {
            self.spikes.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(self.spike);
        }
        if self.panic_on.contains(&n) || (random && self.chance(self.panic_rate)) {
            self.panics.fetch_add(1, Ordering::Relaxed);
            panic!("{INJECTED_PANIC} (call {n})");
        }
        if self.is_down() || (random && self.chance(self.fail_rate)) {
            self.failures.fetch_add(1, Ordering::Relaxed);
            return Err(DbError::msg(format!("{INJECTED_FAILURE} (call {n})")));
        }
        Ok(())
    }
}

impl<D: Db> Db for FaultyDb<D> {
    fn push(&self, data: &[u8]) -> Result<(), DbError> {
        self.before_call(true)?;
        if self.first_refused(&[data]).is_some() {
            return Err(rejected());
        }
        self.inner.push(data)
    }

    fn pop(&self) -> Result<Option<Vec<u8>>, DbError> {
        self.before_call(false)?;
        self.inner.pop()
    }

    fn push_batch(&self, items: &[&[u8]]) -> Result<(), PushBatchError> {
        self.before_call(true)
            .map_err(|source| PushBatchError { stored: 0, source })?;
        if let Some(bad) = self.first_refused(items) {
            let prefix = self.reject.as_ref().is_some_and(|r| r.prefix);
            let stored = if prefix { bad } else { 0 };
            if stored > 0 {
                self.inner.push_batch(&items[..stored])?;
            }
            return Err(PushBatchError {
                stored,
                source: rejected(),
            });
        }
        if items.len() >= 2 && self.chance(self.half_batch_rate) {
            let half = items.len() / 2;
            // If the inner Db fails part way, its own error (and count) is the honest answer.
            self.inner.push_batch(&items[..half])?;
            self.half_batches.fetch_add(1, Ordering::Relaxed);
            return Err(PushBatchError {
                stored: half,
                source: DbError::msg(format!(
                    "{INJECTED_FAILURE} half way through a batch of {}",
                    items.len()
                )),
            });
        }
        self.inner.push_batch(items)
    }

    fn pop_batch(&self, max: usize) -> Result<Vec<Vec<u8>>, DbError> {
        self.before_call(false)?;
        self.inner.pop_batch(max)
    }

    /// The inner Db's: its limits hold through the wrapper.
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn item_count(&self) -> Result<Option<u64>, DbError> {
        self.inner.item_count()
    }

    /// Leases if the inner Db has them, with faults injected as for pops.
    fn leases(&self) -> Option<&dyn DbLeases> {
        self.inner.leases().map(|_| self as &dyn DbLeases)
    }

    /// The inner Db's wake-ups, without faults: a lost wake-up is a missed hint, which the
    /// storage's re-check covers; the faults that matter are in the calls.
    fn watch(&self) -> Result<Option<Box<dyn DbWatch>>, DbError> {
        self.inner.watch()
    }
}

impl<D: Db> FaultyDb<D> {
    /// The inner Db's leases (there are some: [`Db::leases`] offered them).
    fn inner_leases(&self) -> Result<&dyn DbLeases, DbError> {
        self.inner
            .leases()
            .ok_or_else(|| DbError::msg("FaultyDb: the inner Db has no leases"))
    }
}

impl<D: Db> DbLeases for FaultyDb<D> {
    /// Fails like a pop (before the inner Db is called), else forwards.
    fn pop_lease(&self, max: usize, ttl: Duration) -> Result<Vec<DbLease>, DbError> {
        self.before_call(false)?;
        self.inner_leases()?.pop_lease(max, ttl)
    }

    /// Fails like a pop (before the inner Db is called), else forwards.
    fn ack(&self, ids: &[LeaseId]) -> Result<(), DbError> {
        self.before_call(false)?;
        self.inner_leases()?.ack(ids)
    }

    /// Fails like a pop (before the inner Db is called), else forwards.
    fn release(&self, leases: &[DbLease]) -> Result<(), DbError> {
        self.before_call(false)?;
        self.inner_leases()?.release(leases)
    }

    /// Fails like a push (before the inner Db is called), else forwards. An item it refuses
    /// for good fails the whole call with that refusal (all or nothing).
    fn push_leased(
        &self,
        items: &[&[u8]],
        ttl: Duration,
        call: u64,
    ) -> Result<Vec<LeaseId>, DbError> {
        self.before_call(true)?;
        if self.first_refused(items).is_some() {
            return Err(rejected());
        }
        self.inner_leases()?.push_leased(items, ttl, call)
    }

    /// Forwards, without faults: a storage asks it once, when it is built.
    fn held_deadlines(&self) -> Result<Vec<SystemTime>, DbError> {
        self.inner_leases()?.held_deadlines()
    }
}

/// The permanent error a [`FaultyDb`] gives for an item it refuses.
fn rejected() -> DbError {
    DbError::Rejected {
        reason: "FaultyDb: item refused for good".into(),
    }
}
