//! An elimination layer that is lock-free on its fast path, offered only to poppers known to
//! be waiting (BENCHMARKS.md §1's suggestion after experiments 2 and 3).
//!
//! A pop that finds the buffer empty (under the lock) claims a slot (`FREE -> WAITING`), counts
//! itself in `waiting`, releases the lock and spins on its slot. A push that sees `waiting`
//! non-zero looks for a `WAITING` slot and, if it wins the slot (`WAITING -> FILLING`), hands
//! its item over (`FULL`) without touching the state's lock. Otherwise it pushes under the lock
//! (a `try_lock` spin without `sched_yield`, then `lock()`) and notifies the condvar, as the
//! engine does. A spinning popper withdraws (`WAITING -> FREE`) when the buffer gets items or
//! its rounds (the engine's spins and yields) end, and then waits on the condvar like any popper; a failed withdrawal means a
//! pusher won the slot, and its item is instants away.
//!
//! Linearizable: a hand-over happens while both calls are pending (the popper cannot have
//! withdrawn: the slot's CAS decides), so the push takes effect at the pusher's winning CAS
//! and the pop right after it, returning the item on top. Exactly once: one CAS per slot state
//! change decides who owns the item.

use std::sync::atomic::{
    AtomicUsize,
    Ordering::{AcqRel, Acquire, Relaxed, Release, SeqCst},
};

use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::buffer::Buffer;
use crate::clock::Clock;
use crate::padded::Padded;
use crate::spin::{LOCK_SPIN_HINTS, SNOOZE_ROUNDS, lock_spinning, snooze};

const FREE: usize = 0;
const WAITING: usize = 1;
const FILLING: usize = 2;
const FULL: usize = 3;

const SLOTS: usize = 8;

#[derive(Default)]
struct Slot {
    state: AtomicUsize,
    cell: Mutex<Option<Vec<u8>>>,
}

/// The stack with its exchanger.
pub struct Elimination {
    state: Padded<Mutex<Buffer>>,
    held: Padded<AtomicUsize>,
    waiting: Padded<AtomicUsize>,
    slots: [Padded<Slot>; SLOTS],
    poppers: Condvar,
    clock: Clock,
}

impl Elimination {
    /// An empty stack with room for `capacity` items.
    pub fn new(capacity: usize) -> Self {
        Elimination {
            state: Padded(Mutex::new(Buffer::new(capacity))),
            held: Padded(AtomicUsize::new(0)),
            waiting: Padded(AtomicUsize::new(0)),
            slots: Default::default(),
            poppers: Condvar::new(),
            clock: Clock::new(),
        }
    }

    /// Pushes `data` on top.
    #[inline]
    pub fn push(&self, data: Vec<u8>) {
        let data = if self.waiting.load(Relaxed) != 0 {
            match self.offer(data) {
                Ok(()) => return,
                Err(data) => data,
            }
        } else {
            data
        };
        let mut g = lock_spinning(&self.state, LOCK_SPIN_HINTS);
        g.push(self.clock.now(), data);
        self.held.store(g.len(), Relaxed);
        self.poppers.notify_one();
    }

    /// Hands `data` to a waiting popper, if one is still waiting.
    #[inline(never)]
    fn offer(&self, data: Vec<u8>) -> Result<(), Vec<u8>> {
        for slot in &self.slots {
            if slot.state.load(Relaxed) == WAITING
                && slot
                    .state
                    .compare_exchange(WAITING, FILLING, Acquire, Relaxed)
                    .is_ok()
            {
                self.waiting.fetch_sub(1, Relaxed);
                *slot.cell.lock() = Some(data);
                slot.state.store(FULL, Release);
                return Ok(());
            }
        }
        Err(data)
    }

    #[inline]
    fn take(&self, g: &mut Buffer) -> Option<Vec<u8>> {
        let item = g.take_newest()?;
        self.held.store(g.len(), Relaxed);
        Some(item)
    }

    /// Removes the newest item, blocking while there is none.
    #[inline]
    pub fn pop(&self) -> Vec<u8> {
        let mut g = lock_spinning(&self.state, LOCK_SPIN_HINTS);
        if let Some(item) = self.take(&mut g) {
            return item;
        }
        self.pop_waiting(g)
    }

    /// The newest item, if any.
    #[inline]
    pub fn try_pop(&self) -> Option<Vec<u8>> {
        self.take(&mut lock_spinning(&self.state, LOCK_SPIN_HINTS))
    }

    #[inline(never)]
    fn pop_waiting<'a>(&'a self, g: MutexGuard<'a, Buffer>) -> Vec<u8> {
        let claimed = self.slots.iter().find(|slot| {
            slot.state
                .compare_exchange(FREE, WAITING, AcqRel, Relaxed)
                .is_ok()
        });
        let mut g = match claimed {
            Some(slot) => {
                self.waiting.fetch_add(1, SeqCst);
                drop(g);
                if let Some(item) = self.wait_in_slot(slot) {
                    return item;
                }
                lock_spinning(&self.state, LOCK_SPIN_HINTS)
            }
            None => g,
        };
        loop {
            if let Some(item) = self.take(&mut g) {
                return item;
            }
            self.poppers.wait(&mut g);
        }
    }

    /// Snoozes on `slot` for an item (spins, then `sched_yield`s: the engine's schedule);
    /// `None` once withdrawn (the buffer got items, or the rounds ran out).
    fn wait_in_slot(&self, slot: &Slot) -> Option<Vec<u8>> {
        let mut round = 0;
        loop {
            match slot.state.load(Acquire) {
                FULL => return Some(self.collect(slot)),
                FILLING => {}
                _ if (round >= SNOOZE_ROUNDS || self.held.load(Relaxed) != 0)
                    && slot
                        .state
                        .compare_exchange(WAITING, FREE, AcqRel, Acquire)
                        .is_ok() =>
                {
                    self.waiting.fetch_sub(1, Relaxed);
                    return None;
                }
                _ => {}
            }
            round = (round + 1).min(SNOOZE_ROUNDS);
            snooze(round);
        }
    }

    fn collect(&self, slot: &Slot) -> Vec<u8> {
        let item = slot.cell.lock().take();
        slot.state.store(FREE, Release);
        item.expect("a FULL slot holds an item")
    }
}
