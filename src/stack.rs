//! The Condvar-guarded stack: buffered items, the in-flight batch and what the storage knows
//! about its Db, all behind one mutex.
//!
//! # Invariants (hold whenever the lock is free)
//! * `items` is ordered by push order: front = oldest, back = newest (the top of the stack).
//! * The in-flight batch, when `writing`, is older than every entry of `items`: writers always
//!   take from the front, pushes go to the back, pops take from the back. So "newest first"
//!   across memory and Db is: the back of `items`, then the in-flight batch, then the Db.
//! * At most one batch is in flight (`writing`): whoever sets it (the flusher thread, a
//!   `flush` or `close` caller) is the only writer until it clears it.
//! * `db_count` (the exact number of items in a non-shared Db) is only learned by a pop whose
//!   Db call returned `None` while `db_epoch` (bumped//!   by every write that stored something) did not move, so it never hides a landed batch.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::db::DbError;
use crate::sync::{Condvar, Mutex};
use crate::token::Wake;

/// Item capacity before the Db's write speed has been measured.
const INITIAL_CAPACITY: usize = 256;

/// Batch size of flusher writes before the Db's write speed has been measured.
const SLOW_START_BATCH: usize = 16;

/// One buffered item.
pub(crate) struct Entry {
    pub(crate) seq: u64,
    pub(crate) pushed_at: Instant,
    pub(crate) data: Vec<u8>,
}

/// Limits and timings fixed when the storage is built.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) window: Duration,
    pub(crate) max_items: usize,
    pub(crate) max_bytes: usize,
    pub(crate) max_item_len: usize,
    pub(crate) max_batch: usize,
    pub(crate) shared_poll: Duration,
    pub(crate) close_timeout: Duration,
}

impl Config {
    /// Age at which an item is due for writing: three quarters of the window, leaving a
    /// quarter for the write itself and for retries of a failing Db.
    pub(crate) fn flush_after(&self) -> Duration {
        self.window.mul_f64(0.75)
    }

    /// Items due within this much of the oldest ride along in its batch (fewer, larger writes).
    pub(crate) fn group_slack(&self) -> Duration {
        self.window / 8
    }

    /// Longest pause between retries of a failing Db.
    pub(crate) fn max_backoff(&self) -> Duration {
        (self.window / 8).clamp(Duration::from_millis(1), Duration::from_secs(1))
    }
}

/// The Db has been failing since `since`; the last error and when to try again.
pub(crate) struct Failure {
    pub(crate) since: Instant,
    pub(crate) last: DbError,
    pub(crate) attempts: u32,
    pub(crate) retry_at: Instant,
}

/// Raw counters behind [`Stats`](crate::Stats).
#[derive(Default, Clone)]
pub(crate) struct Counters {
    pub(crate) pushes: u64,
    pub(crate) pops_from_memory: u64,
    pub(crate) pops_from_db: u64,
    pub(crate) db_push_calls: u64,
    pub(crate) db_pop_calls: u64,
    pub(crate) items_flushed: u64,
    pub(crate) db_failures: u64,
    pub(crate) push_waits: u64,
}

/// Everything behind the storage's mutex.
pub(crate) struct State {
    pub(crate) items: VecDeque<Entry>,
    /// Bytes of `items` plus the in-flight batch: what the capacity limits.
    pub(crate) bytes: usize,
    pub(crate) writing: bool,
    pub(crate) in_flight: usize,
    /// Sequence number of the oldest in-flight item (meaningful while `writing`).
    pub(crate) in_flight_first_seq: u64,
    /// Push instant of the oldest in-flight item (meaningful while `writing`): while a write
    /// is under way the oldest held items are in flight, not in `items`.
    pub(crate) in_flight_oldest: Option<Instant>,
    pub(crate) next_seq: u64,
    pub(crate) db_epoch: u64,
    /// Exactly how many items a non-shared Db holds, once a pop found it empty: every write
    /// adds what it stored, every Db pop that returned an item subtracts one. `None` while
    /// unknown (and always for a shared Db, which other processes change).
    pub(crate) db_count: Option<u64>,
    /// A shared Db last answered "empty" at this epoch and instant: no pop asks it again
    /// before `shared_poll` has passed or a write of ours has landed (one re-check per interval
    /// for the whole storage, however many poppers wait).
    pub(crate) shared_db_empty_at: Option<(u64, Instant)>,
    /// Db pop calls under way.
    pub(crate) db_pops: usize,
    /// While `db_count` is unknown: how many Db pops may run at once. Starts at 1 (a probe),
    /// grows by one with every pop that returns an item (doubling per round trip, like TCP's
    /// slow start), falls back to 1 when one finds the Db empty: a crowd of poppers never makes
    /// many more calls than there are items.
    pub(crate) db_pop_window: usize,
    pub(crate) closed: bool,
    pub(crate) failing: Option<Failure>,
    /// Learned Db write speed, items per second (exponential moving average), if measured.
    pub(crate) db_rate: Option<f64>,
    /// Decayed sums behind `db_rate`: items stored, and seconds spent writing them.
    rate_items: f64,
    rate_secs: f64,
    pub(crate) counters: Counters,
}

/// What the flusher should do next.
pub(crate) enum Next {
    /// Write the oldest `n` items now.
    Write(usize),
    /// Sleep until this instant, or until notified (`None`).
    Sleep(Option<Instant>),
}

impl State {
    pub(crate) fn new() -> Self {
        State {
            items: VecDeque::new(),
            bytes: 0,
            writing: false,
            in_flight: 0,
            in_flight_first_seq: 0,
            in_flight_oldest: None,
            next_seq: 1,
            db_epoch: 0,
            db_count: None,
            shared_db_empty_at: None,
            db_pops: 0,
            db_pop_window: 1,
            closed: false,
            failing: None,
            db_rate: None,
            rate_items: 0.0,
            rate_secs: 0.0,
            counters: Counters::default(),
        }
    }

    /// Whether a pop should start another Db call now: with a known count, no more calls
    /// than there are items (1000 poppers finding memory empty must not make 1000 calls for
    /// 16 items); with an unknown count, no more than the window.
    pub(crate) fn db_pop_allowed(&self) -> bool {
        match self.db_count {
            Some(n) => (self.db_pops as u64) < n,
            None => self.db_pops < self.db_pop_window,
        }
    }

    /// Items held in memory, buffered plus in flight.
    pub(crate) fn held(&self) -> usize {
        self.items.len() + self.in_flight
    }

    /// The item-count capacity now: the configured one, lowered to what the Db can absorb in
    /// half a window at its learned speed (so a slow Db slows pushers instead of letting a
    /// backlog grow that cannot reach the Db in time).
    pub(crate) fn capacity(&self, cfg: &Config) -> usize {
        match self.db_rate {
            Some(rate) => {
                let pace = (rate * cfg.window.as_secs_f64() * 0.5) as usize;
                cfg.max_items.min(pace.max(1))
            }
            // Slow start: until a first write shows how fast the Db is, hold no more than a
            // Db taking milliseconds per item could write within a short window.
            None => cfg.max_items.min(INITIAL_CAPACITY),
        }
    }

    /// Largest batch the flusher takes now: small until the Db's speed is known, so the first
    /// measurement comes back quickly even from a slow Db.
    fn batch_limit(&self, cfg: &Config) -> usize {
        match self.db_rate {
            Some(_) => cfg.max_batch,
            None => cfg.max_batch.min(SLOW_START_BATCH),
        }
    }

    pub(crate) fn has_room(&self, cfg: &Config, len: usize) -> bool {
        if self.held() == 0 {
            return true; // an item within max_item_len always fits an empty buffer
        }
        self.held() < self.capacity(cfg) && self.bytes.saturating_add(len) <= cfg.max_bytes
    }

    /// Half full: the flusher writes early instead of waiting for items to come due.
    pub(crate) fn under_pressure(&self, cfg: &Config) -> bool {
        self.held() * 2 >= self.capacity(cfg) || self.bytes * 2 >= cfg.max_bytes
    }

    /// Whether a Db that keeps failing already broke the window for a held item: then a new
    /// push cannot be promised either, and is refused with the Db's error.
    pub(crate) fn refusing(&self, cfg: &Config, now: Instant) -> Option<&DbError> {
        let failure = self.failing.as_ref()?;
        let oldest = self.oldest_held()?;
        (now.saturating_duration_since(oldest) >= cfg.window).then_some(&failure.last)
    }

    /// When a blocked push should re-check [`refusing`](Self::refusing) on its own.
    pub(crate) fn refusal_time(&self, cfg: &Config) -> Option<Instant> {
        self.failing.as_ref()?;
        self.oldest_held().map(|at| at + cfg.window)
    }

    /// Push instant of the oldest item held in memory, in flight or buffered.
    fn oldest_held(&self) -> Option<Instant> {
        let in_flight = self.in_flight_oldest.filter(|_| self.writing);
        match (in_flight, self.items.front().map(|e| e.pushed_at)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// How many of the oldest items, up to `max_batch`, have a sequence number <= `seq`.
    pub(crate) fn count_through(&self, seq: u64, cfg: &Config) -> usize {
        self.items
            .iter()
            .take(cfg.max_batch)
            .take_while(|e| e.seq <= seq)
            .count()
    }

    /// Whether every item pushed with a sequence number <= `seq` has left memory.
    pub(crate) fn flushed_through(&self, seq: u64) -> bool {
        let in_flight_old = self.writing && self.in_flight_first_seq <= seq;
        let buffered_old = self.items.front().is_some_and(|e| e.seq <= seq);
        !in_flight_old && !buffered_old
    }

    /// The flusher's decision: write now (full or due items), or sleep until the oldest item
    /// comes due, a retry is allowed, or someone notifies.
    pub(crate) fn next(&self, cfg: &Config, now: Instant) -> Next {
        let Some(oldest) = self.items.front() else {
            // Nothing buffered: look again one flush age from now. An item pushed meanwhile
            // is not due before then, so pushes never need to wake the flusher to arm its
            // timer (which would cost a futex wake per push on an idle storage).
            return Next::Sleep(Some(now + cfg.flush_after()));
        };
        if self.writing {
            return Next::Sleep(None); // the writer notifies when its batch lands
        }
        if let Some(f) = &self.failing
            && now < f.retry_at
        {
            return Next::Sleep(Some(f.retry_at));
        }
        if self.under_pressure(cfg) {
            return Next::Write(self.items.len().min(self.batch_limit(cfg)));
        }
        let due_at = oldest.pushed_at + cfg.flush_after();
        if now < due_at {
            return Next::Sleep(Some(due_at));
        }
        let horizon = now + cfg.group_slack();
        let n = self
            .items
            .iter()
            .take(self.batch_limit(cfg))
            .take_while(|e| e.pushed_at + cfg.flush_after() <= horizon)
            .count();
        Next::Write(n.max(1))
    }

    /// Records a write that took `elapsed` for `n` items, for the pace limit.
    ///
    /// The rate is throughput: items stored over time spent writing (failed calls and their
    /// backoff included), both summed with exponential decay, so it follows a Db whose speed
    /// changes and is not inflated by fast calls between failures.
    pub(crate) fn learn_rate(&mut self, n: usize, elapsed: Duration) {
        const DECAY: f64 = 0.8;
        self.rate_items = self.rate_items * DECAY + n as f64;
        self.rate_secs = self.rate_secs * DECAY + elapsed.as_secs_f64().max(1e-6);
        self.db_rate = Some(self.rate_items / self.rate_secs);
    }

    /// Records a failed Db write (that stored `stored` items in `elapsed`) and schedules the
    /// next try with exponential backoff. The failure also feeds the learned rate, as `stored`
    /// items over the call plus the backoff: the pace rule must reflect the throughput a
    /// flaky Db really gives, not only the speed of its successful calls.
    pub(crate) fn record_failure(
        &mut self,
        cfg: &Config,
        err: DbError,
        now: Instant,
        stored: usize,
        elapsed: Duration,
    ) {
        self.counters.db_failures += 1;
        let (since, attempts) = match &self.failing {
            Some(f) => (f.since, f.attempts.saturating_add(1)),
            None => (now, 1),
        };
        let backoff = Duration::from_millis(1u64 << attempts.min(20)).min(cfg.max_backoff());
        if self.db_rate.is_some() {
            self.learn_rate(stored, elapsed + backoff);
        }
        self.failing = Some(Failure {
            since,
            last: err,
            attempts,
            retry_at: now + backoff,
        });
    }
}

/// The stack and the condition variables its waiters sleep on.
///
/// One mutex guards all state, so every decision (room? newest item? in flight?) is made on a
/// consistent snapshot; Db calls always happen with the lock released.
pub(crate) struct Core {
    pub(crate) state: Mutex<State>,
    pub(crate) cfg: Config,
    /// Poppers wait here: notified by pushes (one) and by landed batches (all).
    pub(crate) poppers: Condvar,
    /// Pushers wait here for room: notified by pops (one) and by landed batches (all).
    pub(crate) pushers: Condvar,
    /// `flush` and `close` callers wait here for an in-flight batch to land.
    pub(crate) landed: Condvar,
    /// The flusher thread sleeps here.
    pub(crate) flusher: Condvar,
}

impl Core {
    pub(crate) fn new(cfg: Config) -> Self {
        Core {
            state: Mutex::new(State::new()),
            cfg,
            poppers: Condvar::new(),
            pushers: Condvar::new(),
            landed: Condvar::new(),
            flusher: Condvar::new(),
        }
    }

    /// Wakes every kind of waiter (close, cancellation, a landed batch).
    pub(crate) fn notify_everyone(&self) {
        self.poppers.notify_all();
        self.pushers.notify_all();
        self.landed.notify_all();
        self.flusher.notify_all();
    }
}

impl Wake for Core {
    /// A token ended: wake every blocked call so each re-checks its own token. Taking the lock
    /// first closes the window between a waiter's token check and its wait: the waiter holds
    /// the lock from its check until the condvar releases it, so this notify cannot fall in
    /// between and be lost.
    fn wake(&self) {
        let _guard = self.state.lock();
        self.poppers.notify_all();
        self.pushers.notify_all();
        self.landed.notify_all();
    }
}
