//! The [`Db`] trait: the durable store behind the buffer, and its error type.

use std::error::Error as StdError;
use std::path::PathBuf;
use std::sync::Arc;

/// Why a [`Db`] call failed.
///
/// Cheap to clone (sources are shared), so the storage can report one Db failure to every
/// caller it concerns.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// An I/O operation failed; the item state is as the failing call documents.
    #[error("database I/O failed: {0}; check the disk or connection and retry")]
    Io(#[source] Arc<std::io::Error>),
    /// The file at `path` is damaged at byte `offset`.
    #[error(
        "database file {path} is damaged at byte {offset}: {detail}; \
         open it with salvage to keep the intact items"
    )]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset of the damage.
        offset: u64,
        /// What is wrong.
        detail: String,
    },
    /// The file at `path` is not a lifostore database (wrong magic or header).
    #[error("{path} is not a lifostore database: {detail}; pass the path of a lifostore file")]
    NotADatabase {
        /// The foreign file.
        path: PathBuf,
        /// What was found instead.
        detail: String,
    },
    /// The file uses a format version this build cannot read.
    #[error(
        "database file {path} has format version {found}, this build reads up to {supported}; \
         upgrade lifostore"
    )]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// An item is longer than the Db accepts.
    #[error(
        "item of {len} bytes exceeds the database limit of {max} bytes; split it or raise the limit"
    )]
    ItemTooLarge {
        /// The item's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The Db implementation panicked during a call; the storage caught it.
    #[error("database panicked: {0}; the call's items were kept and will be retried")]
    Panicked(String),
    /// Any other failure of the backend.
    #[error("database failed: {0}")]
    Other(#[source] Arc<dyn StdError + Send + Sync>),
}

impl DbError {
    /// Wraps any error as [`DbError::Other`].
    pub fn other<E: StdError + Send + Sync + 'static>(err: E) -> Self {
        DbError::Other(Arc::new(err))
    }

    /// A [`DbError::Other`] carrying just a message.
    pub fn msg(message: impl Into<String>) -> Self {
        DbError::Other(Arc::new(Message(message.into())))
    }
}

impl From<std::io::Error> for DbError {
    fn from(err: std::io::Error) -> Self {
        DbError::Io(Arc::new(err))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Message(String);

/// A batch push that stored only a prefix of its items.
///
/// `stored` items, counted from the *oldest* (the start of the slice), are durably in the Db;
/// the rest are not. Backends whose batches are atomic report `stored == 0` on failure. The
/// storage keeps the unstored suffix buffered and retries it, so an honest `stored` count is
/// what keeps a half-failed batch from being lost or written twice.
#[derive(Debug, Clone, thiserror::Error)]
#[error("batch push stored {stored} item(s) before failing: {source}")]
pub struct PushBatchError {
    /// How many items, from the oldest, were stored.
    pub stored: usize,
    /// Why the rest were not.
    #[source]
    pub source: DbError,
}

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

    /// Whether other processes may push to this Db too. A storage over a shared Db re-checks
    /// it periodically while a `pop` waits on an empty storage. Default: `false`.
    fn is_shared(&self) -> bool {
        false
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
        }
    )*};
}

forward_db!(Arc<T>, Box<T>, &T);
