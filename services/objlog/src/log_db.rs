//! [`LogDb`]: the lifostore [`Db`] that writes a batch of log rows as one multi-row INSERT
//! per PostgreSQL shard.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lifostore::{Db, DbError, PushBatchError};

use crate::log_row::LogRow;
use crate::log_table::LogTable;
use crate::ring::HashRing;

/// How long a recorded conflict waits for the handler that asked about it; handlers wait for
/// their flush far less, so an older record has nobody left to read it.
const CONFLICT_TTL: Duration = Duration::from_secs(600);
/// Most conflict records kept (they only arise from redeliveries).
const MAX_CONFLICTS: usize = 1_000_000;

/// The write side of the log table(s), as a lifostore [`Db`].
///
/// A batch is ONE `INSERT ... SELECT unnest(...) ON CONFLICT (seq) DO NOTHING RETURNING seq`
/// per shard it touches (one, without sharding). A failed batch reports `stored == 0`: with
/// several shards some may have committed, and the retry re-inserts their rows as no-ops, so
/// nothing is lost or doubled. Sequences an insert skipped (a redelivered append whose first
/// delivery already reached the table) are recorded as *conflicts*, so the handler can report
/// the first, stored timestamp instead of its own.
///
/// objlog never pops: the log table is where entries end, not a stack. [`Db::pop`] returns
/// `None`, and the worker's `Storage` is only pushed to and flushed.
pub struct LogDb {
    shards: Vec<Mutex<LogTable>>,
    ring: HashRing,
    conflicts: Mutex<HashMap<i64, Instant>>,
}

impl LogDb {
    /// Writes through `shards` (at least one), objects placed by a [`HashRing`] over them.
    pub fn new(shards: Vec<LogTable>) -> LogDb {
        LogDb {
            ring: HashRing::new(shards.len()),
            shards: shards.into_iter().map(Mutex::new).collect(),
            conflicts: Mutex::new(HashMap::new()),
        }
    }

    /// The ring placing objects on shards.
    pub fn ring(&self) -> &HashRing {
        &self.ring
    }

    fn write(&self, rows: &[LogRow]) -> Result<(), DbError> {
        let mut by_shard: Vec<Vec<LogRow>> = vec![Vec::new(); self.shards.len()];
        for row in rows {
            by_shard[self.ring.shard_of(row.object) % self.shards.len()].push(row.clone());
        }
        for (shard, rows) in self
            .shards
            .iter()
            .zip(by_shard)
            .filter(|(_, r)| !r.is_empty())
        {
            let inserted = {
                let mut table = shard
                    .lock()
                    .map_err(|_| DbError::msg("log table lock poisoned"))?;
                table.insert(&rows).map_err(DbError::other)?
            };
            if inserted.len() < rows.len() {
                self.record_conflicts(&rows, &inserted);
            }
        }
        Ok(())
    }

    fn record_conflicts(&self, rows: &[LogRow], inserted: &[i64]) {
        let Ok(mut conflicts) = self.conflicts.lock() else {
            return;
        };
        let now = Instant::now();
        let inserted: HashSet<i64> = inserted.iter().copied().collect();
        if conflicts.len() >= MAX_CONFLICTS / 2 {
            conflicts.retain(|_, at| now.duration_since(*at) < CONFLICT_TTL);
        }
        for row in rows.iter().filter(|r| !inserted.contains(&r.seq)) {
            if conflicts.len() < MAX_CONFLICTS {
                conflicts.insert(row.seq, now);
            }
        }
    }

    /// Removes and returns those of `seqs` whose insert found the sequence already stored.
    pub fn take_conflicts(&self, seqs: &[i64]) -> Vec<i64> {
        let Ok(mut conflicts) = self.conflicts.lock() else {
            return Vec::new();
        };
        if conflicts.is_empty() {
            return Vec::new();
        }
        seqs.iter()
            .copied()
            .filter(|s| conflicts.remove(s).is_some())
            .collect()
    }
}

impl Db for LogDb {
    fn push(&self, data: &[u8]) -> Result<(), DbError> {
        self.write(&[LogRow::decode(data)?])
    }

    fn pop(&self) -> Result<Option<Vec<u8>>, DbError> {
        Ok(None)
    }

    fn push_batch(&self, items: &[&[u8]]) -> Result<(), PushBatchError> {
        let rows = items
            .iter()
            .map(|i| LogRow::decode(i))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| PushBatchError { stored: 0, source })?;
        self.write(&rows)
            .map_err(|source| PushBatchError { stored: 0, source })
    }
}
