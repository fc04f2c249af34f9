//! The issue's third direction, "waiting that parks instead of yielding, once a short spin
//! fails", as a model: the engine's shape over std's futex `Mutex` and `Condvar` instead of
//! parking_lot's. std's lock spins a hundred hints and then sleeps in the kernel (`futex`);
//! parking_lot's spins, then `sched_yield`s up to seven times, then parks. The popper spins
//! (no yield) on an empty stack, then waits on the condvar. A push notifies only when a popper
//! sleeps: std's `notify_one` is a `futex` syscall even with nobody waiting, so a count of
//! sleepers, read and written under the lock, spares it.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use crate::buffer::Buffer;
use crate::clock::Clock;
use crate::spin::snooze;

/// Rounds of 2^k spin hints (k = 1..=6) a popper spins on an empty stack, re-checking under
/// the lock, before it sleeps: the engine's spin without its yields.
const SPIN_ROUNDS: u32 = 6;

/// What the lock guards: the stack and how many poppers sleep on the condvar.
struct Guarded {
    buffer: Buffer,
    sleepers: usize,
}

/// The engine model over std's futex lock: parks instead of yielding.
pub struct Parking {
    state: Mutex<Guarded>,
    poppers: Condvar,
    clock: Clock,
}

impl Parking {
    /// An empty stack with room for `capacity` items (the benches never fill it).
    pub fn new(capacity: usize) -> Self {
        Parking {
            state: Mutex::new(Guarded {
                buffer: Buffer::new(capacity),
                sleepers: 0,
            }),
            poppers: Condvar::new(),
            clock: Clock::new(),
        }
    }

    #[inline]
    fn lock(&self) -> MutexGuard<'_, Guarded> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Pushes `data` on top; wakes one sleeping popper, if any sleeps.
    #[inline]
    pub fn push(&self, data: Vec<u8>) {
        let mut g = self.lock();
        g.buffer.push(self.clock.now(), data);
        if g.sleepers > 0 {
            self.poppers.notify_one();
        }
    }

    /// The newest item, if any.
    #[inline]
    pub fn try_pop(&self) -> Option<Vec<u8>> {
        self.lock().buffer.take_newest()
    }

    /// Removes the newest item, blocking while there is none.
    #[inline]
    pub fn pop(&self) -> Vec<u8> {
        let mut g = self.lock();
        if let Some(item) = g.buffer.take_newest() {
            return item;
        }
        for round in 1..=SPIN_ROUNDS {
            drop(g);
            snooze(round); // rounds 1-6 spin 2^round hints and never yield
            g = self.lock();
            if let Some(item) = g.buffer.take_newest() {
                return item;
            }
        }
        loop {
            // Counted under the lock a push takes too: a push after this sees the sleeper.
            g.sleepers += 1;
            g = self.poppers.wait(g).unwrap_or_else(PoisonError::into_inner);
            g.sleepers -= 1;
            if let Some(item) = g.buffer.take_newest() {
                return item;
            }
        }
    }
}
