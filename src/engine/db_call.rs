//! Db calls as the engine makes them: panics caught ([`call_db`]), and a batch write that
//! isolates poison items ([`write_isolating`]).
//!
//! An item the Db refuses for good ([`DbError::is_permanent`]) must not block the items behind
//! it. The writer isolates it by splitting the batch, stores everything else in order, and
//! hands the poison item on (to the dead-letter hook, or kept aside and counted in
//! [`Stats`](crate::Stats)). It is never retried forever and never silently dropped.
//!
//! A leaf: it imports nothing of the engine, and is called with the state's lock released.

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::db::Db;
use crate::error::{DbError, PushBatchError};

/// Runs a Db call, turning a panic into [`DbError::Panicked`] so no thread of ours dies of a
/// misbehaving backend.
pub(crate) fn call_db<T>(f: impl FnOnce() -> Result<T, DbError>) -> Result<T, DbError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| Err(panic_error(payload)))
}

/// The error a caught panic becomes: its message, when it has one.
fn panic_error(payload: Box<dyn std::any::Any + Send>) -> DbError {
    let msg = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_string());
    DbError::Panicked(msg)
}

/// What a write did to its batch (oldest first): the first `settled` items were stored or
/// found to be poison (`poisoned`, by index, with the Db's reason); the rest were not stored,
/// because of `error` (`None` when everything settled).
#[derive(Debug, Default)]
pub(crate) struct Written {
    pub(crate) settled: usize,
    pub(crate) poisoned: Vec<(usize, DbError)>,
    pub(crate) error: Option<DbError>,
    /// Db calls made.
    pub(crate) calls: u64,
}

impl Written {
    /// Items of the batch that reached the Db.
    pub(crate) fn stored(&self) -> usize {
        self.settled - self.poisoned.len()
    }
}

/// One `push_batch` call, a panic turned into a (transient) error.
fn push_batch(db: &dyn Db, items: &[&[u8]]) -> Result<(), PushBatchError> {
    catch_unwind(AssertUnwindSafe(|| db.push_batch(items))).unwrap_or_else(|payload| {
        Err(PushBatchError {
            stored: 0,
            source: panic_error(payload),
        })
    })
}

/// Writes `items` (oldest first) to `db`, isolating the items it refuses for good.
///
/// One call when nothing is refused. When a call fails permanently without storing anything,
/// a poison item is among the items it was given (the suspects): the next call tries the older
/// half of them. A half that stores leaves the rest as suspects; a half that fails becomes the
/// suspects. A single suspect that fails on its own is poison. About `log2(batch)` extra calls
/// per poison item; a Db that stores the prefix before the poison item needs just one. A transient
/// failure stops the write: what is not settled stays buffered and is retried with backoff.
/// Items land in push order throughout, so the stack order across memory and Db holds.
pub(crate) fn write_isolating(db: &dyn Db, items: &[&[u8]]) -> Written {
    let mut w = Written::default();
    // The first `suspects` unsettled items hold a poison item (`None`: nothing suspected).
    let mut suspects: Option<usize> = None;
    while w.settled < items.len() {
        let rest = &items[w.settled..];
        let n = match suspects {
            None => rest.len(),
            Some(s) => (s / 2).max(1),
        };
        w.calls += 1;
        match push_batch(db, &rest[..n]) {
            Ok(()) => {
                w.settled += n;
                suspects = suspects.map(|s| s - n);
            }
            Err(e) if !e.source.is_permanent() => {
                w.settled += e.stored.min(n);
                w.error = Some(e.source);
                break;
            }
            // A prefix stored: the poison item (if the Db is honest) is the next one.
            Err(e) if e.stored > 0 => {
                w.settled += e.stored.min(n);
                suspects = Some(1);
            }
            Err(e) if n == 1 => {
                w.poisoned.push((w.settled, e.source));
                w.settled += 1;
                suspects = None;
            }
            Err(_) => suspects = Some(n),
        }
    }
    w
}
