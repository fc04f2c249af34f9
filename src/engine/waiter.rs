//! How a call waits: [`Wait`], the parameter the blocking and `try_` forms share, and
//! [`Waiter`], one per call, which checks the storage and the caller's token, registers the
//! storage's waker on the token the first time the call must wait, and sleeps on the call's
//! condition variable (or, for `push_durable`, parks its thread) until woken, the token's
//! deadline, or a time the call names.

use std::sync::Arc;
use std::time::Instant;

use super::core::{Core, Signal};
use super::durable_waiters::Slot;
use super::policy::earliest;
use super::state::State;
use super::wakeups::{Notify, Wakeups};
use crate::error::Error;
use crate::sync::MutexGuard;
use crate::token::{CancelToken, Registration, Wake};

/// Whether a call waits for the storage to change, and until when: the one parameter that
/// tells a blocking form from its `try_` form, as std's mpmc channels pass
/// `Option<Instant>`. Here the caller's token carries both the deadline and the cancel.
#[derive(Clone, Copy)]
pub(crate) enum Wait<'a> {
    /// A `try_` form: never waits for a push or for room; only for work already under way
    /// whose outcome decides the answer (a batch in flight, Db pops of other callers).
    UnderWay,
    /// A blocking form: waits for what it needs until `token` ends.
    Until(&'a CancelToken),
}

impl Wait<'_> {
    /// `Err` with the token's reason if it has ended: the check every blocking call makes
    /// before it takes the lock, so an ended token has no side effect at all.
    #[inline]
    pub(crate) fn live(self) -> Result<(), Error> {
        match self {
            Wait::UnderWay => Ok(()),
            Wait::Until(token) => live(token),
        }
    }

    /// Whether the call may wait for a push or for room.
    #[inline]
    pub(crate) fn blocks(self) -> bool {
        matches!(self, Wait::Until(_))
    }
}

/// `Err` with the token's reason if it has ended.
#[inline]
pub(crate) fn live(token: &CancelToken) -> Result<(), Error> {
    match token.reason() {
        Some(reason) => Err(reason.into()),
        None => Ok(()),
    }
}

/// The waiting side of one call.
pub(crate) struct Waiter<'a> {
    core: &'a Arc<Core>,
    token: Option<&'a CancelToken>,
    /// The condition variable this call sleeps on.
    on: Signal,
    registration: Option<Registration<'a>>,
    waited: bool,
}

impl<'a> Waiter<'a> {
    /// A waiter for a call on `core` that waits as `wait` says and sleeps on `on`.
    pub(crate) fn new(core: &'a Arc<Core>, wait: Wait<'a>, on: Signal) -> Self {
        let token = match wait {
            Wait::UnderWay => None,
            Wait::Until(token) => Some(token),
        };
        Waiter {
            core,
            token,
            on,
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
    /// A call leaving on its token may have consumed a wake-up meant for another caller of its
    /// kind (room for a pusher, an item for a popper): it hands one on.
    pub(crate) fn check(&self, state: &mut State) -> Result<(), Error> {
        if state.is_closed() {
            return Err(Error::Closed);
        }
        let Some(token) = self.token.filter(|_| self.waited) else {
            return Ok(());
        };
        if let Err(e) = live(token) {
            self.core.wake_up(state, hand_on(self.on));
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

    /// Sleeps until woken, the token's deadline, or `until`; returns the re-taken guard.
    /// The caller re-checks everything (spurious wakeups happen).
    pub(crate) fn wait<'g>(
        &mut self,
        state: MutexGuard<'g, State>,
        until: Option<Instant>,
    ) -> MutexGuard<'g, State> {
        if !self.prepare() {
            return state;
        }
        self.core.sleep(self.on, state, self.deadline(until))
    }

    /// Releases the lock and sleeps on the call's `push_durable` `slot` until it is woken
    /// (settled or poked), the token's deadline, or `until`. The caller re-takes the lock and
    /// re-checks everything (spurious returns happen). A cancel that latches after the
    /// registration below runs the storage's waker, which unparks every waiting durable call
    /// under the lock: an unpark that comes before the park makes the park return at once, so
    /// it cannot be lost.
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
        let Some(token) = self.token else {
            return true;
        };
        if self.registration.is_none() {
            let waker: Arc<dyn Wake> = Arc::clone(self.core) as Arc<dyn Wake>;
            self.registration = Some(token.register(waker));
            // A cancel that latched before the registration saw no waker: catch it here, still
            // under the lock. One that latches after it will run our waker, which needs the
            // lock we hold until the wait releases it - so its wake-up cannot be lost.
            if token.reason().is_some() {
                return false;
            }
        }
        true
    }

    /// The earlier of the token's deadline and `until`.
    fn deadline(&self, until: Option<Instant>) -> Option<Instant> {
        earliest(self.token.and_then(CancelToken::deadline), until)
    }
}

/// The wake-up a call leaving on its token hands on to one other caller of its kind.
fn hand_on(on: Signal) -> Wakeups {
    let one = Notify::One;
    match on {
        Signal::Poppers => Wakeups {
            poppers: one,
            ..Wakeups::NONE
        },
        Signal::Pushers => Wakeups {
            pushers: one,
            ..Wakeups::NONE
        },
        Signal::Landed => Wakeups {
            landed: true,
            ..Wakeups::NONE
        },
        Signal::Flusher => Wakeups {
            flusher: true,
            ..Wakeups::NONE
        },
    }
}
