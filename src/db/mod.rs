//! The [`Db`] trait (the durable store behind the buffer), its forwarding impls, and the
//! backends: [`FileDb`](file::FileDb) (the embedded default), [`MemDb`](mem::MemDb), and Redis
//! and PostgreSQL behind cargo features.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use self::lease::{DbLease, LeaseId};
pub use crate::error::{DbError, PushBatchError};

pub(crate) mod file;
pub(crate) mod lease;
/// What the server backends remember about a call whose reply was lost.
#[cfg(any(feature = "redis", feature = "postgres"))]
pub(crate) mod lost_reply;
pub(crate) mod mem;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
#[cfg(feature = "redis")]
pub(crate) mod redis;

/// A durable LIFO store: the database behind a [`Storage`](crate::Storage).
///
/// Implementations must be `Send + Sync`; every method is called from the flusher thread and
/// from callers' threads. The trait is object safe (`Box<dyn Db>` works).
///
/// Only [`push`](Db::push) and [`pop`](Db::pop) are required. The batch forms have correct
/// default implementations built from them (one call per item); backends that can write or
/// take many items in one round trip should override them, since that is what makes the
/// storage's batching pay off.
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

    /// The largest item this Db can ever store, if it has a limit. A storage refuses a longer
    /// item at `push` with [`Error::ItemTooLarge`](crate::Error::ItemTooLarge) instead of
    /// accepting an item its Db would refuse in every batch. Default: `None` (no limit).
    fn max_item_len(&self) -> Option<usize> {
        None
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

    /// Whether other processes may push to this Db too. A storage over a shared Db re-checks
    /// it periodically while a `pop` waits on an empty storage. Default: `false`.
    fn is_shared(&self) -> bool {
        false
    }

    /// Leases up to `max` items, newest first: each stays in the Db but no pop sees it until
    /// it is [acked](Db::ack) (gone for good), [released](Db::release) (back on top), or
    /// `ttl` passes (back by itself, noticed at a later call: on top for `MemDb`, `FileDb` and
    /// `RedisDb`, at its old place for `PostgresDb`).
    ///
    /// **Fallback** (a Db that does not override it; [`native_leases`](Db::native_leases) is
    /// `false`): [`pop_batch`](Db::pop_batch), with process-unique ids. The items leave the Db
    /// at once, so the lease exists only in the caller's hands: `ack` is a no-op, `release`
    /// pushes the items back, and the Db neither hides, expires nor returns anything by
    /// itself. If the process dies holding such a lease, the item is lost: at-most-once
    /// processing, as with `pop`. The holder (the storage) must enforce `ttl` itself.
    fn pop_lease(&self, max: usize, ttl: Duration) -> Result<Vec<DbLease>, DbError> {
        let _ = ttl;
        self.pop_batch(max).map(lease::detached)
    }

    /// Removes the leased items `ids` for good.
    ///
    /// Ids that are not held (expired, already acked or released, never issued) are skipped
    /// and reported together as [`DbError::LeaseExpired`] after the held ones are acked; any
    /// other error means nothing was acked. **Fallback:** does nothing (the items already
    /// left the Db when they were leased).
    fn ack(&self, ids: &[LeaseId]) -> Result<(), DbError> {
        let _ = ids;
        Ok(())
    }

    /// Puts the leased items back on top, newest on top as they were (`leases` as
    /// `pop_lease` returned them, newest first).
    ///
    /// Native Dbs use only the ids; ids not held are skipped and reported as
    /// [`DbError::LeaseExpired`] (their items are already back, or gone). **Fallback:** pushes
    /// the items back, oldest first, retrying the rest after a batch that stored only a
    /// prefix; an `Err` means the push stopped making progress, and an oldest-first prefix of
    /// the items may be back already.
    fn release(&self, leases: &[DbLease]) -> Result<(), DbError> {
        let items: Vec<&[u8]> = leases.iter().rev().map(|l| l.item.as_slice()).collect();
        let mut rest = &items[..];
        loop {
            match self.push_batch(rest) {
                Ok(()) => return Ok(()),
                Err(e) if e.stored == 0 || e.stored >= rest.len() => return Err(e.source),
                Err(e) => rest = &rest[e.stored..],
            }
        }
    }

    /// Whether this Db keeps leases itself (hides, expires and, after a crash, returns
    /// them), so an unacked lease survives the death of the process that held it. `false`
    /// (the default) means the fallback described at [`pop_lease`](Db::pop_lease): at most
    /// once across a crash.
    fn native_leases(&self) -> bool {
        false
    }

    /// When the leases this Db holds now come back by themselves: their deadlines. Asked once,
    /// when a [`Storage`](crate::Storage) is built over a Db that is not
    /// [shared](Db::is_shared) and has [native leases](Db::native_leases): leases a process
    /// that died still held come back at their deadline without anyone pushing, so until
    /// then the storage keeps no count of the Db and a pop that finds it empty asks again at
    /// the next deadline. (A shared Db is re-asked every `shared_poll_interval` anyway.)
    /// Default: none.
    fn held_lease_deadlines(&self) -> Result<Vec<SystemTime>, DbError> {
        Ok(Vec::new())
    }
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
            fn is_shared(&self) -> bool {
                (**self).is_shared()
            }
            fn item_count(&self) -> Result<Option<u64>, DbError> {
                (**self).item_count()
            }
            fn max_item_len(&self) -> Option<usize> {
                (**self).max_item_len()
            }
            fn pop_lease(&self, max: usize, ttl: Duration) -> Result<Vec<DbLease>, DbError> {
                (**self).pop_lease(max, ttl)
            }
            fn ack(&self, ids: &[LeaseId]) -> Result<(), DbError> {
                (**self).ack(ids)
            }
            fn release(&self, leases: &[DbLease]) -> Result<(), DbError> {
                (**self).release(leases)
            }
            fn native_leases(&self) -> bool {
                (**self).native_leases()
            }
            fn held_lease_deadlines(&self) -> Result<Vec<SystemTime>, DbError> {
                (**self).held_lease_deadlines()
            }
        }
    )*};
}

forward_db!(Arc<T>, Box<T>, &T);
