//! [`MemDb`]: an in-memory [`Db`] for tests, examples and benchmarks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crate::db::interface::{Capabilities, Db, DbLeases};
use crate::db::lease::{
    DbLease, LeaseId, LeaseTable, deadline_ms, lease_result, now_ms, system_time,
};
use crate::error::{DbError, PushBatchError};
use crate::sync::Mutex;

/// An in-memory [`Db`] with optional per-call latency and call counters.
///
/// It stands in for an expensive database: `MemDb::with_latency(Duration::from_millis(5))`
/// sleeps 5 ms in every call, like the original mock. The sleep happens outside its lock, so
/// concurrent calls overlap as they would against a server. Counters tell how many calls the
/// storage made. Nothing survives the process.
///
/// Leases ([`Db::leases`]) are native: a leased item is held in a table beside the stack,
/// hidden from pops, and goes back on top when released, or at its deadline (noticed by the
/// next pop, lease, ack or release call), above every item pushed meanwhile.
///
/// ```
/// use lifostore::{Db, MemDb};
///
/// let db = MemDb::new();
/// db.push_batch(&[b"a", b"b"]).unwrap();
/// assert_eq!(db.pop().unwrap(), Some(b"b".to_vec()));
/// assert_eq!(db.calls().total(), 2);
/// ```
#[derive(Debug, Default)]
pub struct MemDb {
    items: Mutex<Vec<Vec<u8>>>,
    /// Held leases and the next lease id. Locked before `items` when both are.
    leases: Mutex<(LeaseTable, u64)>,
    latency: Option<Duration>,
    single_item_only: bool,
    shared: bool,
    push_calls: AtomicU64,
    pop_calls: AtomicU64,
    items_pushed: AtomicU64,
    items_popped: AtomicU64,
}

/// Call counts of a [`MemDb`]; one batch call counts once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemDbCalls {
    /// Calls that stored items (`push` and `push_batch`).
    pub push_calls: u64,
    /// Calls that took items (`pop` and `pop_batch`), including ones that found it empty.
    pub pop_calls: u64,
    /// Items stored.
    pub items_pushed: u64,
    /// Items taken.
    pub items_popped: u64,
}

impl MemDbCalls {
    /// All calls, push and pop.
    pub fn total(&self) -> u64 {
        self.push_calls + self.pop_calls
    }
}

impl MemDb {
    /// An empty Db with no latency.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty Db whose every call sleeps `latency` first.
    pub fn with_latency(latency: Duration) -> Self {
        MemDb {
            latency: Some(latency).filter(|l| !l.is_zero()),
            ..Self::default()
        }
    }

    /// Makes the batch methods fall back to one call (and one latency) per item, like a
    /// database that only has single-item `push` and `pop`.
    pub fn single_item_only(mut self) -> Self {
        self.single_item_only = true;
        self
    }

    /// Declares the Db shared ([`Capabilities::shared`]), as if other processes pushed to it.
    pub fn shared(mut self, shared: bool) -> Self {
        self.shared = shared;
        self
    }

    /// Number of items stored.
    pub fn len(&self) -> usize {
        self.items.lock().len()
    }

    /// Whether the Db holds no items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of the stored items, oldest first.
    pub fn snapshot(&self) -> Vec<Vec<u8>> {
        self.items.lock().clone()
    }

    /// Calls made so far.
    pub fn calls(&self) -> MemDbCalls {
        MemDbCalls {
            push_calls: self.push_calls.load(Ordering::Relaxed),
            pop_calls: self.pop_calls.load(Ordering::Relaxed),
            items_pushed: self.items_pushed.load(Ordering::Relaxed),
            items_popped: self.items_popped.load(Ordering::Relaxed),
        }
    }

    /// Number of items leased and neither acked nor returned.
    pub fn leased(&self) -> usize {
        self.leases.lock().0.iter().count()
    }

    /// A copy of the items leased and neither acked nor returned, oldest lease first
    /// (expired ones included until a call returns them).
    ///
    /// ```
    /// use lifostore::{Db, DbLeases, MemDb};
    /// use std::time::Duration;
    ///
    /// let db = MemDb::new();
    /// db.push_batch(&[b"a", b"b"]).unwrap();
    /// db.pop_lease(1, Duration::from_secs(60)).unwrap();
    /// assert_eq!(db.leased_items(), vec![b"b".to_vec()]);
    /// assert_eq!(db.snapshot(), vec![b"a".to_vec()]);
    /// ```
    pub fn leased_items(&self) -> Vec<Vec<u8>> {
        let leases = self.leases.lock();
        leases.0.iter().map(|(_, held)| held.item.clone()).collect()
    }

    /// Puts the leases past their deadline back on top, oldest lease first.
    fn return_expired(&self) {
        let mut leases = self.leases.lock();
        for id in leases.0.expired(now_ms()) {
            if let Some(held) = leases.0.remove(id) {
                self.items.lock().push(held.item);
            }
        }
    }

    fn pay_latency(&self) {
        if let Some(l) = self.latency {
            std::thread::sleep(l);
        }
    }
}

impl Db for MemDb {
    fn push(&self, data: &[u8]) -> Result<(), DbError> {
        self.pay_latency();
        self.push_calls.fetch_add(1, Ordering::Relaxed);
        self.items_pushed.fetch_add(1, Ordering::Relaxed);
        self.items.lock().push(data.to_vec());
        Ok(())
    }

    fn pop(&self) -> Result<Option<Vec<u8>>, DbError> {
        self.pay_latency();
        self.pop_calls.fetch_add(1, Ordering::Relaxed);
        self.return_expired();
        let item = self.items.lock().pop();
        if item.is_some() {
            self.items_popped.fetch_add(1, Ordering::Relaxed);
        }
        Ok(item)
    }

    fn push_batch(&self, batch: &[&[u8]]) -> Result<(), PushBatchError> {
        if self.single_item_only {
            for (stored, item) in batch.iter().enumerate() {
                self.push(item)
                    .map_err(|source| PushBatchError { stored, source })?;
            }
            return Ok(());
        }
        self.pay_latency();
        self.push_calls.fetch_add(1, Ordering::Relaxed);
        self.items_pushed
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.items
            .lock()
            .extend(batch.iter().map(|item| item.to_vec()));
        Ok(())
    }

    fn pop_batch(&self, max: usize) -> Result<Vec<Vec<u8>>, DbError> {
        if self.single_item_only {
            let mut out = Vec::new();
            while out.len() < max {
                match self.pop()? {
                    Some(item) => out.push(item),
                    None => break,
                }
            }
            return Ok(out);
        }
        self.pay_latency();
        self.pop_calls.fetch_add(1, Ordering::Relaxed);
        self.return_expired();
        let mut items = self.items.lock();
        let keep = items.len().saturating_sub(max);
        let mut out = items.split_off(keep);
        drop(items);
        out.reverse();
        self.items_popped
            .fetch_add(out.len() as u64, Ordering::Relaxed);
        Ok(out)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::default().shared(self.shared)
    }

    fn item_count(&self) -> Result<Option<u64>, DbError> {
        Ok(Some(self.items.lock().len() as u64))
    }

    fn leases(&self) -> Option<&dyn DbLeases> {
        Some(self)
    }
}

impl DbLeases for MemDb {
    fn pop_lease(&self, max: usize, ttl: Duration) -> Result<Vec<DbLease>, DbError> {
        self.pay_latency();
        self.pop_calls.fetch_add(1, Ordering::Relaxed);
        self.return_expired();
        let mut leases = self.leases.lock();
        let mut items = self.items.lock();
        let keep = items.len().saturating_sub(max);
        let mut taken = items.split_off(keep);
        drop(items);
        taken.reverse();
        let deadline = deadline_ms(now_ms(), ttl);
        let next = leases.1.max(1);
        leases.1 = next + taken.len() as u64;
        let ids = LeaseTable::ids_for(next, taken.len());
        let mut out = Vec::with_capacity(taken.len());
        for (id, item) in ids.zip(taken) {
            leases.0.insert(id, item.clone(), deadline);
            out.push(DbLease {
                id: LeaseId(id),
                item,
            });
        }
        Ok(out)
    }

    fn ack(&self, ids: &[LeaseId]) -> Result<(), DbError> {
        self.pay_latency();
        self.return_expired();
        let mut leases = self.leases.lock();
        let missing = ids
            .iter()
            .filter(|id| leases.0.remove(id.0).is_none())
            .count();
        lease_result(missing)
    }

    fn release(&self, released: &[DbLease]) -> Result<(), DbError> {
        self.pay_latency();
        self.return_expired();
        let mut leases = self.leases.lock();
        let mut ids: Vec<u64> = released.iter().map(|l| l.id.0).collect();
        ids.sort_unstable();
        let mut missing = 0;
        for id in ids {
            match leases.0.remove(id) {
                Some(held) => self.items.lock().push(held.item),
                None => missing += 1,
            }
        }
        lease_result(missing)
    }

    /// Counted as a push call (its items as pushed), since it is a write.
    fn push_leased(&self, items: &[&[u8]], ttl: Duration, _: u64) -> Result<Vec<LeaseId>, DbError> {
        self.pay_latency();
        self.push_calls.fetch_add(1, Ordering::Relaxed);
        self.items_pushed
            .fetch_add(items.len() as u64, Ordering::Relaxed);
        self.return_expired();
        let mut leases = self.leases.lock();
        let deadline = deadline_ms(now_ms(), ttl);
        let next = leases.1.max(1);
        leases.1 = next + items.len() as u64;
        // Oldest first, smallest id first: returned in id order, the newest ends on top.
        let ids: Vec<u64> = (next..next + items.len() as u64).collect();
        for (&id, item) in ids.iter().zip(items) {
            leases.0.insert(id, item.to_vec(), deadline);
        }
        Ok(ids.into_iter().map(LeaseId).collect())
    }

    fn held_deadlines(&self) -> Result<Vec<SystemTime>, DbError> {
        let leases = self.leases.lock();
        let deadlines = leases.0.iter().map(|(_, held)| held.deadline);
        Ok(deadlines.map(system_time).collect())
    }
}
