//! The watch thread of a storage over a shared Db that gives wake-ups ([`Db::watch`]): it
//! blocks in [`DbWatch::wait`] and turns each change into [`db_changed`], so a pop blocked on
//! an empty storage asks the Db again within milliseconds of another process's push, instead
//! of polling it.
//!
//! Why no wake-up is lost: [`db_changed`] moves the Db epoch and wakes every waiting taker
//! under the state lock. A taker decides to sleep under that lock too, after a Db pop whose
//! ticket names the epoch it started at; a change that lands while its Db call runs moves the
//! epoch past the ticket, so the "empty" answer does not hold it back (`DbView::pop_step`),
//! and one that lands after it finds the taker asleep and wakes it. A notification the Db
//! never sends (its sender died) is covered by the slow re-check, `shared_recheck`.
//!
//! [`Db::watch`]: crate::Db::watch

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::db::Db;
use crate::db::watch::{DbChange, DbWatch};
use crate::engine::core::Core;
use crate::sync::{JoinHandle, spawn};

/// Most lease deadlines of other processes the thread keeps; beyond them a lease's return is
/// found by the re-check.
const MAX_DUE: usize = 64;

/// FileDb returns a lease by its millisecond clock at the next call: ask just after it.
const DUE_SLACK: Duration = Duration::from_millis(2);

/// A running watch thread, and how to stop it.
pub(crate) struct Watcher {
    thread: JoinHandle<()>,
    interrupt: Box<dyn Fn() + Send + Sync>,
}

impl Watcher {
    /// Starts the watch thread if `db` gives wake-ups; `None` (the storage polls) if it gives
    /// none, or its watch or the thread cannot be set up.
    pub(crate) fn start(core: &Arc<Core>, db: &dyn Db) -> Option<Watcher> {
        let watch = db.watch().ok()??;
        let interrupt = watch.interrupter().ok()?;
        // Watched from before the storage's first Db call: a push committed after it reaches
        // the watch, one committed before it is found by that call.
        core.state.lock().set_watched(true);
        let thread_core = Arc::clone(core);
        match spawn("lifostore-watch".into(), move || run(thread_core, watch)) {
            Ok(thread) => Some(Watcher { thread, interrupt }),
            Err(_) => {
                core.state.lock().set_watched(false);
                None
            }
        }
    }

    /// Stops the thread, once the storage is closed (it checks that after each wait).
    pub(crate) fn stop(self) {
        (self.interrupt)();
        let _ = self.thread.join();
    }
}

/// The Db may have gained items that another handle stored: every waiting taker re-checks.
pub(crate) fn db_changed(core: &Core) {
    let mut state = core.state.lock();
    let whom = state.db_changed();
    core.wake_up(&mut state, whom);
}

/// The watch thread's loop: until the storage closes (its `close` interrupts the wait) or the
/// watch breaks (the storage then polls the Db every `shared_poll`).
pub(crate) fn run(core: Arc<Core>, mut watch: Box<dyn DbWatch>) {
    let mut due = BTreeSet::new();
    loop {
        if core.state.lock().is_closed() {
            return;
        }
        let change = match watch.wait(due.first().copied()) {
            Ok(change) => change,
            Err(_) => {
                core.state.lock().set_watched(false);
                db_changed(&core); // the waiting takers now poll
                return;
            }
        };
        let now = Instant::now();
        let came_due = take_due(&mut due, now);
        remember_due(&mut due, change, now);
        if change.stored || came_due {
            db_changed(&core);
        }
    }
}

/// Removes the deadlines that passed; whether any did.
fn take_due(due: &mut BTreeSet<Instant>, now: Instant) -> bool {
    let later = due.split_off(&now);
    let passed = !due.is_empty();
    *due = later;
    passed
}

/// Keeps the lease deadline `change` names (as an instant of this process's clock).
fn remember_due(due: &mut BTreeSet<Instant>, change: DbChange, now: Instant) {
    let Some(at) = change.lease_due else { return };
    let left = at.duration_since(SystemTime::now()).unwrap_or_default();
    due.insert(now + left + DUE_SLACK);
    if due.len() > MAX_DUE {
        due.pop_last();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_come_due_in_order_and_stay_bounded() {
        let now = Instant::now();
        let mut due = BTreeSet::new();
        for s in (1..=100).rev() {
            let change = DbChange::lease_due(SystemTime::now() + Duration::from_secs(s));
            remember_due(&mut due, change, now);
        }
        assert_eq!(due.len(), MAX_DUE, "the latest ones are dropped");
        assert!(!take_due(&mut due, now));
        assert!(take_due(&mut due, now + Duration::from_millis(2500)));
        assert_eq!(due.len(), MAX_DUE - 2);
        remember_due(&mut due, DbChange::stored(), now);
        assert_eq!(due.len(), MAX_DUE - 2, "no deadline in a plain store");
    }
}
