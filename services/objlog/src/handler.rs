//! [`Handler`]: the blocking side of a worker. Turns a batch of requests into answers.
//!
//! Appends are pushed into the worker's lifostore [`Storage`] and the batch waits for one
//! `flush` (so the rows reach PostgreSQL in as few multi-row INSERTs as the storage needs);
//! only then are answers produced, and the edge acks a request only after publishing its
//! answer. A batch whose flush fails produces no answers for its appends and queries: they
//! stay unacked and are redelivered after AckWait.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use lifostore::{CancelToken, Db, Storage};

use crate::counters::Counters;
use crate::edge::{Incoming, Outgoing};
use crate::error::Error;
use crate::log_db::LogDb;
use crate::log_row::{LogRow, now_micros};
use crate::log_table::LogTable;
use crate::query_page::QueryPage;
use crate::wire::{Cursor, Request, Response, parse_request};

/// How appends reach PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Through lifostore: push every append, one flush per batch (multi-row INSERTs).
    Batched,
    /// The baseline: one single-row INSERT (its own transaction) per append.
    PerInsert,
}

/// State every handler thread of a worker shares.
pub struct Shared {
    /// The write-behind buffer over the log table.
    pub storage: Storage<LogDb>,
    /// Batched or the per-insert baseline.
    pub mode: Mode,
    /// The worker's counters.
    pub counters: Counters,
    /// Longest a batch waits for its flush before giving up (its requests are redelivered).
    pub flush_timeout: Duration,
}

/// One handler thread's state: the shared parts and its own connections (one per shard)
/// for reads.
pub struct Handler {
    shared: Arc<Shared>,
    shards: Vec<LogTable>,
    max_payload: usize,
}

struct Query {
    incoming: Incoming,
    object: i64,
    after: Cursor,
    limit: u32,
}

impl Handler {
    /// A handler reading through `shards` (in the order the storage's [`LogDb`] has them),
    /// cutting query pages to fit `max_payload`.
    pub fn new(shared: Arc<Shared>, shards: Vec<LogTable>, max_payload: usize) -> Handler {
        Handler {
            shared,
            shards,
            max_payload,
        }
    }

    /// The connection to the shard holding `object`'s log.
    fn shard(&mut self, object: i64) -> Result<&mut LogTable, Error> {
        let i = self.shared.storage.db().ring().shard_of(object);
        let n = self.shards.len();
        self.shards
            .get_mut(i)
            .ok_or_else(|| Error::Config(format!("object {object} maps to shard {i} of {n}")))
    }

    /// The stored timestamps of `conflicts`, asking each shard for its own sequences.
    fn stored_ts(
        &mut self,
        conflicts: &[i64],
        appends: &[(Incoming, LogRow)],
    ) -> Result<HashMap<i64, i64>, Error> {
        let object: HashMap<i64, i64> = appends.iter().map(|(_, r)| (r.seq, r.object)).collect();
        let mut by_shard: HashMap<usize, Vec<i64>> = HashMap::new();
        let ring = self.shared.storage.db().ring().clone();
        for seq in conflicts {
            let shard = object.get(seq).map_or(0, |o| ring.shard_of(*o));
            by_shard.entry(shard).or_default().push(*seq);
        }
        let mut stored = HashMap::new();
        for (shard, seqs) in by_shard {
            let table = self
                .shards
                .get_mut(shard)
                .ok_or_else(|| Error::Config(format!("no shard {shard}")))?;
            stored.extend(table.stored_ts(&seqs)?);
        }
        Ok(stored)
    }

    /// Handles one batch; returns the answers to publish and ack.
    pub fn handle(&mut self, batch: Vec<Incoming>) -> Vec<Outgoing> {
        let counters = &self.shared.counters;
        let redelivered = batch.iter().filter(|i| i.delivered > 1).count();
        counters.batch(batch.len(), redelivered);
        let Sorted {
            mut answers,
            appends,
            queries,
        } = sort(batch);
        counters.refused(answers.len());
        if let Err(e) = self.store(&appends, !queries.is_empty()) {
            counters.failed_batch();
            eprintln!("objlog worker: batch not stored ({e}); its requests will be redelivered");
            return answers;
        }
        match self.append_answers(appends) {
            Ok(done) => answers.extend(done),
            Err(e) => eprintln!(
                "objlog worker: reading stored timestamps failed ({e}); redelivery will answer"
            ),
        }
        for q in queries {
            match self.query_answer(q) {
                Ok(done) => answers.push(done),
                Err(e) => eprintln!("objlog worker: query failed ({e}); it will be redelivered"),
            }
        }
        answers
    }

    fn store(&self, appends: &[(Incoming, LogRow)], has_queries: bool) -> Result<(), Error> {
        let token = CancelToken::new().with_timeout(self.shared.flush_timeout);
        let storage = &self.shared.storage;
        match self.shared.mode {
            Mode::Batched => {
                for (_, row) in appends {
                    storage.push(&token, row.encode())?;
                }
                if !appends.is_empty() || has_queries {
                    storage.flush(&token)?;
                }
            }
            Mode::PerInsert => {
                for (_, row) in appends {
                    storage.db().push(&row.encode())?;
                }
            }
        }
        self.shared.counters.appended(appends.len());
        Ok(())
    }

    /// Append answers carry the STORED timestamp: for a redelivered append whose first
    /// delivery already reached the table, the insert skipped the row, and the first
    /// delivery's timestamp is read back.
    fn append_answers(&mut self, appends: Vec<(Incoming, LogRow)>) -> Result<Vec<Outgoing>, Error> {
        let seqs: Vec<i64> = appends.iter().map(|(_, r)| r.seq).collect();
        let conflicts = self.shared.storage.db().take_conflicts(&seqs);
        let stored: HashMap<i64, i64> = if conflicts.is_empty() {
            HashMap::new()
        } else {
            self.shared.counters.conflicts(conflicts.len());
            self.stored_ts(&conflicts, &appends)?
        };
        Ok(appends
            .into_iter()
            .map(|(incoming, row)| {
                let mut r = Response::new("append", incoming.seq, incoming.req.clone());
                r.id = Some(row.object as u64);
                r.ok = true;
                r.ts = Some(stored.get(&row.seq).copied().unwrap_or(row.ts));
                Outgoing::new(incoming, r)
            })
            .collect())
    }

    fn query_answer(&mut self, q: Query) -> Result<Outgoing, Error> {
        let rows = self
            .shard(q.object)?
            .page(q.object, q.after, q.limit.saturating_add(1))?;
        let page = QueryPage::cut(rows, q.limit as usize, self.max_payload, q.after);
        let mut r = Response::new("query", q.incoming.seq, q.incoming.req.clone());
        r.id = Some(q.object as u64);
        r.ok = true;
        page.fill(&mut r);
        self.shared.counters.queried();
        Ok(Outgoing::new(q.incoming, r))
    }
}

/// A batch split by kind: refusals (already answered), appends stamped now, queries.
struct Sorted {
    answers: Vec<Outgoing>,
    appends: Vec<(Incoming, LogRow)>,
    queries: Vec<Query>,
}

fn sort(batch: Vec<Incoming>) -> Sorted {
    let mut sorted = Sorted {
        answers: Vec::new(),
        appends: Vec::new(),
        queries: Vec::new(),
    };
    for incoming in batch {
        match classify(&incoming) {
            Ok(Request::Append { object, log }) => {
                let row = LogRow {
                    seq: incoming.seq as i64,
                    object,
                    ts: now_micros(),
                    log,
                };
                sorted.appends.push((incoming, row));
            }
            Ok(Request::Query {
                object,
                after,
                limit,
            }) => sorted.queries.push(Query {
                incoming,
                object,
                after,
                limit,
            }),
            Err(e) => {
                let r =
                    Response::refused(&incoming.subject, incoming.seq, incoming.req.clone(), &e);
                sorted.answers.push(Outgoing::new(incoming, r));
            }
        }
    }
    sorted
}

fn classify(incoming: &Incoming) -> Result<Request, crate::wire::RequestError> {
    if i64::try_from(incoming.seq).is_err() {
        return Err(crate::wire::RequestError::IdOutOfRange(incoming.seq));
    }
    parse_request(&incoming.subject, &incoming.payload)
}
