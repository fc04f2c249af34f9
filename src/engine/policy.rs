//! [`Config`] and the pure rules of the engine: when the flusher writes and how much, how many
//! items the buffer may hold, how a failing Db is retried, and how many Db pops may run at once.
//!
//! A leaf: it imports nothing of the engine. Nothing here locks, sleeps or reads the clock:
//! every rule takes the instant it decides at (`now`) and the numbers it decides on, so the
//! rules are unit-tested below with an injected clock. The state feeds them its numbers and
//! applies their answers.

use std::time::{Duration, Instant};

/// Default `max_unflushed_age` (the durability window): the most a crash may lose.
pub(crate) const DEFAULT_MAX_UNFLUSHED_AGE: Duration = Duration::from_secs(60);

/// Batch size of flusher writes before the Db's write speed has been measured.
const SLOW_START_BATCH: usize = 16;

/// Most items held before the Db's write speed has been measured (see
/// [`Config::initial_capacity`]).
const INITIAL_CAPACITY: usize = 256;

/// The write time per item a storage assumes before its first write lands: a slow Db without
/// batch writes (a call per item).
const SLOW_START_ITEM: Duration = Duration::from_millis(2);

/// How much slower than its slowest recent write the Db may suddenly become while the buffer
/// still drains within half a window: the capacity keeps this much headroom, so a latency jump
/// (an `fdatasync` that turns slow) paces pushers before the window breaks, not after.
const JUMP_HEADROOM: u32 = 5;

/// Most Db pops that may run at once while the Db's item count is unknown.
const MAX_DB_POP_LIMIT: usize = 1024;

/// Limits and timings fixed when the storage is built.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// The durability window, as the builder's `max_unflushed_age` sets it.
    pub(crate) max_unflushed_age: Duration,
    pub(crate) max_items: usize,
    pub(crate) max_bytes: usize,
    pub(crate) max_item_len: usize,
    pub(crate) max_batch: usize,
    pub(crate) shared_poll: Duration,
    /// How often a pop waiting on an empty storage re-checks a shared Db that gives wake-ups
    /// ([`Db::watch`](crate::Db::watch)): the safety net for a lost notification.
    pub(crate) shared_recheck: Duration,
    pub(crate) close_timeout: Duration,
    /// Most poison items kept aside without a dead-letter hook.
    pub(crate) max_dead_letters: usize,
}

impl Config {
    /// Age at which an item is due for writing, given `full_write`, the predicted tail time of
    /// a full batch write ([`WriteModel::predict`](super::write_model::WriteModel::predict)): at most three quarters of the window (a
    /// quarter is left for the write itself and for retries of a failing Db), and early enough
    /// that a batch already in flight plus the item's own batch, each as slow as that tail
    /// with half again as margin, land within the window.
    pub(crate) fn flush_after(&self, full_write: Duration) -> Duration {
        let margin = full_write.saturating_mul(3) + self.max_unflushed_age / 16;
        self.max_unflushed_age
            .saturating_sub(margin)
            .min(self.max_unflushed_age.mul_f64(0.75))
    }

    /// How often the flusher refreshes the coarse clock pushes stamp items with, while pushes
    /// come: an item's stamp is at most this much older than its push, so it is written at
    /// most this much early, never late.
    pub(crate) fn clock_tick(&self) -> Duration {
        (self.max_unflushed_age / 16).clamp(Duration::from_millis(1), Duration::from_secs(1))
    }

    /// Items due within this much of the oldest ride along in its batch (fewer, larger writes).
    pub(crate) fn group_slack(&self) -> Duration {
        self.max_unflushed_age / 8
    }

    /// Longest pause between retries of a failing Db.
    pub(crate) fn max_backoff(&self) -> Duration {
        (self.max_unflushed_age / 8).clamp(Duration::from_millis(1), Duration::from_secs(1))
    }

    /// Pause before retry number `attempts + 1` of a failing Db: doubling from 2 ms, capped at
    /// [`max_backoff`](Self::max_backoff).
    pub(crate) fn backoff(&self, attempts: u32) -> Duration {
        Duration::from_millis(1u64 << attempts.min(20)).min(self.max_backoff())
    }

    /// The item-count capacity now: the configured one, lowered to what the Db can absorb in
    /// half a window at its learned speed `rate` (items per second), and to what it could
    /// write in half a window if every write became [`JUMP_HEADROOM`] times slower than
    /// `predict` says (the tail time of a write of `n` items, [`Fitted::predict`], the gaps
    /// between overdue writes included): see [`jump_safe`](Self::jump_safe).
    ///
    /// [`Fitted::predict`]: super::write_model::Fitted::predict
    pub(crate) fn capacity(&self, rate: Option<f64>, predict: impl Fn(usize) -> Duration) -> usize {
        let Some(rate) = rate else {
            return self.initial_capacity();
        };
        let half = self.max_unflushed_age.as_secs_f64() * 0.5;
        let pace = (rate * half) as usize;
        self.max_items
            .min(pace.max(1))
            .min(self.jump_safe(rate, predict))
    }

    /// Slow start: until a first write shows how fast the Db is, hold no more than a Db taking
    /// [`SLOW_START_ITEM`] per item writes in half a window after a [`JUMP_HEADROOM`]-fold
    /// jump, between the slow-start write plus the next one and [`INITIAL_CAPACITY`] (reached
    /// with a window of 5.12 s). 256 items over a 1 s window, written at 8 ms each on a busy
    /// machine, took two seconds.
    fn initial_capacity(&self) -> usize {
        let slow = SLOW_START_ITEM.saturating_mul(2 * JUMP_HEADROOM);
        let items = self.max_unflushed_age.as_secs_f64() / slow.as_secs_f64();
        let floor = 2 * SLOW_START_BATCH;
        (items as usize)
            .clamp(floor, INITIAL_CAPACITY)
            .min(self.max_items)
    }

    /// The most items the buffer may hold so that they are all written within half a window
    /// even if every write became [`JUMP_HEADROOM`] times slower than `predict` says.
    ///
    /// Why this keeps the bound: writers take the oldest items first, and the capacity counts
    /// the batch in flight, so an item pushed into a buffer holding `C - 1` items lands after
    /// at most `C / max_batch + 1` writes (the batch in flight, the full batches ahead, its
    /// own). When two full batches fit half a window after the jump, `half / (5 x full) - 1`
    /// full batches may wait. When they do not (a Db without batch writes, whose every item
    /// costs a call: a full batch may take a minute), the capacity is the most items that two
    /// writes (the one in flight and the item's own) carry within half a window after the
    /// jump: a capacity of one full batch would hold what no write could land in time, and a
    /// capacity from the learned speed alone breaks the window as soon as the Db turns twice
    /// as slow after the items are admitted (a capacity cannot take them back).
    ///
    /// When one item's two writes already take a tenth of half a window (a fixed cost per
    /// call), no capacity keeps the headroom, and one-item writes would only cut the
    /// throughput: the writes may then carry what costs at most twice one item's, within half
    /// a window at the model's own tail, and what the learned speed `rate` drains in a
    /// quarter of a window. At least one item is always allowed, so the storage never stalls.
    fn jump_safe(&self, rate: f64, predict: impl Fn(usize) -> Duration) -> usize {
        let half = self.max_unflushed_age / 2;
        let slow_full = predict(self.max_batch).saturating_mul(JUMP_HEADROOM);
        if slow_full.is_zero() {
            return usize::MAX;
        }
        let fits = (half.as_secs_f64() / slow_full.as_secs_f64()) as usize;
        if fits >= 2 {
            return self.max_batch.saturating_mul(fits - 1);
        }
        // The batch in flight and the item's own, carrying `n` items in all: two fixed costs.
        let two_writes = |n| predict(n) + predict(0);
        let headroom = half / JUMP_HEADROOM;
        let fixed_cost = two_writes(1).saturating_mul(2).min(half);
        if fixed_cost <= headroom {
            return largest_within(self.max_batch, headroom, two_writes);
        }
        // Noise can pass for a fixed cost (an 11-item write slower than two 16-item ones
        // fits as a constant): the measured speed must still drain it in half the window
        // after the Db turns twice as slow.
        let drained = (rate * half.as_secs_f64() / 2.0) as usize;
        largest_within(self.max_batch, fixed_cost, two_writes).min(drained.max(1))
    }

    /// Largest batch the flusher takes now: small until the Db's speed is known, so the first
    /// measurement comes back quickly even from a slow Db.
    pub(crate) fn batch_limit(&self, rate: Option<f64>) -> usize {
        match rate {
            Some(_) => self.max_batch,
            None => self.max_batch.min(SLOW_START_BATCH),
        }
    }

    /// Whether an item of `len` bytes fits beside `held` items of `bytes` bytes, with
    /// `capacity` items allowed ([`Config::capacity`]).
    #[inline]
    pub(crate) fn has_room(&self, capacity: usize, held: usize, bytes: usize, len: usize) -> bool {
        if held == 0 {
            return true; // an item within max_item_len always fits an empty buffer
        }
        held < capacity && bytes.saturating_add(len) <= self.max_bytes
    }

    /// Half full: the flusher writes early instead of waiting for items to come due.
    #[inline]
    pub(crate) fn under_pressure(&self, capacity: usize, held: usize, bytes: usize) -> bool {
        held * 2 >= capacity || bytes * 2 >= self.max_bytes
    }

    /// Whether an item pushed at `oldest` has outlived the window at `now`.
    pub(crate) fn past_max_age(&self, oldest: Instant, now: Instant) -> bool {
        now.saturating_duration_since(oldest) >= self.max_unflushed_age
    }
}

/// What the flusher should do next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Write the oldest `n` items now.
    Write(usize),
    /// Sleep until this instant, or until notified (`None`).
    Sleep(Option<Instant>),
}

/// What the flusher's decision looks at: the buffer as the state sees it.
pub(crate) struct Buffer<I> {
    /// Push instants of the buffered items, oldest first.
    pub(crate) pushed_at: I,
    /// A batch is being written.
    pub(crate) writing: bool,
    /// When a failing Db may be tried again, if it is failing.
    pub(crate) retry_at: Option<Instant>,
    /// The buffer is half full ([`Config::under_pressure`]).
    pub(crate) pressure: bool,
    /// [`Config::batch_limit`] now.
    pub(crate) batch_limit: usize,
    /// [`Config::flush_after`] now.
    pub(crate) flush_after: Duration,
}

/// The flusher's decision: write now (full or due items), or sleep until the oldest item comes
/// due, a retry is allowed, or someone notifies.
pub(crate) fn next<I>(cfg: &Config, now: Instant, buffer: Buffer<I>) -> Next
where
    I: Iterator<Item = Instant> + ExactSizeIterator + Clone,
{
    let Some(oldest) = buffer.pushed_at.clone().next() else {
        // Nothing buffered: look again one flush age from now. An item pushed meanwhile is not
        // due before then, so pushes never need to wake the flusher to arm its timer (which
        // would cost a futex wake per push on an idle storage).
        return Next::Sleep(Some(now + buffer.flush_after));
    };
    if buffer.writing {
        return Next::Sleep(None); // the writer notifies when its batch lands
    }
    if let Some(at) = buffer.retry_at.filter(|at| now < *at) {
        return Next::Sleep(Some(at));
    }
    if buffer.pressure {
        return Next::Write(buffer.pushed_at.len().min(buffer.batch_limit));
    }
    let due_at = oldest + buffer.flush_after;
    if now < due_at {
        return Next::Sleep(Some(due_at));
    }
    let horizon = now + cfg.group_slack();
    let n = buffer
        .pushed_at
        .take(buffer.batch_limit)
        .take_while(|at| *at + buffer.flush_after <= horizon)
        .count();
    Next::Write(n.max(1))
}

/// The largest batch size in `1..=max` that `predict` (non-decreasing in the size) says is
/// written within `budget`; 1 when none is.
fn largest_within(max: usize, budget: Duration, predict: impl Fn(usize) -> Duration) -> usize {
    let (mut fits, mut over) = (1, max.saturating_add(1));
    while over - fits > 1 {
        let mid = fits + (over - fits) / 2;
        if predict(mid) <= budget {
            fits = mid;
        } else {
            over = mid;
        }
    }
    fits
}

/// The earlier of two optional instants (`None`: no limit on that side).
#[inline]
pub(crate) fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// How many Db pops may run at once: with a known item count, no more calls than there are
/// items (1000 poppers finding memory empty must not make 1000 calls for 16 items); with an
/// unknown count, no more than the slow-start `limit`.
pub(crate) fn db_pop_allowed(known_count: Option<u64>, running: usize, limit: usize) -> bool {
    match known_count {
        Some(n) => (running as u64) < n,
        None => running < limit,
    }
}

/// The slow-start limit after a Db pop that returned an item: one more (doubling per round
/// trip, like TCP's slow start). A pop that finds the Db empty resets the limit to 1.
pub(crate) fn grow_db_pop_limit(limit: usize) -> usize {
    (limit + 1).min(MAX_DB_POP_LIMIT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::write_model::WriteModel;

    fn cfg(window_ms: u64) -> Config {
        Config {
            max_unflushed_age: Duration::from_millis(window_ms),
            max_items: 100_000,
            max_bytes: 1 << 20,
            max_item_len: 1 << 20,
            max_batch: 64,
            shared_poll: Duration::from_millis(100),
            shared_recheck: Duration::from_secs(5),
            close_timeout: Duration::from_millis(window_ms),
            max_dead_letters: 16,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn buffer(
        pushed_at: &[Instant],
        pressure: bool,
    ) -> Buffer<std::iter::Copied<std::slice::Iter<'_, Instant>>> {
        Buffer {
            pushed_at: pushed_at.iter().copied(),
            writing: false,
            retry_at: None,
            pressure,
            batch_limit: 16,
            // cfg(800) with fast writes: three quarters of the window.
            flush_after: ms(600),
        }
    }

    #[test]
    fn an_empty_buffer_sleeps_one_flush_age() {
        let (c, now) = (cfg(800), Instant::now());
        assert_eq!(
            next(&c, now, buffer(&[], false)),
            Next::Sleep(Some(now + ms(600)))
        );
    }

    #[test]
    fn items_are_written_at_three_quarters_of_the_window() {
        let (c, t0) = (cfg(800), Instant::now());
        let items = [t0];
        assert_eq!(
            next(&c, t0 + ms(599), buffer(&items, false)),
            Next::Sleep(Some(t0 + ms(600)))
        );
        assert_eq!(
            next(&c, t0 + ms(600), buffer(&items, false)),
            Next::Write(1)
        );
    }

    #[test]
    fn items_due_within_the_slack_ride_along() {
        let (c, t0) = (cfg(800), Instant::now()); // slack: 100 ms
        let items = [t0, t0 + ms(50), t0 + ms(100), t0 + ms(101), t0 + ms(300)];
        assert_eq!(
            next(&c, t0 + ms(600), buffer(&items, false)),
            Next::Write(3)
        );
    }

    #[test]
    fn pressure_writes_early_up_to_the_batch_limit() {
        let (c, t0) = (cfg(800), Instant::now());
        let items: Vec<Instant> = (0..40).map(|_| t0).collect();
        assert_eq!(next(&c, t0, buffer(&items, true)), Next::Write(16));
    }

    #[test]
    fn a_batch_in_flight_or_a_pending_retry_makes_the_flusher_sleep() {
        let (c, t0) = (cfg(800), Instant::now());
        let items = [t0];
        let writing = Buffer {
            writing: true,
            ..buffer(&items, true)
        };
        assert_eq!(next(&c, t0 + ms(700), writing), Next::Sleep(None));
        let retry = Buffer {
            retry_at: Some(t0 + ms(710)),
            ..buffer(&items, true)
        };
        assert_eq!(
            next(&c, t0 + ms(700), retry),
            Next::Sleep(Some(t0 + ms(710)))
        );
        let retry_passed = Buffer {
            retry_at: Some(t0 + ms(690)),
            ..buffer(&items, true)
        };
        assert_eq!(next(&c, t0 + ms(700), retry_passed), Next::Write(1));
    }

    #[test]
    fn capacity_starts_small_then_follows_the_learned_rate() {
        let c = cfg(1000);
        let fast = Duration::ZERO;
        // Slow start: what 2 ms per item writes in half a 1 s window, five times slower.
        assert_eq!(c.capacity(None, |_| fast), 50);
        assert_eq!(cfg(60_000).capacity(None, |_| fast), INITIAL_CAPACITY);
        assert_eq!(cfg(100).capacity(None, |_| fast), 2 * SLOW_START_BATCH);
        assert_eq!(c.batch_limit(None), SLOW_START_BATCH);
        // 500 items/s over half a 1 s window: 250 items.
        assert_eq!(c.capacity(Some(500.0), |_| fast), 250);
        assert_eq!(c.capacity(Some(1e9), |_| fast), c.max_items);
        assert_eq!(c.capacity(Some(0.0), |_| fast), 1);
        assert_eq!(c.batch_limit(Some(1.0)), c.max_batch);
    }

    #[test]
    fn room_and_pressure_follow_items_and_bytes() {
        let c = Config {
            max_bytes: 100,
            ..cfg(1000)
        };
        let cap = c.capacity(Some(500.0), |_| Duration::ZERO);
        assert!(
            c.has_room(cap, 0, 0, 100),
            "an empty buffer takes any allowed item"
        );
        assert!(c.has_room(cap, 249, 0, 1));
        assert!(!c.has_room(cap, 250, 0, 1));
        assert!(!c.has_room(cap, 1, 90, 11));
        assert!(!c.under_pressure(cap, 124, 49));
        assert!(c.under_pressure(cap, 125, 0));
        assert!(c.under_pressure(cap, 1, 50));
    }

    #[test]
    fn slow_writes_bring_the_flush_age_forward() {
        let c = cfg(800);
        assert_eq!(
            c.flush_after(Duration::ZERO),
            ms(600),
            "fast writes: 3/4 of the window"
        );
        // 100 ms writes: a batch in flight and the item's own, with half again as margin
        // (300 ms), and a sixteenth of the window (50 ms) for scheduling.
        assert_eq!(c.flush_after(ms(100)), ms(450));
        assert_eq!(c.flush_after(ms(300)), Duration::ZERO, "write at once");
    }

    #[test]
    fn capacity_keeps_headroom_for_a_five_fold_latency_jump() {
        let c = Config {
            max_batch: 1000,
            ..cfg(100)
        };
        let rate = Some(1e9); // the throughput term alone would allow everything
        // 1 ms full writes: five times slower is 5 ms, half a 100 ms window holds 10 such
        // writes; one goes to the batch in flight, so 9 batches may wait.
        assert_eq!(c.capacity(rate, |_| ms(1)), 9_000);
        assert_eq!(c.capacity(rate, |_| ms(2)), 4_000);
        // A write five times slower than the tail takes longer than half the window, whatever
        // its size: no capacity keeps the headroom, and a batch costs no more than one item.
        assert_eq!(c.capacity(rate, |_| ms(20)), 1000);
    }

    /// Worst age of an item pushed when the buffer is at `capacity`, if every write of
    /// `max_batch` items takes `write`: the writes ahead of it, its own included.
    fn worst_age(c: &Config, capacity: usize, write: Duration) -> Duration {
        let writes = capacity.div_ceil(c.max_batch) + 1;
        write * writes as u32
    }

    #[test]
    fn a_capacity_from_the_model_keeps_the_window_through_the_jump() {
        let c = Config {
            max_batch: 1024,
            ..cfg(100)
        };
        let mut model = WriteModel::default();
        // The Db: 0.3 ms per call plus 1.5 us per item (a 1024-item write: ~1.8 ms).
        for n in [16usize, 200, 1024, 1024, 512, 1024] {
            model.record(n, Duration::from_secs_f64(0.0003 + 1.5e-6 * n as f64));
        }
        let full = model.predict(1024);
        assert!(full >= Duration::from_micros(1830) && full <= Duration::from_micros(1850));
        let cap = c.capacity(Some(1e9), |n| model.predict(n));
        assert_eq!(
            cap,
            4 * 1024,
            "half window / (5 x 1.84 ms) = 5 writes, one in flight"
        );
        assert!(worst_age(&c, cap, full * JUMP_HEADROOM) <= c.max_unflushed_age / 2);
    }

    #[test]
    fn small_fast_writes_do_not_promise_what_full_batches_cannot_keep() {
        // Slow start: only 16-item writes of 0.3 ms seen. The tail of those alone would allow
        // a 1024 x 50 ms / (5 x 0.3 ms) = 34 k item backlog; the model cannot split fixed
        // from per-item cost yet and assumes all per item: a full batch 64 x 0.3 ms. Two of
        // those, five times slower, do not fit half the window; two writes carrying 533 items
        // do: 5 x 533 x 18.75 us = 50 ms.
        let mut model = WriteModel::default();
        for _ in 0..4 {
            model.record(16, ms(0) + Duration::from_micros(300));
        }
        assert_eq!(model.predict(1024), Duration::from_micros(300 * 64));
        let c = Config {
            max_batch: 1024,
            ..cfg(100)
        };
        let cap = c.capacity(Some(1e9), |n| model.predict(n));
        assert_eq!(cap, 533);
        let two_writes = model.predict(cap) + model.predict(0);
        assert!(two_writes * JUMP_HEADROOM <= c.max_unflushed_age / 2);
    }

    #[test]
    fn a_db_without_batch_writes_keeps_headroom_for_a_five_fold_jump() {
        // A Db taking a call of 3 ms per item (a 2 ms Db on a busy machine): a full batch of
        // 16 384 items would take 49 s, and the learned speed alone (333 items/s over half a
        // 1 s window: 166 items) is written in exactly half a window, so a Db that turns
        // twice as slow once they are admitted breaks the window (the CI failure of
        // contract::p05_bounded_memory::a_slow_single_item_db_paces_pushers_within_the_window:
        // 137 items admitted at 3.6 ms each, then written at 11.4 ms each, 1.56 s).
        let c = Config {
            max_batch: 16_384,
            ..cfg(1000)
        };
        let mut model = WriteModel::default();
        for n in [16usize, 240, 137, 209, 4, 176] {
            model.record(n, ms(3) * n as u32);
        }
        let rate = Some(1.0 / 0.003);
        let cap = c.capacity(rate, |n| model.predict(n));
        // Two writes (the batch in flight and the item's own) carrying `cap` items, five
        // times slower: 5 x 3 ms x cap within 500 ms.
        assert_eq!(cap, 33, "500 ms / (5 x 3 ms) = 33 items");
        let two_writes = model.predict(cap) + model.predict(0);
        assert!(two_writes * JUMP_HEADROOM <= c.max_unflushed_age / 2);
        // Two noisy writes (a slow first one on a busy machine) fit as 154 ms per call plus
        // 2.2 ms per item: no batch keeps the five-fold headroom, and two writes may carry
        // what costs twice one item's, within half a window (2 x 154 + 2.2 x 87 ms), and what
        // the learned speed drains in a quarter of a window.
        let mut noisy = WriteModel::default();
        noisy.record(16, Duration::from_micros(189_500));
        noisy.record(240, ms(680));
        assert_eq!(c.capacity(Some(1000.0), |n| noisy.predict(n)), 87);
        let cap = c.capacity(Some(300.0), |n| noisy.predict(n));
        assert_eq!(cap, 75, "300 items/s x 250 ms");
        assert!(noisy.predict(cap) + noisy.predict(0) <= c.max_unflushed_age / 2);
    }

    #[test]
    fn light_load_keeps_its_flush_age_while_the_capacity_stays_pessimistic() {
        // Light load: every write took 5 items in 1 ms. Extrapolated to a full batch of 16 384
        // items as all per-item cost, that is 3.3 s: the capacity allows what two writes carry
        // within half the window after a five-fold jump, 10 ms / 0.2 ms = 50 items (batches of
        // other sizes then teach the model the fixed cost, and the capacity grows). The flush
        // age plans for the batches being written (twice the largest recent one): 2 ms, so
        // it stays at three quarters of a 100 ms window instead of collapsing to a write per
        // push.
        let c = Config {
            max_batch: 16_384,
            ..cfg(100)
        };
        let mut model = WriteModel::default();
        for _ in 0..8 {
            model.record(5, ms(1));
        }
        assert_eq!(model.largest_recent(), 5);
        assert_eq!(c.capacity(Some(1e9), |n| model.predict(n)), 50);
        assert_eq!(model.predict(2 * model.largest_recent()), ms(2));
        assert_eq!(c.flush_after(model.predict(10)), ms(75));
    }

    #[test]
    fn the_clock_ticks_a_sixteenth_of_the_window_within_limits() {
        assert_eq!(cfg(800).clock_tick(), ms(50));
        assert_eq!(cfg(10).clock_tick(), ms(1));
        assert_eq!(cfg(60_000).clock_tick(), ms(1000));
    }

    #[test]
    fn backoff_doubles_up_to_an_eighth_of_the_window() {
        let c = cfg(800); // max backoff: 100 ms
        assert_eq!(c.backoff(1), ms(2));
        assert_eq!(c.backoff(2), ms(4));
        assert_eq!(c.backoff(6), ms(64));
        assert_eq!(c.backoff(7), ms(100));
        assert_eq!(c.backoff(u32::MAX), ms(100));
        assert_eq!(cfg(100_000).max_backoff(), Duration::from_secs(1));
        assert_eq!(cfg(4).max_backoff(), ms(1));
    }

    #[test]
    fn the_window_is_passed_at_its_full_length() {
        let (c, t0) = (cfg(800), Instant::now());
        assert!(!c.past_max_age(t0, t0 + ms(799)));
        assert!(c.past_max_age(t0, t0 + ms(800)));
        assert!(
            !c.past_max_age(t0 + ms(5), t0),
            "a clock read before the push is not past"
        );
    }

    #[test]
    fn earliest_takes_the_earlier_of_two_limits() {
        let t0 = Instant::now();
        assert_eq!(earliest(Some(t0), Some(t0 + ms(1))), Some(t0));
        assert_eq!(earliest(None, Some(t0)), Some(t0));
        assert_eq!(earliest(Some(t0), None), Some(t0));
        assert_eq!(earliest(None, None), None);
    }

    #[test]
    fn db_pops_are_limited_by_the_known_count_or_the_slow_start_limit() {
        assert!(db_pop_allowed(Some(2), 1, 1));
        assert!(!db_pop_allowed(Some(2), 2, 1000));
        assert!(!db_pop_allowed(Some(0), 0, 1000));
        assert!(db_pop_allowed(None, 0, 1));
        assert!(!db_pop_allowed(None, 1, 1));
        assert_eq!(grow_db_pop_limit(1), 2);
        assert_eq!(grow_db_pop_limit(MAX_DB_POP_LIMIT), MAX_DB_POP_LIMIT);
    }
}
