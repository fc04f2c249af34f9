//! [`LogDb`]: the lifostore [`Db`] that writes a batch of log rows as one multi-row INSERT
//! per PostgreSQL shard, and learns the timestamp each append was stored with.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use lifostore::{Db, DbError, PushBatchError};

use crate::log_row::LogRow;
use crate::log_table::LogTable;
use crate::ring::HashRing;

/// An append some handler waits to answer: how many handlers wait for it (two deliveries of
/// one request can be in hand at once, in one worker), and the timestamp the table holds
/// for it once a write has seen it.
#[derive(Debug, Default)]
struct Awaited {
    handlers: u32,
    stored_ts: Option<i64>,
}

/// The write side of the log table(s), as a lifostore [`Db`].
///
/// A batch is ONE `INSERT ... SELECT unnest(...) ON CONFLICT (seq) DO NOTHING RETURNING seq,
/// ts` per shard it touches (one, without sharding). A failed batch reports `stored == 0`:
/// with several shards some may have committed, and the retry re-inserts their rows as
/// no-ops, so nothing is lost or doubled.
///
/// **The stored timestamp.** A handler registers the sequences of its appends
/// ([`await_stored`](Self::await_stored)) before pushing them, and reads their stored
/// timestamps ([`take_stored`](Self::take_stored)) after its flush returned. Every write
/// records, for each awaited sequence it wrote or found written, the timestamp in the table:
/// the `RETURNING ts` of the row it inserted, or, for a sequence stored already (a
/// redelivery, or the same request delivered twice at once), the `ts` read back from the
/// table in the same call. The record stays until the last handler waiting for it has taken
/// it, so two handlers of one request both answer with the stored timestamp.
///
/// objlog never pops: the log table is where entries end, not a stack. [`Db::pop`] returns
/// `None`, and the worker's `Storage` is only pushed to and flushed.
pub struct LogDb {
    shards: Vec<Mutex<LogTable>>,
    ring: HashRing,
    awaited: Mutex<HashMap<i64, Awaited>>,
    already_stored: AtomicU64,
}

impl LogDb {
    /// Writes through `shards` (at least one), objects placed by a [`HashRing`] over them.
    pub fn new(shards: Vec<LogTable>) -> LogDb {
        LogDb {
            ring: HashRing::new(shards.len()),
            shards: shards.into_iter().map(Mutex::new).collect(),
            awaited: Mutex::new(HashMap::new()),
            already_stored: AtomicU64::new(0),
        }
    }

    /// The ring placing objects on shards.
    pub fn ring(&self) -> &HashRing {
        &self.ring
    }

    /// Appends whose sequence was already in the table when written (redeliveries).
    pub fn already_stored(&self) -> u64 {
        self.already_stored.load(Ordering::Relaxed)
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
            let mut table = shard
                .lock()
                .map_err(|_| DbError::msg("log table lock poisoned"))?;
            let mut stored: HashMap<i64, i64> = table
                .insert(&rows)
                .map_err(DbError::other)?
                .into_iter()
                .collect();
            let mut missing: Vec<i64> = rows
                .iter()
                .map(|r| r.seq)
                .filter(|s| !stored.contains_key(s))
                .collect();
            missing.sort_unstable();
            missing.dedup();
            if !missing.is_empty() {
                self.already_stored
                    .fetch_add(missing.len() as u64, Ordering::Relaxed);
                stored.extend(table.stored_ts(&missing).map_err(DbError::other)?);
            }
            self.record(&stored);
        }
        Ok(())
    }

    fn record(&self, stored: &HashMap<i64, i64>) {
        let Ok(mut awaited) = self.awaited.lock() else {
            return;
        };
        for (seq, ts) in stored {
            if let Some(a) = awaited.get_mut(seq) {
                a.stored_ts = Some(*ts);
            }
        }
    }

    /// A handler is about to push appends with these sequences and will wait for their
    /// stored timestamps: call before the push, so that no write of them goes unrecorded.
    pub fn await_stored(&self, seqs: &[i64]) {
        let Ok(mut awaited) = self.awaited.lock() else {
            return;
        };
        for seq in seqs {
            awaited.entry(*seq).or_default().handlers += 1;
        }
    }

    /// The stored timestamp of each of `seqs` (in order), once their flush returned; `None`
    /// for one no write has seen (which a successful flush rules out). Ends this handler's
    /// wait for them.
    pub fn take_stored(&self, seqs: &[i64]) -> Vec<Option<i64>> {
        let Ok(mut awaited) = self.awaited.lock() else {
            return vec![None; seqs.len()];
        };
        seqs.iter()
            .map(|seq| {
                let a = awaited.get_mut(seq)?;
                let ts = a.stored_ts;
                a.handlers = a.handlers.saturating_sub(1);
                if a.handlers == 0 {
                    awaited.remove(seq);
                }
                ts
            })
            .collect()
    }

    /// Appends being answered now (their handlers have not taken their timestamps).
    pub fn awaited(&self) -> usize {
        self.awaited.lock().map_or(0, |a| a.len())
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
