//! Leases at the Db level: [`LeaseId`], [`DbLease`], [`LeaseTable`] (the in-memory table of
//! held leases that [`MemDb`](super::mem::MemDb) keeps and [`FileDb`](super::file::FileDb)
//! rebuilds from its lease log), and the clock and result helpers every backend with leases
//! shares.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::DbError;

/// Names one leased item. Opaque: only the Db that issued it knows what it means.
///
/// Ids are unique per Db for its lifetime (FileDb: per file; Redis: per key; PostgreSQL: per
/// table), so an ack of an old lease can never hit a newer lease on the same item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LeaseId(pub u64);

/// An item taken by [`DbLeases::pop_lease`](super::interface::DbLeases::pop_lease): invisible to other pops until it
/// is acked (gone for good), released (back on top), or its deadline passes (back by itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbLease {
    /// What [`ack`](super::interface::DbLeases::ack) and
    /// [`release`](super::interface::DbLeases::release) name it by.
    pub id: LeaseId,
    /// The item.
    pub item: Vec<u8>,
}

/// A lease's ttl in whole milliseconds, at least 1 (servers take ttls in ms; 0 would mean
/// "already expired" or be refused).
#[cfg(any(feature = "redis", feature = "postgres"))]
pub(crate) fn ttl_millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Milliseconds since the Unix epoch: lease deadlines are wall-clock stamps, because they are
/// stored (FileDb's lease log) and compared by other processes.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// An epoch-milliseconds stamp as a `SystemTime`.
pub(crate) fn system_time(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// The deadline of a lease taken at `now` for `ttl`, in epoch milliseconds.
pub(crate) fn deadline_ms(now: u64, ttl: Duration) -> u64 {
    now.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
}

/// `Ok`, or [`DbError::LeaseExpired`] for `missing` ids that were not held: the answer of an
/// ack or a release.
pub(crate) fn lease_result(missing: usize) -> Result<(), DbError> {
    match missing {
        0 => Ok(()),
        count => Err(DbError::LeaseExpired { count }),
    }
}

/// One held lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Held {
    /// The leased item.
    pub(crate) item: Vec<u8>,
    /// When it returns by itself, in epoch milliseconds.
    pub(crate) deadline: u64,
}

/// The leases a Db holds, by id. Ids grow: within one `pop_lease`, the oldest item gets the
/// smallest id, so returning leases in id order puts them back newest on top, as they were.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LeaseTable {
    held: BTreeMap<u64, Held>,
}

impl LeaseTable {
    /// Whether no lease is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Whether `id` is held.
    pub(crate) fn contains(&self, id: u64) -> bool {
        self.held.contains_key(&id)
    }

    /// The ids `items` (newest first) get when leased with next id `next`: the newest gets the
    /// largest.
    pub(crate) fn ids_for(next: u64, n: usize) -> impl Iterator<Item = u64> {
        (0..n as u64).rev().map(move |i| next + i)
    }

    /// Holds `item` under `id` until `deadline`.
    pub(crate) fn insert(&mut self, id: u64, item: Vec<u8>, deadline: u64) {
        self.held.insert(id, Held { item, deadline });
    }

    /// Forgets `id`; returns its lease if it was held.
    pub(crate) fn remove(&mut self, id: u64) -> Option<Held> {
        self.held.remove(&id)
    }

    /// The ids whose deadline is at or before `now`, oldest lease first.
    pub(crate) fn expired(&self, now: u64) -> Vec<u64> {
        self.held
            .iter()
            .filter(|(_, h)| h.deadline <= now)
            .map(|(&id, _)| id)
            .collect()
    }

    /// Every held lease, by ascending id.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &Held)> {
        self.held.iter().map(|(&id, h)| (id, h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_put_the_oldest_item_first_so_returns_restore_the_order() {
        // pop_lease returns newest first: [c, b, a] gets ids [12, 11, 10].
        let ids: Vec<u64> = LeaseTable::ids_for(10, 3).collect();
        assert_eq!(ids, vec![12, 11, 10]);
        let mut t = LeaseTable::default();
        for (id, item) in ids.into_iter().zip([b"c", b"b", b"a"]) {
            t.insert(id, item.to_vec(), 5);
        }
        let back: Vec<Vec<u8>> = t.iter().map(|(_, h)| h.item.clone()).collect();
        assert_eq!(back, vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
        assert_eq!(t.expired(4), Vec::<u64>::new());
        assert_eq!(t.expired(5), vec![10, 11, 12]);
    }
}
