//! The one place that chooses synchronization primitives.
//!
//! Normal builds use `parking_lot` locks and `std` threads. Under `--cfg lifostore_loom` the same
//! names resolve to loom's model-checked primitives, so the engine's state, the flusher hand-off
//! and the token code that loom explores is the code that ships (the pattern of tokio's
//! `src/loom/`). The cfg is lifostore's own (as crossbeam uses `crossbeam_loom`), so a user
//! loom-testing their own code with `--cfg loom` does not switch lifostore's internals.
//!
//! Two loom limits shape the API: loom has no clock, so [`Condvar::wait_until`] is a plain wait
//! there (models drive time explicitly: a `flush` call instead of a timer tick), and loom's
//! condition variable takes its guard by value, so ours does too in both builds.

use std::time::Instant;

pub(crate) use imp::{AtomicBool, JoinHandle, Mutex, MutexGuard, SPIN_ROUNDS, backoff, spawn};

/// A condition variable with one API over parking_lot and loom.
pub(crate) struct Condvar(imp::RawCondvar);

impl Condvar {
    pub(crate) fn new() -> Self {
        Condvar(imp::RawCondvar::new())
    }

    /// Blocks until notified (spurious wakeups possible: callers re-check their condition).
    pub(crate) fn wait<'a, T>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        imp::wait(&self.0, guard)
    }

    /// Blocks until notified or `deadline` passes; `None` waits without a time limit.
    pub(crate) fn wait_until<'a, T>(
        &self,
        guard: MutexGuard<'a, T>,
        deadline: Option<Instant>,
    ) -> MutexGuard<'a, T> {
        match deadline {
            None => imp::wait(&self.0, guard),
            Some(at) => imp::wait_until(&self.0, guard, at),
        }
    }

    #[inline]
    pub(crate) fn notify_one(&self) {
        self.0.notify_one();
    }

    pub(crate) fn notify_all(&self) {
        self.0.notify_all();
    }
}

#[cfg(not(lifostore_loom))]
mod imp {
    use std::time::Instant;

    pub(crate) use parking_lot::{Condvar as RawCondvar, Mutex, MutexGuard};
    pub(crate) use std::sync::atomic::AtomicBool;
    pub(crate) use std::thread::JoinHandle;

    pub(crate) fn wait<'a, T>(cv: &RawCondvar, mut guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        cv.wait(&mut guard);
        guard
    }

    pub(crate) fn wait_until<'a, T>(
        cv: &RawCondvar,
        mut guard: MutexGuard<'a, T>,
        at: Instant,
    ) -> MutexGuard<'a, T> {
        // parking_lot's wait_until sleeps on the monotonic clock without polling.
        let _ = cv.wait_until(&mut guard, at);
        guard
    }

    pub(crate) fn spawn<F>(name: String, f: F) -> std::io::Result<JoinHandle<()>>
    where
        F: FnOnce() + Send + 'static,
    {
        std::thread::Builder::new().name(name).spawn(f)
    }

    /// How many times a caller about to sleep for an event that is likely microseconds away
    /// re-checks first: six rounds of spinning, then four of yielding (crossbeam's Backoff).
    pub(crate) const SPIN_ROUNDS: u32 = 10;

    /// Round `round` (from 1) of that backoff: `2^round` spin hints, then yields.
    pub(crate) fn backoff(round: u32) {
        if round <= 6 {
            for _ in 0..1u32 << round {
                std::hint::spin_loop();
            }
        } else {
            std::thread::yield_now();
        }
    }
}

#[cfg(lifostore_loom)]
mod imp {
    use std::sync::PoisonError;
    use std::time::Instant;

    pub(crate) use loom::sync::Condvar as RawCondvar;
    pub(crate) use loom::sync::MutexGuard;
    pub(crate) use loom::sync::atomic::AtomicBool;
    pub(crate) use loom::thread::JoinHandle;

    /// loom's mutex behind parking_lot's non-poisoning `lock()` signature.
    #[derive(Debug)]
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

    impl<T: Default> Default for Mutex<T> {
        fn default() -> Self {
            Mutex::new(T::default())
        }
    }

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Mutex(loom::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            self.0.lock().unwrap_or_else(PoisonError::into_inner)
        }
    }

    pub(crate) fn wait<'a, T>(cv: &RawCondvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        cv.wait(guard).unwrap_or_else(PoisonError::into_inner)
    }

    /// loom has no clock: a timed wait is an untimed one, and models never rely on timeouts.
    pub(crate) fn wait_until<'a, T>(
        cv: &RawCondvar,
        guard: MutexGuard<'a, T>,
        _at: Instant,
    ) -> MutexGuard<'a, T> {
        wait(cv, guard)
    }

    pub(crate) fn spawn<F>(_name: String, f: F) -> std::io::Result<JoinHandle<()>>
    where
        F: FnOnce() + Send + 'static,
    {
        Ok(loom::thread::spawn(f))
    }

    /// One round under loom: enough to explore "the item arrived during the spin" and "the
    /// spin ended and the caller parked", without multiplying the models' interleavings.
    pub(crate) const SPIN_ROUNDS: u32 = 1;

    /// A yield, so loom schedules the other threads during the spin.
    ///
    /// loom never schedules a thread at the branch right after its yield: another runnable
    /// thread first takes the step it was suspended before. A model whose racing thread is
    /// suspended right before the event under test (a cancel, say) therefore always sees that
    /// event start before the spinning caller parks; `blocked_pop_wakes_on_cancel` cancels from
    /// a thread of its own for this reason.
    pub(crate) fn backoff(_round: u32) {
        loom::thread::yield_now();
    }
}
