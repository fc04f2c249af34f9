//! [`LeaseTable`]: the leases a storage holds, with their deadlines.
//!
//! Where a leased item is while its lease is held:
//! * **memory lease** (the item was buffered): out of the stack, here, with its push stamp.
//!   Ack forgets it; release, or its deadline, puts it back on top with that stamp, so the
//!   flusher writes it when it comes due, as if it had never left: the window covers it like
//!   any buffered item.
//! * **Db lease, native** (the Db has [`DbLeases`](crate::DbLeases)): in the Db, hidden by the
//!   Db. The table keeps only its deadline: once it passes, the Db may hold the item again.
//! * **Db lease, fallback** (a Db without leases): the item left the Db (a plain Db pop); it is
//!   held here like a memory lease, stamped due at once, so a release or an expiry writes it
//!   back to the Db promptly. A crash while it is held loses it (at most once, as `pop`).
//!
//! A leaf: it imports nothing of the engine. The state owns the table and changes it only
//! through the methods below.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// One lease the table holds.
pub(crate) struct Held {
    pub(crate) deadline: Instant,
    pub(crate) what: What,
}

/// What the table holds for a lease.
pub(crate) enum What {
    /// The item itself (a memory lease, or a fallback Db lease), with its push stamp. The
    /// lease guard holds the other reference.
    Item {
        data: Arc<Vec<u8>>,
        pushed_at: Instant,
    },
    /// Nothing: a native Db holds the item. Only the deadline matters.
    InDb,
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
        let earliest = self.next_deadline.is_none_or(|d| deadline < d);
        if earliest {
            self.next_deadline = Some(deadline);
        }
        (key, earliest)
    }

    fn track(&mut self, deadline: Instant, what: What) -> u64 {
        self.next_key += 1;
        self.held.insert(self.next_key, Held { deadline, what });
        self.next_key
    }

    /// Tracks a lease the Db held when the storage was built (a process that died held it):
    /// not taken by this storage, but it comes back by itself at `deadline`.
    pub(crate) fn adopt(&mut self, deadline: Instant) {
        self.track(deadline, What::InDb);
        self.next_deadline = Some(self.next_deadline.map_or(deadline, |d| d.min(deadline)));
    }

    /// Stops tracking `key`; its lease, if it was still held.
    pub(crate) fn remove(&mut self, key: u64) -> Option<Held> {
        self.held.remove(&key)
    }

    /// Counts a lease that ended past its deadline although the table had not expired it yet
    /// (a late ack), or that a native Db no longer held.
    pub(crate) fn count_expired(&mut self) {
        self.expired += 1;
    }

    /// Removes and returns the leases whose deadline is at or before `now`, oldest lease
    /// first, counted as expired.
    pub(crate) fn take_due(&mut self, now: Instant) -> Vec<Held> {
        if self.next_deadline.is_none_or(|d| now < d) {
            return Vec::new();
        }
        let keys: Vec<u64> = self
            .held
            .iter()
            .filter(|(_, h)| h.deadline <= now)
            .map(|(&k, _)| k)
            .collect();
        let due: Vec<Held> = keys.iter().filter_map(|k| self.held.remove(k)).collect();
        self.next_deadline = self.held.values().map(|h| h.deadline).min();
        self.expired += due.len() as u64;
        due
    }

    /// The earliest deadline of a lease a native Db holds, if any is held: the Db may hold
    /// such an item again from then on.
    pub(crate) fn earliest_in_db(&self) -> Option<Instant> {
        self.held
            .values()
            .filter(|h| matches!(h.what, What::InDb))
            .map(|h| h.deadline)
            .min()
    }

    /// The earliest deadline of a held lease (or a bit earlier).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.next_deadline
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

    /// Moves the deadline of every lease holding its item (memory and fallback leases) to
    /// `now`, for `Storage::expire_leases_now`.
    #[cfg(feature = "testing")]
    pub(crate) fn make_items_due(&mut self, now: Instant) {
        for held in self.held.values_mut() {
            if matches!(held.what, What::Item { .. }) {
                held.deadline = held.deadline.min(now);
                self.next_deadline = Some(self.next_deadline.map_or(now, |d| d.min(now)));
            }
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
        };
        assert_eq!(table.insert(t0 + ms(20), item(1), true), (1, true));
        assert_eq!(table.insert(t0 + ms(10), What::InDb, false), (2, true));
        assert_eq!(table.insert(t0 + ms(30), item(3), true), (3, false));
        assert_eq!(table.earliest_in_db(), Some(t0 + ms(10)));
        assert!(table.take_due(t0 + ms(5)).is_empty());
        let due = table.take_due(t0 + ms(20));
        assert_eq!(due.len(), 2);
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
}
