//! [`StampedDb`]: a Db wrapper that records when each item arrived.

use std::time::{Duration, Instant, SystemTime};

use crate::db::{Capabilities, Db, DbLease, DbLeases, DbWatch, LeaseId};
use crate::error::{DbError, PushBatchError};
use crate::sync::Mutex;

/// A [`Db`] wrapper that records the instant each item arrived (its write returned `Ok`), to
/// measure how long acknowledged items waited in memory.
///
/// By default a batch is stamped when the whole batch call returns (every item of it got the
/// same, latest, instant: a conservative measure). With [`per_item`](Self::per_item), batches
/// are written item by item through the inner Db's `push` and each item is stamped when its
/// own write returns, as a Db with only one-item writes would behave.
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
    per_item: bool,
    arrivals: Mutex<Vec<(Vec<u8>, Instant)>>,
}

impl<D: Db> StampedDb<D> {
    /// Wraps `inner`.
    ///
    /// ```
    /// let db = lifostore::testing::StampedDb::new(lifostore::MemDb::new());
    /// assert!(db.arrivals().is_empty());
    /// ```
    pub fn new(inner: D) -> Self {
        StampedDb {
            inner,
            per_item: false,
            arrivals: Mutex::new(Vec::new()),
        }
    }

    /// Writes batches one item at a time (the inner Db's `push`), stamping each item when its
    /// own write returns; a failure reports how many items were stored before it.
    ///
    /// ```
    /// use lifostore::testing::StampedDb;
    /// use lifostore::{Db, MemDb};
    ///
    /// let db = StampedDb::new(MemDb::new()).per_item();
    /// db.push_batch(&[b"a", b"b"]).unwrap();
    /// assert_eq!(db.inner().calls().push_calls, 2);
    /// let stamps = db.arrivals();
    /// assert!(stamps[0].1 <= stamps[1].1);
    /// ```
    pub fn per_item(mut self) -> Self {
        self.per_item = true;
        self
    }

    /// Every item stored so far with the instant its write returned, in arrival order.
    ///
    /// ```
    /// use lifostore::testing::StampedDb;
    /// use lifostore::{Db, MemDb};
    ///
    /// let db = StampedDb::new(MemDb::new());
    /// db.push_batch(&[b"a", b"b"]).unwrap();
    /// let names: Vec<_> = db.arrivals().into_iter().map(|(item, _)| item).collect();
    /// assert_eq!(names, vec![b"a".to_vec(), b"b".to_vec()]);
    /// ```
    pub fn arrivals(&self) -> Vec<(Vec<u8>, Instant)> {
        self.arrivals.lock().clone()
    }

    /// How many items have arrived so far.
    ///
    /// ```
    /// use lifostore::{Db, MemDb};
    ///
    /// let db = lifostore::testing::StampedDb::new(MemDb::new());
    /// db.push(b"a").unwrap();
    /// assert_eq!(db.arrival_count(), 1);
    /// ```
    pub fn arrival_count(&self) -> usize {
        self.arrivals.lock().len()
    }

    /// The wrapped Db.
    ///
    /// ```
    /// use lifostore::{Db, MemDb};
    ///
    /// let db = lifostore::testing::StampedDb::new(MemDb::new());
    /// db.push(b"a").unwrap();
    /// assert_eq!(db.inner().len(), 1);
    /// ```
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
        if self.per_item {
            for (stored, item) in items.iter().enumerate() {
                self.push(item)
                    .map_err(|source| PushBatchError { stored, source })?;
            }
            return Ok(());
        }
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

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn item_count(&self) -> Result<Option<u64>, DbError> {
        self.inner.item_count()
    }

    /// The inner Db's leases, if it has some. Only [`DbLeases::push_leased`] is stamped (its
    /// items arrive leased); a leased item that was pushed arrived when it was pushed.
    fn leases(&self) -> Option<&dyn DbLeases> {
        self.inner.leases().map(|_| self as &dyn DbLeases)
    }

    /// The inner Db's wake-ups: they come from whoever stores, not through the wrapper.
    fn watch(&self) -> Result<Option<Box<dyn DbWatch>>, DbError> {
        self.inner.watch()
    }
}

impl<D: Db> StampedDb<D> {
    /// The inner Db's leases (there are some: [`Db::leases`] offered them).
    fn inner_leases(&self) -> Result<&dyn DbLeases, DbError> {
        self.inner
            .leases()
            .ok_or_else(|| DbError::msg("StampedDb: the inner Db has no leases"))
    }
}

impl<D: Db> DbLeases for StampedDb<D> {
    fn pop_lease(&self, max: usize, ttl: Duration) -> Result<Vec<DbLease>, DbError> {
        self.inner_leases()?.pop_lease(max, ttl)
    }

    fn ack(&self, ids: &[LeaseId]) -> Result<(), DbError> {
        self.inner_leases()?.ack(ids)
    }

    fn release(&self, leases: &[DbLease]) -> Result<(), DbError> {
        self.inner_leases()?.release(leases)
    }

    /// Forwards; the items are stamped when the call returns `Ok` (all or nothing).
    fn push_leased(
        &self,
        items: &[&[u8]],
        ttl: Duration,
        call: u64,
    ) -> Result<Vec<LeaseId>, DbError> {
        let ids = self.inner_leases()?.push_leased(items, ttl, call)?;
        self.stamp(items);
        Ok(ids)
    }

    fn held_deadlines(&self) -> Result<Vec<SystemTime>, DbError> {
        self.inner_leases()?.held_deadlines()
    }
}
