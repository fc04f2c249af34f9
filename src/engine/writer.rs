//! The writer role: moving the oldest buffered items to the Db as one batch.
//!
//! Writing is a role, not a thread: whoever finds no batch in flight may take the oldest items
//! and write them ([`State::begin_write`] makes it exclusive until [`State::land`]). The
//! flusher thread takes the role when items come due or the buffer fills; `flush` and `close`
//! take it to finish sooner; a `push` that finds the buffer full and no batch in flight takes
//! it too, so at full load the backlog drains even while the flusher thread waits for a CPU
//! (two flat-out pushers on two cores starved it for tens of milliseconds, past the window).
//! A write never holds the state's lock during the Db call.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use super::poison::{DeadLetter, write_isolating};
use super::state::{Core, State};
use crate::db::DbError;
use crate::error::Error;
use crate::sync::MutexGuard;

/// Runs a Db call, turning a panic into [`DbError::Panicked`] so no thread of ours dies of a
/// misbehaving backend.
pub(crate) fn call_db<T>(f: impl FnOnce() -> Result<T, DbError>) -> Result<T, DbError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| Err(panic_error(payload)))
}

pub(super) fn panic_error(payload: Box<dyn std::any::Any + Send>) -> DbError {
    let msg = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_string());
    DbError::Panicked(msg)
}

/// Writes the oldest `n` buffered items as one batch. Takes the writer role; the caller must
/// have checked that no batch is in flight. Returns the re-acquired guard and the outcome.
///
/// On a partial failure the stored prefix counts as landed and the rest stays buffered (see
/// [`State::land`]). A panicking Db cannot say how far it got: its batch is treated as not
/// stored at all (it may then be written twice, never lost).
pub(crate) fn write_batch<'a>(
    core: &'a Core,
    mut state: MutexGuard<'a, State>,
    n: usize,
) -> (MutexGuard<'a, State>, Result<(), DbError>) {
    let batch = state.begin_write(n);
    drop(state);

    let items = batch.items();
    let started = Instant::now();
    let written = write_isolating(&*core.db, &items);
    let elapsed = started.elapsed();
    drop(items);

    let mut state = core.state.lock();
    let (outcome, poison) = state.land(batch, written, elapsed, &core.cfg, Instant::now());
    // Poppers waiting on the in-flight batch may now find it in the Db; pushers may have room;
    // flush/close callers re-check; the flusher may take the next batch.
    core.notify_everyone();
    if !poison.is_empty() {
        state = dead_letter(core, state, poison);
    }
    (state, outcome)
}

/// Hands poison items to the user's hook (with the lock released, so the hook may take its
/// time without stalling pushers and poppers), or keeps them aside when there is no hook or
/// it panicked.
fn dead_letter<'a>(
    core: &'a Core,
    mut state: MutexGuard<'a, State>,
    poison: Vec<DeadLetter>,
) -> MutexGuard<'a, State> {
    let Some(hook) = core.dead_letter.as_ref() else {
        state.set_aside(&core.cfg, poison);
        return state;
    };
    drop(state);
    let mut unhandled = Vec::new();
    let mut handled = 0;
    for letter in poison {
        let kept = letter.clone();
        match catch_unwind(AssertUnwindSafe(|| hook(letter))) {
            Ok(()) => handled += 1,
            Err(_) => unhandled.push(kept),
        }
    }
    let mut state = core.state.lock();
    state.count_dead_letters(handled);
    state.set_aside(&core.cfg, unhandled);
    state
}

/// `close`'s part after the flusher thread stopped: writes every buffered item, retrying a
/// failing Db with backoff until `close_timeout` has passed.
pub(crate) fn drain(core: &Core) -> Result<(), Error> {
    let started = Instant::now();
    let give_up_at = started + core.cfg.close_timeout;
    let mut state = core.state.lock();
    loop {
        if state.is_writing() {
            state = core.landed.wait(state);
            continue;
        }
        if state.buffered() == 0 {
            return Ok(());
        }
        let now = Instant::now();
        if let Some(at) = state.retry_at().filter(|at| now < *at) {
            if now >= give_up_at {
                return Err(state.close_incomplete(started));
            }
            // A timed backoff between retries, not a poll for an event.
            state = core.landed.wait_until(state, Some(at.min(give_up_at)));
            continue;
        }
        let n = state.buffered().min(core.cfg.max_batch);
        let (guard, written) = write_batch(core, state, n);
        state = guard;
        if written.is_err() && Instant::now() >= give_up_at {
            return Err(state.close_incomplete(started));
        }
    }
}
