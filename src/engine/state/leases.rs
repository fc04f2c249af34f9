//! The state's lease transitions: taking a lease, holding an item for one, ending one, and
//! expiry. They cross parts (the stack, the lease table, the Db view, the durable waiters),
//! so they are the state's; the table itself is a leaf ([`LeaseTable`](crate::engine::lease_table::LeaseTable)).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::State;
use crate::engine::lease_table::{LeaseEnd, What};
use crate::engine::policy::Config;
use crate::engine::wakeups::{Notify, Wakeups};
use crate::error::DbError;

impl State {
    /// Returns every lease past its deadline at `now`: held items go back on top (due: their
    /// deadline was at most their due time), native Db leases make the storage ask the Db
    /// again. Wakes the poppers and the flusher when anything came back.
    pub(crate) fn expire_leases(&mut self, now: Instant) -> Wakeups {
        let due = self.leases.take_due(now);
        if due.is_empty() {
            return Wakeups::NONE;
        }
        for held in due {
            match held.what {
                What::Item { data, pushed_at } => self
                    .stack
                    .put_back_on_top(Arc::unwrap_or_clone(data), pushed_at),
                What::InDb => self.db.may_have_grown(),
            }
        }
        Wakeups {
            poppers: Notify::All,
            flusher: true,
            ..Wakeups::NONE
        }
    }

    /// The earliest deadline of a held lease (or a bit earlier): the flusher wakes then.
    pub(crate) fn next_lease_deadline(&self) -> Option<Instant> {
        self.leases.next_deadline()
    }

    /// Leases the newest buffered item: its key and bytes, and whom that wakes (a pusher, for
    /// the room; the flusher, to watch a new earliest deadline). The deadline: `ttl` from
    /// `now` if set, else when the flusher would have started writing the item, but at least
    /// a sixteenth of the window from now.
    pub(crate) fn lease_newest(
        &mut self,
        cfg: &Config,
        ttl: Option<Duration>,
        now: Instant,
    ) -> Option<(u64, Arc<Vec<u8>>, Wakeups)> {
        let entry = self.stack.take_newest()?;
        let mut whom = Wakeups {
            pushers: Notify::One,
            ..Wakeups::NONE
        };
        if !self.durable.is_empty() {
            // A durable push whose item is leased returns `Ok`, as when a pop takes it.
            whom = whom.and(self.settle_taken(&[entry.seq]));
        }
        let deadline = match ttl {
            Some(ttl) => now + ttl,
            None => {
                let due = entry.pushed_at + self.flow.flush_after(cfg);
                due.max(now + cfg.max_unflushed_age / 16)
            }
        };
        let (key, data, held) = self.hold_item(entry.data, entry.pushed_at, deadline, true);
        Some((key, data, whom.and(held)))
    }

    /// Holds `data` (stamped `pushed_at`, taken from memory or not) for a lease until
    /// `deadline`; its key and the shared bytes. Wakes the flusher if the deadline is the
    /// earliest.
    pub(crate) fn hold_item(
        &mut self,
        data: Vec<u8>,
        pushed_at: Instant,
        deadline: Instant,
        from_memory: bool,
    ) -> (u64, Arc<Vec<u8>>, Wakeups) {
        let data = Arc::new(data);
        let what = What::Item {
            data: Arc::clone(&data),
            pushed_at,
        };
        let (key, earliest) = self.leases.insert(deadline, what, from_memory);
        let whom = Wakeups {
            flusher: earliest,
            ..Wakeups::NONE
        };
        (key, data, whom)
    }

    /// Tracks a lease a native Db holds until `deadline`: the Db's count is not the storage's
    /// to keep any more. Wakes the flusher if the deadline is the earliest.
    pub(crate) fn hold_db_lease(&mut self, deadline: Instant) -> (u64, Wakeups) {
        let (key, earliest) = self.leases.insert(deadline, What::InDb, false);
        self.db.may_have_grown();
        let whom = Wakeups {
            flusher: earliest,
            ..Wakeups::NONE
        };
        (key, whom)
    }

    /// Tracks the leases a Db held when the storage was built (a process that died held
    /// them): their items come back by themselves at `deadlines`.
    pub(crate) fn adopt_db_leases(&mut self, deadlines: impl IntoIterator<Item = Instant>) {
        for deadline in deadlines {
            self.leases.adopt(deadline);
        }
    }

    /// Ends the lease `key` whose item the storage holds, at `now`: an ack in time forgets the
    /// item; a release, or an ack past the deadline, puts it back on top. A lease no longer in
    /// the table has expired already: its item is back, a release has nothing to do.
    pub(crate) fn end_held_lease(
        &mut self,
        key: u64,
        ack: bool,
        now: Instant,
    ) -> (LeaseEnd, Wakeups) {
        let Some(held) = self.leases.remove(key) else {
            return (LeaseEnd::Gone, Wakeups::NONE);
        };
        let What::Item { data, pushed_at } = held.what else {
            return (LeaseEnd::Acked, Wakeups::NONE); // held leases' keys always name items
        };
        let late = ack && held.deadline <= now;
        if ack && !late {
            return (LeaseEnd::Acked, Wakeups::NONE);
        }
        if late {
            self.leases.count_expired();
        }
        let whom = self.put_back(vec![(Arc::unwrap_or_clone(data), pushed_at)]);
        (
            if late {
                LeaseEnd::Late
            } else {
                LeaseEnd::Released
            },
            whom,
        )
    }

    /// Puts returned items on top, in order (the last ends on top), each with its push
    /// stamp. Wakes a popper per item and the flusher (they may be due).
    pub(crate) fn put_back(&mut self, items: Vec<(Vec<u8>, Instant)>) -> Wakeups {
        let n = items.len();
        for (data, pushed_at) in items {
            self.stack.put_back_on_top(data, pushed_at);
        }
        Wakeups {
            poppers: Wakeups::poppers_for(n),
            flusher: n > 0,
            ..Wakeups::NONE
        }
    }

    /// Ends the native Db lease `key` after the Db answered an ack (`ack`) or a release. An
    /// ack the Db refused as expired, and every release, mean the Db may hold the item again:
    /// the storage stops trusting its count and wakes the poppers. A failed ack leaves the
    /// lease held by the Db until its deadline, and in the table till then.
    pub(crate) fn end_db_lease(
        &mut self,
        key: u64,
        ack: bool,
        answer: &Result<(), DbError>,
    ) -> Wakeups {
        let expired = matches!(answer, Err(DbError::LeaseExpired { .. }));
        if ack {
            if answer.is_ok() || expired {
                self.leases.remove(key);
            }
            if !expired {
                return Wakeups::NONE;
            }
            self.leases.count_expired();
        } else if answer.is_ok() || expired {
            self.leases.remove(key);
        }
        self.db.may_have_grown();
        Wakeups {
            poppers: Notify::All,
            ..Wakeups::NONE
        }
    }

    /// Every lease whose item the storage holds expires now, as if its deadline had passed
    /// (for `Storage::expire_leases_now`).
    #[cfg(feature = "testing")]
    pub(crate) fn expire_held_items_now(&mut self, now: Instant) -> Wakeups {
        self.leases.make_items_due(now);
        self.expire_leases(now)
    }
}
