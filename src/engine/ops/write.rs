//! The writer role: moving the oldest buffered items to the Db as one batch, and the calls
//! that take the role to finish sooner: `flush`, and `close`'s drain.
//!
//! Writing is a role, not a thread: whoever finds no batch in flight may take the oldest items
//! and write them (`State::begin_write` makes it exclusive until `State::land`). The flusher
//! thread takes the role when items come due or the buffer fills; `flush` and `close` take it
//! to finish sooner; a push that finds the buffer full and no batch in flight takes it too
//! ([`admit`](super::admit)), so at full load the backlog drains even while the flusher thread
//! waits for a CPU. A write never holds the state's lock during the Db call.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Instant;

use crate::engine::core::{Core, Signal};
use crate::engine::db_call::{Written, write_isolating};
use crate::engine::state::State;
use crate::engine::state::dead_letters::DeadLetter;
use crate::engine::waiter::{Wait, Waiter};
use crate::error::{DbError, Error};
use crate::sync::MutexGuard;
use crate::token::CancelToken;

/// Writes the oldest `n` buffered items as one batch. Takes the writer role; the caller must
/// have checked that no batch is in flight. Returns the re-acquired guard and the outcome.
///
/// On a partial failure the stored prefix counts as landed and the rest stays buffered (see
/// `State::land`). A panicking Db cannot say how far it got: its batch is treated as not
/// stored at all (it may then be written twice, never lost).
pub(crate) fn write_batch<'a>(
    core: &'a Core,
    state: MutexGuard<'a, State>,
    n: usize,
) -> (MutexGuard<'a, State>, Result<(), DbError>) {
    let (mut state, outcome, (), poison) = write_batch_then(core, state, n, |_| ());
    if !poison.is_empty() {
        state = dead_letter(core, state, poison);
    }
    (state, outcome)
}

/// [`write_batch`], then `then` (given what the write did) still inside the writer role, with
/// the lock released, before the batch lands: nothing can be written, and no pop that waits
/// for the batch in flight can reach the Db, between the write and `then`. A native lease's
/// return uses it to put its item back on top of everything that was buffered
/// (`ops::lease_return`). `n` may be 0: the writer role alone. Returns the guard (the batch
/// landed, everyone woken), the write's outcome, `then`'s answer, and the poison items for
/// [`dead_letter`], which the caller hands on once its own bookkeeping is done.
pub(crate) fn write_batch_then<'a, R>(
    core: &'a Core,
    mut state: MutexGuard<'a, State>,
    n: usize,
    then: impl FnOnce(&Written) -> R,
) -> (
    MutexGuard<'a, State>,
    Result<(), DbError>,
    R,
    Vec<DeadLetter>,
) {
    let batch = state.begin_write(n);
    // A Db pop under way began when memory was empty, before this write; if it ran while the
    // write had stored only part of its batch (a Db whose `push_batch` is not atomic, or fails
    // half way), it would take a stored item from under the unstored ones, which are newer.
    // New Db pops wait for the write (they check `is_writing`); wait for those under way.
    while state.db_pops_under_way() {
        state = core.sleep(Signal::Landed, state, None);
    }
    drop(state);

    let items = batch.items();
    let started = Instant::now();
    let written = if items.is_empty() {
        Written::default()
    } else {
        write_isolating(&*core.db, &items)
    };
    let elapsed = started.elapsed();
    drop(items);
    let after = then(&written);

    let mut state = core.state.lock();
    let (outcome, poison, whom) = state.land(batch, written, elapsed, &core.cfg, Instant::now());
    core.wake_up(&mut state, whom);
    (state, outcome, after, poison)
}

/// Hands poison items to the user's hook (with the lock released, so the hook may take its
/// time without stalling pushers and poppers), or keeps them aside when there is no hook or
/// it panicked.
pub(crate) fn dead_letter<'a>(
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

/// `flush`: writes every item pushed before the call (and not yet popped) on the calling
/// thread, waiting for a batch in flight first, and returns when they are all in the Db.
pub(crate) fn flush(core: &Arc<Core>, token: &CancelToken) -> Result<(), Error> {
    let wait = Wait::Until(token);
    wait.live()?;
    let mut waiter = Waiter::new(core, wait, Signal::Landed);
    let mut state = core.state.lock();
    let target = state.last_seq();
    loop {
        waiter.check(&mut state)?;
        if state.flushed_through(target) {
            return Ok(());
        }
        if state.is_writing() {
            state = waiter.wait(state, None);
            continue;
        }
        let n = state.count_through(target, &core.cfg);
        let (guard, written) = write_batch(core, state, n);
        state = guard;
        written?;
    }
}

/// `close`'s part after the flusher thread stopped: writes every buffered item, retrying a
/// failing Db with backoff until `close_timeout` has passed.
pub(crate) fn drain(core: &Core) -> Result<(), Error> {
    let started = Instant::now();
    let give_up_at = started + core.cfg.close_timeout;
    let mut state = core.state.lock();
    loop {
        if state.is_writing() {
            state = core.sleep(Signal::Landed, state, None);
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
            state = core.sleep(Signal::Landed, state, Some(at.min(give_up_at)));
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
