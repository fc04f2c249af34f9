//! [`State`]: everything behind the storage's one mutex, made of parts that each own their
//! fields and invariants:
//!
//! * [`stack`]: the items in memory, buffered and in flight, in push order;
//! * [`clock`]: the coarse clock pushes stamp items with;
//! * [`flow`]: the write pipeline's health and learned speed (capacity, flush age, retries);
//! * [`db_view`]: what the storage knows of the Db's contents (epoch, count, Db pops);
//! * [`dead_letters`]: poison items kept aside;
//! * the waiting `push_durable` calls ([`DurableWaiters`]) and the leases held
//!   ([`LeaseTable`]), leaves of the engine.
//!
//! `State` itself keeps only what crosses parts, each transition named after what happens and
//! returning whom it wakes ([`Wakeups`]).
//!
//! # Invariants across parts (hold whenever the lock is free)
//! * An item held by a lease of the storage's is in neither the stack nor its byte count: it
//!   is in its holder's hands, like a popped item, until acked, released or expired.
//! * A `push_durable` call waits for one item of the stack (by sequence number); whatever
//!   moves that item out of memory (a pop, a lease, a landing write) settles the call, so the
//!   waiting calls never outnumber the callers blocked in `push_durable`.
//! * The Db's count is only kept while no lease the Db holds for us is outstanding, and only
//!   for a Db not shared with other processes (see [`db_view`]).

pub(crate) mod clock;
pub(crate) mod db_view;
pub(crate) mod dead_letters;
pub(crate) mod flow;
mod leases;
pub(crate) mod stack;

use std::time::Instant;

use self::clock::CoarseClock;
use self::db_view::{DbPopStep, DbPopTicket, DbView, LenProbe};
use self::dead_letters::{DeadLetter, DeadLetters};
use self::flow::{Flow, Landing};
use self::stack::{Batch, Entry, Stack};
use crate::engine::db_call::Written;
use crate::engine::durable_waiters::{DurableWaiters, Settled, Slot};
use crate::engine::lease_table::LeaseTable;
use crate::engine::policy::{self, Buffer, Config, Next};
use crate::engine::stats::Stats;
use crate::engine::wakeups::{Durable, Notify, Wakeups};
use crate::error::{DbError, Error};
use std::sync::Arc;
use std::time::Duration;

/// Everything behind the storage's mutex.
pub(crate) struct State {
    stack: Stack,
    clock: CoarseClock,
    flow: Flow,
    db: DbView,
    dead_letters: DeadLetters,
    /// `push_durable` calls waiting for their item.
    durable: DurableWaiters,
    /// Leases held through this storage.
    leases: LeaseTable,
    /// Pushes that had to wait for room.
    push_waits: u64,
    /// Items popped from memory.
    popped: u64,
    closed: bool,
}

impl State {
    pub(crate) fn new(cfg: &Config) -> Self {
        State {
            stack: Stack::new(),
            clock: CoarseClock::new(),
            flow: Flow::new(cfg),
            db: DbView::new(),
            dead_letters: DeadLetters::default(),
            durable: DurableWaiters::default(),
            leases: LeaseTable::default(),
            push_waits: 0,
            popped: 0,
            closed: false,
        }
    }

    #[inline]
    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }

    /// Marks the storage closed: every call re-checking the state returns `Closed`, the
    /// flusher stops.
    pub(crate) fn close(&mut self) -> Wakeups {
        self.closed = true;
        Wakeups {
            durable: Durable::All,
            ..Wakeups::EVERYONE
        }
    }

    /// Whether a batch is in flight.
    #[inline]
    pub(crate) fn is_writing(&self) -> bool {
        self.stack.is_writing()
    }

    /// Items buffered, not counting an in-flight batch.
    pub(crate) fn buffered(&self) -> usize {
        self.stack.buffered()
    }

    /// Items in memory, buffered plus in flight.
    pub(crate) fn len_in_memory(&self) -> usize {
        self.stack.held()
    }

    /// Sequence number of the newest item pushed so far (0 before the first push).
    pub(crate) fn last_seq(&self) -> u64 {
        self.stack.next_seq() - 1
    }

    // ---- push ---------------------------------------------------------------------------

    /// The common case of a push, decided at once: the storage is open and the Db is not
    /// failing (the caller checks the room).
    #[inline]
    pub(crate) fn accepts(&self) -> bool {
        !self.closed && !self.flow.is_failing()
    }

    /// Whether an item of `len` bytes fits now.
    #[inline]
    pub(crate) fn has_room(&self, cfg: &Config, len: usize) -> bool {
        cfg.has_room(
            self.flow.capacity(),
            self.stack.held(),
            self.stack.bytes(),
            len,
        )
    }

    /// Whether a batch of `n` items and `len` bytes fits now. A batch the caller checked
    /// against the limits always fits an empty buffer, as one item does.
    pub(crate) fn has_room_for_batch(&self, cfg: &Config, n: usize, len: usize) -> bool {
        let (held, bytes) = (self.stack.held(), self.stack.bytes());
        held == 0 || (n > 0 && cfg.has_room(self.flow.capacity(), held + n - 1, bytes, len))
    }

    /// Puts `data` on top, stamped with the coarse clock; `waited` says whether the push had
    /// to wait for room. Returns its sequence number. Wakes a popper, and the flusher when the
    /// buffer wants an early write or the coarse clock was idle (it must tick again).
    #[inline]
    pub(crate) fn push(&mut self, cfg: &Config, data: Vec<u8>, waited: bool) -> (u64, Wakeups) {
        let (now, clock_idle) = self.clock.stamp();
        let seq = self.stack.push(data, now);
        if waited {
            self.push_waits += 1;
        }
        let whom = Wakeups {
            poppers: Notify::One,
            flusher: clock_idle || self.wants_early_write(cfg),
            ..Wakeups::NONE
        };
        (seq, whom)
    }

    /// Puts `items` on top in order (the last ends on top); returns the sequence number of the
    /// last one. `waited`: the push had to wait for room (counted once).
    pub(crate) fn push_all(
        &mut self,
        cfg: &Config,
        items: Vec<Vec<u8>>,
        waited: bool,
    ) -> (u64, Wakeups) {
        let n = items.len();
        let (now, clock_idle) = self.clock.stamp();
        let mut seq = self.last_seq();
        for data in items {
            seq = self.stack.push(data, now);
        }
        if waited {
            self.push_waits += 1;
        }
        let whom = Wakeups {
            poppers: Wakeups::poppers_for(n),
            flusher: clock_idle || self.wants_early_write(cfg),
            ..Wakeups::NONE
        };
        (seq, whom)
    }

    /// No batch is in flight and the buffer is half full: the flusher should write early.
    #[inline]
    fn wants_early_write(&self, cfg: &Config) -> bool {
        !self.is_writing() && self.under_pressure(cfg)
    }

    #[inline]
    fn under_pressure(&self, cfg: &Config) -> bool {
        cfg.under_pressure(self.flow.capacity(), self.stack.held(), self.stack.bytes())
    }

    /// A push found the buffer full: the flusher writes early, unless a write is under way
    /// (its landing makes room).
    pub(crate) fn full(&self) -> Wakeups {
        Wakeups {
            flusher: !self.is_writing(),
            ..Wakeups::NONE
        }
    }

    /// Whether a Db that keeps failing already broke the window for a held item: then a new
    /// push cannot be promised either, and is refused with the Db's error.
    pub(crate) fn refusing(&self, cfg: &Config) -> Option<&DbError> {
        self.flow.refusing(cfg, self.stack.oldest_held())
    }

    /// When a blocked push should re-check [`refusing`](Self::refusing) on its own.
    pub(crate) fn refusal_time(&self, cfg: &Config) -> Option<Instant> {
        self.flow.refusal_time(cfg, self.stack.oldest_held())
    }

    /// The flusher's clock tick at `now` ([`CoarseClock::tick`]); returns when it is due next.
    pub(crate) fn tick(&mut self, cfg: &Config, now: Instant) -> Option<Instant> {
        self.clock.tick(cfg, now, self.stack.next_seq())
    }

    // ---- pop ----------------------------------------------------------------------------

    /// Removes and returns the newest buffered item; wakes a pusher (room).
    #[inline]
    pub(crate) fn take_newest(&mut self) -> Option<(Vec<u8>, Wakeups)> {
        let entry = self.stack.take_newest()?;
        self.popped += 1;
        let mut whom = Wakeups {
            pushers: Notify::One,
            ..Wakeups::NONE
        };
        if !self.durable.is_empty() {
            whom.durable = self.settle_taken(&[entry.seq]).durable;
        }
        Some((entry.data, whom))
    }

    /// Removes and returns up to `max` of the newest buffered items, newest first (`None` when
    /// the buffer is empty); wakes the pushers (room for several).
    pub(crate) fn take_newest_batch(&mut self, max: usize) -> Option<(Vec<Vec<u8>>, Wakeups)> {
        if self.stack.buffered() == 0 {
            return None;
        }
        let mut seqs = Vec::new();
        let track = !self.durable.is_empty();
        let taken: Vec<Vec<u8>> = self
            .stack
            .take_newest_n(max)
            .map(|e: Entry| {
                if track {
                    seqs.push(e.seq);
                }
                e.data
            })
            .collect();
        self.popped += taken.len() as u64;
        let settled = if track {
            self.settle_taken(&seqs)
        } else {
            Wakeups::NONE
        };
        let whom = Wakeups {
            pushers: Notify::All,
            ..settled
        };
        Some((taken, whom))
    }

    /// Settles the `push_durable` calls whose items a pop or a lease took (the taker owns
    /// them).
    fn settle_taken(&mut self, seqs: &[u64]) -> Wakeups {
        for seq in seqs {
            self.durable.settle(*seq, Settled::Done);
        }
        Wakeups {
            durable: Durable::Queued,
            ..Wakeups::NONE
        }
    }

    /// What the storage holds, memory plus Db, when it knows the Db's count exactly.
    pub(crate) fn known_len(&self) -> Option<u64> {
        self.db.known_count().map(|n| n + self.stack.held() as u64)
    }

    /// Starts a [`Storage::len`](crate::Storage::len) that asks the Db for its count.
    pub(crate) fn begin_len_probe(&self) -> LenProbe {
        self.db.begin_len_probe(self.is_writing())
    }

    /// Ends `probe` with the Db's answer `db_len`; returns memory plus Db. A non-`shared` Db
    /// holding no leases for us keeps an exact answer as its count.
    pub(crate) fn end_len_probe(&mut self, probe: LenProbe, db_len: u64, shared: bool) -> u64 {
        let trusted = !shared && self.leases.earliest_in_db().is_none();
        self.db
            .end_len_probe(probe, db_len, self.is_writing(), trusted);
        db_len + self.stack.held() as u64
    }

    /// Whether a taking call that found memory empty should call the Db now.
    pub(crate) fn db_pop_step(&mut self, cfg: &Config, now: Instant) -> DbPopStep {
        self.db.pop_step(cfg, now)
    }

    /// Records the answer of the Db call `ticket` stands for: `taken` items (`None`: it
    /// failed), counted as pops (`pops`) or as leases. Wakes the takers waiting for the answer
    /// of a Db call, and a writer waiting for the Db pops under way. `shared` says whether other processes push to the Db; `now` is when the
    /// answer came.
    pub(crate) fn end_db_pop(
        &mut self,
        ticket: DbPopTicket,
        taken: Option<usize>,
        pops: bool,
        shared: bool,
        now: Instant,
    ) -> Wakeups {
        let leases_back_at = self.leases.earliest_in_db();
        self.db
            .end_pop(ticket, taken, pops, (shared, leases_back_at), now);
        Wakeups {
            poppers: Notify::All,
            // A writer waits for the Db pops under way before its Db call (`ops::write`).
            landed: self.is_writing(),
            ..Wakeups::NONE
        }
    }

    /// A watch said another handle stored items in the Db (or a lease it took came due): a
    /// pop that found the Db empty asks again, so every taking call waiting re-checks.
    pub(crate) fn db_changed(&mut self) -> Wakeups {
        self.db.may_have_grown();
        Wakeups {
            // Not one: a popper waiting for a batch in flight shares the condition variable
            // and would swallow the wake-up; only the ones whose step says "call" do.
            poppers: Notify::All,
            ..Wakeups::NONE
        }
    }

    /// Whether a watch tells the storage of other processes' pushes; see
    /// [`DbView::set_watched`].
    pub(crate) fn set_watched(&mut self, watched: bool) {
        self.db.set_watched(watched);
    }

    /// Whether Db pop calls are under way (a writer waits for them: see `ops::write`).
    pub(crate) fn db_pops_under_way(&self) -> bool {
        self.db.pops_running()
    }

    // ---- write --------------------------------------------------------------------------

    /// Whether every item pushed with a sequence number <= `seq` has left memory.
    pub(crate) fn flushed_through(&self, seq: u64) -> bool {
        self.stack.flushed_through(seq)
    }

    /// How many of the oldest items, up to `max_batch`, have a sequence number <= `seq`.
    pub(crate) fn count_through(&self, seq: u64, cfg: &Config) -> usize {
        self.stack.count_through(seq, cfg.max_batch)
    }

    /// The flusher's decision ([`policy::next`]) on this state.
    pub(crate) fn next(&self, cfg: &Config, now: Instant) -> Next {
        let buffer = Buffer {
            pushed_at: self.stack.stamps(),
            writing: self.is_writing(),
            retry_at: self.flow.retry_at(),
            pressure: self.under_pressure(cfg),
            batch_limit: self.flow.batch_limit(cfg),
            flush_after: self.flow.flush_after(cfg),
        };
        policy::next(cfg, now, buffer)
    }

    /// When a failing Db may be tried again, if it is failing.
    pub(crate) fn retry_at(&self) -> Option<Instant> {
        self.flow.retry_at()
    }

    /// Takes the writer role and the oldest `n` buffered items as the in-flight batch. The
    /// caller must have checked that no batch is in flight.
    pub(crate) fn begin_write(&mut self, n: usize) -> Batch {
        self.stack.begin_write(n)
    }

    /// Lands the in-flight `batch` (maybe empty: the writer role held alone) as `written` says: the settled prefix leaves memory (its
    /// stored items are in the Db; its poison items are returned, for the dead-letter hook or
    /// [`State::set_aside`]); the rest goes back to the front of the stack (still the oldest).
    /// Learns the Db's speed from `elapsed`; on failure schedules a retry with backoff from
    /// `now`. Releases the writer role and wakes everyone: poppers waiting on the batch may
    /// find it in the Db, pushers may have room, `flush` and `close` callers re-check, the
    /// flusher may take the next batch, and the durable calls it settled return.
    pub(crate) fn land(
        &mut self,
        batch: Batch,
        written: Written,
        elapsed: Duration,
        cfg: &Config,
        now: Instant,
    ) -> (Result<(), DbError>, Vec<DeadLetter>, Wakeups) {
        let attempted = batch.len();
        let stored = written.stored();
        let (settled, unstored) = self.stack.land(batch, written.settled);
        if !self.durable.is_empty() {
            self.note_durable_landing(&settled, unstored, &written);
        }
        if attempted == 0 {
            // The writer role held alone (a native lease's return): nothing to learn.
            return (Ok(()), Vec::new(), Wakeups::EVERYONE);
        }
        let mut settled_items: Vec<Option<Vec<u8>>> =
            settled.into_iter().map(|e| Some(e.data)).collect();
        let poison = written
            .poisoned
            .into_iter()
            .filter_map(|(i, error)| {
                let item = settled_items.get_mut(i)?.take()?;
                Some(DeadLetter { item, error })
            })
            .collect();
        self.db.landed(stored);
        let landing = Landing {
            attempted,
            stored,
            calls: written.calls,
            elapsed,
            now,
            pressure_after: self.under_pressure(cfg),
        };
        let outcome = self.flow.landed(cfg, landing, written.error);
        (outcome, poison, Wakeups::EVERYONE)
    }

    /// Keeps poison items aside for [`Storage::take_dead_letters`](crate::Storage::take_dead_letters),
    /// dropping (and counting) the oldest beyond `cfg.max_dead_letters`.
    pub(crate) fn set_aside(&mut self, cfg: &Config, letters: Vec<DeadLetter>) {
        self.dead_letters.set_aside(cfg.max_dead_letters, letters);
    }

    /// Counts poison items a dead-letter hook took.
    pub(crate) fn count_dead_letters(&mut self, n: usize) {
        self.dead_letters.count_hooked(n);
    }

    /// Hands over the poison items kept aside, oldest first.
    pub(crate) fn take_dead_letters(&mut self) -> Vec<DeadLetter> {
        self.dead_letters.take()
    }

    /// The error of a `close` that gave up after trying since `started`.
    pub(crate) fn close_incomplete(&self, started: Instant) -> Error {
        let source = self
            .flow
            .last_error()
            .cloned()
            .unwrap_or_else(|| DbError::msg("database kept failing"));
        Error::CloseIncomplete {
            unflushed: self.stack.held(),
            waited: started.elapsed(),
            source,
        }
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
        let gone = self.stack.flushed_through(seq);
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

    /// Wakes the durable callers `whom` names: for [`Core::wake_up`](super::core::Core::wake_up).
    #[inline]
    pub(crate) fn wake_durable(&mut self, whom: Durable) {
        match whom {
            Durable::None => {}
            Durable::Queued => self.durable.wake_queued(),
            Durable::All => {
                self.durable.wake_queued();
                self.durable.wake_all();
            }
        }
    }

    /// Settles the waiting `push_durable` calls whose items a landing write carried: stored,
    /// poison among the `settled` entries, or failed for the `unstored` oldest buffered ones;
    /// the newest call still waiting writes next.
    fn note_durable_landing(&mut self, settled: &[Entry], unstored: usize, written: &Written) {
        for (i, entry) in settled.iter().enumerate() {
            let poison = written.poisoned.iter().find(|(p, _)| *p == i);
            let outcome = match poison {
                Some((_, error)) => Settled::DeadLettered(error.clone()),
                None => Settled::Done,
            };
            self.durable.settle(entry.seq, outcome);
        }
        if let Some(error) = &written.error {
            for seq in self.stack.oldest_seqs(unstored) {
                self.durable
                    .settle(seq, Settled::WriteFailed(error.clone()));
            }
        }
        self.durable.landed();
    }

    // ---- stats --------------------------------------------------------------------------

    /// Counters and gauges at `now`.
    pub(crate) fn stats(&self, now: Instant) -> Stats {
        let (db_pop_calls, pops_from_db) = self.db.counts();
        let (db_push_calls, items_flushed, db_failures) = self.flow.counts();
        let (db_items_per_sec, db_failing_for) = self.flow.health(now);
        let (dead_letters, dead_letters_held, dead_letters_dropped) = self.dead_letters.counts();
        let (leases_from_memory, leases_from_db) = self.leases.taken();
        Stats {
            pushes: self.stack.pushed(),
            pops: self.popped + pops_from_db,
            pops_from_memory: self.popped,
            pops_from_db,
            leases: leases_from_memory + leases_from_db,
            leases_from_memory,
            leases_from_db,
            leases_held: self.leases.len(),
            leases_expired: self.leases.expired(),
            db_push_calls,
            db_pop_calls,
            items_flushed,
            db_failures,
            push_waits: self.push_waits,
            dead_letters,
            dead_letters_held,
            dead_letters_dropped,
            buffered_items: self.stack.held(),
            buffered_bytes: self.stack.bytes(),
            in_flight_items: self.stack.in_flight(),
            oldest_unflushed_age: self
                .stack
                .oldest_buffered()
                .map(|at| now.saturating_duration_since(at)),
            db_items_per_sec,
            db_failing_for,
            db_len: self.db.known_count(),
        }
    }
}

#[cfg(test)]
mod tests;
