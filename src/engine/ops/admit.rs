//! The one walk that puts items into the storage: [`admit`], serving `push`, `try_push`,
//! `push_batch` and `push_durable`. What is admitted (one item, a batch) is [`Items`];
//! whether the call waits for room is a [`Wait`].
//!
//! The rules every push form follows: refuse an item that could never be kept (too large, a
//! batch beyond the limits) before anything else; refuse once the Db has failed for longer
//! than the window (a new item could not be kept within it either); wait for room while the
//! buffer is full, and when it is full with no batch in flight, take the writer role and write
//! the oldest batch here rather than wait for the flusher thread, which may be starved of CPU
//! by the very pushers that filled the buffer.

use std::sync::Arc;
use std::time::Instant;

use crate::engine::core::{Core, Signal};
use crate::engine::ops::write::write_batch;
use crate::engine::policy::{Config, Next};
use crate::engine::state::State;
use crate::engine::waiter::{Wait, Waiter};
use crate::engine::wakeups::Wakeups;
use crate::error::{Error, TryPushError};
use crate::sync::MutexGuard;

/// What a push admits: one item or a batch.
pub(crate) trait Items {
    /// Whether the items fit the buffer now.
    fn fit(&self, state: &State, cfg: &Config) -> bool;
    /// Puts them on top (the last one ends on top); the last one's sequence number, and whom
    /// that wakes. `waited`: the push had to wait for room.
    fn put(self, state: &mut State, cfg: &Config, waited: bool) -> (u64, Wakeups);
}

/// One item, no longer than `max_item_len`.
pub(crate) struct OneItem(Vec<u8>);

impl OneItem {
    /// `data`, or [`Error::ItemTooLarge`] with `data` handed back.
    #[inline]
    pub(crate) fn checked(cfg: &Config, data: Vec<u8>) -> Result<OneItem, Refused<Vec<u8>>> {
        if data.len() > cfg.max_item_len {
            let error = Error::ItemTooLarge {
                len: data.len(),
                max: cfg.max_item_len,
            };
            return Err(Refused::Failed(error, data));
        }
        Ok(OneItem(data))
    }
}

impl Items for OneItem {
    #[inline]
    fn fit(&self, state: &State, cfg: &Config) -> bool {
        state.has_room(cfg, self.0.len())
    }

    #[inline]
    fn put(self, state: &mut State, cfg: &Config, waited: bool) -> (u64, Wakeups) {
        state.push(cfg, self.0, waited)
    }
}

/// A non-empty batch within the limits, with its size in bytes.
pub(crate) struct ManyItems {
    items: Vec<Vec<u8>>,
    bytes: usize,
}

impl ManyItems {
    /// `items`, if not empty, or why they can never be admitted:
    /// [`Error::BatchItemTooLarge`] naming the first item over `max_item_len`, or
    /// [`Error::BatchTooLarge`] for more items or bytes than the buffer ever holds.
    pub(crate) fn checked(cfg: &Config, items: Vec<Vec<u8>>) -> Result<Option<ManyItems>, Error> {
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
        Ok((!items.is_empty()).then_some(ManyItems { items, bytes }))
    }
}

impl Items for ManyItems {
    fn fit(&self, state: &State, cfg: &Config) -> bool {
        state.has_room_for_batch(cfg, self.items.len(), self.bytes)
    }

    fn put(self, state: &mut State, cfg: &Config, waited: bool) -> (u64, Wakeups) {
        state.push_all(cfg, self.items, waited)
    }
}

/// Why nothing was admitted, with the items handed back.
pub(crate) enum Refused<I> {
    /// The buffer is full and the call may not wait ([`Wait::UnderWay`]).
    Full(I),
    /// The call failed: the token's reason, `Closed`, or the Db breaking the window.
    Failed(Error, I),
}

impl<I> Refused<I> {
    /// The error a blocking form returns (it never sees `Full`).
    pub(crate) fn into_error(self) -> Error {
        match self {
            Refused::Full(_) => Error::Closed,
            Refused::Failed(error, _) => error,
        }
    }
}

impl Refused<Vec<u8>> {
    /// `try_push`'s error: the item handed back, with the reason.
    pub(crate) fn into_try_push_error(self) -> TryPushError {
        match self {
            Refused::Full(item) => TryPushError::Full(item),
            Refused::Failed(error, item) => TryPushError::Failed { item, error },
        }
    }
}

impl Refused<OneItem> {
    /// The item's bytes handed back.
    pub(crate) fn into_bytes(self) -> Refused<Vec<u8>> {
        match self {
            Refused::Full(OneItem(data)) => Refused::Full(data),
            Refused::Failed(error, OneItem(data)) => Refused::Failed(error, data),
        }
    }
}

/// Admits `items` as `wait` allows; returns the guard, still held, and the last item's
/// sequence number.
#[inline]
pub(crate) fn admit<'a, I: Items>(
    core: &'a Arc<Core>,
    wait: Wait<'a>,
    items: I,
) -> Result<(MutexGuard<'a, State>, u64), Refused<I>> {
    if let Err(e) = wait.live() {
        return Err(Refused::Failed(e, items));
    }
    let mut state = core.state.lock();
    // The common case, straight through: open, the Db not failing, room.
    if state.accepts() && items.fit(&state, &core.cfg) {
        let (seq, whom) = items.put(&mut state, &core.cfg, false);
        core.wake_up(&mut state, whom);
        return Ok((state, seq));
    }
    admit_waiting(core, wait, state, items)
}

/// [`admit`] when the fast path could not take the items: waits for room, or says why not.
#[inline(never)]
fn admit_waiting<'a, I: Items>(
    core: &'a Arc<Core>,
    wait: Wait<'a>,
    mut state: MutexGuard<'a, State>,
    items: I,
) -> Result<(MutexGuard<'a, State>, u64), Refused<I>> {
    let cfg = &core.cfg;
    let mut waiter = Waiter::new(core, wait, Signal::Pushers);
    loop {
        if let Err(e) = waiter.check(&mut state) {
            return Err(Refused::Failed(e, items));
        }
        if let Some(err) = state.refusing(cfg) {
            return Err(Refused::Failed(Error::Db(err.clone()), items));
        }
        if items.fit(&state, cfg) {
            let (seq, whom) = items.put(&mut state, cfg, waiter.has_waited());
            core.wake_up(&mut state, whom);
            return Ok((state, seq));
        }
        let whom = state.full();
        if !wait.blocks() {
            core.wake_up(&mut state, whom);
            return Err(Refused::Full(items));
        }
        if !state.is_writing() {
            if let Next::Write(n) = state.next(cfg, Instant::now()) {
                // Full and nobody writing: take the writer role here rather than wait for
                // the flusher thread, which may be starved of CPU by the very pushers
                // that filled the buffer. Then re-check room: the write made some.
                state = write_batch(core, state, n).0;
                waiter.time_passed(); // a write takes time: re-check the token
                continue;
            }
            core.wake_up(&mut state, whom); // a failing Db: the flusher retries
        }
        let until = state.refusal_time(cfg);
        state = waiter.wait(state, until);
    }
}
