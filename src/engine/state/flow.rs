//! [`Flow`]: the write pipeline's health and learned speed. Whether the Db is failing (and
//! when to retry), how fast it writes, and what follows from that: the item capacity and the
//! age at which items are written.

use std::time::{Duration, Instant};

use crate::engine::policy::Config;
use crate::engine::write_model::{WriteModel, WriteRate};
use crate::error::DbError;

/// The Db has been failing since `since`; the last error and when to try again.
struct Failure {
    since: Instant,
    last: DbError,
    attempts: u32,
    retry_at: Instant,
}

/// A write that landed, as [`Flow::landed`] learns from it.
pub(crate) struct Landing {
    /// Items the write was given.
    pub(crate) attempted: usize,
    /// Items it stored.
    pub(crate) stored: usize,
    /// Db calls it made.
    pub(crate) calls: u64,
    /// How long it took.
    pub(crate) elapsed: Duration,
    /// When it landed.
    pub(crate) now: Instant,
    /// Whether the buffer is still under pressure after it (more writes already overdue).
    pub(crate) pressure_after: bool,
}

/// What the storage knows about writing to its Db.
pub(crate) struct Flow {
    failing: Option<Failure>,
    rate: WriteRate,
    /// Write time as a function of batch size ([`WriteModel`]).
    model: WriteModel,
    /// The model's tail time of the writes the flush age plans for ([`Flow::learned`]).
    due_write: Duration,
    /// When the last landing left writes overdue (the buffer under pressure, the Db not
    /// failing): the next write's start minus this is a gap the writer did not write in
    /// (starved of CPU or of the lock), which the model counts as write cost.
    overdue_since: Option<Instant>,
    /// The item capacity ([`Config::capacity`]), recomputed whenever a write teaches the
    /// storage something about the Db's speed, so a push compares two integers.
    capacity: usize,
    db_push_calls: u64,
    items_flushed: u64,
    db_failures: u64,
}

impl Flow {
    pub(crate) fn new(cfg: &Config) -> Self {
        Flow {
            failing: None,
            rate: WriteRate::default(),
            model: WriteModel::default(),
            due_write: Duration::ZERO,
            overdue_since: None,
            capacity: cfg.capacity(None, |_| Duration::ZERO),
            db_push_calls: 0,
            items_flushed: 0,
            db_failures: 0,
        }
    }

    /// The item capacity now.
    #[inline]
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether the last write failed.
    #[inline]
    pub(crate) fn is_failing(&self) -> bool {
        self.failing.is_some()
    }

    /// When a failing Db may be tried again, if it is failing.
    pub(crate) fn retry_at(&self) -> Option<Instant> {
        self.failing.as_ref().map(|f| f.retry_at)
    }

    /// The last error of a failing Db.
    pub(crate) fn last_error(&self) -> Option<&DbError> {
        self.failing.as_ref().map(|f| &f.last)
    }

    /// Whether a Db that keeps failing already broke the window for the oldest held item
    /// (pushed at `oldest`): then a new push cannot be promised either, and is refused with the
    /// Db's error. Reads the system clock only while the Db is failing: a push's own stamp
    /// comes from the coarse clock.
    pub(crate) fn refusing(&self, cfg: &Config, oldest: Option<Instant>) -> Option<&DbError> {
        let failure = self.failing.as_ref()?;
        cfg.past_max_age(oldest?, Instant::now())
            .then_some(&failure.last)
    }

    /// When a blocked push should re-check [`refusing`](Self::refusing) on its own.
    pub(crate) fn refusal_time(&self, cfg: &Config, oldest: Option<Instant>) -> Option<Instant> {
        self.failing.as_ref()?;
        oldest.map(|at| at + cfg.max_unflushed_age)
    }

    /// The age at which the flusher writes an item now ([`Config::flush_after`]).
    pub(crate) fn flush_after(&self, cfg: &Config) -> Duration {
        cfg.flush_after(self.due_write)
    }

    /// The largest batch the flusher takes now ([`Config::batch_limit`]).
    pub(crate) fn batch_limit(&self, cfg: &Config) -> usize {
        cfg.batch_limit(self.rate.get())
    }

    /// Learns from a write that landed with `error` (`None`: it stored everything it was
    /// meant to) and schedules a retry with backoff if it failed. Returns the write's outcome.
    pub(crate) fn landed(
        &mut self,
        cfg: &Config,
        w: Landing,
        error: Option<DbError>,
    ) -> Result<(), DbError> {
        self.db_push_calls += w.calls;
        self.items_flushed += w.stored as u64;
        match error {
            None => {
                self.failing = None;
                self.rate.learn(w.stored, w.elapsed);
                let cost = self.write_cost(w.elapsed, w.now, w.pressure_after);
                self.learned(cfg, w.attempted, cost);
                Ok(())
            }
            Some(err) => {
                self.overdue_since = None; // the backoff that follows is deliberate
                self.record_failure(cfg, err.clone(), &w);
                Err(err)
            }
        }
    }

    /// Records a write of `n` items that cost `cost` in the model and recomputes the capacity
    /// and the write time the flush age follows.
    ///
    /// The capacity plans for full batches: under pressure every write is one, and a backlog
    /// admitted on the strength of small writes could not be taken back. The flush age plans
    /// for twice the largest recent batch: a due write takes the items that came due, which
    /// under a steady load are about as many as the last writes took. A burst beyond that is
    /// written in a batch the flush age did not plan for; the slack it keeps (a quarter of the
    /// window at least) covers it unless the burst nears half the capacity, where the
    /// pressure rule takes over, and its landing teaches the model the new size. Planning the
    /// flush age for full batches too would, at light load, pull it to zero from extrapolated
    /// small writes: a Db write per push.
    fn learned(&mut self, cfg: &Config, n: usize, cost: Duration) {
        self.model.record(n, cost);
        let fitted = self.model.fitted();
        self.capacity = cfg.capacity(self.rate.get(), |n| fitted.predict(n));
        let usual = self.model.largest_recent().saturating_mul(2);
        self.due_write = fitted.predict(usual.min(cfg.max_batch));
    }

    /// What a write of `elapsed` that landed at `now` cost the backlog: its duration, plus the
    /// time before it began during which writes were already overdue. Notes whether writes
    /// are overdue again after it (`overdue`: the buffer is still under pressure).
    fn write_cost(&mut self, elapsed: Duration, now: Instant, overdue: bool) -> Duration {
        let started = now.checked_sub(elapsed).unwrap_or(now);
        let gap = self
            .overdue_since
            .map_or(Duration::ZERO, |at| started.saturating_duration_since(at));
        self.overdue_since = overdue.then_some(now);
        elapsed + gap
    }

    /// Records a failed Db write and schedules the next try with exponential backoff. The
    /// failure also feeds the learned rate, as the items it stored over the call plus the
    /// backoff: the pace rule must reflect the throughput a flaky Db really gives, not only
    /// the speed of its successful calls.
    fn record_failure(&mut self, cfg: &Config, err: DbError, w: &Landing) {
        self.db_failures += 1;
        let (since, attempts) = match &self.failing {
            Some(f) => (f.since, f.attempts.saturating_add(1)),
            None => (w.now, 1),
        };
        let backoff = cfg.backoff(attempts);
        if self.rate.get().is_some() {
            self.rate.learn(w.stored, w.elapsed + backoff);
        }
        self.learned(cfg, w.attempted, w.elapsed);
        self.failing = Some(Failure {
            since,
            last: err,
            attempts,
            retry_at: w.now + backoff,
        });
    }

    /// For [`Stats`](crate::Stats): Db write calls, items flushed, failed writes.
    pub(crate) fn counts(&self) -> (u64, u64, u64) {
        (self.db_push_calls, self.items_flushed, self.db_failures)
    }

    /// For [`Stats`](crate::Stats): the learned speed, and how long the Db has been failing.
    pub(crate) fn health(&self, now: Instant) -> (Option<f64>, Option<Duration>) {
        let failing_for = self
            .failing
            .as_ref()
            .map(|f| now.saturating_duration_since(f.since));
        (self.rate.get(), failing_for)
    }

    /// The model's prediction for `n` items (unit tests).
    #[cfg(test)]
    pub(crate) fn predict(&self, n: usize) -> Duration {
        self.model.predict(n)
    }
}
