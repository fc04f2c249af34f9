//! The [`Db`] trait (the durable store behind the buffer), its forwarding impls, and the
//! backends: [`FileDb`](file::FileDb) (the embedded default), [`MemDb`](mem::MemDb), and Redis
//! and PostgreSQL behind cargo features.

use std::sync::Arc;

pub use crate::error::{DbError, PushBatchError};

pub(crate) mod file;
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
        }
    )*};
}

forward_db!(Arc<T>, Box<T>, &T);
