//! Waiting a little before sleeping, without `sched_yield`.
//!
//! On this 2-vCPU KVM guest one `spin_loop` hint (PAUSE) costs about 75-85 ns (measured:
//! the hypervisor's pause-loop handling), a `sched_yield` about 2 µs and a context switch. So
//! budgets here are counted in hints, and the spins below never yield: a thread that cannot
//! get what it waits for within the budget blocks (parking_lot's `lock`, a condvar wait),
//! which costs one sleep and one wake-up instead of a stream of yields.

use parking_lot::{Mutex, MutexGuard};

/// Hints spent before a lock acquisition falls back to `lock()`: about 1.2 µs, several
/// times the engine's critical section, well under a time slice. Checked after 1, 2, 4, 8
/// hints (then every 8).
pub const LOCK_SPIN_HINTS: u32 = 16;
/// Longest step between two looks at the lock.
pub const LOCK_SPIN_STEP: u32 = 8;

/// A longer, denser spin: about 5 µs, looking at the lock every 2 hints, so a lock that a
/// running thread re-takes in a tight loop (pushes back to back) is still caught free.
pub const LOCK_SPIN_LONG_HINTS: u32 = 64;
/// Its step.
pub const LOCK_SPIN_LONG_STEP: u32 = 2;

/// `m.lock()`, but first `try_lock` in a loop of growing pauses (1, 2, 4, 8, ... hints, up
/// to `budget` hints in all), so a lock held by a running thread is taken without the
/// `sched_yield`s of parking_lot's own spin. After the budget, `lock()`: the holder is
/// probably preempted, and parking_lot's spin-then-park is the right thing.
#[inline]
pub fn lock_spinning<T>(m: &Mutex<T>, budget: u32) -> MutexGuard<'_, T> {
    lock_spinning_by(m, budget, LOCK_SPIN_STEP)
}

/// [`lock_spinning`] with steps growing up to `max_step` hints.
#[inline]
pub fn lock_spinning_by<T>(m: &Mutex<T>, budget: u32, max_step: u32) -> MutexGuard<'_, T> {
    if let Some(g) = m.try_lock() {
        return g;
    }
    lock_spinning_slow(m, budget, max_step)
}

#[inline(never)]
fn lock_spinning_slow<T>(m: &Mutex<T>, budget: u32, max_step: u32) -> MutexGuard<'_, T> {
    let mut spent = 0;
    let mut step = 1;
    while spent < budget {
        for _ in 0..step {
            std::hint::spin_loop();
        }
        spent += step;
        step = (step * 2).min(max_step);
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

/// The engine's wait for an item (`sync::backoff`, crossbeam's `Backoff::snooze`): rounds 1-6
/// spin 2^round hints, rounds 7-10 `sched_yield`. For a popper facing an empty stack a yield
/// is useful, unlike in a lock's spin: it gives the CPU to a thread that can push (with more
/// threads than CPUs, the pusher it waits for is often runnable but not running), and it costs
/// the pusher nothing, where a park costs the pusher a futex wake.
pub const SNOOZE_ROUNDS: u32 = 10;

/// Round `round` (from 1) of that wait.
#[inline]
pub fn snooze(round: u32) {
    if round <= 6 {
        for _ in 0..1u32 << round {
            std::hint::spin_loop();
        }
    } else {
        std::thread::yield_now();
    }
}

/// Snoozes (without any lock) until `ready()` holds or the rounds run out; returns whether
/// it did.
#[inline]
pub fn snooze_until(mut ready: impl FnMut() -> bool) -> bool {
    for round in 1..=SNOOZE_ROUNDS {
        if ready() {
            return true;
        }
        snooze(round);
    }
    ready()
}
