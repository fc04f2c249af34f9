//! Fault injection for testing code built on lifostore: wrap any [`Db`](crate::Db) to make it fail,
//! fail batches half way, stall, panic, or go down, and to record when items arrived.
//!
//! * [`FaultyDb`] wraps a Db and injects faults, deterministically from a seed (a xorshift64
//!   sequence, no `rand`), configured builder-style; [`FaultyDb::set_down`] makes it fail
//!   every call for outage tests; [`FaultyDb::counts`] tells what it injected.
//! * [`StampedDb`] wraps a Db and records the instant each item arrived in it, to measure how
//!   long acknowledged items waited in memory (the window of promise 3).
//! * [`quiet_injected_panics`] keeps the panics [`FaultyDb`] injects out of test output.
//! * [`registrations`] and [`handles`] look inside a [`CancelToken`], for tests that check a
//!   blocked call registered on its token and left nothing behind.
//!
//! This module exists only with the cargo feature `testing`.
//!
//! # What a failing or panicking Db does to a [`Storage`](crate::Storage)
//! * A failed write keeps its items buffered; the flusher retries with exponential backoff
//!   (capped at min(window / 8, 1 s)). A batch that stored a prefix (reported honestly in
//!   [`PushBatchError::stored`](crate::PushBatchError::stored)) keeps exactly the unstored suffix: nothing lost, nothing
//!   written twice. A `flush` whose write fails returns [`Error::Db`](crate::Error::Db).
//! * Once the Db has been failing so long that a held item has outlived the window, `push`
//!   refuses new items with [`Error::Db`](crate::Error::Db) (promise 6) until a write succeeds.
//! * A failed pop takes nothing and returns [`Error::Db`](crate::Error::Db) to its caller.
//! * A panic inside a Db call is caught by the storage (`catch_unwind`) and becomes
//!   [`DbError::Panicked`](crate::DbError::Panicked): the flusher thread survives, the caller whose call panicked (a
//!   `pop`, `try_pop` or `flush`) gets `Error::Db(DbError::Panicked(..))`, and a panicking write
//!   counts as storing nothing: its items stay buffered and are written again. A Db that
//!   stored items and *then* panicked may therefore hold them twice; one that panics before
//!   storing (as [`FaultyDb`] does) loses and duplicates nothing.
//!
//! ```
//! use lifostore::testing::{FaultyDb, quiet_injected_panics};
//! use lifostore::{CancelToken, DbError, Error, MemDb, Storage};
//!
//! quiet_injected_panics();
//! // The first Db call (the flush's batch write) panics; the storage reports it and keeps the item.
//! let storage = Storage::new(FaultyDb::new(MemDb::new(), 1).panic_on_call(1)).unwrap();
//! let token = CancelToken::new();
//! storage.push(&token, "kept").unwrap();
//! assert!(matches!(storage.flush(&token), Err(Error::Db(DbError::Panicked(_)))));
//! storage.flush(&token).unwrap(); // the retry stores it
//! assert_eq!(storage.db().inner().snapshot(), vec![b"kept".to_vec()]);
//! ```

mod faulty_db;
mod stamped_db;

use std::sync::Once;

use crate::token::CancelToken;

pub use faulty_db::{FaultCounts, FaultyDb};
pub use stamped_db::StampedDb;

/// How many blocked calls are registered on `token` itself right now (not on its ancestors).
///
/// A call registers when it first has to wait and removes its registration on every exit, so
/// a test can wait until a call is blocked (`registrations(&t) > 0`) and check that none leaked
/// (`registrations(&t) == 0` after the calls returned).
///
/// ```
/// let token = lifostore::CancelToken::new();
/// assert_eq!(lifostore::testing::registrations(&token), 0);
/// ```
pub fn registrations(token: &CancelToken) -> usize {
    token.registrations()
}

/// How many handles (clones and children) keep `token` alive, itself included.
///
/// ```
/// let root = lifostore::CancelToken::new();
/// let child = root.child();
/// assert_eq!(lifostore::testing::handles(&root), 2);
/// drop(child);
/// assert_eq!(lifostore::testing::handles(&root), 1);
/// ```
pub fn handles(token: &CancelToken) -> usize {
    token.handles()
}

/// The message of every panic a [`FaultyDb`] injects (and of the [`DbError::Panicked`](crate::DbError::Panicked) the
/// storage turns it into).
///
/// ```
/// assert!(lifostore::testing::INJECTED_PANIC.contains("injected panic"));
/// ```
pub const INJECTED_PANIC: &str = "FaultyDb: injected panic";

/// The message of every failure a [`FaultyDb`] injects.
///
/// ```
/// use lifostore::testing::{FaultyDb, INJECTED_FAILURE};
/// use lifostore::{Db, MemDb};
///
/// let db = FaultyDb::new(MemDb::new(), 1);
/// db.set_down(true);
/// let err = db.push(b"x").unwrap_err(); // a DbError::Other: its message names the failure
/// assert!(err.to_string().contains(INJECTED_FAILURE));
/// ```
pub const INJECTED_FAILURE: &str = "FaultyDb: injected failure";

/// Installs (once per process) a panic hook that keeps [`FaultyDb`]'s injected panics out of
/// the test output; every other panic goes to the hook that was installed before.
///
/// Call it at the start of a test that injects panics. Panic hooks are process-wide, so the
/// hook stays for the rest of the test binary; it only hides panics whose message contains
/// [`INJECTED_PANIC`].
///
/// ```
/// use lifostore::testing::{FaultyDb, quiet_injected_panics};
/// use lifostore::{Db, MemDb};
///
/// quiet_injected_panics();
/// let db = FaultyDb::new(MemDb::new(), 1).panic_on_call(1);
/// let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| db.pop()));
/// assert!(caught.is_err()); // panicked, silently
/// ```
pub fn quiet_injected_panics() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let msg = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
            if !msg.is_some_and(|m| m.contains(INJECTED_PANIC)) {
                previous(info);
            }
        }));
    });
}
