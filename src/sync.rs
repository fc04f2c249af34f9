//! The one place that chooses synchronization primitives.
//!
//! Normal builds use `parking_lot` locks and `std` threads. Under `--cfg lifostore_loom` the same
//! names resolve to loom's model-checked primitives, so the engine's state, the flusher hand-off
//! and the token code that loom explores is the code that ships (the pattern of tokio's
//! `src/loom/`). The cfg is lifostore's own (as crossbeam uses `crossbeam_loom`), so a user
//! loom-testing their own code with `--cfg loom` does not switch lifostore's internals.
//!
//! Two loom limits shape the API: loom has no clock, so [`Condvar::wait_until`] is a plain wait
//! there (models drive time explicitly: a `flush` call instead of a timer tick), as is a timed
//! [`Parker::park_until`] (the per-caller wake-ups of `push_durable`), and loom's
//! condition variable takes its guard by value, so ours does too in both builds.

use std::time::Instant;

pub(crate) use imp::{
    AtomicBool, JoinHandle, Mutex, MutexGuard, Parker, SPIN_ROUNDS, backoff, spawn,
};

/// A condition variable with one API over parking_lot and loom.
pub(crate) struct Condvar(imp::RawCondvar);

impl Condvar {
    pub(crate) fn new() -> Self {
        Condvar(imp::RawCondvar::new())
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

    /// A one-token wake-up for the thread that created it: [`std::thread::park`] and
    /// `unpark` (one futex, no lock).
    pub(crate) struct Parker(std::thread::Thread);

    impl Parker {
        /// A parker for the calling thread, which alone may [`park_until`](Self::park_until).
        pub(crate) fn for_current_thread() -> Self {
            Parker(std::thread::current())
        }

        /// Makes the token available: the owner's next park (or the current one) returns.
        pub(crate) fn unpark(&self) {
            self.0.unpark();
        }

        /// Sleeps until the token is available (and takes it) or `deadline` passes (`None`:
        /// no time limit). Spurious returns happen: callers re-check their condition.
        pub(crate) fn park_until(&self, deadline: Option<Instant>) {
            match deadline {
                None => std::thread::park(),
                Some(at) => {
                    let now = Instant::now();
                    if at > now {
                        std::thread::park_timeout(at - now);
                    }
                }
            }
        }
    }

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

    /// The same one-token wake-up over loom's mutex and condition variable: loom's own
    /// `unpark` also wakes a thread blocked on a mutex (it then panics "expected to be able to
    /// acquire lock"), so `park`/`unpark` cannot be modelled with it. The token semantics are
    /// std's: an unpark before the park makes the park return at once.
    pub(crate) struct Parker {
        token: loom::sync::Mutex<bool>,
        cv: loom::sync::Condvar,
    }

    impl Parker {
        pub(crate) fn for_current_thread() -> Self {
            Parker {
                token: loom::sync::Mutex::new(false),
                cv: loom::sync::Condvar::new(),
            }
        }

        pub(crate) fn unpark(&self) {
            *self.token.lock().unwrap_or_else(PoisonError::into_inner) = true;
            self.cv.notify_one();
        }

        /// loom has no clock: a timed park is an untimed one, as a timed wait is.
        pub(crate) fn park_until(&self, _deadline: Option<Instant>) {
            let mut token = self.token.lock().unwrap_or_else(PoisonError::into_inner);
            if !*token {
                token = self.cv.wait(token).unwrap_or_else(PoisonError::into_inner);
            }
            *token = false;
        }
    }

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
