//! [`State`]: buffered items, the in-flight batch and what the storage knows about its Db, all
//! behind one mutex in [`Core`], with the condition variables its callers wait on.
//!
//! Every field of `State` is private to this file: the engine changes it only through the
//! methods below, named after what happens (`push`, `take_newest`, `begin_write`, `land`,
//! `begin_db_pop`, `end_db_pop`, `close`), so the invariants are kept in one place.
//!
//! # Invariants (hold whenever the lock is free)
//! * `items` is ordered by push order: front = oldest, back = newest (the top of the stack).
//!   An item a lease returns ([`State::put_back_on_top`]) counts as pushed when it returns: it
//!   gets a new sequence number and goes to the back, keeping its push stamp.
//! * Push stamps never decrease from front to back, so the front is the item due first:
//!   returning an item with an older stamp lowers the stamps above it to its own (they are
//!   written earlier, never later).
//! * An item held by a lease of the engine's ([`Leases`]) is in neither `items` nor `bytes`:
//!   it is in its holder's hands, like a popped item, until acked, released or expired.
//! * The in-flight batch, when there is one, is older than every entry of `items`: writers
//!   always take from the front, pushes go to the back, pops take from the back. So "newest
//!   first" across memory and Db is: the back of `items`, then the in-flight batch, then the Db.
//! * At most one batch is in flight (`in_flight` is `Some`): whoever begins it (the flusher
//!   thread, a `flush` or `close` caller) is the only writer until it lands.
//! * `bytes` counts the bytes of `items` plus the in-flight batch.
//! * `durable` holds one entry per `push_durable` call waiting for its item (by sequence
//!   number); the entry is removed when the item leaves memory (settled) or the call stops
//!   waiting, so it never outgrows the number of callers blocked in `push_durable`.
//! * `db_count` (the exact number of items in a non-shared Db) is only learned by a pop whose
//!   Db call returned nothing while `db_epoch` (bumped by every write that stored something)
//!   did not move and no other Db pop was under way (so it never hides a landed batch, nor
//!   takes away twice what another pop took and has not reported yet; with others under way
//!   the count is forgotten instead), or by a
//!   `Storage::len` whose Db count no write and no Db pop overlapped (`end_len_probe`).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::Stats;
use super::durable_waiters::{DurableWaiters, Settled, Slot};
use super::lease::Leases;
use super::policy::{self, Buffer, Config, Next, WriteModel, WriteRate};
use std::sync::Arc;

use super::poison::{DeadLetter, DeadLetterHook, Written};
use crate::db::{Db, DbError};
use crate::error::Error;
use crate::sync::{Condvar, Mutex};
use crate::token::Wake;

/// One buffered item.
struct Entry {
    seq: u64,
    pushed_at: Instant,
    data: Vec<u8>,
}

/// The batch a writer took with [`State::begin_write`]; handed back to [`State::land`].
pub(crate) struct Batch(Vec<Entry>);

impl Batch {
    /// The items, oldest first, as the Db's `push_batch` takes them.
    pub(crate) fn items(&self) -> Vec<&[u8]> {
        self.0.iter().map(|e| e.data.as_slice()).collect()
    }
}

/// The batch being written (there is at most one).
struct InFlight {
    len: usize,
    /// Sequence number of its oldest item.
    first_seq: u64,
    /// Push instant of its oldest item: while a write is under way the oldest held items are
    /// in flight, not in `items`.
    oldest: Option<Instant>,
}

/// The Db has been failing since `since`; the last error and when to try again.
struct Failure {
    since: Instant,
    last: DbError,
    attempts: u32,
    retry_at: Instant,
}

/// Raw counters behind [`Stats`].
#[derive(Default, Clone)]
struct Counters {
    pops_from_memory: u64,
    pops_from_db: u64,
    db_push_calls: u64,
    db_pop_calls: u64,
    items_flushed: u64,
    db_failures: u64,
    push_waits: u64,
    dead_letters: u64,
    dead_letters_dropped: u64,
    /// Items leases put back on top (they took a sequence number without a push).
    returned: u64,
}

/// A [`Storage::len`](crate::Storage::len) under way: what the state looked like when its Db
/// call began, so its answer is only trusted if nothing moved items meanwhile.
pub(crate) struct LenProbe {
    epoch: u64,
    db_pop_calls: u64,
    quiet: bool,
}

/// What a pop that found memory empty (and no batch in flight) does about the Db.
pub(crate) enum DbPopStep {
    /// Call the Db's `pop` now, then hand the ticket to [`State::end_db_pop`].
    Call(DbPopTicket),
    /// Do not call the Db now.
    Wait {
        /// Other calls are asking the Db: their answers will notify.
        others_asking: bool,
        /// When a shared Db may be asked again.
        recheck_at: Option<Instant>,
    },
}

/// A Db pop under way: the Db epoch it started at.
pub(crate) struct DbPopTicket {
    epoch: u64,
}

/// Everything behind the storage's mutex.
pub(crate) struct State {
    items: VecDeque<Entry>,
    bytes: usize,
    in_flight: Option<InFlight>,
    next_seq: u64,
    db_epoch: u64,
    /// Exactly how many items a non-shared Db holds, once a pop found it empty: every write
    /// adds what it stored, every Db pop that returned an item subtracts one. `None` while
    /// unknown (and always for a shared Db, which other processes change).
    db_count: Option<u64>,
    /// A shared Db last answered "empty" at this epoch and instant: no pop asks it again
    /// before `shared_poll` has passed or a write of ours has landed (one re-check per interval
    /// for the whole storage, however many poppers wait).
    shared_db_empty_at: Option<(u64, Instant)>,
    /// A Db answered "empty" at this epoch while leases it holds for us were outstanding:
    /// they may come back by themselves at the instant given (the earliest of their
    /// deadlines), so no pop asks again before then (or before the epoch moves). The count
    /// stays unknown meanwhile: a Db pop may return such an item, which the count never held.
    lease_recheck: Option<(u64, Instant)>,
    /// Db pop calls under way.
    db_pops: usize,
    /// While `db_count` is unknown: how many Db pops may run at once. Starts at 1 (a probe),
    /// grows by one with every pop that returns an item, falls back to 1 when one finds the
    /// Db empty: a crowd of poppers never makes many more calls than there are items.
    db_pop_limit: usize,
    closed: bool,
    failing: Option<Failure>,
    rate: WriteRate,
    /// Write time as a function of batch size ([`WriteModel`]).
    model: WriteModel,
    /// The model's tail time of the writes the flush age plans for (`learned`).
    due_write: Duration,
    /// When the last landing left writes overdue (the buffer under pressure, the Db not
    /// failing): the next write's start minus this is a gap the writer did not write in
    /// (starved of CPU or of the lock), which the model counts as write cost.
    overdue_since: Option<Instant>,
    /// The item capacity ([`Config::capacity`]), recomputed whenever a write teaches the
    /// storage something about the Db's speed, so a push compares two integers.
    capacity: usize,
    /// The coarse clock pushes stamp items with: the flusher's last reading of the system
    /// clock while pushes keep coming ([`State::tick`]), `None` once they stopped, so the next
    /// push reads the system clock itself (and wakes the flusher to tick). A stamp is never
    /// later than its push, so items are at most one tick early, never late.
    clock: Option<Instant>,
    /// `next_seq` when the flusher last ticked: pushes since then are `next_seq - seq_at_tick`.
    seq_at_tick: u64,
    counters: Counters,
    /// Poison items kept aside (no dead-letter hook set), oldest first, at most
    /// `cfg.max_dead_letters`: when full, the oldest is dropped and counted.
    dead_letters: VecDeque<DeadLetter>,
    /// `push_durable` calls waiting for their item.
    durable: DurableWaiters,
    /// Leases held through this storage.
    leases: Leases,
}

impl State {
    pub(crate) fn new(cfg: &Config) -> Self {
        State {
            items: VecDeque::new(),
            bytes: 0,
            in_flight: None,
            next_seq: 1,
            db_epoch: 0,
            db_count: None,
            shared_db_empty_at: None,
            lease_recheck: None,
            db_pops: 0,
            db_pop_limit: 1,
            closed: false,
            failing: None,
            rate: WriteRate::default(),
            model: WriteModel::default(),
            due_write: Duration::ZERO,
            overdue_since: None,
            capacity: cfg.capacity(None, Duration::ZERO),
            clock: None,
            seq_at_tick: 1,
            counters: Counters::default(),
            dead_letters: VecDeque::new(),
            durable: DurableWaiters::default(),
            leases: Leases::default(),
        }
    }

    #[inline]
    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }

    /// Marks the storage closed: every call re-checking the state returns `Closed`.
    pub(crate) fn close(&mut self) {
        self.closed = true;
        self.durable.wake_all();
    }

    /// Whether a batch is in flight.
    #[inline]
    pub(crate) fn is_writing(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Items buffered, not counting an in-flight batch.
    pub(crate) fn buffered(&self) -> usize {
        self.items.len()
    }

    /// Items held in memory, buffered plus in flight.
    #[inline]
    fn held(&self) -> usize {
        self.items.len() + self.in_flight.as_ref().map_or(0, |f| f.len)
    }

    /// Sequence number of the newest item pushed so far (0 before the first push).
    pub(crate) fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    // ---- push ---------------------------------------------------------------------------

    /// Whether an item of `len` bytes fits now.
    #[inline]
    pub(crate) fn has_room(&self, cfg: &Config, len: usize) -> bool {
        cfg.has_room(self.capacity, self.held(), self.bytes, len)
    }

    /// Puts `data` on top, stamped with the coarse clock; `waited` says whether the push had
    /// to wait for room. Returns `true` when the clock was idle: the push read the system
    /// clock and the flusher must be woken to keep the clock ticking.
    #[inline]
    pub(crate) fn push(&mut self, data: Vec<u8>, waited: bool) -> bool {
        let (now, idle) = match self.clock {
            Some(now) => (now, false),
            None => {
                let now = Instant::now();
                self.clock = Some(now);
                (now, true)
            }
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        self.bytes += data.len();
        self.items.push_back(Entry {
            seq,
            pushed_at: now,
            data,
        });
        if waited {
            self.counters.push_waits += 1;
        }
        idle
    }

    /// The flusher's clock tick at `now`: while pushes came within the last
    /// [`Config::clock_tick`], the coarse clock reads `now` and the next tick is due one tick
    /// later (returned); after a whole tick without a push the clock goes idle (`None`): the
    /// next push reads the system clock.
    pub(crate) fn tick(&mut self, cfg: &Config, now: Instant) -> Option<Instant> {
        let recent = self.clock.is_some_and(|at| now < at + cfg.clock_tick());
        let pushed = self.next_seq != self.seq_at_tick;
        if pushed || recent {
            if pushed || self.clock.is_none() {
                self.clock = Some(now);
            }
            self.seq_at_tick = self.next_seq;
        } else {
            self.clock = None;
        }
        self.clock.map(|at| at + cfg.clock_tick())
    }

    /// The common case of a push, decided at once: the storage is open, the Db is not failing
    /// and there is room for an item of `len` bytes.
    #[inline]
    pub(crate) fn accepts(&self, cfg: &Config, len: usize) -> bool {
        !self.closed && self.failing.is_none() && self.has_room(cfg, len)
    }

    /// Whether a batch of `n` items and `len` bytes fits now. A batch the caller checked
    /// against the capacity always fits an empty buffer, as one item does.
    pub(crate) fn has_room_for_batch(&self, cfg: &Config, n: usize, len: usize) -> bool {
        self.held() == 0 || (n > 0 && self.has_room_after(cfg, n - 1, len))
    }

    /// [`has_room`](Self::has_room) as if `extra` more items were held already.
    fn has_room_after(&self, cfg: &Config, extra: usize, len: usize) -> bool {
        cfg.has_room(self.capacity, self.held() + extra, self.bytes, len)
    }

    /// Puts `items` on top in order (the last ends on top); returns the sequence number of the
    /// last one, and whether the coarse clock was idle (see [`push`](Self::push)). `waited`:
    /// the push had to wait for room (counted once).
    pub(crate) fn push_all(&mut self, items: Vec<Vec<u8>>, waited: bool) -> (u64, bool) {
        let mut clock_idle = false;
        for (i, data) in items.into_iter().enumerate() {
            clock_idle |= self.push(data, waited && i == 0);
        }
        (self.last_seq(), clock_idle)
    }

    /// No batch is in flight and the buffer is half full: the flusher should write early.
    #[inline]
    pub(crate) fn wants_early_write(&self, cfg: &Config) -> bool {
        !self.is_writing() && cfg.under_pressure(self.capacity, self.held(), self.bytes)
    }

    /// Whether a Db that keeps failing already broke the window for a held item: then a new
    /// push cannot be promised either, and is refused with the Db's error. Reads the system
    /// clock only while the Db is failing: a push's own stamp comes from the coarse clock.
    pub(crate) fn refusing(&self, cfg: &Config) -> Option<&DbError> {
        let failure = self.failing.as_ref()?;
        let oldest = self.oldest_held()?;
        cfg.past_window(oldest, Instant::now())
            .then_some(&failure.last)
    }

    /// When a blocked push should re-check [`refusing`](Self::refusing) on its own.
    pub(crate) fn refusal_time(&self, cfg: &Config) -> Option<Instant> {
        self.failing.as_ref()?;
        self.oldest_held().map(|at| at + cfg.window)
    }

    /// Push instant of the oldest item held in memory, in flight or buffered.
    fn oldest_held(&self) -> Option<Instant> {
        let in_flight = self.in_flight.as_ref().and_then(|f| f.oldest);
        match (in_flight, self.items.front().map(|e| e.pushed_at)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ---- pop ----------------------------------------------------------------------------

    /// Removes and returns the newest buffered item.
    #[inline]
    pub(crate) fn take_newest(&mut self) -> Option<Vec<u8>> {
        let entry = self.items.pop_back()?;
        self.bytes -= entry.data.len();
        self.counters.pops_from_memory += 1;
        if !self.durable.is_empty() {
            self.settle_popped(&[entry.seq]);
        }
        Some(entry.data)
    }

    /// Removes and returns up to `max` of the newest buffered items, newest first.
    pub(crate) fn take_newest_batch(&mut self, max: usize) -> Vec<Vec<u8>> {
        let n = max.min(self.items.len());
        if !self.durable.is_empty() {
            let popped: Vec<u64> = self
                .items
                .range(self.items.len() - n..)
                .map(|e| e.seq)
                .collect();
            self.settle_popped(&popped);
        }
        let taken: Vec<Vec<u8>> = self
            .items
            .drain(self.items.len() - n..)
            .rev()
            .map(|e| e.data)
            .collect();
        self.bytes -= taken.iter().map(Vec::len).sum::<usize>();
        self.counters.pops_from_memory += n as u64;
        taken
    }

    /// Items in memory, buffered plus in flight.
    pub(crate) fn len_in_memory(&self) -> usize {
        self.held()
    }

    /// What the storage holds, memory plus Db, when it knows the Db's count exactly.
    pub(crate) fn known_len(&self) -> Option<u64> {
        self.db_count.map(|n| n + self.held() as u64)
    }

    /// Starts a [`Storage::len`](crate::Storage::len) that asks the Db for its count.
    pub(crate) fn begin_len_probe(&self) -> LenProbe {
        LenProbe {
            epoch: self.db_epoch,
            db_pop_calls: self.counters.db_pop_calls,
            quiet: !self.is_writing() && self.db_pops == 0,
        }
    }

    /// Ends `probe` with the Db's answer `db_len`; returns memory plus Db. If no write and no
    /// Db pop overlapped the call, the answer is exact and a non-`shared` Db's count is kept
    /// from then on (as a pop that finds the Db empty keeps it).
    pub(crate) fn end_len_probe(&mut self, probe: LenProbe, db_len: u64, shared: bool) -> u64 {
        let quiet = probe.quiet
            && !self.is_writing()
            && self.db_pops == 0
            && probe.epoch == self.db_epoch
            && probe.db_pop_calls == self.counters.db_pop_calls;
        if quiet && !shared && self.leases.earliest_in_db().is_none() {
            self.db_count = Some(db_len);
        }
        db_len + self.held() as u64
    }

    /// Whether a pop that found memory empty should call the Db now.
    pub(crate) fn db_pop_step(&mut self, cfg: &Config, now: Instant) -> DbPopStep {
        let shared_at = self
            .shared_db_empty_at
            .and_then(|(epoch, at)| (epoch == self.db_epoch).then_some(at + cfg.shared_poll));
        let lease_at = self
            .lease_recheck
            .and_then(|(epoch, at)| (epoch == self.db_epoch).then_some(at));
        let recheck_at = match (shared_at, lease_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let db_empty = self.db_count == Some(0);
        let due = recheck_at.is_none_or(|t| now >= t);
        if !db_empty
            && due
            && policy::db_pop_allowed(self.db_count, self.db_pops, self.db_pop_limit)
        {
            return DbPopStep::Call(self.begin_db_pop());
        }
        DbPopStep::Wait {
            others_asking: !db_empty && self.db_pops > 0,
            recheck_at,
        }
    }

    fn begin_db_pop(&mut self) -> DbPopTicket {
        self.db_pops += 1;
        self.counters.db_pop_calls += 1;
        DbPopTicket {
            epoch: self.db_epoch,
        }
    }

    /// Records the answer of the Db pop `ticket` stands for and passes it on. `shared` says
    /// whether other processes may push to the Db; `now` is when the answer came.
    pub(crate) fn end_db_pop<T>(
        &mut self,
        ticket: DbPopTicket,
        answer: Result<Option<T>, DbError>,
        shared: bool,
        now: Instant,
    ) -> Result<Option<T>, DbError> {
        let taken = answer.as_ref().map(|item| usize::from(item.is_some()));
        self.note_db_pop(ticket, taken.ok(), shared, now);
        answer
    }

    /// [`end_db_pop`](Self::end_db_pop) for a `Db::pop_batch` call: `answer` holds the items
    /// it took, newest first (none: the Db was empty).
    pub(crate) fn end_db_pop_batch(
        &mut self,
        ticket: DbPopTicket,
        answer: Result<Vec<Vec<u8>>, DbError>,
        shared: bool,
        now: Instant,
    ) -> Result<Vec<Vec<u8>>, DbError> {
        let taken = answer.as_ref().map(Vec::len);
        self.note_db_pop(ticket, taken.ok(), shared, now);
        answer
    }

    /// Records that the Db pop `ticket` stands for ended, having taken `taken` items (`None`:
    /// it failed and took nothing). Taking none means the Db was empty at that moment.
    fn note_db_pop(
        &mut self,
        ticket: DbPopTicket,
        taken: Option<usize>,
        shared: bool,
        now: Instant,
    ) {
        self.db_pops -= 1;
        match taken {
            Some(0) => {
                self.db_pop_limit = 1;
                if shared {
                    self.shared_db_empty_at = Some((ticket.epoch, now));
                } else if let Some(at) = self.leases.earliest_in_db() {
                    // Leases the Db holds for us may come back by themselves: no count.
                    self.lease_recheck = Some((ticket.epoch, at));
                } else if self.db_epoch == ticket.epoch {
                    // Only if no batch landed meanwhile. And another Db pop under way may have
                    // taken items the count still holds (its answer subtracts them later): then
                    // "the Db is empty" only says the count is stale, so it is forgotten, and
                    // the slow-start limit of one Db pop at a time learns it again alone.
                    self.db_count = (self.db_pops == 0).then_some(0);
                }
            }
            Some(n) => {
                self.db_pop_limit = policy::grow_db_pop_limit(self.db_pop_limit);
                if let Some(count) = self.db_count.as_mut() {
                    *count = count.saturating_sub(n as u64);
                }
                self.counters.pops_from_db += n as u64;
            }
            None => {}
        }
    }

    // ---- leases -------------------------------------------------------------------------

    /// The leases held through this storage.
    pub(crate) fn leases(&mut self) -> &mut Leases {
        &mut self.leases
    }

    /// Removes the newest buffered item for a lease: its bytes and push stamp. Not counted as
    /// a pop.
    pub(crate) fn take_newest_for_lease(&mut self) -> Option<(Vec<u8>, Instant)> {
        let entry = self.items.pop_back()?;
        self.bytes -= entry.data.len();
        if !self.durable.is_empty() {
            // A durable push whose item is leased returns `Ok`, as when a pop takes it.
            self.settle_popped(&[entry.seq]);
        }
        Some((entry.data, entry.pushed_at))
    }

    /// Puts an item a lease returns on top (the newest), with its push stamp `pushed_at`:
    /// a new sequence number, and the stamps above it lowered to `pushed_at`, so the flusher
    /// writes it (with everything below it) when it comes due, as if it had never left.
    pub(crate) fn put_back_on_top(&mut self, data: Vec<u8>, pushed_at: Instant) {
        for entry in self.items.iter_mut().rev() {
            if entry.pushed_at <= pushed_at {
                break;
            }
            entry.pushed_at = pushed_at;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.counters.returned += 1;
        self.bytes += data.len();
        self.items.push_back(Entry {
            seq,
            pushed_at,
            data,
        });
    }

    /// A lease a native Db holds was taken, or went back to the Db, or may have (released, or
    /// past its deadline): the Db may hold more than the storage counted, by itself. The count
    /// is forgotten (a pop asks the Db again; it is not learned again while such leases are
    /// held) and the epoch moves, so a Db pop under way that found the Db empty does not
    /// teach a count of zero.
    pub(crate) fn db_may_have_grown(&mut self) {
        self.db_epoch += 1;
        self.db_count = None;
        self.shared_db_empty_at = None;
    }

    /// When the flusher would start writing an item pushed at `pushed_at`: its stamp plus
    /// the flush age the policy uses now.
    pub(crate) fn due_at(&self, cfg: &Config, pushed_at: Instant) -> Instant {
        pushed_at + cfg.flush_after(self.due_write)
    }

    // ---- write --------------------------------------------------------------------------

    /// Whether every item pushed with a sequence number <= `seq` has left memory.
    pub(crate) fn flushed_through(&self, seq: u64) -> bool {
        let in_flight_old = self.in_flight.as_ref().is_some_and(|f| f.first_seq <= seq);
        let buffered_old = self.items.front().is_some_and(|e| e.seq <= seq);
        !in_flight_old && !buffered_old
    }

    /// How many of the oldest items, up to `max_batch`, have a sequence number <= `seq`.
    pub(crate) fn count_through(&self, seq: u64, cfg: &Config) -> usize {
        self.items
            .iter()
            .take(cfg.max_batch)
            .take_while(|e| e.seq <= seq)
            .count()
    }

    /// The flusher's decision ([`policy::next`]) on this state.
    pub(crate) fn next(&self, cfg: &Config, now: Instant) -> Next {
        let rate = self.rate.get();
        let buffer = Buffer {
            pushed_at: self.items.iter().map(|e| e.pushed_at),
            writing: self.is_writing(),
            retry_at: self.failing.as_ref().map(|f| f.retry_at),
            pressure: cfg.under_pressure(self.capacity, self.held(), self.bytes),
            batch_limit: cfg.batch_limit(rate),
            flush_after: cfg.flush_after(self.due_write),
        };
        policy::next(cfg, now, buffer)
    }

    /// When a failing Db may be tried again, if it is failing.
    pub(crate) fn retry_at(&self) -> Option<Instant> {
        self.failing.as_ref().map(|f| f.retry_at)
    }

    /// Takes the writer role and the oldest `n` buffered items as the in-flight batch. The
    /// caller must have checked that no batch is in flight.
    pub(crate) fn begin_write(&mut self, n: usize) -> Batch {
        debug_assert!(self.in_flight.is_none(), "two batches in flight");
        let n = n.min(self.items.len());
        let batch: Vec<Entry> = self.items.drain(..n).collect();
        self.in_flight = Some(InFlight {
            len: batch.len(),
            first_seq: batch.first().map_or(u64::MAX, |e| e.seq),
            oldest: batch.first().map(|e| e.pushed_at),
        });
        Batch(batch)
    }

    /// Lands the in-flight `batch` as `written` says: the settled prefix leaves memory (its
    /// stored items are in the Db; its poison items are returned, for the dead-letter hook or
    /// [`State::set_aside`]); the rest goes back to the front of the stack (still the oldest),
    /// so nothing is dropped and nothing written twice. Learns the Db's speed from `elapsed`;
    /// on failure schedules a retry with backoff from `now`. Releases the writer role.
    pub(crate) fn land(
        &mut self,
        batch: Batch,
        written: Written,
        elapsed: Duration,
        cfg: &Config,
        now: Instant,
    ) -> (Result<(), DbError>, Vec<DeadLetter>) {
        let mut batch = batch.0;
        let attempted = batch.len();
        self.in_flight = None;
        self.counters.db_push_calls += written.calls;
        let settled = written.settled.min(batch.len());
        let stored = written.stored();
        let unstored = batch.split_off(settled);
        if !self.durable.is_empty() {
            self.note_durable_landing(&batch, &unstored, &written);
        }
        self.bytes -= batch.iter().map(|e| e.data.len()).sum::<usize>();
        let mut settled_items: Vec<Option<Vec<u8>>> =
            batch.into_iter().map(|e| Some(e.data)).collect();
        let poison = written
            .poisoned
            .into_iter()
            .filter_map(|(i, error)| {
                let item = settled_items.get_mut(i)?.take()?;
                Some(DeadLetter { item, error })
            })
            .collect();
        self.counters.items_flushed += stored as u64;
        if stored > 0 {
            self.db_epoch += 1;
            if let Some(n) = self.db_count.as_mut() {
                *n += stored as u64;
            }
        }
        // Unstored items are older than everything still buffered: they go back to the front.
        for entry in unstored.into_iter().rev() {
            self.items.push_front(entry);
        }
        let outcome = match written.error {
            None => {
                self.failing = None;
                self.rate.learn(stored, elapsed);
                let cost = self.write_cost(cfg, elapsed, now);
                self.learned(cfg, attempted, cost);
                Ok(())
            }
            Some(err) => {
                self.overdue_since = None; // the backoff that follows is deliberate
                self.record_failure(cfg, err.clone(), now, (attempted, stored), elapsed);
                Err(err)
            }
        };
        (outcome, poison)
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
        let full_write = self.model.predict(cfg.max_batch);
        self.capacity = cfg.capacity(self.rate.get(), full_write);
        let usual = self.model.largest_recent().saturating_mul(2);
        self.due_write = self.model.predict(usual.min(cfg.max_batch));
    }

    /// What a write of `elapsed` that landed at `now` cost the backlog: its duration, plus the
    /// time before it began during which writes were already overdue. Notes whether writes
    /// are overdue again after it.
    fn write_cost(&mut self, cfg: &Config, elapsed: Duration, now: Instant) -> Duration {
        let started = now.checked_sub(elapsed).unwrap_or(now);
        let gap = self
            .overdue_since
            .map_or(Duration::ZERO, |at| started.saturating_duration_since(at));
        let overdue =
            self.failing.is_none() && cfg.under_pressure(self.capacity, self.held(), self.bytes);
        self.overdue_since = overdue.then_some(now);
        elapsed + gap
    }

    /// Keeps poison items aside for [`Storage::take_dead_letters`](crate::Storage::take_dead_letters),
    /// dropping (and counting) the oldest beyond `cfg.max_dead_letters`.
    pub(crate) fn set_aside(&mut self, cfg: &Config, letters: Vec<DeadLetter>) {
        for letter in letters {
            self.counters.dead_letters += 1;
            self.dead_letters.push_back(letter);
        }
        while self.dead_letters.len() > cfg.max_dead_letters {
            self.dead_letters.pop_front();
            self.counters.dead_letters_dropped += 1;
        }
    }

    /// Counts poison items a dead-letter hook took.
    pub(crate) fn count_dead_letters(&mut self, n: usize) {
        self.counters.dead_letters += n as u64;
    }

    /// Hands over the poison items kept aside, oldest first.
    pub(crate) fn take_dead_letters(&mut self) -> Vec<DeadLetter> {
        self.dead_letters.drain(..).collect()
    }

    /// Records a failed Db write (that stored `stored` items in `elapsed`) and schedules the
    /// next try with exponential backoff. The failure also feeds the learned rate, as `stored`
    /// items over the call plus the backoff: the pace rule must reflect the throughput a
    /// flaky Db really gives, not only the speed of its successful calls.
    fn record_failure(
        &mut self,
        cfg: &Config,
        err: DbError,
        now: Instant,
        (attempted, stored): (usize, usize),
        elapsed: Duration,
    ) {
        self.counters.db_failures += 1;
        let (since, attempts) = match &self.failing {
            Some(f) => (f.since, f.attempts.saturating_add(1)),
            None => (now, 1),
        };
        let backoff = cfg.backoff(attempts);
        if self.rate.get().is_some() {
            self.rate.learn(stored, elapsed + backoff);
        }
        self.learned(cfg, attempted, elapsed);
        self.failing = Some(Failure {
            since,
            last: err,
            attempts,
            retry_at: now + backoff,
        });
    }

    // ---- durable pushes ------------------------------------------------------------------

    /// Registers a `push_durable` call waiting for the item with sequence number `seq` on
    /// `slot`.
    pub(crate) fn expect_durable(&mut self, seq: u64, slot: Arc<Slot>) {
        self.durable.arrive(seq, slot);
    }

    /// The newest item a `push_durable` call is still waiting for: a writer for durable
    /// pushes takes every buffered item up to it (group commit).
    pub(crate) fn newest_durable(&self) -> Option<u64> {
        self.durable.newest()
    }

    /// Whether the item of the `push_durable` call for `seq` has left memory by a way that
    /// did not settle its slot; if so the call's registration ends (it returns `Ok`).
    pub(crate) fn left_memory_unsettled(&mut self, seq: u64) -> bool {
        let gone = self.flushed_through(seq);
        if gone {
            self.durable.forget(seq);
        }
        gone
    }

    /// Ends the registration of a `push_durable` call that stops waiting.
    pub(crate) fn forget_durable(&mut self, seq: u64) {
        self.durable.leave(seq);
    }

    /// The next write is a durable caller's: it wakes the callers its landing settles itself,
    /// with the lock released ([`take_durable_wakes`](Self::take_durable_wakes)).
    pub(crate) fn defer_durable_wakes(&mut self) {
        self.durable.defer_wakes();
    }

    /// The `push_durable` calls a durable caller's write settled, and the next writer: to wake
    /// once the lock is released.
    pub(crate) fn take_durable_wakes(&mut self) -> Vec<Arc<Slot>> {
        self.durable.take_wakes()
    }

    /// Wakes every waiting `push_durable` call (a token ended: each re-checks its own).
    pub(crate) fn wake_durable_callers(&self) {
        self.durable.wake_all();
    }

    /// Settles the `push_durable` calls whose items a pop took (the popper owns them).
    fn settle_popped(&mut self, popped: &[u64]) {
        for seq in popped {
            self.durable.settle(*seq, Settled::Done);
        }
        self.durable.wake_queued();
    }

    /// Settles the waiting `push_durable` calls whose items a landing write carried: stored,
    /// poison among the `settled` entries, or failed for the `unstored` ones; the newest call
    /// still waiting writes next.
    fn note_durable_landing(&mut self, settled: &[Entry], unstored: &[Entry], written: &Written) {
        for (i, entry) in settled.iter().enumerate() {
            let poison = written.poisoned.iter().find(|(p, _)| *p == i);
            let outcome = match poison {
                Some((_, error)) => Settled::DeadLettered(error.clone()),
                None => Settled::Done,
            };
            self.durable.settle(entry.seq, outcome);
        }
        if let Some(error) = &written.error {
            for entry in unstored {
                self.durable
                    .settle(entry.seq, Settled::WriteFailed(error.clone()));
            }
        }
        self.durable.landed();
        self.durable.wake_queued();
    }

    // ---- close and stats ----------------------------------------------------------------

    /// The error of a `close` that gave up after trying since `started`.
    pub(crate) fn close_incomplete(&self, started: Instant) -> Error {
        let source = self
            .failing
            .as_ref()
            .map(|f| f.last.clone())
            .unwrap_or_else(|| DbError::msg("database kept failing"));
        Error::CloseIncomplete {
            unflushed: self.held(),
            waited: started.elapsed(),
            source,
        }
    }

    /// Counters and gauges at `now`.
    pub(crate) fn stats(&self, now: Instant) -> Stats {
        let c = &self.counters;
        Stats {
            pushes: self.next_seq - 1 - c.returned,
            pops: c.pops_from_memory + c.pops_from_db,
            pops_from_memory: c.pops_from_memory,
            pops_from_db: c.pops_from_db,
            db_push_calls: c.db_push_calls,
            db_pop_calls: c.db_pop_calls,
            items_flushed: c.items_flushed,
            db_failures: c.db_failures,
            push_waits: c.push_waits,
            dead_letters: c.dead_letters,
            dead_letters_held: self.dead_letters.len(),
            dead_letters_dropped: c.dead_letters_dropped,
            buffered_items: self.held(),
            buffered_bytes: self.bytes,
            in_flight_items: self.in_flight.as_ref().map_or(0, |f| f.len),
            oldest_unflushed_age: self
                .items
                .front()
                .map(|e| now.saturating_duration_since(e.pushed_at)),
            db_items_per_sec: self.rate.get(),
            db_len: self.db_count,
            db_failing_for: self
                .failing
                .as_ref()
                .map(|f| now.saturating_duration_since(f.since)),
            leases: self.leases.taken(),
            leases_held: self.leases.len(),
            leases_expired: self.leases.expired(),
        }
    }
}

/// The state and the condition variables its waiters sleep on.
///
/// One mutex guards all state, so every decision (room? newest item? in flight?) is made on a
/// consistent snapshot; Db calls always happen with the lock released.
pub(crate) struct Core {
    pub(crate) state: Mutex<State>,
    pub(crate) cfg: Config,
    /// The Db, type-erased: the engine needs no type parameter (one vtable call per Db call).
    pub(crate) db: Arc<dyn Db>,
    /// `db.is_shared()`, asked once: a pop needs it, and a virtual call per pop is not free.
    pub(crate) shared: bool,
    /// Where poison items go, if the user set a hook.
    pub(crate) dead_letter: Option<DeadLetterHook>,
    /// `db.native_leases()`, asked once.
    pub(crate) native_leases: bool,
    /// The builder's `lease_ttl`, if set.
    pub(crate) lease_ttl: Option<Duration>,
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
    pub(crate) fn new(
        cfg: Config,
        db: Arc<dyn Db>,
        dead_letter: Option<DeadLetterHook>,
        lease_ttl: Option<Duration>,
    ) -> Self {
        Core {
            state: Mutex::new(State::new(&cfg)),
            cfg,
            shared: db.is_shared(),
            native_leases: db.native_leases(),
            db,
            dead_letter,
            lease_ttl,
            poppers: Condvar::new(),
            pushers: Condvar::new(),
            landed: Condvar::new(),
            flusher: Condvar::new(),
        }
    }

    /// Wakes every kind of waiter (close, a landed batch).
    pub(crate) fn notify_everyone(&self) {
        self.poppers.notify_all();
        self.pushers.notify_all();
        self.landed.notify_all();
        self.flusher.notify_all();
    }

    /// Closes the state and wakes everyone, so every blocked call returns `Closed` and the
    /// flusher thread stops.
    pub(crate) fn close(&self) {
        let mut state = self.state.lock();
        state.close();
        self.notify_everyone();
    }
}

impl Wake for Core {
    /// A token ended: wake every blocked call so each re-checks its own token. Taking the lock
    /// first closes the gap between a waiter's token check and its wait: the waiter holds the
    /// lock from its check until the condvar releases it, so this notify cannot fall in
    /// between and be lost.
    fn wake(&self) {
        let state = self.state.lock();
        state.wake_durable_callers();
        self.poppers.notify_all();
        self.pushers.notify_all();
        self.landed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config {
            window: Duration::from_millis(100),
            max_items: 1000,
            max_bytes: 1 << 20,
            max_item_len: 1 << 10,
            max_batch: 4,
            shared_poll: Duration::from_millis(100),
            close_timeout: Duration::from_millis(100),
            max_dead_letters: 16,
        }
    }

    /// Writes the oldest 4 items as one batch that took `took` and landed at `at`.
    fn write(state: &mut State, cfg: &Config, took: Duration, at: Instant) {
        let batch = state.begin_write(4);
        let written = Written {
            settled: 4,
            poisoned: Vec::new(),
            error: None,
            calls: 1,
        };
        let (outcome, _) = state.land(batch, written, took, cfg, at);
        assert!(outcome.is_ok());
    }

    /// A write that begins late while writes were overdue (a writer starved of CPU or of the
    /// lock) cost the backlog its duration plus that gap: the model must see it, or the
    /// capacity admits what such a writer cannot drain in time.
    #[test]
    fn the_gap_before_an_overdue_write_counts_as_write_cost() {
        let (c, t0) = (cfg(), Instant::now());
        let ms = Duration::from_millis;
        let mut state = State::new(&c);
        for i in 0..200u8 {
            state.push(vec![i], false); // over half the slow-start capacity: pressure
        }
        write(&mut state, &c, ms(1), t0);
        // Still under pressure: the next write was due at t0 but began 10 ms later.
        write(&mut state, &c, ms(1), t0 + ms(11));
        assert_eq!(
            state.model.predict(4),
            ms(11),
            "1 ms of writing + 10 ms of gap"
        );

        // Without pressure the flusher waits on purpose: no gap is counted.
        let mut calm = State::new(&c);
        for i in 0..8u8 {
            calm.push(vec![i], false);
        }
        write(&mut calm, &c, ms(1), t0);
        write(&mut calm, &c, ms(1), t0 + ms(11));
        assert_eq!(calm.model.predict(4), ms(1));
    }
}
