//! A memory lease that outlasts the window: with a `lease_ttl` over a Db with native leases, an
//! item leased from memory is written to the Db, still leased, when the window comes due for it
//! (its push stamp plus the flush age, as for a buffered item), and its lease becomes a native
//! Db lease for the rest of its ttl. The window and the ttl then both hold: the item is durable
//! in time, and hidden until the lease ends. Where a lease stands is described at
//! [`LeaseTable`](crate::engine::lease_table::LeaseTable).
//!
//! The write ([`DbLeases::push_leased`](crate::DbLeases::push_leased)) runs inside the writer
//! role with the lock released, the item marked as being written: its expiry waits, and an ack
//! or a release by its guard waits for the landing (`Signal::Landed`), then finds either the
//! native lease (and ends it in the Db) or, if the write failed, the item still here.
//!
//! A failed write is retried with the same item: over Redis or PostgreSQL a call whose reply
//! was lost may have landed, and the retry then gets the ids it stored instead of a second
//! copy (`push_leased`'s token, `src/db/server/client.rs`). Left over: a guard that ends the
//! lease in memory before the retry leaves such a landed copy leased in the Db, nobody
//! holding it; it comes back at its deadline.

use std::time::{Duration, Instant};

use crate::db::LeaseId;
use crate::engine::core::{Core, Signal};
use crate::engine::db_call::call_db;
use crate::engine::ops::lease_return::db_lease_ttl;
use crate::engine::ops::write::write_batch_then;
use crate::engine::state::State;
use crate::error::DbError;
use crate::sync::MutexGuard;

/// Writes every memory-leased item due for the Db (and not past its deadline) to the Db with a
/// native lease, one Db call each: the flusher's duty, and `Storage::write_leased_items_now`'s.
/// Returns at once over a Db without native leases (no item is ever due then). Also returns
/// whether it wrote any.
pub(crate) fn write_due_leases<'a>(
    core: &'a Core,
    mut state: MutexGuard<'a, State>,
) -> (MutexGuard<'a, State>, bool) {
    if core.db.leases().is_none() {
        return (state, false);
    }
    let mut wrote = false;
    loop {
        // The writer role is exclusive: wait for the batch in flight to land. The claim below
        // is made in the same critical section as this check, so `write_batch_then` finds the
        // role free.
        while state.is_writing() {
            state = core.sleep(Signal::Landed, state, None);
        }
        let now = Instant::now();
        let Some((key, data, deadline)) = state.claim_lease_to_db(now) else {
            return (state, wrote);
        };
        wrote = true;
        state = write_one(
            core,
            state,
            key,
            &data,
            deadline.saturating_duration_since(now),
        );
    }
}

/// Writes the claimed item `key` to the Db leased for its `remaining` ttl (plus the margin every
/// native lease gets, [`db_lease_ttl`]) and settles the lease: a native one from now on, or
/// still here, due for the Db again after a backoff (never again if the Db refused the item for
/// good: released or expired, it is written like any buffered item, and set aside there).
fn write_one<'a>(
    core: &'a Core,
    state: MutexGuard<'a, State>,
    key: u64,
    data: &[u8],
    remaining: Duration,
) -> MutexGuard<'a, State> {
    let ttl = db_lease_ttl(remaining);
    let began = Instant::now();
    // `n = 0`: the writer role alone; the Db call runs inside it, with the lock released.
    let (mut state, _, stored, _) = write_batch_then(core, state, 0, |_| {
        call_db(|| match core.db.leases() {
            Some(db) => db.push_leased(&[data], ttl),
            None => Err(DbError::msg("the database stopped offering leases")),
        })
    });
    let outcome = match stored {
        // The Db's deadline is at least `ttl` after `began`: its call began later.
        Ok(ids) => single(ids).map(|id| (id, began + ttl)).ok_or(None),
        Err(e) if e.is_permanent() => Err(None),
        Err(_) => Err(Some(Instant::now() + retry_delay(core))),
    };
    // Still under the lock taken by the landing: a guard woken by it (`Signal::Landed`) sees
    // the lease settled, never the write still marked in flight with nobody to settle it.
    let whom = state.settle_lease_to_db(key, outcome);
    core.wake_up(&mut state, whom);
    state
}

/// The one id a one-item `push_leased` answered with (`None` for a malformed answer: the item
/// then stays here, never to be written leased; a release or an expiry writes it as usual).
fn single(ids: Vec<LeaseId>) -> Option<LeaseId> {
    match ids.as_slice() {
        [id] => Some(*id),
        _ => None,
    }
}

/// How long a failed write of a leased item waits before it is tried again: a thirty-second of
/// the window, between 1 ms and 1 s, so a Db outage costs a few calls per window.
fn retry_delay(core: &Core) -> Duration {
    (core.cfg.max_unflushed_age / 32).clamp(Duration::from_millis(1), Duration::from_secs(1))
}
