//! The [`Db`] trait (the durable store behind a storage), what a Db states about itself
//! ([`Capabilities`]), its optional lease interface ([`DbLeases`]), and the forwarding impls
//! for `Arc`, `Box` and `&`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::lease::{DbLease, LeaseId};
use super::watch::DbWatch;
use crate::error::{DbError, PushBatchError};

/// A durable LIFO store: the database behind a [`Storage`](crate::Storage).
///
/// Implementations must be `Send + Sync`; every method is called from the flusher thread and
/// from callers' threads. The trait is object safe (`Box<dyn Db>` works).
///
/// Only [`push`](Db::push) and [`pop`](Db::pop) are required. The rest comes in three groups,
/// each with a default that is correct for a Db that says nothing more:
/// * the batch forms, [`push_batch`](Db::push_batch) and [`pop_batch`](Db::pop_batch), built
///   from `push` and `pop` (one call per item); a backend that can write or take many items
///   in one round trip should override them, since that is what makes batching pay off;
/// * what the Db states about itself, in one value: [`capabilities`](Db::capabilities) (its
///   item limit, whether other processes share it), and what it can count
///   ([`item_count`](Db::item_count));
/// * leases, behind one optional interface, [`leases`](Db::leases): either the Db keeps
///   leases itself, all of [`DbLeases`], or it has none (the storage then leases items it
///   popped, at most once across a crash).
///
/// A wrapper (a fault injector, a recorder) forwards these eight methods, and with
/// `capabilities`, `leases` and `watch` it forwards every limit, every lease method and the
/// wake-ups at once.
///
/// ```
/// use lifostore::{Db, DbError};
/// use std::sync::Mutex;
///
/// struct VecDb(Mutex<Vec<Vec<u8>>>);
///
/// impl Db for VecDb {
///     fn push(&self, data: &[u8]) -> Result<(), DbError> {
///         self.0.lock().map_err(|_| DbError::msg("poisoned"))?.push(data.to_vec());
///         Ok(())
///     }
///     fn pop(&self) -> Result<Option<Vec<u8>>, DbError> {
///         Ok(self.0.lock().map_err(|_| DbError::msg("poisoned"))?.pop())
///     }
/// }
///
/// let db = VecDb(Mutex::new(Vec::new()));
/// db.push_batch(&[b"old", b"new"]).unwrap();
/// assert_eq!(db.pop_batch(5).unwrap(), vec![b"new".to_vec(), b"old".to_vec()]);
/// assert!(db.leases().is_none());
/// ```
pub trait Db: Send + Sync {
    /// Stores one item on top. Durable (as the backend defines it) when it returns `Ok`.
    fn push(&self, data: &[u8]) -> Result<(), DbError>;

    /// Removes and returns the newest item, or `None` when the Db is empty.
    fn pop(&self) -> Result<Option<Vec<u8>>, DbError>;

    /// Stores `items` in order, oldest first (the last item ends on top).
    ///
    /// On failure, [`PushBatchError::stored`] says how many leading items are stored.
    fn push_batch(&self, items: &[&[u8]]) -> Result<(), PushBatchError> {
        for (stored, item) in items.iter().enumerate() {
            self.push(item)
                .map_err(|source| PushBatchError { stored, source })?;
        }
        Ok(())
    }

    /// Removes and returns up to `max` items, newest first.
    ///
    /// Items it took are never dropped: a call that fails after taking some returns `Ok` with
    /// those (the failure recurs on the next call); `Err` means it took nothing.
    fn pop_batch(&self, max: usize) -> Result<Vec<Vec<u8>>, DbError> {
        let mut out = Vec::new();
        while out.len() < max {
            match self.pop() {
                Ok(Some(item)) => out.push(item),
                Ok(None) => break,
                Err(e) if out.is_empty() => return Err(e),
                Err(_) => break,
            }
        }
        Ok(out)
    }

    /// What the Db states about itself: its item limit and whether other processes share it.
    /// Asked once, when a storage is built. Default: no limit, not shared.
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    /// How many items the Db holds, if it can tell (FileDb keeps a count, Redis has `LLEN`);
    /// `Ok(None)` when it cannot (the default). Used by
    /// [`Storage::len`](crate::Storage::len); a Db shared with other processes answers for
    /// the instant of the call.
    ///
    /// Named `item_count`, not `len`: through the forwarding impls for `Arc`, `Box` and `&`, a
    /// trait method `len` would be found before `MemDb::len` and `FileDb::len` and change what
    /// `Arc<MemDb>::len()` means in existing code.
    fn item_count(&self) -> Result<Option<u64>, DbError> {
        Ok(None)
    }

    /// The Db's leases, if it keeps them itself: it hides a leased item from pops, expires the
    /// lease and, after a crash, returns the item, so an unacked lease survives the death of
    /// the process that held it. `None` (the default): the storage leases an item by popping
    /// it and holding it in memory, which is at most once across a crash, as `pop`.
    fn leases(&self) -> Option<&dyn DbLeases> {
        None
    }

    /// Wake-ups for a storage over a [shared](Capabilities::shared) Db: a subscription that
    /// tells it when another handle (another process) stored items or took a lease, so a
    /// blocked `pop` wakes within milliseconds and an idle one asks the Db only every few
    /// seconds. Asked once, when a storage over a shared Db is built. `Ok(None)` (the
    /// default): the storage polls the Db every
    /// [`shared_poll_interval`](crate::StorageBuilder::shared_poll_interval) while a pop
    /// waits. `Err`: the storage polls too (a watch is an optimisation, never required).
    fn watch(&self) -> Result<Option<Box<dyn DbWatch>>, DbError> {
        Ok(None)
    }
}

/// What a [`Db`] states about itself, from [`Db::capabilities`]: one value, so a wrapper
/// that forwards it forwards every limit.
///
/// ```
/// use lifostore::Capabilities;
///
/// let caps = Capabilities::default().max_item_len(1 << 20).shared(true);
/// assert_eq!((caps.max_item_len, caps.shared), (Some(1 << 20), true));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// The largest item the Db can ever store, if it has a limit. A storage refuses a longer
    /// item at `push` with [`Error::ItemTooLarge`](crate::Error::ItemTooLarge) instead of
    /// accepting an item its Db would refuse in every batch.
    pub max_item_len: Option<usize>,
    /// Whether other processes may push to the Db too. A storage over a shared Db re-checks
    /// it periodically while a `pop` waits on an empty storage, and keeps no count of it.
    pub shared: bool,
}

impl Capabilities {
    /// Sets [`max_item_len`](Self::max_item_len).
    pub fn max_item_len(mut self, n: usize) -> Self {
        self.max_item_len = Some(n);
        self
    }

    /// Sets [`shared`](Self::shared).
    pub fn shared(mut self, shared: bool) -> Self {
        self.shared = shared;
        self
    }
}

/// Leases a [`Db`] keeps itself, from [`Db::leases`]: all five methods, or no leases at all.
///
/// A leased item stays in the Db, but no pop sees it until it is [acked](DbLeases::ack)
/// (gone for good), [released](DbLeases::release) (back on top), or its `ttl` passes (back
/// **on top** by itself, once a later call notices it: above every item pushed while it was
/// leased; several expired leases come back oldest lease first, so the newest ends on top).
/// Every Db lifostore ships does so (`MemDb`, `FileDb`, `RedisDb`, `PostgresDb`); an
/// implementation must too, since a storage counts on it.
///
/// A [`Storage`](crate::Storage) asks for its `lease_ttl` plus a margin (a quarter of it, at
/// least 1 s) and returns the item itself when its own, shorter deadline passes (it must put
/// the item above what it buffers in memory, which a Db cannot see): the Db's deadline only
/// matters if the process dies holding the lease.
pub trait DbLeases: Send + Sync {
    /// Leases up to `max` items, newest first, for `ttl`.
    fn pop_lease(&self, max: usize, ttl: Duration) -> Result<Vec<DbLease>, DbError>;

    /// Removes the leased items `ids` for good.
    ///
    /// Ids that are not held (expired, already acked or released, never issued) are skipped
    /// and reported together as [`DbError::LeaseExpired`] after the held ones are acked; any
    /// other error means nothing was acked.
    fn ack(&self, ids: &[LeaseId]) -> Result<(), DbError>;

    /// Puts the leased items back on top, newest on top as they were (`leases` as
    /// `pop_lease` returned them, newest first). Ids not held are skipped and reported as
    /// [`DbError::LeaseExpired`] (their items are already back, or gone).
    fn release(&self, leases: &[DbLease]) -> Result<(), DbError>;

    /// Stores `items` already leased, each for `ttl`, in one atomic step: they are in the Db
    /// (durable, as the backend defines it, when this returns `Ok`) but no pop sees them until
    /// they are acked, released or their `ttl` passes, exactly as if [`push`](Db::push) and
    /// [`pop_lease`](Self::pop_lease) had run with nothing in between. Returns their ids in the
    /// order of `items`. Blocks for one Db round trip (MemDb: none; FileDb: one log append and
    /// sync, one slot and sync).
    ///
    /// A storage with a [`lease_ttl`](crate::StorageBuilder::lease_ttl) calls it when an item
    /// leased from memory comes due for the durability window: the item is written, still
    /// leased, for the rest of its ttl.
    ///
    /// All or nothing: `Err` means no item was stored and no lease taken (an item too long for
    /// the Db fails the whole call with [`DbError::ItemTooLarge`]). A server backend that loses
    /// its connection after sending the call cannot tell which: it answers `Err`, and the call
    /// may have landed. A caller that retries such a call (as the storage does) passes the same
    /// `call` number and the same items, and must not get them stored twice, or the first copy
    /// is a lease nobody knows, back on top at its deadline after the item was acked: Redis and
    /// PostgreSQL remember a call that failed in doubt and answer its retry with the ids it
    /// stored (a token per call, recorded by the server with the ids until a margin past the
    /// ttl). Different calls pass different numbers (the storage passes the lease's key), so
    /// two calls of equal bytes are never taken for one. An implementation that cannot tell
    /// should document that the item may then be delivered again; a Db that never loses a
    /// reply (MemDb, FileDb) ignores `call`.
    fn push_leased(
        &self,
        items: &[&[u8]],
        ttl: Duration,
        call: u64,
    ) -> Result<Vec<LeaseId>, DbError>;

    /// When the leases the Db holds now come back by themselves: their deadlines. A storage
    /// over a Db that is not [shared](Capabilities::shared) asks once, when it is built:
    /// leases a process that died still held come back at their deadline without anyone
    /// pushing, so until then the storage keeps no count of the Db and a pop that finds it
    /// empty asks again at the next deadline.
    fn held_deadlines(&self) -> Result<Vec<SystemTime>, DbError>;
}

/// Refuses a batch holding an item longer than `max` before anything is sent or written: the
/// check every backend with a limit makes first. Nothing is stored.
pub(crate) fn refuse_oversize(items: &[&[u8]], max: usize) -> Result<(), PushBatchError> {
    match items.iter().find(|i| i.len() > max) {
        Some(big) => Err(PushBatchError {
            stored: 0,
            source: DbError::ItemTooLarge {
                len: big.len(),
                max,
            },
        }),
        None => Ok(()),
    }
}

macro_rules! forward_db {
    ($($ty:ty),*) => {$(
        impl<T: Db + ?Sized> Db for $ty {
            fn push(&self, data: &[u8]) -> Result<(), DbError> {
                (**self).push(data)
            }
            fn pop(&self) -> Result<Option<Vec<u8>>, DbError> {
                (**self).pop()
            }
            fn push_batch(&self, items: &[&[u8]]) -> Result<(), PushBatchError> {
                (**self).push_batch(items)
            }
            fn pop_batch(&self, max: usize) -> Result<Vec<Vec<u8>>, DbError> {
                (**self).pop_batch(max)
            }
            fn capabilities(&self) -> Capabilities {
                (**self).capabilities()
            }
            fn item_count(&self) -> Result<Option<u64>, DbError> {
                (**self).item_count()
            }
            fn leases(&self) -> Option<&dyn DbLeases> {
                (**self).leases()
            }
            fn watch(&self) -> Result<Option<Box<dyn DbWatch>>, DbError> {
                (**self).watch()
            }
        }
    )*};
}

forward_db!(Arc<T>, Box<T>, &T);
