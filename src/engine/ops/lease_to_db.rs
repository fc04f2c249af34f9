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
//! A failed write is retried with the same items, alone: over Redis or PostgreSQL a call whose reply
//! was lost may have landed, and the retry then gets the ids it stored instead of a second
//! copy (`push_leased`'s token, `src/db/server/client.rs`). Left over: a guard that ends the
//! lease in memory before the retry leaves such a landed copy leased in the Db, nobody
//! holding it; it comes back at its deadline.

use std::time::{Duration, Instant};

use crate::engine::core::{Core, Signal};
use crate::engine::db_call::call_db;
use crate::engine::lease_table::Claimed;
use crate::engine::ops::lease_return::db_lease_ttl;
use crate::engine::ops::write::write_batch_then;
use crate::engine::state::State;
use crate::error::DbError;
use crate::sync::MutexGuard;

/// Writes every memory-leased item due for the Db (and not past its deadline) to the Db with a
/// native lease, up to a batch (`max_batch`) a Db call: the flusher's duty, and
/// `Storage::write_leased_items_now`'s. Returns at once over a Db without native leases (no
/// item is ever due then). Also returns whether it let the lock go (it wrote, or waited for a
/// write in flight): the flusher then looks at everything again, since what was signalled to
/// it meanwhile found it not waiting.
pub(crate) fn write_due_leases<'a>(
    core: &'a Core,
    mut state: MutexGuard<'a, State>,
) -> (MutexGuard<'a, State>, bool) {
    if core.db.leases().is_none() {
        return (state, false);
    }
    let mut released = false;
    loop {
        // The writer role is exclusive: wait for the batch in flight to land. The claim below
        // is made in the same critical section as this check, so `write_batch_then` finds the
        // role free.
        while state.is_writing() {
            released = true;
            state = core.sleep(Signal::Landed, state, None);
        }
        let claimed = state.claim_leases_to_db(Instant::now(), core.cfg.max_batch.max(1));
        if claimed.is_empty() {
            return (state, released);
        }
        released = true;
        state = write_claimed(core, state, &claimed);
    }
}

/// Writes the claimed items to the Db leased, in one call, and settles their leases: native
/// ones from now on, or still here, due for the Db again after a backoff. The Db lease lasts
/// the longest remaining ttl among them (plus the margin every native lease gets,
/// [`db_lease_ttl`]): the storage ends each lease at its own deadline, and the Db's later one
/// only matters if the process dies (the item then comes back at most a window later than its
/// own deadline: items due together were leased within one window of each other). A batch the
/// Db refuses for good is written again one item at a time, so one item it cannot take does not
/// keep the others out of the Db (that one stays a memory lease: released or expired, it is
/// written like any buffered item, and set aside there).
fn write_claimed<'a>(
    core: &'a Core,
    state: MutexGuard<'a, State>,
    claimed: &[Claimed],
) -> MutexGuard<'a, State> {
    let now = Instant::now();
    let remaining = claimed
        .iter()
        .map(|c| c.deadline.saturating_duration_since(now));
    let ttl = db_lease_ttl(remaining.max().unwrap_or_default());
    let items: Vec<&[u8]> = claimed.iter().map(|c| c.data.as_slice()).collect();
    let began = Instant::now();
    // `n = 0`: the writer role alone; the Db call runs inside it, with the lock released.
    let (mut state, _, stored, _) = write_batch_then(core, state, 0, |_| {
        call_db(|| match core.db.leases() {
            Some(db) => db.push_leased(&items, ttl),
            None => Err(DbError::msg("the database stopped offering leases")),
        })
    });
    let outcomes: Vec<_> = match stored {
        // The Db's deadline is at least `ttl` after `began`: its call began later.
        Ok(ids) if ids.len() == claimed.len() => {
            ids.into_iter().map(|id| Ok((id, began + ttl))).collect()
        }
        // A malformed answer: the items stay here, never to be written leased.
        Ok(_) => vec![Err(None); claimed.len()],
        Err(e) if e.is_permanent() && claimed.len() > 1 => {
            // Still claimed (`Writing`): each is written alone, in the same writer role order.
            return claimed.iter().fold(state, |state, one| {
                write_claimed(core, state, std::slice::from_ref(one))
            });
        }
        Err(e) if e.is_permanent() => vec![Err(None)],
        Err(_) => {
            // The same items, alone, at the retry: a call whose reply was lost is recognised
            // by its items (`push_leased`'s token), so a different batch would store again.
            state.retry_leases_to_db_later(claimed.iter().map(|c| c.key).collect());
            vec![Err(Some(Instant::now() + retry_delay(core))); claimed.len()]
        }
    };
    // Still under the lock taken by the landing: a guard woken by it (`Signal::Landed`) sees
    // its lease settled, never the write still marked in flight with nobody to settle it.
    for (c, outcome) in claimed.iter().zip(outcomes) {
        let whom = state.settle_lease_to_db(c.key, outcome);
        core.wake_up(&mut state, whom);
    }
    state
}

/// How long a failed write of a leased item waits before it is tried again: a thirty-second of
/// the window, between 1 ms and 1 s, so a Db outage costs a few calls per window.
fn retry_delay(core: &Core) -> Duration {
    (core.cfg.max_unflushed_age / 32).clamp(Duration::from_millis(1), Duration::from_secs(1))
}
