//! The one walk that takes items out of the storage: [`take`], serving `pop`, `try_pop`,
//! `pop_batch`, `try_pop_batch`, `pop_lease` and `try_pop_lease`. What is taken (an item, up
//! to `max` items, a lease) is a [`Take`]; whether the call waits for a push is a
//! [`Wait`]; what the caller answers with it is the `done` function each form passes.
//!
//! Newest first across memory and Db is: the top of the buffer, then the batch in flight, then
//! the Db. So the walk takes from memory when memory has items; when the newest items are in
//! flight it waits for their batch to land (taking one from memory would let the Db keep a
//! copy; skipping them would break LIFO); and only when memory holds nothing newer does it
//! ask the Db, with the lock released during the call.
//!
//! A batch comes from one tier: memory, or one Db call. It is never topped up from the Db:
//! that call runs with the lock released, and a write landing meanwhile would put items
//! pushed after the memory part on top of the Db, so the batch would no longer be newest
//! first. The rest comes with the next call.

use std::sync::Arc;
use std::time::Instant;

use crate::engine::core::{Core, Signal};
use crate::engine::db_call::call_db;
use crate::engine::ops::lease_return::return_due;
use crate::engine::state::State;
use crate::engine::state::db_view::{DbPopStep, DbPopTicket};
use crate::engine::waiter::{Wait, Waiter};
use crate::engine::wakeups::Wakeups;
use crate::error::{DbError, Error};
use crate::sync::{MutexGuard, SPIN_ROUNDS, backoff};

/// What a taking call takes, and from where: memory (lock held) or one Db call (lock
/// released).
pub(crate) trait Take {
    /// What one Db call returns.
    type Raw;
    /// What the caller gets.
    type Out;
    /// Whether what the Db gives counts as pops (or as leases, which the lease table counts).
    const POPS: bool;
    /// Takes from the top of the buffer; `None` when it is empty.
    fn take_from_memory(&self, core: &Arc<Core>, state: &mut State)
    -> Option<(Self::Out, Wakeups)>;
    /// One Db call.
    fn take_from_db(&self, core: &Core) -> Result<Self::Raw, DbError>;
    /// How many items the Db's answer holds.
    fn taken(raw: &Self::Raw) -> usize;
    /// Turns the Db's answer into what the caller gets (`None`: the Db had nothing), lock
    /// held again.
    fn settle(
        &self,
        core: &Arc<Core>,
        state: &mut State,
        raw: Self::Raw,
    ) -> (Option<Self::Out>, Wakeups);
}

/// `pop` and `try_pop`: the newest item leaves the storage for good.
pub(crate) struct One;

impl Take for One {
    type Raw = Option<Vec<u8>>;
    type Out = Vec<u8>;
    const POPS: bool = true;

    #[inline]
    fn take_from_memory(&self, _: &Arc<Core>, state: &mut State) -> Option<(Vec<u8>, Wakeups)> {
        state.take_newest()
    }

    fn take_from_db(&self, core: &Core) -> Result<Option<Vec<u8>>, DbError> {
        core.db.pop()
    }

    fn taken(raw: &Option<Vec<u8>>) -> usize {
        usize::from(raw.is_some())
    }

    fn settle(&self, _: &Arc<Core>, _: &mut State, raw: Self::Raw) -> (Option<Vec<u8>>, Wakeups) {
        (raw, Wakeups::NONE)
    }
}

/// `pop_batch` and `try_pop_batch`: up to `max` of the newest items (`max > 0`), newest first.
pub(crate) struct Many(pub(crate) usize);

impl Take for Many {
    type Raw = Vec<Vec<u8>>;
    type Out = Vec<Vec<u8>>;
    const POPS: bool = true;

    fn take_from_memory(&self, _: &Arc<Core>, state: &mut State) -> Option<(Self::Out, Wakeups)> {
        state.take_newest_batch(self.0)
    }

    fn take_from_db(&self, core: &Core) -> Result<Vec<Vec<u8>>, DbError> {
        core.db.pop_batch(self.0)
    }

    fn taken(raw: &Vec<Vec<u8>>) -> usize {
        raw.len()
    }

    fn settle(&self, _: &Arc<Core>, _: &mut State, raw: Self::Raw) -> (Option<Self::Out>, Wakeups) {
        ((!raw.is_empty()).then_some(raw), Wakeups::NONE)
    }
}

/// Takes what `how` says, as `wait` allows, and hands it to `done`, which makes the caller's
/// answer (`None`: the call may not wait for a push, [`Wait::UnderWay`], and there is nothing
/// to take).
///
/// `done` runs on both paths (at once, or at the end of the walk) rather than on what a shared
/// `take` returned: so each path writes the caller's answer once, where the caller reads it.
/// Returning an `Option` that the caller then converts made the fast path store the item in
/// pieces and read it back whole, a store-forwarding stall that cost a pair 20 % of its CPU
/// time at the same instruction count.
#[inline]
pub(crate) fn take<T: Take, R>(
    core: &Arc<Core>,
    wait: Wait<'_>,
    how: &T,
    done: impl FnOnce(Option<T::Out>) -> Result<R, Error>,
) -> Result<R, Error> {
    wait.live()?;
    let mut state = core.state.lock();
    // The common case, straight through: the storage is open, no lease is due to come back on
    // top (the walk returns it first), and memory has the newest item.
    if !state.is_closed()
        && !state.lease_due()
        && let Some((out, whom)) = how.take_from_memory(core, &mut state)
    {
        core.wake_up(&mut state, whom);
        drop(state);
        return done(Some(out));
    }
    take_waiting(core, wait, state, how, done)
}

/// [`take`] when memory had nothing to give at once: the batch in flight, the Db, or (when the
/// call blocks) a wait for a push.
#[inline(never)]
fn take_waiting<'a, T: Take, R>(
    core: &'a Arc<Core>,
    wait: Wait<'a>,
    mut state: MutexGuard<'a, State>,
    how: &T,
    done: impl FnOnce(Option<T::Out>) -> Result<R, Error>,
) -> Result<R, Error> {
    let mut waiter = Waiter::new(core, wait, Signal::Poppers);
    let mut spins = 0;
    loop {
        waiter.check(&mut state)?;
        if state.lease_writing_past_deadline() {
            // A lease past its deadline whose item is being written to the Db, still leased,
            // is back on top only once that write lands (`lease_return::return_due`): taking
            // from memory now would take from under it. Wait as for any batch in flight (the
            // landing wakes everyone, after the lease is settled), the token heeded.
            state = waiter.wait(state, None);
            continue;
        }
        state = return_due(core, state);
        if let Some((out, whom)) = how.take_from_memory(core, &mut state) {
            core.wake_up(&mut state, whom);
            drop(state);
            return done(Some(out));
        }
        if state.is_writing() {
            // The newest items are in flight. Taking one from memory would let the Db keep
            // a copy; skipping them would break LIFO. Wait for the batch to land.
            state = waiter.wait(state, None);
            continue;
        }
        match state.db_pop_step(&core.cfg, Instant::now()) {
            DbPopStep::Call(ticket) => {
                let (guard, answer) = from_db(core, state, ticket, how);
                state = guard;
                if let Some(out) = answer? {
                    drop(state);
                    return done(Some(out));
                }
            }
            // A try_ form: other calls are asking the Db; wait for their answer, not for pushes.
            DbPopStep::Wait {
                others_asking: true,
                ..
            } if !wait.blocks() => state = waiter.wait(state, None),
            DbPopStep::Wait { .. } if !wait.blocks() => return done(None),
            // A push is likely microseconds away under load: re-check a few times before
            // parking, since a park and its wakeup cost more than a whole hand-off.
            DbPopStep::Wait { .. } if spins < SPIN_ROUNDS => {
                spins += 1;
                drop(state);
                backoff(spins);
                state = core.state.lock();
            }
            DbPopStep::Wait { recheck_at, .. } => state = waiter.wait(state, recheck_at),
        }
    }
}

/// One Db call for `how`, with the lock released during the call. Wakes the takers waiting
/// for a Db call's answer.
fn from_db<'a, T: Take>(
    core: &'a Arc<Core>,
    state: MutexGuard<'a, State>,
    ticket: DbPopTicket,
    how: &T,
) -> (MutexGuard<'a, State>, Result<Option<T::Out>, Error>) {
    drop(state);
    let answer = call_db(|| how.take_from_db(core));
    let mut state = core.state.lock();
    let taken = answer.as_ref().ok().map(T::taken);
    let whom = state.end_db_pop(ticket, taken, T::POPS, core.shared, Instant::now());
    core.wake_up(&mut state, whom);
    let out = match answer {
        Ok(raw) => {
            let (out, whom) = how.settle(core, &mut state, raw);
            core.wake_up(&mut state, whom);
            Ok(out)
        }
        Err(e) => Err(Error::Db(e)),
    };
    (state, out)
}
