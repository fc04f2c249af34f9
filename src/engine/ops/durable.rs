//! `push_durable`: a push that returns once its item is in the Db, with group commit.
//!
//! A durable push admits its item like `push` and registers it, with a wake-up slot of its
//! own ([`Slot`]), in the state (`State::expect_durable`). Then, whenever no write is in
//! flight, the waiting durable caller that finds it so takes the writer role - usually the
//! caller arriving last, which is running already, so no sleeping thread is woken to write -
//! and writes every buffered item up to the **newest** item a durable caller waits for
//! (`State::newest_durable`), older plain pushes included, in push order: so the Db's stack
//! order stays the push order, and every durable push that arrived while the previous write
//! was in flight shares this one write (and its fsync, on a `FileDb`). The landing settles the
//! slots of the callers whose items it carried, and the writer wakes exactly those callers,
//! plus one still waiting (the next writer), after releasing the lock. A woken caller reads
//! its outcome from its slot without taking the state's lock.
//!
//! No gathering: the next write starts as soon as the previous one landed, with whatever
//! durable pushes arrived while it was in flight. Each caller has one item outstanding, so
//! the callers a write released (busy being woken and pushing again) miss the next write and
//! ride in the one after: a steady crowd splits into two groups that write in turn, each
//! write carrying about half of it, and the Db is never idle while a durable item waits.
//! Making the next writer wait for the released callers doubles the items per write but
//! leaves the disk idle for the whole wake-up phase, which costs more (BENCHMARKS.md
//! section 7).

use std::sync::Arc;
use std::time::Instant;

use crate::engine::core::{Core, Signal};
use crate::engine::durable_waiters::{Slot, wake_as_tree};
use crate::engine::ops::admit::{OneItem, admit};
use crate::engine::ops::write::write_batch;
use crate::engine::state::State;
use crate::engine::waiter::{Wait, Waiter};
use crate::error::{Error, Unconfirmed};
use crate::sync::MutexGuard;
use crate::token::CancelToken;

/// `push_durable`: admits `data` as `push` does, then waits until it has left memory,
/// writing as the group commit's writer whenever no write is in flight.
pub(crate) fn push_durable(
    core: &Arc<Core>,
    token: &CancelToken,
    data: Vec<u8>,
) -> Result<(), Error> {
    let item = OneItem::checked(&core.cfg, data).map_err(|r| r.into_error())?;
    let wait = Wait::Until(token);
    let (mut state, seq) = admit(core, wait, item).map_err(|r| r.into_error())?;
    let slot = Slot::for_current_thread();
    state.expect_durable(seq, Arc::clone(&slot));
    // Accepted: from here on every error says the item is kept.
    let mut waiter = Waiter::new(core, wait, Signal::Landed);
    await_durable(core, state, &mut waiter, seq, &slot)
}

/// Waits until the item with sequence number `seq` has left memory (its `slot` settled),
/// writing (as the group commit's writer) whenever no write is in flight.
fn await_durable<'a>(
    core: &'a Arc<Core>,
    mut state: MutexGuard<'a, State>,
    waiter: &mut Waiter<'a>,
    seq: u64,
    slot: &Slot,
) -> Result<(), Error> {
    loop {
        if let Some(outcome) = slot.outcome() {
            return outcome;
        }
        if state.left_memory_unsettled(seq) {
            return Ok(());
        }
        if let Err(e) = waiter.check(&mut state) {
            state.forget_durable(seq);
            return Err(not_yet_durable(e));
        }
        match durable_step(&state, Instant::now()) {
            Step::Write => write_group(core, state, seq, slot),
            Step::Wait(until) => waiter.park(state, slot, until),
        }
        // Woken for our own item: its outcome is in the slot, no need for the lock.
        if let Some(outcome) = slot.outcome() {
            return outcome;
        }
        state = core.state.lock();
    }
}

/// Writes, as the group commit's writer, everything up to the newest durable item (ours,
/// `seq`, included), then wakes the callers the write settled with the lock released (not
/// ourselves, on `slot`: an unpark would only make our next park return at once). This
/// wake-up tree is the one wake-up outside `Core::wake_up`: it runs after the lock is
/// released so that the woken callers do not pile up on it.
fn write_group(core: &Core, mut state: MutexGuard<'_, State>, seq: u64, slot: &Slot) {
    let target = state.newest_durable().unwrap_or(seq).max(seq);
    let n = state.count_through(target, &core.cfg);
    state.defer_durable_wakes();
    let mut state = write_batch(core, state, n).0;
    let mut settled = state.take_durable_wakes();
    drop(state);
    settled.retain(|s| !std::ptr::eq(Arc::as_ptr(s), slot));
    wake_as_tree(settled);
}

/// What a waiting durable caller does next, when its item is still in memory.
enum Step {
    /// Take the writer role now.
    Write,
    /// Sleep until woken or the time given.
    Wait(Option<Instant>),
}

/// Decides [`Step`] on `state` at `now`.
fn durable_step(state: &State, now: Instant) -> Step {
    if state.is_writing() {
        // Its landing wakes us if it carried our item, or to write next.
        return Step::Wait(None);
    }
    if let Some(at) = state.retry_at().filter(|at| now < *at) {
        // The Db is failing: keep to its backoff, like the flusher.
        return Step::Wait(Some(at));
    }
    Step::Write
}

/// The error of a durable push that stops waiting for an accepted item: `e` is why
/// ([`Waiter::check`]'s answer).
fn not_yet_durable(e: Error) -> Error {
    let why = match e {
        Error::Cancelled => Unconfirmed::Cancelled,
        Error::DeadlineExceeded => Unconfirmed::DeadlineExceeded,
        _ => Unconfirmed::Closed,
    };
    Error::NotYetDurable { why, source: None }
}
