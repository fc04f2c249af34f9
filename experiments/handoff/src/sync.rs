//! The primitives of the designs a loom model checks ([`crate::publish`]): parking_lot and std
//! in normal builds, loom's under `--cfg handoff_loom` (the pattern of lifostore's
//! `src/sync.rs`). loom's condition variable takes its guard by value, so ours does too.

pub use imp::{AtomicUsize, Condvar, Mutex, MutexGuard, fence, pause};
pub use std::sync::atomic::Ordering;

#[cfg(not(handoff_loom))]
mod imp {
    pub use std::sync::atomic::{AtomicUsize, fence};

    pub use parking_lot::{Mutex, MutexGuard};

    /// parking_lot's condition variable behind a by-value guard.
    #[derive(Default)]
    pub struct Condvar(parking_lot::Condvar);

    impl Condvar {
        /// An unused condition variable.
        pub fn new() -> Self {
            Condvar(parking_lot::Condvar::new())
        }

        /// Releases the lock, sleeps until notified (or spuriously), re-takes it.
        #[inline]
        pub fn wait<'a, T>(&self, mut guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
            self.0.wait(&mut guard);
            guard
        }

        /// Wakes one waiter, if any (one atomic load when nobody waits).
        #[inline]
        pub fn notify_one(&self) {
            self.0.notify_one();
        }

        /// Wakes every waiter.
        pub fn notify_all(&self) {
            self.0.notify_all();
        }
    }

    /// One spin hint.
    #[inline]
    pub fn pause() {
        std::hint::spin_loop();
    }
}

#[cfg(handoff_loom)]
mod imp {
    use std::ops::{Deref, DerefMut};
    use std::sync::PoisonError;

    use loom::sync::atomic::{AtomicBool, Ordering};
    pub use loom::sync::atomic::{AtomicUsize, fence};

    /// loom's mutex behind parking_lot's non-poisoning signatures, with a `try_lock` that can
    /// fail: loom 0.7 blocks a thread whose next step is `try_lock` on a held mutex until it is
    /// released (tokio-rs/loom#376), so "the lock was taken" would never be explored. Here a
    /// flag set while the lock is held decides, and loom explores both outcomes of reading it.
    /// (A `try_lock` that read "free" and then blocks briefly behaves as one that succeeded a
    /// little later: a delay, which any real schedule may also produce.)
    #[derive(Debug, Default)]
    pub struct Mutex<T> {
        inner: loom::sync::Mutex<T>,
        held: AtomicBool,
    }

    /// A guard of [`Mutex`]: clears the flag before it releases the lock.
    pub struct MutexGuard<'a, T> {
        inner: Option<loom::sync::MutexGuard<'a, T>>,
        held: &'a AtomicBool,
    }

    impl<T> Mutex<T> {
        /// A mutex holding `value`.
        pub fn new(value: T) -> Self {
            Mutex {
                inner: loom::sync::Mutex::new(value),
                held: AtomicBool::new(false),
            }
        }

        /// Blocks until the lock is taken.
        pub fn lock(&self) -> MutexGuard<'_, T> {
            let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            self.held.store(true, Ordering::Relaxed);
            MutexGuard {
                inner: Some(inner),
                held: &self.held,
            }
        }

        /// Takes the lock if it is free.
        pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
            if self.held.load(Ordering::Relaxed) {
                return None;
            }
            Some(self.lock())
        }

        /// Whether the lock is held (a hint).
        pub fn is_locked(&self) -> bool {
            self.held.load(Ordering::Relaxed)
        }
    }

    impl<T> Deref for MutexGuard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            self.inner.as_deref().expect("guard present until dropped")
        }
    }

    impl<T> DerefMut for MutexGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            self.inner
                .as_deref_mut()
                .expect("guard present until dropped")
        }
    }

    impl<T> Drop for MutexGuard<'_, T> {
        fn drop(&mut self) {
            if self.inner.is_some() {
                self.held.store(false, Ordering::Relaxed);
            }
        }
    }

    /// loom's condition variable.
    #[derive(Debug, Default)]
    pub struct Condvar(loom::sync::Condvar);

    impl Condvar {
        /// An unused condition variable.
        pub fn new() -> Self {
            Condvar(loom::sync::Condvar::new())
        }

        /// Releases the lock, sleeps until notified, re-takes it.
        pub fn wait<'a, T>(&self, mut guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
            let inner = guard.inner.take().expect("guard present until dropped");
            guard.held.store(false, Ordering::Relaxed);
            let inner = self.0.wait(inner).unwrap_or_else(PoisonError::into_inner);
            guard.held.store(true, Ordering::Relaxed);
            guard.inner = Some(inner);
            guard
        }

        /// Wakes one waiter, if any.
        pub fn notify_one(&self) {
            self.0.notify_one();
        }

        /// Wakes every waiter.
        pub fn notify_all(&self) {
            self.0.notify_all();
        }
    }

    /// A yield, so loom runs the other threads during a spin.
    pub fn pause() {
        loom::thread::yield_now();
    }
}
