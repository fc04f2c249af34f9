//! The flusher: the background thread that moves the oldest buffered items to the Db in
//! batches, and the batch write shared with `flush` and `close` callers.
//!
//! Writing is a role, not a thread: whoever finds no batch in flight may take the oldest items
//! and write them (`State::writing` makes it exclusive). The background thread takes the role
//! when items come due or the buffer fills; `flush` and `close` take it to finish sooner. A
//! write never holds the stack's lock during the Db call.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Instant;

use crate::db::{Db, DbError, PushBatchError};
use crate::stack::State;
use crate::stack::{Core, Entry, Next};
use crate::sync::MutexGuard;

/// How a batch write ended.
pub(crate) enum Written {
    All,
    Failed(DbError),
}

/// Runs a Db call, turning a panic into [`DbError::Panicked`] so no thread of ours dies of a
/// misbehaving backend.
pub(crate) fn call_db<T>(f: impl FnOnce() -> Result<T, DbError>) -> Result<T, DbError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| Err(panic_error(payload)))
}

fn panic_error(payload: Box<dyn std::any::Any + Send>) -> DbError {
    let msg = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_string());
    DbError::Panicked(msg)
}

/// Writes the oldest `n` buffered items as one batch. Takes the writer role; the caller must
/// have checked `!state.writing`. Returns the re-acquired guard and the outcome.
///
/// On a partial failure the stored prefix counts as landed and the rest goes back to the
/// front of the stack (still the oldest), so nothing is dropped and nothing written twice.
/// A panicking Db cannot say how far it got: its batch is treated as not stored at all
/// (it may then be written twice, never lost).
pub(crate) fn write_batch<'a, D: Db + ?Sized>(
    core: &'a Core,
    db: &D,
    mut state: MutexGuard<'a, State>,
    n: usize,
) -> (MutexGuard<'a, State>, Written) {
    let n = n.min(state.items.len());
    let batch: Vec<Entry> = state.items.drain(..n).collect();
    state.writing = true;
    state.in_flight = batch.len();
    state.in_flight_first_seq = batch.first().map_or(u64::MAX, |e| e.seq);
    state.in_flight_oldest = batch.first().map(|e| e.pushed_at);
    drop(state);

    let slices: Vec<&[u8]> = batch.iter().map(|e| e.data.as_slice()).collect();
    let started = Instant::now();
    let result =
        catch_unwind(AssertUnwindSafe(|| db.push_batch(&slices))).unwrap_or_else(|payload| {
            Err(PushBatchError {
                stored: 0,
                source: panic_error(payload),
            })
        });
    let elapsed = started.elapsed();
    drop(slices);

    let mut state = core.state.lock();
    state.writing = false;
    state.in_flight = 0;
    state.counters.db_push_calls += 1;
    let (stored, outcome) = match result {
        Ok(()) => (batch.len(), Written::All),
        Err(e) => (e.stored.min(batch.len()), Written::Failed(e.source)),
    };
    let mut batch = batch;
    let unstored = batch.split_off(stored);
    let landed_bytes: usize = batch.iter().map(|e| e.data.len()).sum();
    state.bytes -= landed_bytes;
    state.counters.items_flushed += stored as u64;
    if stored > 0 {
        state.db_epoch += 1;
        if let Some(n) = state.db_count.as_mut() {
            *n += stored as u64;
        }
    }
    // Unstored items are older than everything still buffered: they go back to the front.
    for entry in unstored.into_iter().rev() {
        state.items.push_front(entry);
    }
    match &outcome {
        Written::All => {
            state.failing = None;
            state.learn_rate(stored, elapsed);
        }
        Written::Failed(err) => {
            let now = Instant::now();
            state.record_failure(&core.cfg, err.clone(), now, stored, elapsed);
        }
    }
    // Poppers waiting on the in-flight batch may now find it in the Db; pushers may have room;
    // flush/close callers re-check; the flusher may take the next batch.
    core.notify_everyone();
    (state, outcome)
}

/// The background flusher's loop; returns when the storage closes (`close` drains the rest).
pub(crate) fn run<D: Db + ?Sized>(core: Arc<Core>, db: Arc<D>) {
    let mut state = core.state.lock();
    loop {
        if state.closed {
            return;
        }
        match state.next(&core.cfg, Instant::now()) {
            Next::Write(n) => {
                // A failure is recorded in the state (with its retry time) and reported to
                // pushers by `State::refusing`; the loop simply goes on.
                state = write_batch(&core, &*db, state, n).0;
            }
            Next::Sleep(until) => {
                state = core.flusher.wait_until(state, until);
            }
        }
    }
}
