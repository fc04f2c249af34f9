//! Poison items: an item the Db refuses for good ([`DbError::is_permanent`]) must not block the
//! items behind it. The writer isolates it by splitting the batch, stores everything else in
//! order, and hands the poison item to the dead-letter hook (or sets it aside, counted in
//! [`Stats`](crate::Stats)). It is never retried forever and never silently dropped.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use super::writer::panic_error;
use crate::db::{Db, DbError, PushBatchError};

/// An item the Db refused for good, with the reason. Handed to the hook set with
/// [`StorageBuilder::dead_letter`](crate::StorageBuilder::dead_letter), or kept aside for
/// [`Storage::take_dead_letters`](crate::Storage::take_dead_letters).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The item, as it was pushed.
    pub item: Vec<u8>,
    /// Why the Db refused it (a permanent error: [`DbError::is_permanent`] is `true`).
    pub error: DbError,
}

/// The dead-letter hook: called once per poison item, on the thread that wrote its batch.
pub(crate) type DeadLetterHook = Arc<dyn Fn(DeadLetter) + Send + Sync>;

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
