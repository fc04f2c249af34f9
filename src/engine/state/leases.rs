//! The state's lease transitions: taking a lease, holding an item for one, ending one, and
//! expiry. They cross parts (the stack, the lease table, the Db view, the durable waiters),
//! so they are the state's; the table itself is a leaf ([`LeaseTable`](crate::engine::lease_table::LeaseTable)).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::State;
use crate::db::LeaseId;
use crate::engine::lease_table::{Claimed, ItemState, LeaseEnd, NativeState, ToDb, What};
use crate::engine::policy::Config;
use crate::engine::wakeups::{Notify, Wakeups};
use crate::error::DbError;

impl State {
    /// Returns every lease past its deadline at `now` that can be returned under the lock:
    /// held items go back on top (due: their deadline was at most their due time), leases a
    /// dead process held make the storage ask the Db again. Returns whom that wakes, and the
    /// keys of the native leases due, whose return takes Db calls (`ops::lease_return`).
    pub(crate) fn expire_leases(&mut self, now: Instant) -> (Wakeups, Vec<u64>) {
        let (due, native) = self.leases.take_due(now);
        if due.is_empty() && native.is_empty() {
            return (Wakeups::NONE, native);
        }
        for held in due {
            match held.what {
                What::Item {
                    data, pushed_at, ..
                } => self
                    .stack
                    .put_back_on_top(Arc::unwrap_or_clone(data), pushed_at),
                What::Native { .. } | What::DbReturns => self.db.may_have_grown(),
            }
        }
        let whom = Wakeups {
            poppers: Notify::All,
            flusher: true,
            ..Wakeups::NONE
        };
        (whom, native)
    }

    /// Whether a lease may be past its deadline: reads the clock only while leases are held.
    /// Every pop asks this with the lock held, and a clock read there cost a fifth of a
    /// push-pop pair and lengthened every critical section of a hand-off.
    #[inline]
    pub(crate) fn lease_due(&self) -> bool {
        if !self.leases.deadline_pending() {
            return false;
        }
        let now = Instant::now();
        self.leases.next_deadline().is_some_and(|d| d <= now)
            || self.leases.writing_past_deadline(now)
    }

    /// Whether a memory-leased item is being written to the Db past its lease's deadline (see
    /// [`LeaseTable::writing_past_deadline`](crate::engine::lease_table::LeaseTable::writing_past_deadline)).
    /// Reads the clock only while such a write is under way.
    pub(crate) fn lease_writing_past_deadline(&self) -> bool {
        self.leases.is_writing() && self.leases.writing_past_deadline(Instant::now())
    }

    /// The earliest deadline of a held lease (or a bit earlier): the flusher wakes then.
    pub(crate) fn next_lease_deadline(&self) -> Option<Instant> {
        self.leases.next_deadline()
    }

    /// Leases the newest buffered item: its key and bytes, and whom that wakes (a pusher, for
    /// the room; the flusher, to watch a new earliest deadline). The deadline: `ttl` from
    /// `now` if set, else when the flusher would have started writing the item, but at least
    /// a sixteenth of the window from now. With a `ttl` that outlasts that write time and a Db
    /// with native leases (`native`), the item is due for the Db, still leased, at that time.
    pub(crate) fn lease_newest(
        &mut self,
        cfg: &Config,
        ttl: Option<Duration>,
        native: bool,
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
        let due = entry.pushed_at + self.flow.flush_after(cfg);
        let (deadline, to_db) = match ttl {
            Some(ttl) if native && due < now + ttl => (now + ttl, ToDb::At(due)),
            Some(ttl) => (now + ttl, ToDb::Never),
            None => (due.max(now + cfg.max_unflushed_age / 16), ToDb::Never),
        };
        let pushed_at = entry.pushed_at;
        let (key, data, held) = self.hold_item(entry.data, pushed_at, deadline, true, to_db);
        Some((key, data, whom.and(held)))
    }

    /// Holds `data` (stamped `pushed_at`, taken from memory or not) for a lease until
    /// `deadline`, going to the Db still leased as `to_db` says; its key and the shared bytes.
    /// Wakes the flusher if the deadline (or the time for the Db) is the earliest.
    pub(crate) fn hold_item(
        &mut self,
        data: Vec<u8>,
        pushed_at: Instant,
        deadline: Instant,
        from_memory: bool,
        to_db: ToDb,
    ) -> (u64, Arc<Vec<u8>>, Wakeups) {
        let data = Arc::new(data);
        let what = What::Item {
            data: Arc::clone(&data),
            pushed_at,
            to_db,
        };
        let (key, earliest) = self.leases.insert(deadline, what, from_memory);
        let whom = Wakeups {
            flusher: earliest,
            ..Wakeups::NONE
        };
        (key, data, whom)
    }

    /// Tracks a lease a native Db holds under `id` until about `db_deadline`, to be returned by
    /// the storage at `deadline` (earlier): the Db's count is not the storage's to keep any
    /// more. Wakes the flusher if the deadline is the earliest.
    pub(crate) fn hold_db_lease(
        &mut self,
        id: LeaseId,
        deadline: Instant,
        db_deadline: Instant,
    ) -> (u64, Wakeups) {
        let what = What::Native {
            id,
            db_deadline,
            returning: false,
        };
        let (key, earliest) = self.leases.insert(deadline, what, false);
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
        let What::Item {
            data, pushed_at, ..
        } = held.what
        else {
            return (LeaseEnd::Acked, Wakeups::NONE); // held leases' keys always name items
        };
        let late = ack && held.deadline <= now;
        if ack && !late {
            return (LeaseEnd::Acked, Wakeups::NONE);
        }
        if late {
            self.leases.count_expired(1);
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

    /// Where the lease `key`, whose guard holds its item, stands: held here, being written to
    /// the Db, or held by the Db since.
    pub(crate) fn item_lease_state(&self, key: u64) -> ItemState {
        self.leases.item_state(key)
    }

    /// The Db's id of the native lease `key`, if it is one and still held.
    pub(crate) fn native_id(&self, key: u64) -> Option<LeaseId> {
        self.leases.native_id(key)
    }

    /// Claims one memory-leased item due for the Db at `now` for its write (see
    /// [`LeaseTable::claim_to_db`](crate::engine::lease_table::LeaseTable::claim_to_db)).
    pub(crate) fn claim_lease_to_db(&mut self, now: Instant) -> Option<Claimed> {
        self.leases.claim_to_db(now)
    }

    /// The write of the memory-leased item `key` to the Db landed (see
    /// [`LeaseTable::settle_to_db`](crate::engine::lease_table::LeaseTable::settle_to_db)).
    /// Stored, the Db holds one more leased item: the storage stops trusting its count, as for
    /// any native lease. Wakes the flusher, to watch the lease's deadline (or the retry).
    pub(crate) fn settle_lease_to_db(
        &mut self,
        key: u64,
        outcome: Result<(LeaseId, Instant), Option<Instant>>,
    ) -> Wakeups {
        if outcome.is_ok() {
            self.db.may_have_grown();
        }
        self.leases.settle_to_db(key, outcome);
        Wakeups {
            flusher: true,
            ..Wakeups::NONE
        }
    }

    /// Every memory-leased item that goes to the Db before its lease ends is due for it now
    /// (for `close`, and `Storage::write_leased_items_now`).
    pub(crate) fn make_leases_due_for_db(&mut self, now: Instant) {
        self.leases.make_due_for_db(now);
    }

    /// Where the native lease `key` stands at `now`.
    pub(crate) fn native_state(&self, key: u64, now: Instant) -> NativeState {
        self.leases.native_state(key, now)
    }

    /// Ends the native Db lease `key` after the Db answered an ack. An ack the Db refused as
    /// expired means the Db may hold the item again: the storage stops trusting its count and
    /// wakes the poppers. A failed ack leaves the lease held by the Db until its deadline, and
    /// in the table till then.
    pub(crate) fn end_db_ack(&mut self, key: u64, answer: &Result<(), DbError>) -> Wakeups {
        let expired = matches!(answer, Err(DbError::LeaseExpired { .. }));
        if answer.is_ok() || expired {
            self.leases.remove(key);
        }
        if !expired {
            return Wakeups::NONE;
        }
        self.leases.count_expired(1);
        self.db.may_have_grown();
        Wakeups {
            poppers: Notify::All,
            ..Wakeups::NONE
        }
    }

    /// Claims the native leases among `keys` still held for a return: their keys and Db ids
    /// (`None`: another return of one of them is in flight). A Db pop answering "empty" while
    /// the return runs must not teach a count: the Db grows.
    pub(crate) fn claim_native_leases(&mut self, keys: &[u64]) -> Option<Vec<(u64, LeaseId)>> {
        let claimed = self.leases.claim_native(keys)?;
        if !claimed.is_empty() {
            self.db.may_have_grown();
        }
        Some(claimed)
    }

    /// The return of the `claimed` native leases landed, `ended` or not (then the Db keeps
    /// them until its own deadline, and the flusher watches it); `expiry`: they were returned
    /// at their deadline, which counts them as expired. Wakes the poppers: the items may be
    /// back on top of the Db.
    pub(crate) fn settle_native_leases(
        &mut self,
        claimed: &[(u64, LeaseId)],
        ended: bool,
        expiry: bool,
    ) -> Wakeups {
        self.leases.settle_native(claimed, ended);
        if ended && expiry {
            self.leases.count_expired(claimed.len());
        }
        self.db.may_have_grown();
        Wakeups {
            poppers: Notify::All,
            flusher: !ended,
            ..Wakeups::NONE
        }
    }

    /// Every lease this storage took expires now, as if its deadline had passed (for
    /// `Storage::expire_leases_now`): as [`expire_leases`](Self::expire_leases).
    #[cfg(feature = "testing")]
    pub(crate) fn expire_all_leases_now(&mut self, now: Instant) -> (Wakeups, Vec<u64>) {
        self.leases.make_due(now);
        self.expire_leases(now)
    }
}
