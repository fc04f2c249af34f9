//! [`Wakeups`]: whom a state transition wakes.
//!
//! Every transition of the state that can unblock someone returns a `Wakeups` value naming the
//! waiters it concerns, and [`Core::wake_up`](super::core::Core::wake_up) is the one function
//! that turns it into notifications. So "whom does a push wake?" has one answer, next to the
//! push itself (in the state), and no call site notifies a condition variable on its own.
//!
//! A leaf: plain data, it imports nothing of the engine.

/// How many waiters of one kind to wake.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Notify {
    /// Nobody.
    #[default]
    None,
    /// One waiter: one item arrived, one slot of room freed.
    One,
    /// Every waiter: what changed may concern all of them (a landed batch, a close).
    All,
}

/// What the `push_durable` callers (each parked on a slot of its own) get.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Durable {
    /// Nothing.
    #[default]
    None,
    /// The callers a transition settled, and the next writer, as the transition queued them.
    Queued,
    /// Every waiting caller re-checks (a close, a token that ended).
    All,
}

/// Whom a transition wakes: the waiters of each condition variable, and the durable callers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[must_use = "a transition's wake-ups must reach Core::wake_up"]
pub(crate) struct Wakeups {
    /// `pop` and the other taking calls waiting for an item.
    pub(crate) poppers: Notify,
    /// `push` and the other admitting calls waiting for room.
    pub(crate) pushers: Notify,
    /// `flush` and `close` waiting for a batch to land.
    pub(crate) landed: bool,
    /// The flusher thread (its schedule changed: an early write is due, a clock to tick, a
    /// lease deadline to watch).
    pub(crate) flusher: bool,
    /// The waiting `push_durable` calls.
    pub(crate) durable: Durable,
}

impl Wakeups {
    /// Nobody.
    pub(crate) const NONE: Wakeups = Wakeups {
        poppers: Notify::None,
        pushers: Notify::None,
        landed: false,
        flusher: false,
        durable: Durable::None,
    };

    /// Everyone: a landed batch or a close changes what every kind of waiter is waiting for.
    pub(crate) const EVERYONE: Wakeups = Wakeups {
        poppers: Notify::All,
        pushers: Notify::All,
        landed: true,
        flusher: true,
        durable: Durable::Queued,
    };

    /// Every blocked call, so each re-checks its own token (a token ended). The flusher has
    /// no token.
    pub(crate) const EVERY_CALL: Wakeups = Wakeups {
        poppers: Notify::All,
        pushers: Notify::All,
        landed: true,
        flusher: false,
        durable: Durable::All,
    };

    /// `n` poppers: one item wakes one, more wake all.
    #[inline]
    pub(crate) fn poppers_for(n: usize) -> Notify {
        match n {
            0 => Notify::None,
            1 => Notify::One,
            _ => Notify::All,
        }
    }

    /// Both sets of wake-ups.
    #[inline]
    pub(crate) fn and(self, other: Wakeups) -> Wakeups {
        Wakeups {
            poppers: self.poppers.max(other.poppers),
            pushers: self.pushers.max(other.pushers),
            landed: self.landed || other.landed,
            flusher: self.flusher || other.flusher,
            durable: self.durable.max(other.durable),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combined_wakeups_keep_the_widest_of_each() {
        let one = Wakeups {
            poppers: Notify::One,
            flusher: true,
            ..Wakeups::NONE
        };
        let all = Wakeups {
            poppers: Notify::All,
            durable: Durable::Queued,
            ..Wakeups::NONE
        };
        let both = one.and(all);
        assert_eq!(both.poppers, Notify::All);
        assert!(both.flusher);
        assert_eq!(both.durable, Durable::Queued);
        assert_eq!(Wakeups::NONE.and(Wakeups::NONE), Wakeups::NONE);
        assert_eq!(Wakeups::poppers_for(1), Notify::One);
        assert_eq!(Wakeups::poppers_for(3), Notify::All);
    }
}
