//! The engine's shape today, as a model: one parking_lot mutex over the [`Buffer`], a condvar
//! for poppers. Three policies:
//! * [`ENGINE`]: what `src/engine` does: `lock()` (parking_lot's spin: 3 short rounds, then up to
//!   7 `sched_yield`s, then park); a popper that finds nothing re-checks under the lock after
//!   6 rounds of 2^k hints and 4 `sched_yield`s (`sync::backoff`), then waits on the condvar.
//! * [`SPIN_LOCK`]: the engine with one change: the lock is taken with `try_lock` and a short
//!   pause spin before `lock()` (`spin::lock_spinning`: no `sched_yield` while the holder runs).
//!   The popper's wait for an item is the engine's (spins, yields, then the condvar).
//! * [`SPIN_LONG`]: the same with a longer, denser lock spin.
//! * [`NO_YIELD`]: no `sched_yield` anywhere: `spin::lock_spinning`, and a popper that spins on
//!   a length hint without the lock, then waits on the condvar.

use parking_lot::{Condvar, Mutex, MutexGuard};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use crate::buffer::Buffer;
use crate::clock::Clock;
use crate::spin::{
    LOCK_SPIN_HINTS, LOCK_SPIN_LONG_HINTS, LOCK_SPIN_LONG_STEP, SNOOZE_ROUNDS, lock_spinning,
    lock_spinning_by, snooze, spin_until,
};

/// The engine's policy.
pub const ENGINE: u8 = 0;
/// The engine with a lock spin without `sched_yield`.
pub const SPIN_LOCK: u8 = 1;
/// The same with a longer, denser lock spin ([`crate::spin::LOCK_SPIN_LONG_HINTS`]).
pub const SPIN_LONG: u8 = 3;
/// Spins without `sched_yield` everywhere, then sleeps.
pub const NO_YIELD: u8 = 2;

/// Hints a `NO_YIELD` popper spins before it re-checks under the lock and waits (~10 µs,
/// what the engine's six spin rounds cost).
const POP_SPIN_HINTS: u32 = 126;

/// The engine model.
pub struct Locked<const POLICY: u8> {
    state: Mutex<Buffer>,
    /// Items held, as the last lock holder left them (`NO_YIELD` poppers spin on it).
    held: AtomicUsize,
    poppers: Condvar,
    pushers: Condvar,
    clock: Clock,
}

impl<const P: u8> Locked<P> {
    /// An empty stack with room for `capacity` items.
    pub fn new(capacity: usize) -> Self {
        Locked {
            state: Mutex::new(Buffer::new(capacity)),
            held: AtomicUsize::new(0),
            poppers: Condvar::new(),
            pushers: Condvar::new(),
            clock: Clock::new(),
        }
    }

    #[inline]
    fn lock(&self) -> MutexGuard<'_, Buffer> {
        match P {
            ENGINE => self.state.lock(),
            SPIN_LONG => lock_spinning_by(&self.state, LOCK_SPIN_LONG_HINTS, LOCK_SPIN_LONG_STEP),
            _ => lock_spinning(&self.state, LOCK_SPIN_HINTS),
        }
    }

    /// Pushes `data` on top (room assumed: the benches never fill it).
    #[inline]
    pub fn push(&self, data: Vec<u8>) {
        let mut g = self.lock();
        if g.accepts(data.len()) {
            g.push(self.clock.now(), data);
            if P == NO_YIELD {
                self.held.store(g.len(), Relaxed);
            }
            self.poppers.notify_one();
            return;
        }
        self.push_waiting(g, data);
    }

    #[cold]
    fn push_waiting(&self, mut g: MutexGuard<'_, Buffer>, data: Vec<u8>) {
        while !g.accepts(data.len()) {
            self.pushers.wait(&mut g);
        }
        g.push(self.clock.now(), data);
        self.poppers.notify_one();
    }

    #[inline]
    fn take(&self, g: &mut Buffer) -> Option<Vec<u8>> {
        let item = g.take_newest()?;
        if P == NO_YIELD {
            self.held.store(g.len(), Relaxed);
        }
        self.pushers.notify_one();
        Some(item)
    }

    /// Removes the newest item, blocking while there is none.
    #[inline]
    pub fn pop(&self) -> Vec<u8> {
        let mut g = self.lock();
        if let Some(item) = self.take(&mut g) {
            return item;
        }
        self.pop_waiting(g)
    }

    /// The newest item, if any.
    #[inline]
    pub fn try_pop(&self) -> Option<Vec<u8>> {
        self.take(&mut self.lock())
    }

    #[inline(never)]
    fn pop_waiting<'a>(&'a self, mut g: MutexGuard<'a, Buffer>) -> Vec<u8> {
        if P == NO_YIELD {
            drop(g);
            spin_until(POP_SPIN_HINTS, || self.held.load(Relaxed) != 0);
            g = self.lock();
        } else {
            for round in 1..=SNOOZE_ROUNDS {
                if let Some(item) = self.take(&mut g) {
                    return item;
                }
                drop(g);
                snooze(round);
                g = self.lock();
            }
        }
        loop {
            if let Some(item) = self.take(&mut g) {
                return item;
            }
            self.poppers.wait(&mut g);
        }
    }
}
