//! [`Handler`]: the blocking side of a worker. Turns a batch of requests into answers.
//!
//! Appends are pushed into the worker's lifostore [`Storage`] and the batch waits for one
//! `flush` (so the rows reach PostgreSQL in as few multi-row INSERTs as the storage needs);
//! only then are answers produced, and the edge acks a request only after publishing its
//! answer. A batch whose flush fails produces no answers for its appends and queries: they
//! stay unacked and are redelivered after AckWait.

use std::sync::Arc;
use std::time::Duration;

use lifostore::{CancelToken, Db, Storage};

use crate::counters::Counters;
use crate::edge::{Incoming, Outgoing};
use crate::error::{Error, chain};
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
        let seqs: Vec<i64> = appends.iter().map(|(_, r)| r.seq).collect();
        let db = self.shared.storage.db();
        db.await_stored(&seqs);
        if let Err(e) = self.store(&appends, !queries.is_empty()) {
            db.take_stored(&seqs);
            counters.failed_batch();
            eprintln!(
                "objlog worker: batch not stored ({}); its requests will be redelivered",
                chain(&e)
            );
            return answers;
        }
        answers.extend(self.append_answers(appends, db.take_stored(&seqs)));
        for q in queries {
            match self.query_answer(q) {
                Ok(done) => answers.push(done),
                Err(e) => eprintln!(
                    "objlog worker: query failed ({}); it will be redelivered",
                    chain(&e)
                ),
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

    /// Append answers carry the STORED timestamp (`stored`, in the order of `appends`): the
    /// one the table holds, which is not this delivery's own when an earlier or concurrent
    /// delivery of the same request was stored first. An append without one (no write saw
    /// it, which its flush returning rules out) is not answered: its redelivery will be.
    fn append_answers(
        &self,
        appends: Vec<(Incoming, LogRow)>,
        stored: Vec<Option<i64>>,
    ) -> Vec<Outgoing> {
        let mut answers = Vec::with_capacity(appends.len());
        for ((incoming, row), ts) in appends.into_iter().zip(stored) {
            let Some(ts) = ts else {
                eprintln!(
                    "objlog worker: no stored timestamp for append {}; it will be redelivered",
                    row.seq
                );
                continue;
            };
            if ts != row.ts {
                self.shared.counters.other_ts.inc();
            }
            let mut r = Response::new("append", incoming.seq, incoming.req.clone());
            r.id = Some(row.object as u64);
            r.ok = true;
            r.ts = Some(ts);
            answers.push(Outgoing::new(incoming, r));
        }
        answers
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
