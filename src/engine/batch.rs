//! The batch forms of push and pop: [`Storage::pop_batch`], [`Storage::try_pop_batch`],
//! [`Storage::push_batch`] and [`Storage::try_push`], with [`Storage::admit`], the room-waiting
//! step they share with [`push_durable`](Storage::push_durable).
//!
//! They follow the rules of `push` and `pop` (see `state.rs`'s invariants): items go on top in
//! order, come off newest first from memory, then from the Db; an in-flight batch is waited
//! for, never skipped.

use std::time::Instant;

use super::Storage;
use super::state::{DbPopStep, DbPopTicket, State};
use super::waiter::{Waiter, live};
use super::writer;
use crate::error::{Error, TryPushError};
use crate::sync::MutexGuard;
use crate::token::CancelToken;

impl<D> Storage<D> {
    /// Removes and returns up to `max` items, newest first, blocking until there is at least
    /// one.
    ///
    /// A batch comes from one tier: when memory holds items, up to `max` of them (taken at
    /// once, so strictly newest first); when memory is empty, **one**
    /// [`Db::pop_batch`](crate::Db::pop_batch) call, after waiting for a batch being written,
    /// as [`pop`](Self::pop) does. Draining a backlog in the Db so costs one Db call per `max`
    /// items (2000 flushed items, `max` 1024: three calls, the last finding the Db empty).
    ///
    /// Why not top a memory batch up from the Db in the same call: that Db call runs with the
    /// lock released, and a write landing meanwhile puts items pushed after the memory part on
    /// top of the Db, so the batch would no longer be newest first (the history checker
    /// found exactly this). The rest comes with the next call instead.
    ///
    /// The items are the caller's once returned: the storage never pre-fetches, so nothing
    /// lives only in RAM outside it. `max == 0` returns an empty `Vec` at once, without
    /// looking at the token or the storage. Errors: the token's reason, [`Error::Closed`],
    /// [`Error::Db`]; on every error nothing was taken.
    ///
    /// ```
    /// use lifostore::{CancelToken, MemDb, Storage};
    /// # fn main() -> Result<(), lifostore::Error> {
    /// let storage = Storage::new(MemDb::new())?;
    /// let token = CancelToken::new();
    /// storage.push_batch(&token, ["a", "b", "c"])?;
    /// assert_eq!(storage.pop_batch(&token, 2)?, vec![b"c".to_vec(), b"b".to_vec()]);
    /// assert_eq!(storage.pop_batch(&token, 1024)?, vec![b"a".to_vec()]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn pop_batch(&self, token: &CancelToken, max: usize) -> Result<Vec<Vec<u8>>, Error> {
        self.pop_batch_inner(token, max, true)
    }

    /// Like [`pop_batch`](Self::pop_batch) but returns an empty `Vec` instead of waiting for a
    /// push. It waits only as [`try_pop`](Self::try_pop) does: for a batch being written when
    /// memory is empty, for its own Db call, and for Db pops of other callers under way.
    ///
    /// ```
    /// use lifostore::{CancelToken, MemDb, Storage};
    /// # fn main() -> Result<(), lifostore::Error> {
    /// let storage = Storage::new(MemDb::new())?;
    /// assert!(storage.try_pop_batch(1024)?.is_empty());
    /// storage.push(&CancelToken::new(), "x")?;
    /// assert_eq!(storage.try_pop_batch(1024)?, vec![b"x".to_vec()]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn try_pop_batch(&self, max: usize) -> Result<Vec<Vec<u8>>, Error> {
        self.pop_batch_inner(&CancelToken::new(), max, false)
    }

    /// `pop_batch` (`wait`) and `try_pop_batch` (not `wait`): memory, the in-flight batch,
    /// then the Db, as `pop_waiting` does for one item.
    fn pop_batch_inner(
        &self,
        token: &CancelToken,
        max: usize,
        wait: bool,
    ) -> Result<Vec<Vec<u8>>, Error> {
        if max == 0 {
            return Ok(Vec::new());
        }
        live(token)?;
        let mut waiter = Waiter::new(&self.core, token, &self.core.poppers);
        let mut state = self.core.state.lock();
        loop {
            waiter.check(&state)?;
            let items = state.take_newest_batch(max);
            if !items.is_empty() {
                self.core.pushers.notify_all(); // room for several
                return Ok(items);
            }
            if state.is_writing() {
                // As in pop: the newest items are in flight; wait for them to land.
                state = waiter.wait(state, None);
                continue;
            }
            match state.db_pop_step(&self.core.cfg, Instant::now()) {
                DbPopStep::Call(ticket) => {
                    let (guard, answer) = self.pop_batch_from_db(state, ticket, max);
                    state = guard;
                    let items = answer?;
                    if !items.is_empty() {
                        return Ok(items);
                    }
                }
                DbPopStep::Wait {
                    others_asking: true,
                    ..
                } if !wait => state = waiter.wait(state, None),
                DbPopStep::Wait { .. } if !wait => return Ok(Vec::new()),
                DbPopStep::Wait { recheck_at, .. } => state = waiter.wait(state, recheck_at),
            }
        }
    }

    /// One `Db::pop_batch` call for up to `max` items, with the lock released during the call.
    fn pop_batch_from_db<'a>(
        &'a self,
        state: MutexGuard<'a, State>,
        ticket: DbPopTicket,
        max: usize,
    ) -> (MutexGuard<'a, State>, Result<Vec<Vec<u8>>, Error>) {
        drop(state);
        let answer = writer::call_db(|| self.core.db.pop_batch(max));
        let mut state = self.core.state.lock();
        let answer = state.end_db_pop_batch(ticket, answer, self.core.shared, Instant::now());
        self.core.poppers.notify_all(); // poppers waiting for a Db call's answer
        (state, answer.map_err(Error::Db))
    }

    /// Pushes every item of `items`, in order (the last one ends on top, the newest), or none.
    ///
    /// Blocks until there is room for the whole batch (a batch always fits an empty buffer).
    /// Errors, each with nothing stored: [`Error::BatchItemTooLarge`] naming the first item
    /// over `max_item_len`; [`Error::BatchTooLarge`] at once for a batch with more items than
    /// `max_buffered_items` or more bytes than `max_buffered_bytes` (it could never fit); the
    /// token's reason; [`Error::Closed`]; [`Error::Db`] when the Db has failed for longer than
    /// the window. An empty batch returns `Ok` at once.
    ///
    /// ```
    /// use lifostore::{CancelToken, MemDb, Storage};
    /// # fn main() -> Result<(), lifostore::Error> {
    /// let storage = Storage::new(MemDb::new())?;
    /// let token = CancelToken::new();
    /// storage.push_batch(&token, vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()])?;
    /// assert_eq!(storage.pop(&token)?, b"c"); // the last one is the newest
    /// # Ok(())
    /// # }
    /// ```
    pub fn push_batch<I>(&self, token: &CancelToken, items: I) -> Result<(), Error>
    where
        I: IntoIterator,
        I::Item: Into<Vec<u8>>,
    {
        let items: Vec<Vec<u8>> = items.into_iter().map(Into::into).collect();
        let bytes = self.check_batch(&items)?;
        live(token)?;
        if items.is_empty() {
            return Ok(());
        }
        let mut waiter = Waiter::new(&self.core, token, &self.core.pushers);
        self.admit(&mut waiter, items, bytes).map(|_| ())
    }

    /// The batch's size in bytes, or why it can never be admitted.
    fn check_batch(&self, items: &[Vec<u8>]) -> Result<usize, Error> {
        let cfg = &self.core.cfg;
        if let Some((index, item)) = items
            .iter()
            .enumerate()
            .find(|(_, item)| item.len() > cfg.max_item_len)
        {
            return Err(Error::BatchItemTooLarge {
                index,
                len: item.len(),
                max: cfg.max_item_len,
            });
        }
        let bytes = items.iter().map(Vec::len).sum::<usize>();
        if items.len() > cfg.max_items || bytes > cfg.max_bytes {
            return Err(Error::BatchTooLarge {
                items: items.len(),
                bytes,
                max_items: cfg.max_items,
                max_bytes: cfg.max_bytes,
            });
        }
        Ok(bytes)
    }

    /// Waits for room for `items` (`bytes` in all, checked against the limits) and puts them on
    /// top; returns the guard, still held, and the last item's sequence number. The step
    /// `push_batch` and `push_durable` share (the rules of `push`: refuse while the Db breaks
    /// the window, wake the flusher when full).
    pub(super) fn admit<'a>(
        &'a self,
        waiter: &mut Waiter<'a>,
        items: Vec<Vec<u8>>,
        bytes: usize,
    ) -> Result<(MutexGuard<'a, State>, u64), Error> {
        let cfg = &self.core.cfg;
        let mut state = self.core.state.lock();
        loop {
            waiter.check(&state)?;
            if let Some(err) = state.refusing(cfg) {
                return Err(Error::Db(err.clone()));
            }
            if state.has_room_for_batch(cfg, items.len(), bytes) {
                let many = items.len() > 1;
                let (seq, clock_idle) = state.push_all(items, waiter.has_waited());
                if clock_idle || state.wants_early_write(cfg) {
                    self.core.flusher.notify_one();
                }
                if many {
                    self.core.poppers.notify_all();
                } else {
                    self.core.poppers.notify_one();
                }
                return Ok((state, seq));
            }
            if !state.is_writing() {
                self.core.flusher.notify_one(); // full: write early
            }
            let until = state.refusal_time(cfg);
            state = waiter.wait(state, until);
        }
    }

    /// Pushes `data` if there is room now; never waits.
    ///
    /// [`TryPushError::Full`] hands the item back when the buffer is full (the flusher is told
    /// to write early); [`TryPushError::Failed`] hands it back with the reason `push` would
    /// give ([`Error::ItemTooLarge`], [`Error::Closed`], [`Error::Db`]). Either way nothing was
    /// stored.
    ///
    /// ```
    /// use lifostore::{MemDb, Storage, TryPushError};
    /// use std::time::Duration;
    /// # fn main() -> Result<(), lifostore::Error> {
    /// // Room for one item; a slow Db, so "first" is still held (buffered or being written)
    /// // when "second" comes.
    /// let db = MemDb::with_latency(Duration::from_millis(300));
    /// let storage = Storage::builder().max_buffered_items(1).build(db)?;
    /// storage.try_push("first").expect("room for one");
    /// match storage.try_push("second") {
    ///     Err(TryPushError::Full(item)) => assert_eq!(item, b"second"),
    ///     other => panic!("expected Full, got {other:?}"),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn try_push(&self, data: impl Into<Vec<u8>>) -> Result<(), TryPushError> {
        let data = data.into();
        let cfg = &self.core.cfg;
        if data.len() > cfg.max_item_len {
            let error = Error::ItemTooLarge {
                len: data.len(),
                max: cfg.max_item_len,
            };
            return Err(TryPushError::Failed { item: data, error });
        }
        let mut state = self.core.state.lock();
        let refused = if state.is_closed() {
            Some(Error::Closed)
        } else {
            state.refusing(cfg).map(|err| Error::Db(err.clone()))
        };
        if let Some(error) = refused {
            return Err(TryPushError::Failed { item: data, error });
        }
        if !state.has_room(cfg, data.len()) {
            if !state.is_writing() {
                self.core.flusher.notify_one(); // full: write early
            }
            return Err(TryPushError::Full(data));
        }
        self.push_locked(&mut state, data, false);
        Ok(())
    }
}
