//! [`Error`]: why a [`Storage`](crate::Storage) call failed.

use std::time::Duration;

use crate::db::DbError;
use crate::token::CancelReason;

/// Why a [`Storage`](crate::Storage) call failed. Every case says what happened to the call's
/// item (nothing, for all of them: a failed push stores nothing, a failed pop takes nothing).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The caller's token (or an ancestor) was cancelled.
    #[error("operation cancelled by its token; nothing was stored or taken")]
    Cancelled,
    /// The caller's token (or an ancestor) passed its deadline.
    #[error(
        "deadline exceeded before the operation could complete; nothing was stored or taken, retry with a later deadline"
    )]
    DeadlineExceeded,
    /// The storage was closed; open a new one to continue.
    #[error("storage is closed; items left are in the database, open a new storage to reach them")]
    Closed,
    /// The database failed (or refused) and the storage cannot do what was asked.
    ///
    /// For `push`: the Db has been failing long enough that the storage cannot keep a new
    /// item within the durability window, so it refuses it rather than accept it and risk it.
    #[error("database error: {0}")]
    Db(#[from] DbError),
    /// The item is larger than the storage's `max_item_len`.
    #[error("item of {len} bytes exceeds the limit of {max} bytes; split it or raise max_item_len")]
    ItemTooLarge {
        /// The item's length.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// `close` could not write every buffered item before its time limit because the Db kept
    /// failing; the items are still buffered and a later `close` retries.
    #[error(
        "close gave up after {waited:?}: {unflushed} item(s) could not be written ({source}); \
         they are still buffered, call close again once the database recovers"
    )]
    CloseIncomplete {
        /// Items still in memory.
        unflushed: usize,
        /// How long close tried.
        waited: Duration,
        /// The last Db failure.
        #[source]
        source: DbError,
    },
    /// The flusher thread could not be started; the storage accepts nothing.
    #[error("could not start the flusher thread: {0}; the system is out of threads or memory")]
    FlusherUnavailable(String),
}

impl From<CancelReason> for Error {
    fn from(reason: CancelReason) -> Self {
        match reason {
            CancelReason::Cancelled => Error::Cancelled,
            CancelReason::DeadlineExceeded => Error::DeadlineExceeded,
        }
    }
}
