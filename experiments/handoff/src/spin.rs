//! Waiting a little before sleeping, without `sched_yield`.
//!
//! On this 2-vCPU KVM guest one `spin_loop` hint (PAUSE) costs about 75-85 ns (measured:
//! the hypervisor's pause-loop handling), a `sched_yield` about 2 µs and a context switch. So
//! budgets here are counted in hints, and the spins below never yield: a thread that cannot
//! get what it waits for within the budget blocks (parking_lot's `lock`, a condvar wait),
//! which costs one sleep and one wake-up instead of a stream of yields.

use parking_lot::{Mutex, MutexGuard};

/// Hints spent before a lock acquisition falls back to `lock()`: about 1.2 µs, several
/// times the engine's critical section, well under a time slice.
pub const LOCK_SPIN_HINTS: u32 = 16;

/// `m.lock()`, but first `try_lock` in a loop of growing pauses (1, 2, 4, 8, ... hints, up
/// to `budget` hints in all), so a lock held by a running thread is taken without the
/// `sched_yield`s of parking_lot's own spin. After the budget, `lock()`: the holder is
/// probably preempted, and parking_lot's spin-then-park is the right thing.
#[inline]
pub fn lock_spinning<T>(m: &Mutex<T>, budget: u32) -> MutexGuard<'_, T> {
    if let Some(g) = m.try_lock() {
        return g;
    }
    lock_spinning_slow(m, budget)
}

#[inline(never)]
fn lock_spinning_slow<T>(m: &Mutex<T>, budget: u32) -> MutexGuard<'_, T> {
    let mut spent = 0;
    let mut step = 1;
    while spent < budget {
        for _ in 0..step {
            std::hint::spin_loop();
        }
        spent += step;
        step = (step * 2).min(8);
        if !m.is_locked()
            && let Some(g) = m.try_lock()
        {
            return g;
        }
    }
    m.lock()
}

/// Spins up to `budget` hints (same growing steps) until `ready()` holds; returns whether it
/// did.
#[inline]
pub fn spin_until(budget: u32, mut ready: impl FnMut() -> bool) -> bool {
    let mut spent = 0;
    let mut step = 1;
    while spent < budget {
        if ready() {
            return true;
        }
        for _ in 0..step {
            std::hint::spin_loop();
        }
        spent += step;
        step = (step * 2).min(8);
    }
    ready()
}
