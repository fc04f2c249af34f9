//! The engine's shape today, as a model: one parking_lot mutex over the [`Buffer`], a condvar
//! for poppers. Two policies:
//! * [`ENGINE`]: what `src/engine` does: `lock()` (parking_lot's spin: 3 short rounds, then up to
//!   7 `sched_yield`s, then park); a popper that finds nothing re-checks under the lock after
//!   6 rounds of 2^k hints and 4 `sched_yield`s (`sync::backoff`), then waits on the condvar.
//! * [`NO_YIELD`]: the same stack with waiting that never yields: `try_lock` with a short pause
//!   spin before `lock()` (`spin::lock_spinning`), and a popper that spins on a length hint
//!   without the lock, then waits on the condvar.

use parking_lot::{Condvar, Mutex, MutexGuard};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use crate::buffer::Buffer;
use crate::clock::Clock;
use crate::spin::{LOCK_SPIN_HINTS, lock_spinning, spin_until};

/// The engine's policy.
pub const ENGINE: bool = false;
/// Spins without `sched_yield`, then sleeps.
pub const NO_YIELD: bool = true;

/// Hints a `NO_YIELD` popper spins before it re-checks under the lock and waits (~10 µs,
/// what the engine's six spin rounds cost).
const POP_SPIN_HINTS: u32 = 126;

/// The engine model.
pub struct Locked<const NO_YIELD_: bool> {
    state: Mutex<Buffer>,
    /// Items held, as the last lock holder left them (`NO_YIELD` poppers spin on it).
    held: AtomicUsize,
    poppers: Condvar,
    pushers: Condvar,
    clock: Clock,
}

impl<const NY: bool> Locked<NY> {
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
        if NY {
            lock_spinning(&self.state, LOCK_SPIN_HINTS)
        } else {
            self.state.lock()
        }
    }

    /// Pushes `data` on top (room assumed: the benches never fill it).
    #[inline]
    pub fn push(&self, data: Vec<u8>) {
        let mut g = self.lock();
        if g.accepts(data.len()) {
            g.push(self.clock.now(), data);
            if NY {
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
        if NY {
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
        if NY {
            drop(g);
            spin_until(POP_SPIN_HINTS, || self.held.load(Relaxed) != 0);
            g = self.lock();
        } else {
            for round in 1..=10u32 {
                if let Some(item) = self.take(&mut g) {
                    return item;
                }
                drop(g);
                if round <= 6 {
                    for _ in 0..1u32 << round {
                        std::hint::spin_loop();
                    }
                } else {
                    std::thread::yield_now();
                }
                g = self.state.lock();
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
