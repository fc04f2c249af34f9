//! [`Storage::push_durable`]: a push that returns once its item is in the Db, with group
//! commit.
//!
//! A durable push admits its item like `push` and registers it, with a wake-up slot of its
//! own ([`Slot`]), in the state ([`State::expect_durable`]). Then, whenever no write is in
//! flight, the waiting durable caller that finds it so takes the writer role - usually the
//! caller arriving last, which is running already, so no sleeping thread is woken to write -
//! and writes every buffered item up to the **newest** item a durable caller waits for
//! ([`State::newest_durable`]), older plain pushes included, in push order: so the Db's stack
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
//! write carrying about half of it, and the Db is never idle while a durable item waits. A
//! first version made the next writer wait (at most one write's duration) for the released
//! callers, which doubled the items per write (29 -> 50 on 64 threads over FileDb) but left
//! the disk idle for the whole wake-up phase: 100 k items/s against 117 k/s without it
//! (BENCHMARKS.md section 7), so it went.

use std::sync::Arc;
use std::time::Instant;

use super::Storage;
use super::durable_waiters::{Slot, wake_as_tree};
use super::state::State;
use super::waiter::{Waiter, live};
use super::writer;
use crate::error::{Error, Unconfirmed};
use crate::sync::MutexGuard;
use crate::token::CancelToken;

impl<D> Storage<D> {
    /// Pushes `data` and returns `Ok` only once it is in the Db (or was popped by then: a pop
    /// that took it owns it). Concurrent durable pushes share Db writes (group commit): while
    /// one write is in flight the next ones gather, and the next write, which starts as soon
    /// as that one lands, takes all of them together with the older buffered items, in push
    /// order. A lone durable push with no write in flight writes at once.
    ///
    /// Errors before the item was accepted store nothing, as `push`'s do:
    /// [`Error::ItemTooLarge`], the token's reason ([`Error::Cancelled`],
    /// [`Error::DeadlineExceeded`]), [`Error::Closed`], [`Error::Db`] (refused: the Db has
    /// failed for longer than the window).
    ///
    /// Once accepted, the item is **kept** whatever happens. If the call then stops waiting,
    /// it returns [`Error::NotYetDurable`] with the reason ([`Unconfirmed`]: token cancelled
    /// or expired, storage closed, or a write holding the item failed, with the Db's error as
    /// the source): the item stays in the storage like one of a plain `push` that returned
    /// `Ok`, and reaches the Db within the window (or through `close`). Only when the Db
    /// refuses the item for good is it not kept: [`Error::DeadLettered`], and the item went to
    /// the dead-letter hook. As with every call, a Db write this call is making itself is not
    /// interrupted: it may return up to one Db round trip after its token ended.
    ///
    /// ```
    /// use lifostore::{CancelToken, MemDb, Storage};
    /// # fn main() -> Result<(), lifostore::Error> {
    /// let storage = Storage::new(MemDb::new())?;
    /// storage.push_durable(&CancelToken::new(), "must not be lost")?;
    /// assert_eq!(storage.db().snapshot(), vec![b"must not be lost".to_vec()]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn push_durable(&self, token: &CancelToken, data: impl Into<Vec<u8>>) -> Result<(), Error> {
        let data = data.into();
        let max = self.core.cfg.max_item_len;
        if data.len() > max {
            let len = data.len();
            return Err(Error::ItemTooLarge { len, max });
        }
        live(token)?;
        let bytes = data.len();
        let (mut state, seq) = {
            let mut waiter = Waiter::new(&self.core, token, &self.core.pushers);
            self.admit(&mut waiter, vec![data], bytes)?
        };
        let slot = Slot::for_current_thread();
        state.expect_durable(seq, Arc::clone(&slot));
        // Accepted: from here on every error says the item is kept.
        let mut waiter = Waiter::new(&self.core, token, &self.core.landed);
        self.await_durable(state, &mut waiter, seq, &slot)
    }

    /// Waits until the item with sequence number `seq` has left memory (its `slot` settled),
    /// writing (as the group commit's writer) whenever no write is in flight.
    fn await_durable<'a>(
        &'a self,
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
            if let Err(e) = waiter.check(&state) {
                state.forget_durable(seq);
                return Err(not_yet_durable(e));
            }
            match durable_step(&state, Instant::now()) {
                Step::Write => self.write_group(state, seq, slot),
                Step::Wait(until) => waiter.park(state, slot, until),
            }
            // Woken for our own item: its outcome is in the slot, no need for the lock.
            if let Some(outcome) = slot.outcome() {
                return outcome;
            }
            state = self.core.state.lock();
        }
    }

    /// Writes, as the group commit's writer, everything up to the newest durable item (ours,
    /// `seq`, included), then wakes the callers the write settled with the lock released
    /// (not ourselves, on `slot`: an unpark would only make our next park return at once).
    fn write_group(&self, mut state: MutexGuard<'_, State>, seq: u64, slot: &Slot) {
        let target = state.newest_durable().unwrap_or(seq).max(seq);
        let n = state.count_through(target, &self.core.cfg);
        state.defer_durable_wakes();
        let mut state = writer::write_batch(&self.core, state, n).0;
        let mut settled = state.take_durable_wakes();
        drop(state);
        settled.retain(|s| !std::ptr::eq(Arc::as_ptr(s), slot));
        wake_as_tree(settled);
    }
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
