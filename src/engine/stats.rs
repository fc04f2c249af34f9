//! [`Stats`]: the counters and gauges [`Storage::stats`](crate::Storage::stats) returns.
//!
//! A leaf: plain data, filled in by the state.

use std::time::Duration;

/// Counters and gauges of a [`Storage`](crate::Storage), from
/// [`Storage::stats`](crate::Storage::stats).
///
/// Every item the storage hands out is one delivery, counted once: as a pop
/// ([`pop`](crate::Storage::pop), [`pop_batch`](crate::Storage::pop_batch) and their `try_`
/// forms) or as a lease ([`pop_lease`](crate::Storage::pop_lease),
/// [`try_pop_lease`](crate::Storage::try_pop_lease)), each split by where the item came from;
/// [`delivered`](Stats::delivered) is their sum. An item a released or expired lease put back
/// is delivered again when it is taken again.
///
/// ```
/// use lifostore::{CancelToken, MemDb, Storage};
///
/// # fn main() -> Result<(), lifostore::Error> {
/// let storage = Storage::new(MemDb::new())?;
/// let token = CancelToken::new();
/// storage.push_batch(&token, ["a", "b"])?;
/// storage.pop(&token)?;
/// storage.pop_lease(&token)?.ack()?;
/// let stats = storage.stats();
/// assert_eq!((stats.pops, stats.leases, stats.delivered()), (1, 1, 2));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Stats {
    /// Pushes that returned `Ok` (each item of a `push_batch` counts once).
    pub pushes: u64,
    /// Items popped (memory plus Db); leases are not pops.
    pub pops: u64,
    /// Items popped from memory, without a Db call.
    pub pops_from_memory: u64,
    /// Items popped from the Db.
    pub pops_from_db: u64,
    /// Leases taken with [`Storage::pop_lease`](crate::Storage::pop_lease) or
    /// [`Storage::try_pop_lease`](crate::Storage::try_pop_lease) (memory plus Db).
    pub leases: u64,
    /// Leases on items taken from memory.
    pub leases_from_memory: u64,
    /// Leases on items taken from the Db.
    pub leases_from_db: u64,
    /// Leases held now: taken, and not yet acked, released or expired (plus, over a Db not
    /// shared with other processes, the leases it held when the storage was built, until
    /// their deadline). Their items are not counted in `buffered_items` nor in
    /// [`Storage::len`](crate::Storage::len).
    pub leases_held: usize,
    /// Leases whose deadline passed before an ack or a release (their items went back).
    pub leases_expired: u64,
    /// Db write calls (one per batch, failed ones included).
    pub db_push_calls: u64,
    /// Db calls that take items: pops and leases, including ones that found the Db empty.
    pub db_pop_calls: u64,
    /// Items written to the Db.
    pub items_flushed: u64,
    /// Failed Db writes.
    pub db_failures: u64,
    /// Pushes that had to wait for room.
    pub push_waits: u64,
    /// Poison items: items the Db refused for good
    /// ([`DbError::is_permanent`](crate::DbError::is_permanent)), isolated from their batch and
    /// handed to the dead-letter hook or kept aside.
    pub dead_letters: u64,
    /// Poison items kept aside now (no hook set), for
    /// [`Storage::take_dead_letters`](crate::Storage::take_dead_letters).
    pub dead_letters_held: usize,
    /// Poison items dropped because more than
    /// [`max_dead_letters`](crate::StorageBuilder::max_dead_letters) were kept aside.
    pub dead_letters_dropped: u64,
    /// Items in memory now (buffered plus in flight).
    pub buffered_items: usize,
    /// Bytes in memory now.
    pub buffered_bytes: usize,
    /// Items being written right now.
    pub in_flight_items: usize,
    /// Age of the oldest item waiting in memory (not counting an in-flight batch).
    pub oldest_unflushed_age: Option<Duration>,
    /// Measured Db write speed, items per second, once a write has succeeded.
    pub db_items_per_sec: Option<f64>,
    /// How long the Db has been failing, if it is.
    pub db_failing_for: Option<Duration>,
    /// Items in the Db, when the storage knows its count exactly (no Db call): for a Db not
    /// shared with other processes, once a pop found it empty or
    /// [`Storage::len`](crate::Storage::len) counted it.
    pub db_len: Option<u64>,
}

impl Stats {
    /// Every item handed out: pops plus leases.
    pub fn delivered(&self) -> u64 {
        self.pops + self.leases
    }

    /// All Db calls the storage made, writes and pops.
    pub fn db_calls(&self) -> u64 {
        self.db_push_calls + self.db_pop_calls
    }
}
