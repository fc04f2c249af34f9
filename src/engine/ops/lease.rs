//! Leases through the storage: the [`Lease`] guard `pop_lease` and `try_pop_lease` return,
//! [`Leasing`] (what the take walk takes for them), and the ends of a lease (ack, release,
//! expiry). Where a leased item is while its lease is held is described at
//! [`LeaseTable`](crate::engine::lease_table::LeaseTable).

use std::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::db::{DbLease, DbLeases};
use crate::engine::core::{Core, Signal};
use crate::engine::db_call::call_db;
use crate::engine::lease_table::{DB_CLOCK_MARGIN, ItemState, LeaseEnd, NativeState, ToDb};
use crate::engine::ops::lease_return::{db_lease_ttl, db_ttl, write_then_release};
use crate::engine::ops::take::Take;
use crate::engine::ops::write::drain;
use crate::engine::state::State;
use crate::engine::wakeups::Wakeups;
use crate::error::{DbError, Error};

/// An item taken with [`Storage::pop_lease`](crate::Storage::pop_lease): invisible to every other pop until it is
/// [acked](Lease::ack) (gone for good) or [released](Lease::release) (back on top, the next
/// item a pop returns), or until its deadline passes (back on top by itself: the visibility
/// timeout, see [`StorageBuilder::lease_ttl`](crate::StorageBuilder::lease_ttl)). Dropping a
/// lease without `ack` releases it, so a consumer that panics or returns early loses nothing.
///
/// It derefs to the item's bytes.
///
/// # Guarantees
/// * **At least once, across crashes, for items leased from a Db with native leases**
///   ([`Db::leases`](crate::Db::leases): FileDb, Redis, PostgreSQL): if the process dies holding the lease, the Db returns the
///   item at the lease's deadline (FileDb also at open with `return_leases_on_open`).
/// * Items leased from memory follow the window rule: by default the lease ends when the
///   flusher would have written the item, so a crash loses it only if it would have lost it
///   unleased. With a [`lease_ttl`](crate::StorageBuilder::lease_ttl) that outlasts that time,
///   over a Db with native leases, the item is written to the Db then, still leased, and is at
///   least once across crashes from then on; over a Db without native leases it stays out of
///   the Db until the lease ends. A Db without native leases loses an item leased from it if
///   the process dies (at most once, as `pop`).
/// * **Never twice within a process, unless a lease expired**: a leased item is delivered
///   again only after its lease was released or expired; an `ack` after the deadline fails
///   with [`Error::LeaseExpired`] and removes nothing.
/// * **After [`close`](crate::Storage::close)** leases stay with their holders: an ack forgets the
///   item, a release (or drop, or a late ack) writes it to the Db on the calling thread
///   (bounded by `close_timeout`; if the Db keeps failing, the item stays buffered and
///   calling `close` again retries it, as after [`Error::CloseIncomplete`]).
///
/// ```
/// use lifostore::{CancelToken, MemDb, Storage};
///
/// # fn main() -> Result<(), lifostore::Error> {
/// let storage = Storage::builder().build(MemDb::new())?;
/// let token = CancelToken::new();
/// storage.push(&token, "job 1")?;
/// storage.push(&token, "job 2")?;
/// let lease = storage.pop_lease(&token)?;
/// assert_eq!(&*lease, b"job 2");
/// assert_eq!(storage.try_pop()?, Some(b"job 1".to_vec()), "job 2 is hidden while leased");
/// drop(lease); // not acked: released, back on top
/// let again = storage.pop_lease(&token)?;
/// assert_eq!(&*again, b"job 2");
/// again.ack()?; // gone for good
/// assert_eq!(storage.try_pop()?, None);
/// # Ok(())
/// # }
/// ```
pub struct Lease {
    core: Arc<Core>,
    key: u64,
    kind: Kind,
}

/// Where a lease's item lives.
enum Kind {
    /// Held by the engine (memory or fallback Db lease); the table has the other reference.
    Item(Arc<Vec<u8>>),
    /// Held by a Db with native leases.
    Db(DbLease),
    /// Acked or released already.
    Ended,
}

impl Deref for Lease {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.kind {
            Kind::Item(data) => data,
            Kind::Db(lease) => &lease.item,
            Kind::Ended => &[],
        }
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let place = match self.kind {
            Kind::Item(_) => "storage",
            Kind::Db(_) => "db",
            Kind::Ended => "ended",
        };
        f.debug_struct("Lease")
            .field("len", &self.len())
            .field("held_by", &place)
            .finish()
    }
}

impl Lease {
    /// Removes the item for good: the work is done.
    ///
    /// Errors: [`Error::LeaseExpired`] when the lease's deadline has passed (its item went
    /// back to the storage and may be delivered again, or already was) or a native Db no
    /// longer holds it; [`Error::Db`] when the Db's ack failed (the Db keeps the lease until
    /// its deadline, then returns the item). On every error nothing was removed.
    ///
    /// ```
    /// use lifostore::{CancelToken, MemDb, Storage};
    ///
    /// # fn main() -> Result<(), lifostore::Error> {
    /// let storage = Storage::new(MemDb::new())?;
    /// storage.push(&CancelToken::new(), "work")?;
    /// if let Some(lease) = storage.try_pop_lease()? {
    ///     // ... do the work (idempotently: a lease can expire) ...
    ///     lease.ack()?;
    /// }
    /// assert_eq!(storage.try_pop()?, None);
    /// # Ok(())
    /// # }
    /// ```
    pub fn ack(mut self) -> Result<(), Error> {
        self.end(true)
    }

    /// Gives the item back: it goes on top (the next item a pop returns), as it was before the
    /// lease (a native Db puts it back on top of the Db). Releasing a lease that already
    /// expired does nothing: its item is back already. Never fails: a native Db whose release
    /// fails returns the item at the lease's deadline.
    ///
    /// ```
    /// use lifostore::{CancelToken, MemDb, Storage};
    ///
    /// # fn main() -> Result<(), lifostore::Error> {
    /// let storage = Storage::new(MemDb::new())?;
    /// let token = CancelToken::new();
    /// storage.push(&token, "a")?;
    /// storage.pop_lease(&token)?.release();
    /// assert_eq!(storage.pop(&token)?, b"a");
    /// # Ok(())
    /// # }
    /// ```
    pub fn release(mut self) {
        let _ = self.end(false);
    }

    /// Acks (`ack`) or releases the lease; afterwards it is [`Kind::Ended`].
    fn end(&mut self, ack: bool) -> Result<(), Error> {
        match std::mem::replace(&mut self.kind, Kind::Ended) {
            Kind::Item(data) => {
                drop(data); // so the table's reference is the only one left
                end_item(&self.core, self.key, ack)
            }
            Kind::Db(_) if ack => ack_in_db(&self.core, self.key),
            Kind::Db(_) => {
                release_in_db(&self.core, self.key);
                Ok(())
            }
            Kind::Ended => Ok(()),
        }
    }
}

impl Drop for Lease {
    /// Releases a lease that was neither acked nor released.
    fn drop(&mut self) {
        let _ = self.end(false);
    }
}

/// Ends a lease whose item the storage holds: an ack in time forgets the item; a release, or
/// an ack past the deadline ([`Error::LeaseExpired`]), puts it back on top. After `close`
/// nobody flushes any more: the caller writes a returned item to the Db itself (with anything
/// else still buffered; best effort, bounded by `close_timeout`, and what it cannot write
/// stays buffered for the next `close`, as after `CloseIncomplete`).
///
/// An item leased from memory may have gone to the Db since, still leased ([`lease_to_db`]):
/// while that write is in flight the end waits for its landing (the item is in the Db or
/// still here only once it landed), and once the Db holds it the lease ends there, as a native
/// lease taken from the Db does.
///
/// [`lease_to_db`]: crate::engine::ops::lease_to_db
fn end_item(core: &Core, key: u64, ack: bool) -> Result<(), Error> {
    let mut state = core.state.lock();
    loop {
        match state.item_lease_state(key) {
            // The landing wakes `Landed` and settles the lease in one critical section
            // (`lease_to_db::write_one`), so the re-check after the wake-up finds it settled.
            ItemState::Writing => state = core.sleep(Signal::Landed, state, None),
            ItemState::InDb if ack => {
                drop(state);
                return ack_in_db(core, key);
            }
            ItemState::InDb => {
                drop(state);
                release_in_db(core, key);
                return Ok(());
            }
            ItemState::Here => break,
        }
    }
    let (end, whom) = state.end_held_lease(key, ack, Instant::now());
    core.wake_up(&mut state, whom);
    let closed = state.is_closed();
    drop(state);
    if closed && matches!(end, LeaseEnd::Released | LeaseEnd::Late) {
        let _ = drain(core);
    }
    match end {
        // It expired already: its item is back, maybe delivered again.
        LeaseEnd::Gone if ack => Err(Error::LeaseExpired),
        LeaseEnd::Late => Err(Error::LeaseExpired),
        LeaseEnd::Acked | LeaseEnd::Released | LeaseEnd::Gone => Ok(()),
    }
}

/// The Db's lease interface; only called for leases a native Db issued.
fn db_leases(core: &Core) -> Result<&dyn DbLeases, DbError> {
    core.db
        .leases()
        .ok_or_else(|| DbError::msg("the database stopped offering leases"))
}

/// Acks a native Db lease. Past its deadline (the flusher has not returned it yet) the lease
/// expires here instead, as a memory lease's late ack does: back on top, `LeaseExpired`. A
/// lease no longer in the table was returned already. A Db that no longer holds it returned
/// (or will return) the item: the storage stops trusting its count of the Db.
fn ack_in_db(core: &Core, key: u64) -> Result<(), Error> {
    let mut state = core.state.lock();
    let id = loop {
        match state.native_state(key, Instant::now()) {
            NativeState::Ended => return Err(Error::LeaseExpired),
            // Its return is in flight: only its outcome says whether the lease ended.
            NativeState::Returning => state = core.sleep(Signal::Landed, state, None),
            NativeState::Due => {
                let (state, ended) = write_then_release(core, state, &[key], true);
                drop(state);
                return match ended {
                    // Not returned (the Db failed): the Db keeps the lease, as after a failed
                    // ack.
                    Some(Err(e)) => Err(Error::Db(e)),
                    Some(Ok(())) | None => Err(Error::LeaseExpired),
                };
            }
            NativeState::Held => match state.native_id(key) {
                Some(id) => break id,
                None => return Err(Error::LeaseExpired), // held leases' keys name native ones
            },
        }
    };
    drop(state);
    let answer = call_db(|| db_leases(core)?.ack(&[id]));
    let mut state = core.state.lock();
    let whom = state.end_db_ack(key, &answer);
    core.wake_up(&mut state, whom);
    match answer {
        Ok(()) => Ok(()),
        Err(DbError::LeaseExpired { .. }) => Err(Error::LeaseExpired),
        // The Db still holds the lease until its deadline: the table keeps it till then.
        Err(e) => Err(Error::Db(e)),
    }
}

/// Releases a native Db lease: back on top of everything buffered ([`write_then_release`]),
/// or, if that fails, back by itself at the Db's deadline.
fn release_in_db(core: &Core, key: u64) {
    // The Db needs only the id, which the table keeps.
    let state = core.state.lock();
    drop(write_then_release(core, state, &[key], false).0);
}

/// Tracks the leases a Db not shared with other processes held when the storage was built
/// (`deadlines`, from [`DbLeases::held_deadlines`]): their items come back by themselves, so
/// until then the storage keeps no count of the Db and asks it again at each deadline.
pub(crate) fn adopt_db_leases(core: &Core, deadlines: Vec<SystemTime>) {
    let (now, wall) = (Instant::now(), SystemTime::now());
    let deadlines = deadlines.into_iter().map(|at| {
        let ahead = at.duration_since(wall).unwrap_or(Duration::ZERO);
        now + ahead + DB_CLOCK_MARGIN
    });
    core.state.lock().adopt_db_leases(deadlines);
}

/// What one Db call for a lease gave.
pub(crate) enum FromDb {
    /// A lease the Db keeps itself, and when the call that took it began.
    Native(DbLease, Instant),
    /// An item popped from a Db without leases: the storage holds it for the lease.
    Popped(Vec<u8>),
}

/// `pop_lease` and `try_pop_lease`: the newest item is leased, from memory or from the Db.
pub(crate) struct Leasing;

impl Take for Leasing {
    type Raw = Option<FromDb>;
    type Out = Lease;
    const POPS: bool = false;

    /// A memory lease on the newest buffered item, after returning the leases that are due
    /// (the native ones are the flusher's to return, Db calls: it is woken for them).
    fn take_from_memory(&self, core: &Arc<Core>, state: &mut State) -> Option<(Lease, Wakeups)> {
        let now = Instant::now();
        let (expired, _native) = state.expire_leases(now);
        core.wake_up(state, expired);
        let native = core.db.leases().is_some();
        let (key, data, whom) = state.lease_newest(&core.cfg, core.lease_ttl, native, now)?;
        Some((lease(core, key, Kind::Item(data)), whom))
    }

    /// One lease from a Db with leases, held by the Db for [`db_lease_ttl`], longer than the
    /// storage holds it (extra ones it answers with are released at once); or one pop from a Db
    /// without.
    fn take_from_db(&self, core: &Core) -> Result<Option<FromDb>, DbError> {
        let Some(leases) = core.db.leases() else {
            return Ok(core.db.pop()?.map(FromDb::Popped));
        };
        let began = Instant::now();
        let mut got = leases.pop_lease(1, db_lease_ttl(db_ttl(core), db_ttl(core)))?;
        if got.len() > 1 {
            let extra = got.split_off(1);
            // If this fails, the Db returns them at their deadline.
            let _ = leases.release(&extra);
        }
        Ok(got.pop().map(|lease| FromDb::Native(lease, began)))
    }

    fn taken(raw: &Option<FromDb>) -> usize {
        usize::from(raw.is_some())
    }

    /// A native Db lease is tracked with its Db id, due one ttl after its Db call began (so
    /// before the Db's own deadline); an item popped from a Db without leases is held here,
    /// stamped one window old so that, back on top, it is written to the Db at once.
    fn settle(
        &self,
        core: &Arc<Core>,
        state: &mut State,
        raw: Self::Raw,
    ) -> (Option<Lease>, Wakeups) {
        let now = Instant::now();
        let deadline = now + db_ttl(core);
        match raw {
            None => (None, Wakeups::NONE),
            Some(FromDb::Native(db_lease, began)) => {
                let ttl = db_ttl(core);
                let due = began + ttl;
                let (key, whom) =
                    state.hold_db_lease(db_lease.id, due, began + db_lease_ttl(ttl, ttl));
                (Some(lease(core, key, Kind::Db(db_lease))), whom)
            }
            Some(FromDb::Popped(item)) => {
                let due_now = now.checked_sub(core.cfg.max_unflushed_age).unwrap_or(now);
                let held = state.hold_item(item, due_now, deadline, false, ToDb::Never);
                let (key, data, whom) = held;
                (Some(lease(core, key, Kind::Item(data))), whom)
            }
        }
    }
}

/// A lease guard for `key`.
fn lease(core: &Arc<Core>, key: u64, kind: Kind) -> Lease {
    Lease {
        core: Arc::clone(core),
        key,
        kind,
    }
}

/// `Storage::expire_leases_now`: every lease taken through this storage expires now; for the
/// ones a native Db holds that is Db work, done on the calling thread.
#[cfg(feature = "testing")]
pub(crate) fn expire_now(core: &Core) {
    let mut state = core.state.lock();
    let (whom, native) = state.expire_all_leases_now(Instant::now());
    core.wake_up(&mut state, whom);
    if !native.is_empty() {
        state = crate::engine::ops::lease_return::return_native(core, state, &native);
    }
    let closed = state.is_closed();
    drop(state);
    if closed {
        let _ = drain(core);
    }
}
