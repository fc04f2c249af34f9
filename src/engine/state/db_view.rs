//! [`DbView`]: what the storage knows of its Db's contents without asking it. An epoch that
//! moves whenever the Db may have gained items, the exact item count when it is known, and
//! the Db pops under way (each with a ticket naming the epoch it started at).
//!
//! # Invariants (hold whenever the lock is free)
//! * `count` (the exact number of items in a non-shared Db) is only learned by a pop whose
//!   Db call returned nothing while `epoch` (bumped by every write that stored something) did
//!   not move and no other Db pop was under way (so it never hides a landed batch, nor takes
//!   away twice what another pop took and has not reported yet; with others under way the
//!   count is forgotten instead), or by a `Storage::len` whose Db count no write and no Db pop
//!   overlapped ([`DbView::end_len_probe`]).
//! * While a native Db holds leases for this storage, the count stays unknown: an expired
//!   lease comes back through a Db pop the count never held.

use std::time::Instant;

use crate::engine::policy::{self, Config};

/// What a taking call that found memory empty (and no batch in flight) does about the Db.
pub(crate) enum DbPopStep {
    /// Call the Db now, then hand the ticket to [`DbView::end_pop`].
    Call(DbPopTicket),
    /// Do not call the Db now.
    Wait {
        /// Other calls are asking the Db: their answers will wake us.
        others_asking: bool,
        /// When a shared Db (or one whose leases may come back) may be asked again.
        recheck_at: Option<Instant>,
    },
}

/// A Db pop under way: the Db epoch it started at.
pub(crate) struct DbPopTicket {
    epoch: u64,
}

/// A [`Storage::len`](crate::Storage::len) under way: what the view looked like when its Db
/// call began, so its answer is only trusted if nothing moved items meanwhile.
pub(crate) struct LenProbe {
    epoch: u64,
    pop_calls: u64,
    quiet: bool,
}

/// The storage's knowledge of the Db's contents.
pub(crate) struct DbView {
    epoch: u64,
    /// Exactly how many items a non-shared Db holds, once a pop found it empty: every write
    /// adds what it stored, every Db pop that returned items subtracts them. `None` while
    /// unknown (and always for a shared Db, which other processes change).
    count: Option<u64>,
    /// A shared Db last answered "empty" at this epoch and instant: no pop asks it again
    /// before `shared_poll` has passed or a write of ours has landed (one re-check per interval
    /// for the whole storage, however many poppers wait).
    shared_empty_at: Option<(u64, Instant)>,
    /// A Db answered "empty" at this epoch while leases it holds for us were outstanding:
    /// they may come back by themselves at the instant given (the earliest of their
    /// deadlines), so no pop asks again before then (or before the epoch moves).
    lease_recheck: Option<(u64, Instant)>,
    /// A watch ([`Db::watch`](crate::Db::watch)) tells the storage when other processes store
    /// items: a shared Db is then re-checked every `shared_recheck`, not every `shared_poll`.
    watched: bool,
    /// Db pop calls under way.
    running: usize,
    /// While `count` is unknown: how many Db pops may run at once. Starts at 1 (a probe),
    /// grows by one with every pop that returns an item, falls back to 1 when one finds the
    /// Db empty: a crowd of poppers never makes many more calls than there are items.
    limit: usize,
    pop_calls: u64,
    /// Items popped (not leased) from the Db.
    popped: u64,
}

impl DbView {
    pub(crate) fn new() -> Self {
        DbView {
            epoch: 0,
            count: None,
            shared_empty_at: None,
            lease_recheck: None,
            watched: false,
            running: 0,
            limit: 1,
            pop_calls: 0,
            popped: 0,
        }
    }

    /// Exactly how many items the Db holds, when known.
    pub(crate) fn known_count(&self) -> Option<u64> {
        self.count
    }

    /// Whether Db pops are under way.
    pub(crate) fn pops_running(&self) -> bool {
        self.running > 0
    }

    /// Whether a taking call that found memory empty should call the Db now.
    pub(crate) fn pop_step(&mut self, cfg: &Config, now: Instant) -> DbPopStep {
        let shared_at = self
            .shared_empty_at
            .and_then(|(epoch, at)| (epoch == self.epoch).then_some(at + self.recheck_every(cfg)));
        let lease_at = self
            .lease_recheck
            .and_then(|(epoch, at)| (epoch == self.epoch).then_some(at));
        let recheck_at = policy::earliest(shared_at, lease_at);
        let empty = self.count == Some(0);
        let due = recheck_at.is_none_or(|t| now >= t);
        if !empty && due && policy::db_pop_allowed(self.count, self.running, self.limit) {
            self.running += 1;
            self.pop_calls += 1;
            return DbPopStep::Call(DbPopTicket { epoch: self.epoch });
        }
        DbPopStep::Wait {
            others_asking: !empty && self.running > 0,
            recheck_at,
        }
    }

    /// Records that the Db pop `ticket` stands for ended, having taken `taken` items (`None`:
    /// it failed and took nothing), counted as pops or not (`pops`: leases are counted by the
    /// lease table). Taking none means the Db was empty at that moment; `shared` says whether
    /// other processes push to it, `leases_back_at` when leases it holds for us may come
    /// back, `now` when the answer came.
    pub(crate) fn end_pop(
        &mut self,
        ticket: DbPopTicket,
        taken: Option<usize>,
        pops: bool,
        (shared, leases_back_at): (bool, Option<Instant>),
        now: Instant,
    ) {
        self.running -= 1;
        match taken {
            Some(0) => {
                self.limit = 1;
                if shared {
                    self.shared_empty_at = Some((ticket.epoch, now));
                } else if let Some(at) = leases_back_at {
                    // Leases the Db holds for us may come back by themselves: no count.
                    self.lease_recheck = Some((ticket.epoch, at));
                } else if self.epoch == ticket.epoch {
                    // Only if no batch landed meanwhile. And another Db pop under way may have
                    // taken items the count still holds (its answer subtracts them later): then
                    // "the Db is empty" only says the count is stale, so it is forgotten, and
                    // the slow-start limit of one Db pop at a time learns it again alone.
                    self.count = (self.running == 0).then_some(0);
                }
            }
            Some(n) => {
                self.limit = policy::grow_db_pop_limit(self.limit);
                if let Some(count) = self.count.as_mut() {
                    *count = count.saturating_sub(n as u64);
                }
                if pops {
                    self.popped += n as u64;
                }
            }
            None => {}
        }
    }

    /// A write landed that stored `stored` items.
    pub(crate) fn landed(&mut self, stored: usize) {
        if stored > 0 {
            self.epoch += 1;
            if let Some(n) = self.count.as_mut() {
                *n += stored as u64;
            }
        }
    }

    /// A lease a native Db holds was taken, or went back to the Db, or may have (released, or
    /// past its deadline): the Db may hold more than the view counted, by itself. The count
    /// is forgotten (a pop asks the Db again) and the epoch moves, so a Db pop under way that
    /// found the Db empty does not teach a count of zero.
    pub(crate) fn may_have_grown(&mut self) {
        self.epoch += 1;
        self.count = None;
        self.shared_empty_at = None;
    }

    /// Whether a watch tells the storage of other processes' pushes (`false` again when the
    /// watch broke: the storage polls).
    pub(crate) fn set_watched(&mut self, watched: bool) {
        self.watched = watched;
    }

    /// How long after a shared Db answered "empty" a waiting pop asks it again.
    fn recheck_every(&self, cfg: &Config) -> std::time::Duration {
        if self.watched {
            cfg.shared_recheck
        } else {
            cfg.shared_poll
        }
    }

    /// Starts a [`Storage::len`](crate::Storage::len) that asks the Db for its count; `writing`:
    /// a batch is in flight.
    pub(crate) fn begin_len_probe(&self, writing: bool) -> LenProbe {
        LenProbe {
            epoch: self.epoch,
            pop_calls: self.pop_calls,
            quiet: !writing && self.running == 0,
        }
    }

    /// Ends `probe` with the Db's answer `db_len`. If no write and no Db pop overlapped the
    /// call (`writing`: a batch is in flight now), the answer is exact and a Db that is not
    /// shared and holds no leases for us (`trusted`) keeps its count from then on, as a pop
    /// that finds the Db empty keeps it.
    pub(crate) fn end_len_probe(
        &mut self,
        probe: LenProbe,
        db_len: u64,
        writing: bool,
        trusted: bool,
    ) {
        let quiet = probe.quiet
            && !writing
            && self.running == 0
            && probe.epoch == self.epoch
            && probe.pop_calls == self.pop_calls;
        if quiet && trusted {
            self.count = Some(db_len);
        }
    }

    /// For [`Stats`](crate::Stats): Db pop calls, items popped from the Db.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (self.pop_calls, self.popped)
    }
}
