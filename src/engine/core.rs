//! [`Core`]: the state behind its mutex, the settings, the Db, and the condition variables
//! callers sleep on, with [`Core::wake_up`], the one function that wakes them.
//!
//! One mutex guards all state, so every decision (room? newest item? in flight?) is made on a
//! consistent snapshot; Db calls always happen with the lock released.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::policy::Config;
use super::state::State;
use super::state::dead_letters::DeadLetterHook;
use super::wakeups::{Notify, Wakeups};
use crate::db::Db;
use crate::sync::{Condvar, Mutex, MutexGuard};
use crate::token::Wake;

/// The condition variables: what a blocked caller sleeps on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// Taking calls waiting for an item: woken by pushes and by landed batches.
    Poppers,
    /// Admitting calls waiting for room: woken by pops and by landed batches.
    Pushers,
    /// `flush` and `close` waiting for an in-flight batch to land.
    Landed,
    /// The flusher thread, between writes.
    Flusher,
}

/// The state, the settings, the Db and the condition variables.
pub(crate) struct Core {
    pub(crate) state: Mutex<State>,
    pub(crate) cfg: Config,
    /// The Db, type-erased: the engine needs no type parameter (one vtable call per Db call).
    pub(crate) db: Arc<dyn Db>,
    /// The Db's capabilities say it is shared with other processes; asked once: a pop needs
    /// it, and a virtual call per pop is not free.
    pub(crate) shared: bool,
    /// Where poison items go, if the user set a hook.
    pub(crate) dead_letter: Option<DeadLetterHook>,
    /// The builder's `lease_ttl`, if set.
    pub(crate) lease_ttl: Option<Duration>,
    poppers: Condvar,
    pushers: Condvar,
    landed: Condvar,
    flusher: Condvar,
}

impl Core {
    pub(crate) fn new(
        cfg: Config,
        db: Arc<dyn Db>,
        dead_letter: Option<DeadLetterHook>,
        lease_ttl: Option<Duration>,
    ) -> Self {
        Core {
            state: Mutex::new(State::new(&cfg)),
            cfg,
            shared: db.capabilities().shared,
            db,
            dead_letter,
            lease_ttl,
            poppers: Condvar::new(),
            pushers: Condvar::new(),
            landed: Condvar::new(),
            flusher: Condvar::new(),
        }
    }

    fn condvar(&self, signal: Signal) -> &Condvar {
        match signal {
            Signal::Poppers => &self.poppers,
            Signal::Pushers => &self.pushers,
            Signal::Landed => &self.landed,
            Signal::Flusher => &self.flusher,
        }
    }

    /// Wakes whom a transition of `state` named: the one place that notifies a condition
    /// variable or a durable caller's slot (besides the group commit's wake-up tree, which
    /// runs with the lock released; see `ops::durable`). Called with the lock held, right
    /// after the transition, so a waiter cannot check the state between the transition and
    /// its wake-up and then sleep through it.
    // Always inlined: every call site passes mostly constant wake-ups (a push: one popper,
    // maybe the flusher), which then fold to the one or two notifications they name.
    #[inline(always)]
    pub(crate) fn wake_up(&self, state: &mut State, whom: Wakeups) {
        notify(&self.poppers, whom.poppers);
        notify(&self.pushers, whom.pushers);
        if whom.landed {
            self.landed.notify_all();
        }
        if whom.flusher {
            self.flusher.notify_one(); // there is one flusher thread
        }
        state.wake_durable(whom.durable);
    }

    /// Releases the lock and sleeps on `signal` until woken or `until`; returns the re-taken
    /// guard. The caller re-checks everything (spurious wakeups happen).
    pub(crate) fn sleep<'a>(
        &self,
        signal: Signal,
        state: MutexGuard<'a, State>,
        until: Option<Instant>,
    ) -> MutexGuard<'a, State> {
        self.condvar(signal).wait_until(state, until)
    }

    /// Closes the state and wakes everyone, so every blocked call returns `Closed` and the
    /// flusher thread stops.
    pub(crate) fn close(&self) {
        let mut state = self.state.lock();
        let whom = state.close();
        self.wake_up(&mut state, whom);
    }
}

/// Wakes nobody, one or every waiter on `cv`.
#[inline(always)]
fn notify(cv: &Condvar, how: Notify) {
    match how {
        Notify::None => {}
        Notify::One => cv.notify_one(),
        Notify::All => cv.notify_all(),
    }
}

impl Wake for Core {
    /// A token ended: wake every blocked call so each re-checks its own token. Taking the lock
    /// first closes the gap between a waiter's token check and its wait: the waiter holds the
    /// lock from its check until the condvar releases it, so this notify cannot fall in
    /// between and be lost.
    fn wake(&self) {
        let mut state = self.state.lock();
        self.wake_up(&mut state, Wakeups::EVERY_CALL);
    }
}
