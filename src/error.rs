//! The error types: [`Error`] (why a [`Storage`](crate::Storage) call failed), [`DbError`]
//! (why a [`Db`](crate::Db) call failed) and [`PushBatchError`] (a batch that stored a prefix).

use std::error::Error as StdError;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::db::file::FileDbError;
use crate::token::CancelReason;

/// Why a [`Storage`](crate::Storage) call failed.
///
/// A failed `push` stored nothing and a failed `pop` took nothing. Messages say what happened
/// and what the caller can do, so `{e}` alone is enough to act on. Each cause appears once in
/// the chain of [`source`](std::error::Error::source)s: [`Error::Db`] *is* its [`DbError`]
/// (same message, same source); the errors that report the storage's own state
/// ([`CloseIncomplete`](Error::CloseIncomplete), [`NotYetDurable`](Error::NotYetDurable))
/// say so at the top and give the database's failure as their source.
///
/// `From<std::io::Error>` makes `?` work on I/O inside functions that return this error (an
/// [`Error::Db`] holding a [`DbError::Io`]).
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
    /// The storage was closed; open a new one to continue. Items `close` wrote are in the Db;
    /// after [`Error::CloseIncomplete`] some are still only in memory, and calling `close`
    /// again retries them.
    #[error("storage is closed; open a new storage to continue")]
    Closed,
    /// The database failed (or refused) and the storage cannot do what was asked. The message
    /// and the source are the [`DbError`]'s own (it names the file or server, the operation,
    /// the cause and the fix), so this variant adds no words of its own.
    ///
    /// For `open`: the Db could not be opened (the error says why: a directory, a missing
    /// directory, a foreign file, permission, ...). For `push`: the Db has been failing long
    /// enough that the storage cannot keep a new item within the window
    /// (`max_unflushed_age`), so it refuses it rather than accept it and risk it. For `flush`:
    /// the write failed; its items stay buffered and the flusher retries them.
    #[error(transparent)]
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
        "close gave up after {waited:?} because the database kept failing: {unflushed} item(s) \
         are still only in memory; call close again once the database recovers"
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
    /// A [`push_batch`](crate::Storage::push_batch) holds more items or bytes than the storage
    /// could ever hold at once (`max_buffered_items` / `max_buffered_bytes`); nothing was
    /// stored.
    #[error(
        "batch of {items} item(s) and {bytes} bytes exceeds the storage's capacity of {max_items} \
         item(s) and {max_bytes} bytes; nothing was stored, split it into smaller batches"
    )]
    BatchTooLarge {
        /// Items in the batch.
        items: usize,
        /// Bytes in the batch.
        bytes: usize,
        /// The storage's `max_buffered_items`.
        max_items: usize,
        /// The storage's `max_buffered_bytes`.
        max_bytes: usize,
    },
    /// Item number `index` (from 0) of a [`push_batch`](crate::Storage::push_batch) is larger
    /// than `max_item_len`; nothing of the batch was stored.
    #[error(
        "item {index} of the batch has {len} bytes, over the limit of {max} bytes; nothing was \
         stored, split or drop that item"
    )]
    BatchItemTooLarge {
        /// Position of the item in the batch, from 0.
        index: usize,
        /// The item's length.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// [`push_durable`](crate::Storage::push_durable) accepted the item but stopped waiting
    /// before it was confirmed in the Db, for the reason `why`. The item is **kept**, like an
    /// item of a plain `push` that returned `Ok`: buffered or being written, it reaches the Db
    /// within the window (`max_unflushed_age`), or when `close` drains it. Call
    /// [`flush`](crate::Storage::flush) to wait for it again; do not push it a second time
    /// unless a duplicate is acceptable.
    #[error(
        "push_durable stopped waiting because {why} (after the item was accepted): the item \
         is kept and reaches the database within the window (max_unflushed_age) like any \
         pushed item; call flush to wait for it, do not push it again"
    )]
    NotYetDurable {
        /// Why the call stopped waiting.
        why: Unconfirmed,
        /// The Db's error, when a write holding the item failed.
        #[source]
        source: Option<DbError>,
    },
    /// The Db refused the item of a [`push_durable`](crate::Storage::push_durable) for good
    /// (a poison item): it is not stored, and went to the dead-letter hook (or
    /// [`take_dead_letters`](crate::Storage::take_dead_letters)) like any poison item.
    ///
    /// The message starts with the Db's refusal (a [`DbError`] that
    /// [`is_permanent`](DbError::is_permanent), which has no source of its own), so it has no
    /// separate source.
    #[error("{0}; the item was set aside as a dead letter")]
    DeadLettered(DbError),
    /// A [`Lease::ack`](crate::Lease::ack) came after the lease's deadline (or the Db no longer
    /// held the lease): the item went back to the storage and may be delivered again, or
    /// already was. The ack removed nothing.
    #[error(
        "the lease expired before its ack: the item went back to the storage and may be \
         delivered again; make the work idempotent, ack sooner, or raise lease_ttl"
    )]
    LeaseExpired,
    /// The flusher thread could not be started, so [`StorageBuilder::build`](
    /// crate::StorageBuilder::build) built no storage; the source is the OS's error.
    #[error("could not start the flusher thread; free threads or memory, then build again")]
    FlusherUnavailable(#[source] Arc<std::io::Error>),
}

/// Why [`push_durable`](crate::Storage::push_durable) stopped waiting for an item it had
/// already accepted ([`Error::NotYetDurable`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unconfirmed {
    /// The caller's token was cancelled.
    Cancelled,
    /// The caller's token passed its deadline.
    DeadlineExceeded,
    /// The storage was closed; `close` writes the item (unless it reports
    /// [`Error::CloseIncomplete`], when the item is still in memory).
    Closed,
    /// A Db write holding the item failed; the flusher retries it with backoff.
    DbFailed,
}

impl std::fmt::Display for Unconfirmed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Unconfirmed::Cancelled => "its token was cancelled",
            Unconfirmed::DeadlineExceeded => "its token's deadline passed",
            Unconfirmed::Closed => "the storage was closed",
            Unconfirmed::DbFailed => "a database write holding it failed",
        })
    }
}

/// Why [`try_push`](crate::Storage::try_push) did not store its item; either way the item is
/// handed back. Modelled on crossbeam's `TrySendError`.
///
/// The message of [`Failed`](TryPushError::Failed) is its `error`'s message (the reason)
/// followed by what became of the item, and its [`source`](std::error::Error::source) is that
/// error's source, so the reason is at the top and each cause appears once in the chain.
#[derive(Clone)]
#[non_exhaustive]
pub enum TryPushError {
    /// The buffer has no room now; the item is handed back. Retry later, or call
    /// [`push`](crate::Storage::push) to wait for room.
    Full(Vec<u8>),
    /// The push failed for a reason `push` also gives ([`Error::Closed`],
    /// [`Error::ItemTooLarge`], [`Error::Db`]); the item is handed back.
    Failed {
        /// The item, as it was given.
        item: Vec<u8>,
        /// Why.
        error: Error,
    },
}

// Written by hand rather than with thiserror: `Failed` shows its error's message at the top
// and continues the chain with that error's source, a form thiserror has no attribute for
// (`transparent` cannot add words, `#[source]` would show the reason twice).
impl std::fmt::Display for TryPushError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TryPushError::Full(_) => f.write_str(
                "the buffer is full; the item is handed back, retry later or call push to wait \
                 for room",
            ),
            TryPushError::Failed { error, .. } => {
                write!(
                    f,
                    "{error} (try_push stored nothing and handed the item back)"
                )
            }
        }
    }
}

impl StdError for TryPushError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            TryPushError::Full(_) => None,
            TryPushError::Failed { error, .. } => error.source(),
        }
    }
}

impl TryPushError {
    /// The item, handed back.
    pub fn into_inner(self) -> Vec<u8> {
        match self {
            TryPushError::Full(item) | TryPushError::Failed { item, .. } => item,
        }
    }

    /// Whether the push failed only because the buffer was full.
    pub fn is_full(&self) -> bool {
        matches!(self, TryPushError::Full(_))
    }
}

impl std::fmt::Debug for TryPushError {
    /// Shows the item's length, not its bytes (items may be large).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TryPushError::Full(item) => write!(f, "Full({} bytes)", item.len()),
            TryPushError::Failed { item, error } => f
                .debug_struct("Failed")
                .field("item_len", &item.len())
                .field("error", error)
                .finish(),
        }
    }
}

impl From<std::io::Error> for Error {
    /// An [`Error::Db`] holding a [`DbError::Io`] with no path, so `?` works on I/O in a
    /// function that returns this error.
    fn from(err: std::io::Error) -> Self {
        Error::Db(DbError::from(err))
    }
}

impl From<CancelReason> for Error {
    fn from(reason: CancelReason) -> Self {
        match reason {
            CancelReason::Cancelled => Error::Cancelled,
            CancelReason::DeadlineExceeded => Error::DeadlineExceeded,
        }
    }
}

/// Why a [`Db`](crate::Db) call failed.
///
/// Cheap to clone (sources are shared), so the storage can report one Db failure to every
/// caller it concerns. [`is_permanent`](DbError::is_permanent) tells whether retrying the same
/// call can ever help.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// An I/O operation failed. `op` says what was being done ("open", "write", "sync", ...),
    /// `path` names the file when there is one, and the message gives advice that fits the
    /// error's kind (not found, permission, is a directory, disk full, ...).
    #[error("{}", io_message(op, path.as_deref(), source))]
    Io {
        /// What was being done: "open", "read", "write", "sync", "truncate", "lock", ...
        op: &'static str,
        /// The file, when the operation had one.
        path: Option<PathBuf>,
        /// The operating system's error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// A [`FileDb`](crate::FileDb) found its file damaged, foreign, or of a newer format;
    /// [`FileDbError`] says which, naming the file.
    #[error(transparent)]
    File(#[from] FileDbError),
    /// An item is longer than the Db accepts. Permanent: the item can never be stored there.
    #[error(
        "item of {len} bytes exceeds the database limit of {max} bytes; split it or raise the limit"
    )]
    ItemTooLarge {
        /// The item's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The Db refused an item for good (a value the server rejects, a constraint it breaks).
    /// Permanent: retrying the same item cannot help.
    #[error("the database refused an item for good: {reason}; fix or drop the item")]
    Rejected {
        /// Why, in the backend's words.
        reason: String,
    },
    /// An ack or release named leases the Db does not hold: their deadline passed (so the
    /// items went back to the stack and may have been delivered again), or they were already
    /// acked or released. The other leases of the call were handled. Permanent: retrying
    /// cannot bring a lease back.
    #[error(
        "{count} lease(s) had expired or were already acked or released; their items may be \
         delivered again, so make the work idempotent or lease with a longer ttl"
    )]
    LeaseExpired {
        /// How many of the call's ids were not held.
        count: usize,
    },
    /// The Db implementation panicked during a call; the storage caught the panic.
    #[error(
        "the database panicked ({0}); the storage kept its buffered items, retry the call once \
         the database is fixed"
    )]
    Panicked(String),
    /// Any other failure of the backend. The message is the wrapped error's own, with each of
    /// its causes after it (`the database failed: redis: connecting to ...: Connection
    /// refused`): a foreign error's chain is not known to follow lifostore's rule of one cause
    /// per link, so it is spelled out once here (a cause whose message is already shown is left
    /// out), and this variant has no separate source. The wrapped error itself is the field,
    /// for downcasting.
    #[error("the database failed: {}", Chain(&**.0))]
    Other(Arc<dyn StdError + Send + Sync>),
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

    /// An [`DbError::Io`] for operation `op` on the file at `path`.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, err: std::io::Error) -> Self {
        DbError::Io {
            op,
            path: Some(path.into()),
            source: Arc::new(err),
        }
    }

    /// Whether the failure is permanent: retrying the same call with the same items can never
    /// succeed ([`ItemTooLarge`](DbError::ItemTooLarge), [`Rejected`](DbError::Rejected)).
    /// Everything else (I/O, connections, damage a salvage can repair, panics) may pass, so
    /// the storage keeps such items and retries.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            DbError::ItemTooLarge { .. } | DbError::Rejected { .. } | DbError::LeaseExpired { .. }
        )
    }
}

impl From<std::io::Error> for DbError {
    fn from(err: std::io::Error) -> Self {
        DbError::Io {
            op: "I/O",
            path: None,
            source: Arc::new(err),
        }
    }
}

/// The message of [`DbError::Io`]: the operation, the path, and advice that fits the kind.
fn io_message(op: &str, path: Option<&Path>, err: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    let what = match path {
        Some(p) => format!("{op} {} failed", p.display()),
        None => format!("{op} failed"),
    };
    let advice = match err.kind() {
        K::NotFound => "it or its directory does not exist; create the directory or fix the path",
        K::PermissionDenied => "permission denied; give this process read and write access",
        K::IsADirectory => "it is a directory; pass the path of a file",
        K::NotADirectory => "a part of the path is not a directory; fix the path",
        K::StorageFull | K::QuotaExceeded => "the disk is full; free space, then retry",
        K::ReadOnlyFilesystem => "the file system is read-only; remount it or pick another path",
        K::FileTooLarge => "the file reached the file system's size limit; pop items or move it",
        K::Unsupported => {
            "the file system does not support an operation lifostore needs (file locks, \
             fdatasync); put the file on a local file system"
        }
        K::OutOfMemory => "the system is out of memory; free memory, then retry",
        K::InvalidInput => {
            "the operating system refused the operation on this path; pass the path of a \
             regular file on a local file system"
        }
        K::WouldBlock | K::Interrupted | K::TimedOut => "it was interrupted; retry",
        _ => "retry; if it keeps failing, check the disk (the kernel log names the device)",
    };
    format!("{what}: {advice}")
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Message(String);

/// Displays an error followed by each of its sources, `: `-separated, leaving out a source
/// whose message is already shown (some crates' errors print their source and return it too).
struct Chain<'a>(&'a (dyn StdError + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut text = self.0.to_string();
        let mut cause = self.0.source();
        while let Some(c) = cause {
            let line = c.to_string();
            if !text.contains(&line) {
                text.push_str(": ");
                text.push_str(&line);
            }
            cause = c.source();
        }
        f.write_str(&text)
    }
}

/// A batch push that stored only a prefix of its items.
///
/// `stored` items, counted from the *oldest* (the start of the slice), are durably in the Db;
/// the rest are not. Backends whose batches are atomic report `stored == 0` on failure. The
/// storage keeps the unstored suffix buffered and retries it, so an honest `stored` count is
/// what keeps a half-failed batch from being lost or written twice.
///
/// The message is the reason (`source`'s message) followed by how much was stored; the
/// [`source`](std::error::Error::source) is the reason's own source, so each cause appears
/// once in the chain.
#[derive(Debug, Clone)]
pub struct PushBatchError {
    /// How many items, from the oldest, were stored.
    pub stored: usize,
    /// Why the rest were not.
    pub source: DbError,
}

// By hand for the same reason as `TryPushError`: the reason at the top, its source next.
impl std::fmt::Display for PushBatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.stored {
            0 => write!(
                f,
                "{} (the batch push stored none of its items)",
                self.source
            ),
            n => write!(
                f,
                "{} (the batch push stored its {n} oldest item(s), not the rest)",
                self.source
            ),
        }
    }
}

impl StdError for PushBatchError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source.source()
    }
}
