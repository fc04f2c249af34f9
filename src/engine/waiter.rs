//! [`Waiter`]: how a blocking call waits. One per call: it checks the storage and the caller's
//! token, registers the storage's waker on the token the first time the call must wait, and
//! sleeps on the call's condition variable (or, for `push_durable`, parks its thread) until
//! notified, the token's deadline, or a time the call names.

use std::sync::Arc;
use std::time::Instant;

use super::durable_waiters::Slot;
use super::state::{Core, State};
use crate::error::Error;
use crate::sync::{Condvar, MutexGuard};
use crate::token::{CancelToken, Registration, Wake};

/// `Err` with the token's reason if it has ended: the check every call makes before it takes
/// the lock, so an ended token has no side effect at all.
#[inline]
pub(crate) fn live(token: &CancelToken) -> Result<(), Error> {
    match token.reason() {
        Some(reason) => Err(reason.into()),
        None => Ok(()),
    }
}

/// The waiting side of one blocking call.
pub(crate) struct Waiter<'a> {
    core: &'a Arc<Core>,
    token: &'a CancelToken,
    /// The condition variable this call sleeps on.
    cv: &'a Condvar,
    registration: Option<Registration<'a>>,
    waited: bool,
}

impl<'a> Waiter<'a> {
    /// A waiter for a call on `core` with `token` that sleeps on `cv`.
    pub(crate) fn new(core: &'a Arc<Core>, token: &'a CancelToken, cv: &'a Condvar) -> Self {
        Waiter {
            core,
            token,
            cv,
            registration: None,
            waited: false,
        }
    }

    /// `Err(Closed)` once the storage is closed, the token's reason once it has ended.
    ///
    /// The token is checked only after a wait (or a write, [`time_passed`](Self::time_passed)):
    /// every call checks it with [`live`] before it takes the lock, and nothing else lets time
    /// pass in between.
    ///
    /// A call leaving on its token may have consumed a notify meant for another caller of its
    /// kind (room for a pusher, an item for a popper): it hands one on.
    pub(crate) fn check(&self, state: &State) -> Result<(), Error> {
        if state.is_closed() {
            return Err(Error::Closed);
        }
        if !self.waited {
            return Ok(());
        }
        if let Err(e) = live(self.token) {
            self.cv.notify_one();
            return Err(e);
        }
        Ok(())
    }

    /// Time passed outside a wait (the call wrote a batch as the writer): from now on
    /// [`check`](Self::check) tests the token again, as after a wait.
    pub(crate) fn time_passed(&mut self) {
        self.waited = true;
    }

    /// Whether the call has waited at least once (or let time pass, see
    /// [`time_passed`](Self::time_passed)).
    pub(crate) fn has_waited(&self) -> bool {
        self.waited
    }

    /// Sleeps until notified, the token's deadline, or `until`; returns the re-taken guard.
    /// The caller re-checks everything (spurious wakeups happen).
    pub(crate) fn wait<'g>(
        &mut self,
        state: MutexGuard<'g, State>,
        until: Option<Instant>,
    ) -> MutexGuard<'g, State> {
        if !self.prepare() {
            return state;
        }
        self.cv.wait_until(state, self.deadline(until))
    }

    /// Releases the lock and sleeps on the call's `push_durable` `slot` until it is woken
    /// (settled or poked), the token's deadline, or `until`. The caller
    /// re-takes the lock and re-checks everything (spurious returns happen). A cancel that
    /// latches after the registration below runs the storage's waker, which unparks every
    /// waiting durable call under the lock: an unpark that comes before the park makes the
    /// park return at once, so it cannot be lost.
    pub(crate) fn park(
        &mut self,
        state: MutexGuard<'_, State>,
        slot: &Slot,
        until: Option<Instant>,
    ) {
        if !self.prepare() {
            return;
        }
        let deadline = self.deadline(until);
        drop(state);
        slot.sleep(deadline);
    }

    /// Marks the call as having waited and registers the storage's waker on the token the
    /// first time; `false` if the token ended before the registration (do not sleep).
    fn prepare(&mut self) -> bool {
        self.waited = true;
        if self.registration.is_none() {
            let waker: Arc<dyn Wake> = Arc::clone(self.core) as Arc<dyn Wake>;
            self.registration = Some(self.token.register(waker));
            // A cancel that latched before the registration saw no waker: catch it here, still
            // under the lock. One that latches after it will run our waker, which needs the
            // lock we hold until the wait releases it - so its notify cannot be lost.
            if self.token.reason().is_some() {
                return false;
            }
        }
        true
    }

    /// The earlier of the token's deadline and `until`.
    fn deadline(&self, until: Option<Instant>) -> Option<Instant> {
        match (self.token.deadline(), until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
