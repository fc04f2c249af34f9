//! [`LogDb`]: the lifostore [`Db`] that writes a batch of log rows as one multi-row INSERT.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lifostore::{Db, DbError, PushBatchError};

use crate::log_row::LogRow;
use crate::log_table::LogTable;

/// How long a recorded conflict waits for the handler that asked about it; handlers wait for
/// their flush far less, so an older record has nobody left to read it.
const CONFLICT_TTL: Duration = Duration::from_secs(600);
/// Most conflict records kept (they only arise from redeliveries).
const MAX_CONFLICTS: usize = 1_000_000;

/// The write side of the log table, as a lifostore [`Db`].
///
/// A batch is ONE `INSERT ... SELECT unnest(...) ON CONFLICT (seq) DO NOTHING RETURNING seq`,
/// atomic, so a failed batch stored nothing. Sequences the insert skipped (a redelivered
/// append whose first delivery already reached the table) are recorded as *conflicts*, so
/// the handler can report the first, stored timestamp instead of its own.
///
/// objlog never pops: the log table is where entries end, not a stack. [`Db::pop`] returns
/// `None`, and the worker's `Storage` is only pushed to and flushed.
pub struct LogDb {
    table: Mutex<LogTable>,
    conflicts: Mutex<HashMap<i64, Instant>>,
}

impl LogDb {
    /// Wraps a connected table.
    pub fn new(table: LogTable) -> LogDb {
        LogDb {
            table: Mutex::new(table),
            conflicts: Mutex::new(HashMap::new()),
        }
    }

    fn write(&self, rows: &[LogRow]) -> Result<(), DbError> {
        let inserted = {
            let mut table = self
                .table
                .lock()
                .map_err(|_| DbError::msg("log table lock poisoned"))?;
            table.insert(rows).map_err(DbError::other)?
        };
        if inserted.len() < rows.len() {
            self.record_conflicts(rows, &inserted);
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
