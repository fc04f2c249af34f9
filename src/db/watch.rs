//! [`DbWatch`]: how a shared Db tells a storage that another handle changed it, so a `pop`
//! blocked on an empty storage wakes within milliseconds instead of polling; and
//! [`DbChange`], what one wake-up says.

use std::time::{Instant, SystemTime};

use crate::error::DbError;

/// What a [`DbWatch`] learned in one [`wait`](DbWatch::wait).
///
/// ```
/// use lifostore::DbChange;
///
/// let nothing = DbChange::default();
/// assert!(!nothing.stored && nothing.lease_due.is_none());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DbChange {
    /// Some handle stored items, or put leased items back (a push, a release): a pop that
    /// found the Db empty should ask again.
    pub stored: bool,
    /// Some handle took a lease that comes back by itself at this instant (wall clock) unless
    /// it is acked first: a pop that finds the Db empty then should ask again at that time.
    /// The latest such deadline when several arrived together.
    pub lease_due: Option<SystemTime>,
}

impl DbChange {
    /// A change that says items were stored.
    pub fn stored() -> Self {
        DbChange {
            stored: true,
            lease_due: None,
        }
    }

    /// A change that says a lease comes back by itself at `at`.
    pub fn lease_due(at: SystemTime) -> Self {
        DbChange {
            stored: false,
            lease_due: Some(at),
        }
    }
}

/// Wake-ups from a shared [`Db`](crate::Db), from [`Db::watch`](crate::Db::watch): one
/// subscription, owned by one storage, whose own thread blocks in [`wait`](DbWatch::wait).
///
/// A watch is a hint, never the only way an item is found: a notification may be lost (a
/// notifier killed between its commit and its send, a dropped connection), so a storage
/// with a watch still re-checks the Db every
/// [`shared_recheck_interval`](crate::StorageBuilder::shared_recheck_interval) while a pop
/// waits; and a `wait` that fails makes the storage fall back to polling every
/// [`shared_poll_interval`](crate::StorageBuilder::shared_poll_interval).
///
/// The backends: `FileDb` (Unix datagram sockets registered in a directory beside the file),
/// `PostgresDb` (`LISTEN`/`NOTIFY`, the `NOTIFY` in the push's transaction) and `RedisDb`
/// (pub/sub), each in its own docs.
pub trait DbWatch: Send {
    /// Blocks until a change arrives, `until` passes, or the function from
    /// [`interrupter`](DbWatch::interrupter) is called; returns what arrived (several changes
    /// that arrived together in one value; nothing for a timeout or an interrupt). `Err`: the
    /// watch is broken for good (the storage then polls).
    fn wait(&mut self, until: Option<Instant>) -> Result<DbChange, DbError>;

    /// A function that makes a [`wait`](DbWatch::wait) under way (or the next one) return at
    /// once, from any thread: how a storage stops its watch thread when it closes.
    fn interrupter(&self) -> Result<Box<dyn Fn() + Send + Sync>, DbError>;
}
