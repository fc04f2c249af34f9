//! Cleanup jobs: remove a garbage copy from its node. Deleting a file, cleaning up after a
//! failed upload and removing the source of a finished move all come down to this job.
//!
//! The jobs live in a lifostore [`Storage`] over [`PostgresDb`] (table `parts_jobs` by
//! default), which every gateway shares. A job is only a pointer (`{"copy": id}`); the truth
//! is the garbage row, written in the same transaction as the metadata change that made the
//! copy garbage. Workers take jobs with [`Storage::pop_lease`], run them, and `ack`:
//! * done (or the row is gone: another run did it) -> `ack`;
//! * not due yet (the row is younger than the grace period, so a read that started before
//!   the change can finish) or the node is down -> the lease is **parked**: held until it
//!   expires, so the job comes back by itself one lease period later (on top: lifostore
//!   returns an expired lease above newer jobs, and a job still not due is parked again, so
//!   it costs one lease call per lease period, never a hot loop);
//! * failed -> the attempt is counted on the row and the lease parked; after
//!   `max_attempts` the job is dead-lettered: the row is marked dead, the dead-letter sink logs
//!   and counts it, and it is acked. A node that registers again revives its dead jobs.
//!
//! Items the Db itself refuses go to lifostore's dead-letter hook, which feeds the same sink.
//! A worker that dies holding a lease loses nothing: PostgresDb returns the job at the
//! lease's deadline. A gateway that dies between a metadata commit and the push of its jobs
//! leaves garbage rows without jobs; every gateway enqueues all pending garbage when it
//! starts.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lifostore::{CancelToken, DeadLetter, Error as QueueError, Lease, PostgresDb, Storage};

use crate::counters::Counters;
use crate::health::Health;
use crate::meta::Meta;
use crate::node_client::{CallError, NodeClient};

/// Most leases one worker parks before it waits for the oldest to expire.
const MAX_PARKED: usize = 4096;

/// How jobs run.
#[derive(Debug, Clone)]
pub struct JobConfig {
    /// The lifostore table.
    pub table: String,
    /// Worker threads.
    pub workers: usize,
    /// Lease period: a parked or failed job comes back after it.
    pub retry: Duration,
    /// Failed attempts before a job is dead-lettered.
    pub max_attempts: i32,
    /// A copy is removed no sooner than this after it became garbage.
    pub grace: Duration,
}

/// The job queue.
pub struct Jobs {
    storage: Storage<PostgresDb>,
    config: JobConfig,
}

/// What the gateway's job workers need.
pub struct JobContext {
    /// The metadata.
    pub meta: Arc<Meta>,
    /// Node liveness.
    pub health: Arc<Health>,
    /// Node calls.
    pub nodes: NodeClient,
    /// Counters.
    pub counters: Arc<Counters>,
}

/// A job's outcome.
enum Outcome {
    Done,
    Park,
    Failed(String),
}

impl Jobs {
    /// Opens the queue in PostgreSQL at `url`. Items the Db refuses are logged, counted and
    /// marked dead through `meta`.
    pub fn open(
        url: &str,
        config: JobConfig,
        meta: Arc<Meta>,
        counters: Arc<Counters>,
    ) -> Result<Jobs, QueueError> {
        let db = PostgresDb::open(url)?.with_table(&config.table)?;
        let storage = Storage::builder()
            .lease_ttl(config.retry)
            .max_unflushed_age(Duration::from_secs(10))
            // Jobs this gateway pushes wake its workers at once; the poll only finds jobs
            // other gateways pushed and parked jobs whose lease expired.
            .shared_poll_interval(Duration::from_secs(1))
            .dead_letter(move |letter: DeadLetter| {
                let copy = parse_job(&letter.item);
                let why = format!("the job queue refused the job: {}", letter.error);
                dead_letter(&meta, &counters, copy, &why);
            })
            .build(db)?;
        Ok(Jobs { storage, config })
    }

    /// Enqueues cleanup jobs for garbage copies, durably (they are in PostgreSQL on `Ok`).
    pub fn enqueue(&self, copies: &[i64]) -> Result<(), QueueError> {
        if copies.is_empty() {
            return Ok(());
        }
        let token = CancelToken::new().with_timeout(Duration::from_secs(30));
        let items = copies
            .iter()
            .map(|c| format!("{{\"copy\":{c}}}").into_bytes());
        self.storage.push_batch(&token, items.collect::<Vec<_>>())?;
        self.storage.flush(&token)
    }

    /// Enqueues `copies`, logging (not failing) if the queue refuses: the garbage rows stay,
    /// and the next gateway start enqueues them again.
    pub fn enqueue_or_log(&self, copies: &[i64]) {
        if let Err(e) = self.enqueue(copies) {
            eprintln!(
                "parts-gateway: could not enqueue cleanup of copies {copies:?}: {e}; they are re-enqueued when a gateway starts"
            );
        }
    }

    /// Jobs waiting in the queue (not leased), if the Db can count them.
    pub fn queued(&self) -> Option<u64> {
        self.storage.len().ok().flatten()
    }

    /// Starts the worker threads.
    pub fn spawn_workers(self: &Arc<Self>, ctx: Arc<JobContext>) {
        for i in 0..self.config.workers.max(1) {
            let (jobs, ctx) = (Arc::clone(self), Arc::clone(&ctx));
            let spawned = std::thread::Builder::new()
                .name(format!("jobs-{i}"))
                .spawn(move || jobs.work(&ctx));
            if let Err(e) = spawned {
                eprintln!("parts-gateway: cannot start job worker {i}: {e}");
            }
        }
    }

    /// One worker: lease, run, ack or park, until the queue closes.
    fn work(&self, ctx: &JobContext) {
        let mut parked: VecDeque<(Instant, Lease)> = VecDeque::new();
        loop {
            while parked
                .front()
                .is_some_and(|(until, _)| *until <= Instant::now())
            {
                parked.pop_front(); // expired already: dropping it is a no-op
            }
            let wait = match parked.front() {
                Some((until, _)) if parked.len() >= MAX_PARKED => *until - Instant::now(),
                Some((until, _)) => (*until - Instant::now()).min(Duration::from_secs(1)),
                None => Duration::from_secs(1),
            };
            if parked.len() >= MAX_PARKED {
                std::thread::sleep(wait);
                continue;
            }
            match self
                .storage
                .pop_lease(&CancelToken::new().with_timeout(wait))
            {
                Ok(lease) => {
                    if let Some(keep) = self.handle(ctx, lease) {
                        parked.push_back((Instant::now() + self.config.retry, keep));
                    }
                }
                Err(QueueError::Cancelled | QueueError::DeadlineExceeded) => {}
                Err(QueueError::Closed) => return,
                Err(e) => {
                    eprintln!("parts-gateway: job queue: {e}; retrying in 1 s");
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    }

    /// Runs one job; returns the lease if it must be parked.
    fn handle(&self, ctx: &JobContext, lease: Lease) -> Option<Lease> {
        let Some(copy) = parse_job(&lease) else {
            dead_letter(&ctx.meta, &ctx.counters, None, "not a cleanup job");
            let _ = lease.ack();
            return None;
        };
        match self.run(ctx, copy) {
            Outcome::Done => {
                let _ = lease.ack();
                None
            }
            Outcome::Park => Some(lease),
            Outcome::Failed(why) => {
                Counters::add(&ctx.counters.job_failures, 1);
                let attempts = ctx.meta.garbage_failed(copy, &why).unwrap_or(0);
                if attempts < self.config.max_attempts {
                    return Some(lease);
                }
                let why = format!("{attempts} attempts failed, the last: {why}");
                dead_letter(&ctx.meta, &ctx.counters, Some(copy), &why);
                let _ = lease.ack();
                None
            }
        }
    }

    /// Removes garbage copy `copy` from its node if it is due and the node is up.
    fn run(&self, ctx: &JobContext, copy: i64) -> Outcome {
        let row = match ctx.meta.garbage(copy) {
            Ok(Some(row)) if !row.dead => row,
            Ok(_) => return Outcome::Done,
            Err(e) => return Outcome::Failed(e.to_string()),
        };
        if row.age_secs < self.config.grace.as_secs_f64() || !ctx.health.is_live(&row.node) {
            return Outcome::Park;
        }
        match ctx.nodes.delete(&row.addr, copy) {
            Ok(_) => match ctx.meta.complete_garbage(copy) {
                Ok(_) => {
                    Counters::add(&ctx.counters.jobs_done, 1);
                    Outcome::Done
                }
                Err(e) => Outcome::Failed(e.to_string()),
            },
            Err(e) => {
                if matches!(e, CallError::Unreachable { .. }) {
                    ctx.health.failed(&row.node, &e.to_string());
                }
                Outcome::Failed(format!("removing copy {copy} from node {}: {e}", row.node))
            }
        }
    }
}

/// The copy id of a job item.
fn parse_job(item: &[u8]) -> Option<i64> {
    let value: serde_json::Value = serde_json::from_slice(item).ok()?;
    value["copy"].as_i64()
}

/// The dead-letter sink: logs, counts, and marks the garbage row dead (shown by `GET /jobs`).
fn dead_letter(meta: &Meta, counters: &Counters, copy: Option<i64>, why: &str) {
    Counters::add(&counters.jobs_dead, 1);
    eprintln!("parts-gateway: dead letter: cleanup of copy {copy:?}: {why}");
    if let Some(copy) = copy
        && let Err(e) = meta.garbage_dead(copy, why)
    {
        eprintln!("parts-gateway: could not mark copy {copy} dead: {e}");
    }
}
