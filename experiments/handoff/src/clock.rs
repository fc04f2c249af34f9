//! The coarse clock pushes stamp items with. In the engine the flusher ticks it under the state
//! lock; a push that does not take the lock needs it readable without: an atomic offset from a
//! base instant (the flusher would store to it; here nobody ticks, as in the benches, where the
//! flusher's tick is rare next to millions of pushes).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A clock readable without a lock.
#[derive(Debug)]
pub struct Clock {
    base: Instant,
    offset_ns: AtomicU64,
}

impl Clock {
    /// A clock reading now.
    pub fn new() -> Self {
        Clock {
            base: Instant::now(),
            offset_ns: AtomicU64::new(0),
        }
    }

    /// The last tick.
    #[inline]
    pub fn now(&self) -> Instant {
        self.base + Duration::from_nanos(self.offset_ns.load(Ordering::Relaxed))
    }

    /// The flusher's tick: reads the system clock.
    pub fn tick(&self) {
        let ns = self.base.elapsed().as_nanos() as u64;
        self.offset_ns.fetch_max(ns, Ordering::Relaxed);
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}
