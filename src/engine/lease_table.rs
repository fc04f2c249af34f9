//! [`LeaseTable`]: the leases a storage holds, with their deadlines.
//!
//! Where a leased item is while its lease is held:
//! * **memory lease** (the item was buffered): out of the stack, here, with its push stamp.
//!   Ack forgets it; release, or its deadline, puts it back on top with that stamp, so the
//!   flusher writes it when it comes due, as if it had never left: the window covers it like
//!   any buffered item. Without a `lease_ttl` the deadline is that due time, so it always
//!   ends in time for the window.
//! * **memory lease written to the Db** (a `lease_ttl` that outlasts the item's due time, over
//!   a Db with native leases): at its due time ([`ToDb::At`]) the flusher writes the item to
//!   the Db still leased (`ops::lease_to_db`), for the rest of the ttl; while that write is in
//!   flight ([`ToDb::Writing`]) nothing else ends the lease (an ack or release waits for the
//!   landing, expiry skips it); once it landed the lease is a native one (below) with the same
//!   deadline and key, so the guard, which still holds the bytes, ends it in the Db. A failed
//!   write leaves it a memory lease, due for the Db again after a backoff. Over a Db without
//!   native leases the item stays here until the lease ends, out of the window's cover.
//! * **Db lease, native** (the Db has [`DbLeases`](crate::DbLeases)): in the Db, hidden by the
//!   Db, which holds it a margin longer than the lease lasts. The table keeps its Db id and
//!   deadline: a release, a drop or the deadline returns it through the storage, on top of
//!   everything buffered (`ops::lease_return`); the Db's own deadline only matters if the
//!   process dies holding the lease.
//! * **Db lease, fallback** (a Db without leases): the item left the Db (a plain Db pop); it is
//!   held here like a memory lease, stamped due at once, so a release or an expiry writes it
//!   back to the Db promptly. A crash while it is held loses it (at most once, as `pop`).
//!
//! A leaf: it imports nothing of the engine. The state owns the table and changes it only
//! through the methods below.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::db::LeaseId;

/// When the storage counts on a native Db having returned a lease by itself, it waits this
/// much past the Db's deadline: the Db stamps it in wall-clock milliseconds (rounded down)
/// during its call, the storage from the `Instant` the call began.
pub(crate) const DB_CLOCK_MARGIN: Duration = Duration::from_millis(2);

/// One lease the table holds.
pub(crate) struct Held {
    pub(crate) deadline: Instant,
    pub(crate) what: What,
}

impl Held {
    /// A return of a native lease, or the write of a memory-leased item to the Db, is in
    /// flight: its outcome settles the lease, not its deadline.
    fn is_returning(&self) -> bool {
        matches!(
            self.what,
            What::Native {
                returning: true,
                ..
            } | What::Item {
                to_db: ToDb::Writing,
                ..
            }
        )
    }

    /// When the table must look at this lease again: its deadline, or earlier the time its
    /// item is due to be written to the Db still leased.
    fn wakes_at(&self) -> Instant {
        match self.what {
            What::Item {
                to_db: ToDb::At(at),
                ..
            } => at.min(self.deadline),
            _ => self.deadline,
        }
    }
}

/// Whether (and when) an item leased from memory goes to the Db before its lease ends: with a
/// `lease_ttl` over a Db with native leases, when the window comes due for it, the item is
/// written to the Db still leased (`DbLeases::push_leased`) for the rest of its ttl, and the
/// lease becomes a native one ([`What::Native`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ToDb {
    /// Never: the lease ends first, or the Db has no native leases (or refused the item for
    /// good).
    Never,
    /// At this instant (its push stamp plus the flush age, or a retry after a failed write).
    At(Instant),
    /// The write is in flight: an ack or a release waits for its outcome.
    Writing,
}

/// Where a lease whose guard holds the item stands ([`LeaseTable::item_state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ItemState {
    /// The item is held here (or the lease ended already): end it under the lock.
    Here,
    /// Its write to the Db is in flight: wait for the outcome.
    Writing,
    /// It was written to the Db, which holds it under a native lease: end it there.
    InDb,
}

/// Where a native lease stands ([`LeaseTable::native_state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NativeState {
    /// Not in the table: returned (released or expired) already.
    Ended,
    /// A return is in flight: wait for its outcome.
    Returning,
    /// Past its deadline: due to be returned.
    Due,
    /// Held, deadline ahead.
    Held,
}

/// A memory-leased item claimed for its write to the Db ([`LeaseTable::claim_to_db`]).
pub(crate) struct Claimed {
    /// The lease's key.
    pub(crate) key: u64,
    /// The item.
    pub(crate) data: Arc<Vec<u8>>,
    /// The lease's deadline.
    pub(crate) deadline: Instant,
}

/// What the table holds for a lease.
pub(crate) enum What {
    /// The item itself (a memory lease, or a fallback Db lease), with its push stamp. The
    /// lease guard holds the other reference.
    Item {
        data: Arc<Vec<u8>>,
        pushed_at: Instant,
        to_db: ToDb,
    },
    /// A native Db holds the item under `id` until about `db_deadline` (its own, later than
    /// the lease's): the storage returns it at the lease's deadline. `returning`: a return is
    /// in flight (its outcome decides whether the lease ended).
    Native {
        id: LeaseId,
        db_deadline: Instant,
        returning: bool,
    },
    /// A native Db holds the item and returns it by itself at the deadline: a lease a process
    /// that died held, adopted when the storage was built. Only the deadline matters.
    DbReturns,
}

/// How a lease the table held its item for ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LeaseEnd {
    /// Acked in time: the item is gone for good.
    Acked,
    /// Released: the item is back on top.
    Released,
    /// Acked past its deadline: the item is back on top, the ack removed nothing.
    Late,
    /// Not held any more: it expired already, its item went back then.
    Gone,
}

/// The leases held through one storage, by key (keys grow with every lease, so key order is
/// lease order). Bounded by the lease guards alive, plus native Db leases whose ack or release
/// failed (kept until their deadline).
#[derive(Default)]
pub(crate) struct LeaseTable {
    next_key: u64,
    held: BTreeMap<u64, Held>,
    /// No deadline in `held` is earlier (a lower bound: removing a lease does not raise it).
    next_deadline: Option<Instant>,
    from_memory: u64,
    from_db: u64,
    expired: u64,
    /// The memory-leased item whose write to the Db is in flight ([`ToDb::Writing`]; one at a
    /// time, inside the writer role): its key and its lease's deadline, for
    /// [`writing_past_deadline`](Self::writing_past_deadline).
    writing: Option<(u64, Instant)>,
}

impl LeaseTable {
    /// Tracks a new lease until `deadline`, taken from memory or not (`from_memory`); returns
    /// its key, and whether its deadline is now the earliest (the flusher, which sleeps until
    /// the earliest, must be woken).
    pub(crate) fn insert(
        &mut self,
        deadline: Instant,
        what: What,
        from_memory: bool,
    ) -> (u64, bool) {
        let key = self.track(deadline, what);
        if from_memory {
            self.from_memory += 1;
        } else {
            self.from_db += 1;
        }
        let at = self.held.get(&key).map_or(deadline, Held::wakes_at);
        (key, self.lower_next_deadline(at))
    }

    /// Lowers the earliest deadline to `at`; whether `at` is now the earliest.
    fn lower_next_deadline(&mut self, at: Instant) -> bool {
        let earliest = self.next_deadline.is_none_or(|d| at < d);
        if earliest {
            self.next_deadline = Some(at);
        }
        earliest
    }

    fn track(&mut self, deadline: Instant, what: What) -> u64 {
        self.next_key += 1;
        self.held.insert(self.next_key, Held { deadline, what });
        self.next_key
    }

    /// Tracks a lease the Db held when the storage was built (a process that died held it):
    /// not taken by this storage, but it comes back by itself at `deadline`.
    pub(crate) fn adopt(&mut self, deadline: Instant) {
        self.track(deadline, What::DbReturns);
        self.next_deadline = Some(self.next_deadline.map_or(deadline, |d| d.min(deadline)));
    }

    /// Stops tracking `key`; its lease, if it was still held.
    pub(crate) fn remove(&mut self, key: u64) -> Option<Held> {
        self.held.remove(&key)
    }

    /// Counts `n` leases that ended past their deadline although the table had not expired
    /// them yet (a late ack, a native lease returned at its deadline), or that a native Db no
    /// longer held.
    pub(crate) fn count_expired(&mut self, n: usize) {
        self.expired += n as u64;
    }

    /// Where the native lease `key` stands at `now`.
    pub(crate) fn native_state(&self, key: u64, now: Instant) -> NativeState {
        match self.held.get(&key) {
            None => NativeState::Ended,
            Some(held) if held.is_returning() => NativeState::Returning,
            Some(held) if held.deadline <= now => NativeState::Due,
            Some(_) => NativeState::Held,
        }
    }

    /// Marks the native leases among `keys` still held as being returned: their keys and Db
    /// ids; `None` if one of them is being returned by another call already (wait for its
    /// outcome).
    pub(crate) fn claim_native(&mut self, keys: &[u64]) -> Option<Vec<(u64, LeaseId)>> {
        let mut out = Vec::new();
        for &key in keys {
            if let Some(Held {
                what: What::Native { returning, id, .. },
                ..
            }) = self.held.get(&key)
            {
                if *returning {
                    return None;
                }
                out.push((key, *id));
            }
        }
        for (key, _) in &out {
            if let Some(Held {
                what: What::Native { returning, .. },
                ..
            }) = self.held.get_mut(key)
            {
                *returning = true;
            }
        }
        Some(out)
    }

    /// The return of the `claimed` native leases landed: `ended`, they are gone; if not, the
    /// Db keeps them, and the ones still tracked are due again at the Db's own deadline.
    pub(crate) fn settle_native(&mut self, claimed: &[(u64, LeaseId)], ended: bool) {
        for (key, _) in claimed {
            if ended {
                self.held.remove(key);
                continue;
            }
            if let Some(held) = self.held.get_mut(key)
                && let What::Native {
                    returning,
                    db_deadline,
                    ..
                } = &mut held.what
            {
                *returning = false;
                held.deadline = *db_deadline + DB_CLOCK_MARGIN;
                let at = held.deadline;
                if self.next_deadline.is_none_or(|d| at < d) {
                    self.next_deadline = Some(at);
                }
            }
        }
    }

    /// Removes and returns the leases whose deadline is at or before `now`, oldest lease
    /// first, counted as expired; also returns the keys of the native leases due, which stay
    /// in the table: their return takes them out.
    pub(crate) fn take_due(&mut self, now: Instant) -> (Vec<Held>, Vec<u64>) {
        if self.next_deadline.is_none_or(|d| now < d) {
            return (Vec::new(), Vec::new());
        }
        let keys: Vec<(u64, bool)> = self
            .held
            .iter()
            .filter(|(_, h)| h.deadline <= now && !h.is_returning())
            .map(|(&k, h)| (k, matches!(h.what, What::Native { .. })))
            .collect();
        let native: Vec<u64> = keys.iter().filter(|k| k.1).map(|k| k.0).collect();
        // Items due for the Db but not past their deadline stay: `claim_to_db` takes them.
        let due: Vec<Held> = keys
            .iter()
            .filter(|k| !k.1)
            .filter_map(|k| self.held.remove(&k.0))
            .collect();
        // A return in flight settles with its own deadline (`settle_native`).
        let waiting = self.held.values().filter(|h| !h.is_returning());
        self.next_deadline = waiting.map(Held::wakes_at).min();
        self.expired += due.len() as u64;
        (due, native)
    }

    /// Where the lease `key`, whose guard holds its item, stands.
    pub(crate) fn item_state(&self, key: u64) -> ItemState {
        match self.held.get(&key).map(|h| &h.what) {
            Some(What::Item {
                to_db: ToDb::Writing,
                ..
            }) => ItemState::Writing,
            Some(What::Native { .. }) => ItemState::InDb,
            _ => ItemState::Here,
        }
    }

    /// The Db's id of the native lease `key`, if it is one and still held.
    pub(crate) fn native_id(&self, key: u64) -> Option<LeaseId> {
        match self.held.get(&key).map(|h| &h.what) {
            Some(What::Native { id, .. }) => Some(*id),
            _ => None,
        }
    }

    /// Claims one memory-leased item due for the Db at `now` (and not past its deadline) for
    /// its write, the oldest lease first: marks it [`ToDb::Writing`] (no expiry, ack or release
    /// takes it until [`settle_to_db`](Self::settle_to_db)); its key, bytes and lease deadline.
    /// One item a write: a server Db recognises the retry of a call whose reply was lost by the
    /// call's items, so a call must be retried with exactly its items, which a batch whose
    /// members' leases end at different times cannot promise.
    pub(crate) fn claim_to_db(&mut self, now: Instant) -> Option<Claimed> {
        let (&key, held) = self.held.iter_mut().find(|(_, h)| {
            h.deadline > now
                && matches!(h.what, What::Item { to_db: ToDb::At(at), .. } if at <= now)
        })?;
        let What::Item { data, to_db, .. } = &mut held.what else {
            return None;
        };
        *to_db = ToDb::Writing;
        self.writing = Some((key, held.deadline));
        Some(Claimed {
            key,
            data: Arc::clone(data),
            deadline: held.deadline,
        })
    }

    /// The write of the claimed item `key` landed: `Ok`, the Db holds it under the native lease
    /// `id` until about `db_deadline`, and the lease is a native one from now on, with the same
    /// deadline; `Err(at)`, nothing was stored and the item stays here, due for the Db again at
    /// `at` (`None`: never, the Db refused it for good). Lowers the earliest deadline to it.
    pub(crate) fn settle_to_db(
        &mut self,
        key: u64,
        outcome: Result<(LeaseId, Instant), Option<Instant>>,
    ) {
        let Some(held) = self.held.get_mut(&key) else {
            return;
        };
        if self.writing.is_some_and(|(k, _)| k == key) {
            self.writing = None;
        }
        match (&mut held.what, outcome) {
            (what @ What::Item { .. }, Ok((id, db_deadline))) => {
                *what = What::Native {
                    id,
                    db_deadline,
                    returning: false,
                };
            }
            (What::Item { to_db, .. }, Err(at)) => *to_db = at.map_or(ToDb::Never, ToDb::At),
            _ => return,
        }
        let at = held.wakes_at();
        self.lower_next_deadline(at);
    }

    /// Makes every memory-leased item that goes to the Db before its lease ends due for it at
    /// `now`, for `close` and `Storage::write_leased_items_now`.
    pub(crate) fn make_due_for_db(&mut self, now: Instant) {
        for held in self.held.values_mut() {
            if let What::Item {
                to_db: to_db @ ToDb::At(_),
                ..
            } = &mut held.what
            {
                *to_db = ToDb::At(now);
                self.next_deadline = Some(self.next_deadline.map_or(now, |d| d.min(now)));
            }
        }
    }

    /// The earliest deadline of a lease a native Db holds, if any is held: the Db may hold
    /// such an item again from then on.
    pub(crate) fn earliest_in_db(&self) -> Option<Instant> {
        self.held
            .values()
            .filter(|h| !matches!(h.what, What::Item { .. }))
            .map(|h| h.deadline)
            .min()
    }

    /// Whether any deadline is pending: a lease's ([`next_deadline`](Self::next_deadline)) or
    /// that of a leased item being written ([`writing_past_deadline`](Self::writing_past_deadline)).
    /// Two loads: the taking calls ask this first, so they read the clock only while leases are
    /// held.
    #[inline]
    pub(crate) fn deadline_pending(&self) -> bool {
        self.next_deadline.is_some() || self.writing.is_some()
    }

    /// Whether the write of a memory-leased item to the Db is in flight.
    #[inline]
    pub(crate) fn is_writing(&self) -> bool {
        self.writing.is_some()
    }

    /// The earliest deadline of a held lease (or a bit earlier).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.next_deadline
    }

    /// Whether the write of a memory-leased item to the Db is in flight past the lease's
    /// deadline. Expiry skips such a lease (only the write's outcome says where the item is),
    /// and it is not in [`next_deadline`](Self::next_deadline), so a taking call asks this
    /// too: it must wait for the landing, then return the lease (native by then) on top, as it
    /// would any lease past its deadline. One comparison.
    pub(crate) fn writing_past_deadline(&self, now: Instant) -> bool {
        self.writing.is_some_and(|(_, deadline)| deadline <= now)
    }

    /// Leases held now.
    pub(crate) fn len(&self) -> usize {
        self.held.len()
    }

    /// Leases taken so far: from memory, from the Db.
    pub(crate) fn taken(&self) -> (u64, u64) {
        (self.from_memory, self.from_db)
    }

    /// Leases that expired so far (a late ack included).
    pub(crate) fn expired(&self) -> u64 {
        self.expired
    }

    /// Moves the deadline of every lease this storage took (memory, fallback and native
    /// leases, and one whose item is being written to the Db; not a native one being
    /// returned) to `now`, for `Storage::expire_leases_now`.
    #[cfg(feature = "testing")]
    pub(crate) fn make_due(&mut self, now: Instant) {
        for held in self.held.values_mut() {
            let returning = matches!(
                held.what,
                What::Native {
                    returning: true,
                    ..
                }
            );
            if !matches!(held.what, What::DbReturns) && !returning {
                held.deadline = held.deadline.min(now);
                self.next_deadline = Some(self.next_deadline.map_or(now, |d| d.min(now)));
            }
        }
        if let Some((_, deadline)) = self.writing.as_mut() {
            *deadline = (*deadline).min(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn due_leases_come_out_oldest_first_and_count_as_expired() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut table = LeaseTable::default();
        let item = |b: u8| What::Item {
            data: Arc::new(vec![b]),
            pushed_at: t0,
            to_db: ToDb::Never,
        };
        assert_eq!(table.insert(t0 + ms(20), item(1), true), (1, true));
        assert_eq!(table.insert(t0 + ms(10), What::DbReturns, false), (2, true));
        assert_eq!(table.insert(t0 + ms(30), item(3), true), (3, false));
        assert_eq!(table.earliest_in_db(), Some(t0 + ms(10)));
        assert!(table.take_due(t0 + ms(5)).0.is_empty());
        let (due, native) = table.take_due(t0 + ms(20));
        assert_eq!((due.len(), native.len()), (2, 0));
        assert!(
            matches!(due[0].what, What::Item { .. }),
            "oldest lease first"
        );
        assert_eq!(
            (table.len(), table.expired(), table.taken()),
            (1, 2, (2, 1))
        );
        assert_eq!(table.next_deadline(), Some(t0 + ms(30)));
        table.adopt(t0 + ms(1));
        assert_eq!(table.taken(), (2, 1), "an adopted lease was not taken here");
        assert_eq!(table.next_deadline(), Some(t0 + ms(1)));
    }

    /// A memory lease due for the Db is not due to expire: claimed, it is skipped by expiry
    /// until its write settles; stored, it is a native lease with the same key and deadline;
    /// failed, it is due for the Db again at the retry time.
    #[test]
    fn a_memory_lease_due_for_the_db_is_claimed_then_native_or_retried() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut table = LeaseTable::default();
        let key = |claimed: Option<Claimed>| claimed.map(|c| c.key);
        let item = |at| What::Item {
            data: Arc::new(vec![1]),
            pushed_at: t0,
            to_db: ToDb::At(at),
        };
        let (a, earliest) = table.insert(t0 + ms(100), item(t0 + ms(10)), true);
        assert!(earliest);
        assert_eq!(
            table.next_deadline(),
            Some(t0 + ms(10)),
            "wakes for the Db first"
        );
        let (b, _) = table.insert(t0 + ms(100), item(t0 + ms(20)), true);
        assert!(table.claim_to_db(t0 + ms(5)).is_none(), "not due yet");
        let claimed = table.claim_to_db(t0 + ms(10)).expect("a is due");
        let got = (claimed.key, claimed.data.to_vec(), claimed.deadline);
        assert_eq!(got, (a, vec![1], t0 + ms(100)));
        assert!(table.writing_past_deadline(t0 + ms(100)));
        assert!(!table.writing_past_deadline(t0 + ms(99)));
        assert_eq!(table.item_state(a), ItemState::Writing);
        assert!(
            table.take_due(t0 + ms(200)).0.len() == 1,
            "only b expires; a is being written"
        );
        assert_eq!(table.item_state(b), ItemState::Here, "b expired: gone");
        table.settle_to_db(a, Ok((LeaseId(9), t0 + ms(150))));
        assert_eq!(table.item_state(a), ItemState::InDb);
        assert_eq!(table.native_id(a), Some(LeaseId(9)));
        assert_eq!(table.native_state(a, t0 + ms(50)), NativeState::Held);
        assert_eq!(table.next_deadline(), Some(t0 + ms(100)));
        let (c, _) = table.insert(t0 + ms(100), item(t0 + ms(10)), true);
        assert!(key(table.claim_to_db(t0 + ms(10))) == Some(c));
        table.settle_to_db(c, Err(Some(t0 + ms(30))));
        assert_eq!(table.item_state(c), ItemState::Here);
        assert!(table.claim_to_db(t0 + ms(20)).is_none(), "backing off");
        assert!(key(table.claim_to_db(t0 + ms(30))) == Some(c));
        table.settle_to_db(c, Err(None));
        assert!(
            table.claim_to_db(t0 + ms(99)).is_none(),
            "refused for good: never"
        );
    }

    /// A native lease due stays in the table until its return lands; claimed, it is not due
    /// again, and a failed return makes it due at the Db's own deadline.
    #[test]
    fn a_native_lease_is_claimed_returned_or_kept_until_the_dbs_deadline() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut table = LeaseTable::default();
        let native = What::Native {
            id: LeaseId(7),
            db_deadline: t0 + ms(50),
            returning: false,
        };
        let (key, _) = table.insert(t0 + ms(10), native, false);
        assert_eq!(table.native_state(key, t0), NativeState::Held);
        let (due, natives) = table.take_due(t0 + ms(10));
        assert!(
            due.is_empty(),
            "a native lease stays until its return lands"
        );
        assert_eq!(natives, vec![key]);
        assert_eq!(table.native_state(key, t0 + ms(10)), NativeState::Due);
        let claimed = table.claim_native(&[key]).expect("not returning yet");
        assert_eq!(claimed, vec![(key, LeaseId(7))]);
        assert_eq!(table.claim_native(&[key]), None, "a second return waits");
        assert_eq!(table.native_state(key, t0), NativeState::Returning);
        table.settle_native(&claimed, false);
        assert_eq!(table.native_state(key, t0 + ms(20)), NativeState::Held);
        let db_due = t0 + ms(50) + DB_CLOCK_MARGIN;
        assert_eq!(table.native_state(key, db_due), NativeState::Due);
        let claimed = table.claim_native(&[key]).expect("held again");
        table.settle_native(&claimed, true);
        assert_eq!(table.native_state(key, t0), NativeState::Ended);
    }
}
