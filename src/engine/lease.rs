//! Leases through the storage: [`Storage::pop_lease`] and [`Storage::try_pop_lease`], the
//! [`Lease`] guard they return, and [`Leases`], the table of leases the engine tracks (inside
//! the state, under its lock).
//!
//! Where a leased item is while its lease is held:
//! * **memory lease** (the item was buffered): out of the stack, in the engine's table with its
//!   push stamp. Ack forgets it; release, or its deadline, puts it back on top with that stamp
//!   ([`State::put_back_on_top`]), so the flusher writes it when it comes due, as if it had
//!   never left: the window covers it like any buffered item.
//! * **Db lease, native** ([`Db::native_leases`](crate::Db::native_leases)): in the Db, hidden
//!   by the Db. The table keeps only its deadline: once it passes, the Db may hold the item
//!   again, so the storage forgets what it counted in the Db and pops ask the Db again.
//! * **Db lease, fallback**: the item left the Db (the Db's provided `pop_lease`); it is held
//!   in the table like a memory lease, stamped due at once, so a release or an expiry writes it
//!   back to the Db promptly. A crash while it is held loses it (at most once, as `pop`).

use std::collections::BTreeMap;
use std::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::state::{Core, State};
use super::{Storage, Take, writer};
use crate::db::{DbError, DbLease};
use crate::error::Error;
use crate::sync::MutexGuard;
use crate::token::CancelToken;

/// The engine's deadline for a native Db lease is this much after the Db's own: the Db stamps
/// its deadline (wall-clock milliseconds) during its call, the engine after the call returned,
/// plus the millisecond rounding.
const DB_CLOCK_MARGIN: Duration = Duration::from_millis(2);

/// One lease the engine tracks.
struct Held {
    deadline: Instant,
    what: What,
}

/// What the engine holds for a lease.
enum What {
    /// The item itself (a memory lease, or a fallback Db lease), with its push stamp.
    Item {
        data: Arc<Vec<u8>>,
        pushed_at: Instant,
    },
    /// Nothing: a native Db holds the item. Only the deadline matters.
    InDb,
}

/// The leases held through one storage, by key (keys grow with every lease, so key order is
/// lease order). Bounded by the [`Lease`] guards alive, plus native Db leases whose ack or
/// release failed (kept until their deadline).
#[derive(Default)]
pub(crate) struct Leases {
    next_key: u64,
    held: BTreeMap<u64, Held>,
    /// No deadline in `held` is earlier (a lower bound: removing a lease does not raise it).
    next_deadline: Option<Instant>,
    taken: u64,
    expired: u64,
}

impl Leases {
    /// Tracks a new lease until `deadline`; returns its key, and whether its deadline is now
    /// the earliest (the flusher, which sleeps until the earliest, must be woken).
    fn insert(&mut self, deadline: Instant, what: What) -> (u64, bool) {
        self.next_key += 1;
        self.taken += 1;
        self.held.insert(self.next_key, Held { deadline, what });
        let earliest = self.next_deadline.is_none_or(|d| deadline < d);
        if earliest {
            self.next_deadline = Some(deadline);
        }
        (self.next_key, earliest)
    }

    /// Tracks a lease the Db held when the storage was built (a process that died held it):
    /// not taken by this storage, but it comes back by itself at `deadline`.
    fn adopt(&mut self, deadline: Instant) {
        self.insert(deadline, What::InDb);
        self.taken -= 1;
    }

    /// Stops tracking `key`; its lease, if it was still held.
    fn remove(&mut self, key: u64) -> Option<Held> {
        self.held.remove(&key)
    }

    /// Removes and returns the leases whose deadline is at or before `now`, oldest lease
    /// first, counted as expired.
    fn take_due(&mut self, now: Instant) -> Vec<Held> {
        if self.next_deadline.is_none_or(|d| now < d) {
            return Vec::new();
        }
        let keys: Vec<u64> = self
            .held
            .iter()
            .filter(|(_, h)| h.deadline <= now)
            .map(|(&k, _)| k)
            .collect();
        let due: Vec<Held> = keys.iter().filter_map(|k| self.held.remove(k)).collect();
        self.next_deadline = self.held.values().map(|h| h.deadline).min();
        self.expired += due.len() as u64;
        due
    }

    /// The earliest deadline of a lease a native Db holds, if any is held: the Db may hold
    /// such an item again from then on.
    pub(crate) fn earliest_in_db(&self) -> Option<Instant> {
        self.held
            .values()
            .filter(|h| matches!(h.what, What::InDb))
            .map(|h| h.deadline)
            .min()
    }

    /// The earliest deadline of a held lease (or a bit earlier).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.next_deadline
    }

    /// Leases held now.
    pub(crate) fn len(&self) -> usize {
        self.held.len()
    }

    /// Leases taken so far.
    pub(crate) fn taken(&self) -> u64 {
        self.taken
    }

    /// Leases that expired so far (a late ack included).
    pub(crate) fn expired(&self) -> u64 {
        self.expired
    }

    /// Moves the deadline of every lease holding its item (memory and fallback leases) to
    /// `now`, for [`Storage::expire_leases_now`].
    #[cfg(feature = "testing")]
    fn make_items_due(&mut self, now: Instant) {
        for held in self.held.values_mut() {
            if matches!(held.what, What::Item { .. }) {
                held.deadline = held.deadline.min(now);
                self.next_deadline = Some(self.next_deadline.map_or(now, |d| d.min(now)));
            }
        }
    }
}

/// An item taken with [`Storage::pop_lease`]: invisible to every other pop until it is
/// [acked](Lease::ack) (gone for good) or [released](Lease::release) (back on top, the next
/// item a pop returns), or until its deadline passes (back on top by itself: the visibility
/// timeout, see [`StorageBuilder::lease_ttl`](crate::StorageBuilder::lease_ttl)). Dropping a
/// lease without `ack` releases it, so a consumer that panics or returns early loses nothing.
///
/// It derefs to the item's bytes.
///
/// # Guarantees
/// * **At least once, across crashes, for items leased from a Db with native leases**
///   (FileDb, Redis, PostgreSQL): if the process dies holding the lease, the Db returns the
///   item at the lease's deadline (FileDb also at open with `return_leases_on_open`).
/// * Items leased from memory follow the window rule: by default the lease ends when the
///   flusher would have written the item, so a crash loses it only if it would have lost it
///   unleased. A Db without native leases loses an item leased from it if the process dies
///   (at most once, as `pop`).
/// * **Never twice within a process, unless a lease expired**: a leased item is delivered
///   again only after its lease was released or expired; an `ack` after the deadline fails
///   with [`Error::LeaseExpired`] and removes nothing.
/// * **After [`close`](Storage::close)** leases stay with their holders: an ack forgets the
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
            Kind::Db(lease) if ack => ack_in_db(&self.core, self.key, &lease),
            Kind::Db(lease) => {
                release_in_db(&self.core, self.key, lease);
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

/// Ends an engine-held lease: an ack in time forgets the item; a release, or an ack past the
/// deadline ([`Error::LeaseExpired`]), puts it back on top. A lease no longer in the table
/// has expired already: its item is back, a release has nothing to do.
fn end_item(core: &Core, key: u64, ack: bool) -> Result<(), Error> {
    let mut state = core.state.lock();
    let Some(held) = state.leases().remove(key) else {
        return if ack {
            Err(Error::LeaseExpired)
        } else {
            Ok(())
        };
    };
    let What::Item { data, pushed_at } = held.what else {
        return Ok(()); // engine-held leases' keys always name items
    };
    let late = ack && held.deadline <= Instant::now();
    if ack && !late {
        return Ok(());
    }
    if late {
        state.leases().expired += 1;
    }
    put_back(core, state, vec![(Arc::unwrap_or_clone(data), pushed_at)]);
    if late {
        Err(Error::LeaseExpired)
    } else {
        Ok(())
    }
}

/// Puts returned items on top, in order (the last ends on top), and wakes a popper per item
/// and the flusher (they may be due). After `close` nobody flushes any more: the caller
/// writes them to the Db itself (with anything else still buffered).
fn put_back(core: &Core, mut state: MutexGuard<'_, State>, items: Vec<(Vec<u8>, Instant)>) {
    for (data, pushed_at) in items {
        state.put_back_on_top(data, pushed_at);
        core.poppers.notify_one();
    }
    core.flusher.notify_one();
    let closed = state.is_closed();
    drop(state);
    if closed {
        // Best effort, bounded by close_timeout; what it cannot write stays buffered for the
        // next `close`, as after `CloseIncomplete`.
        let _ = writer::drain(core);
    }
}

/// Acks a native Db lease. A Db that no longer holds it returned (or will return) the item:
/// the storage stops trusting its count of the Db.
fn ack_in_db(core: &Core, key: u64, lease: &DbLease) -> Result<(), Error> {
    let answer = writer::call_db(|| core.db.ack(&[lease.id]));
    let mut state = core.state.lock();
    match answer {
        Ok(()) => {
            state.leases().remove(key);
            Ok(())
        }
        Err(DbError::LeaseExpired { .. }) => {
            state.leases().remove(key);
            state.leases().expired += 1;
            state.db_may_have_grown();
            core.poppers.notify_all();
            Err(Error::LeaseExpired)
        }
        // The Db still holds the lease until its deadline: the table keeps it till then.
        Err(e) => Err(Error::Db(e)),
    }
}

/// Releases a native Db lease: the item is back in the Db (or will be, at its deadline, if
/// the release failed: then the table keeps the lease until then).
fn release_in_db(core: &Core, key: u64, lease: DbLease) {
    let answer = writer::call_db(|| core.db.release(std::slice::from_ref(&lease)));
    let mut state = core.state.lock();
    if matches!(answer, Ok(()) | Err(DbError::LeaseExpired { .. })) {
        state.leases().remove(key);
    }
    state.db_may_have_grown();
    core.poppers.notify_all();
}

/// Returns every lease past its deadline at `now`: engine-held items go back on top (due:
/// their deadline was at most their due time), native Db leases make the storage ask the Db
/// again. Run by the flusher at every wake-up (it sleeps until the earliest deadline) and by
/// every `pop_lease` before it takes from memory.
pub(crate) fn expire_due(core: &Core, state: &mut State, now: Instant) {
    let due = state.leases().take_due(now);
    if due.is_empty() {
        return;
    }
    for held in due {
        match held.what {
            What::Item { data, pushed_at } => {
                state.put_back_on_top(Arc::unwrap_or_clone(data), pushed_at)
            }
            What::InDb => state.db_may_have_grown(),
        }
    }
    core.poppers.notify_all();
    core.flusher.notify_one();
}

/// The flusher's duties at a wake-up besides writing: expires due leases and ticks the coarse
/// clock ([`State::tick`]); returns when it must wake next for either.
pub(crate) fn sweep_and_tick(core: &Core, state: &mut State, now: Instant) -> Option<Instant> {
    expire_due(core, state, now);
    let tick = state.tick(&core.cfg, now);
    match (tick, state.leases().next_deadline()) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Tracks the leases a Db not shared with other processes held when the storage was built
/// (`deadlines`, from [`Db::held_lease_deadlines`](crate::Db::held_lease_deadlines)): their
/// items come back by themselves, so until then the storage keeps no count of the Db and asks
/// it again at each deadline.
pub(crate) fn adopt_db_leases(core: &Core, deadlines: Vec<SystemTime>) {
    let mut state = core.state.lock();
    let (now, wall) = (Instant::now(), SystemTime::now());
    for at in deadlines {
        let ahead = at.duration_since(wall).unwrap_or(Duration::ZERO);
        state.leases().adopt(now + ahead + DB_CLOCK_MARGIN);
    }
}

/// The ttl of a lease taken from the Db: the builder's, or one window.
fn db_ttl(core: &Core) -> Duration {
    core.lease_ttl.unwrap_or(core.cfg.window)
}

/// Holds `data` (stamped `pushed_at`) in the table until `deadline`; the lease for it.
fn hold_item(
    core: &Arc<Core>,
    state: &mut State,
    data: Vec<u8>,
    pushed_at: Instant,
    deadline: Instant,
) -> Lease {
    let data = Arc::new(data);
    let what = What::Item {
        data: Arc::clone(&data),
        pushed_at,
    };
    let (key, earliest) = state.leases().insert(deadline, what);
    if earliest {
        core.flusher.notify_one(); // it must wake at this deadline
    }
    Lease {
        core: Arc::clone(core),
        key,
        kind: Kind::Item(data),
    }
}

/// `pop_lease` and `try_pop_lease`: the item is leased, from memory or from the Db.
struct Leasing;

impl Take for Leasing {
    type Raw = DbLease;
    type Out = Lease;

    /// A memory lease on the newest buffered item. Default deadline: when the flusher would
    /// have started writing it, but at least a sixteenth of the window from now.
    fn take_from_memory(&self, core: &Arc<Core>, state: &mut State) -> Option<Lease> {
        let now = Instant::now();
        expire_due(core, state, now);
        let (data, pushed_at) = state.take_newest_for_lease()?;
        let deadline = match core.lease_ttl {
            Some(ttl) => now + ttl,
            None => state
                .due_at(&core.cfg, pushed_at)
                .max(now + core.cfg.window / 16),
        };
        Some(hold_item(core, state, data, pushed_at, deadline))
    }

    /// One lease from the Db. A Db that answers with more than asked gets the extra ones
    /// released at once (under the fallback they left the Db: they go back).
    fn take_from_db(&self, core: &Arc<Core>) -> Result<Option<DbLease>, DbError> {
        let mut leases = core.db.pop_lease(1, db_ttl(core))?;
        if leases.len() > 1 {
            let extra = leases.split_off(1);
            // If this fails, a native Db returns them at their deadline.
            let _ = core.db.release(&extra);
        }
        Ok(leases.pop())
    }

    /// A native Db lease is tracked by its deadline only; a fallback one holds its item here,
    /// stamped one window old so that, back on top, it is written to the Db at once.
    fn settle(&self, core: &Arc<Core>, state: &mut State, raw: DbLease) -> Lease {
        let now = Instant::now();
        let deadline = now + db_ttl(core);
        if !core.native_leases {
            let due_now = now.checked_sub(core.cfg.window).unwrap_or(now);
            return hold_item(core, state, raw.item, due_now, deadline);
        }
        let (key, earliest) = state
            .leases()
            .insert(deadline + DB_CLOCK_MARGIN, What::InDb);
        state.db_may_have_grown(); // the Db's count is not the storage's to keep any more
        if earliest {
            core.flusher.notify_one();
        }
        Lease {
            core: Arc::clone(core),
            key,
            kind: Kind::Db(raw),
        }
    }
}

impl<D> Storage<D> {
    /// Leases the newest item, blocking while the storage is empty: the item is hidden from
    /// every other pop until the [`Lease`] is acked (gone for good) or released, dropped or
    /// past its deadline (back on top). See [`Lease`] for the guarantees and
    /// [`StorageBuilder::lease_ttl`](crate::StorageBuilder::lease_ttl) for the deadline.
    ///
    /// Takes from where [`pop`](Self::pop) would: memory first (newest), after waiting for a
    /// batch in flight when memory holds nothing newer, then the Db (one
    /// [`Db::pop_lease`](crate::Db::pop_lease) call). Errors: the token's reason,
    /// [`Error::Closed`], [`Error::Db`]; on every error nothing was leased.
    ///
    /// ```
    /// use lifostore::{CancelToken, MemDb, Storage};
    ///
    /// # fn main() -> Result<(), lifostore::Error> {
    /// let storage = Storage::new(MemDb::new())?;
    /// let token = CancelToken::new();
    /// storage.push(&token, "resize image 7")?;
    /// let lease = storage.pop_lease(&token)?;
    /// assert_eq!(&*lease, b"resize image 7");
    /// lease.ack()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn pop_lease(&self, token: &CancelToken) -> Result<Lease, Error> {
        super::waiter::live(token)?;
        let state = self.core.state.lock();
        match self.pop_waiting(token, true, state, &Leasing)? {
            Some(lease) => Ok(lease),
            // pop_waiting only returns None when told not to wait.
            None => Err(Error::Closed),
        }
    }

    /// Like [`pop_lease`](Self::pop_lease) but returns `Ok(None)` instead of waiting for a
    /// push; it waits only for work under way, as [`try_pop`](Self::try_pop) does.
    ///
    /// ```
    /// use lifostore::{MemDb, Storage};
    ///
    /// # fn main() -> Result<(), lifostore::Error> {
    /// let storage = Storage::new(MemDb::new())?;
    /// assert!(storage.try_pop_lease()?.is_none());
    /// # Ok(())
    /// # }
    /// ```
    pub fn try_pop_lease(&self) -> Result<Option<Lease>, Error> {
        let state = self.core.state.lock();
        // A token of its own that nobody can end: it waits only for work under way.
        self.pop_waiting(&CancelToken::new(), false, state, &Leasing)
    }
}

#[cfg(feature = "testing")]
impl<D> Storage<D> {
    /// Testing: every lease whose item the storage holds itself (leases from memory, and from
    /// a Db without native leases) expires now, as if its deadline had passed: the items go
    /// back on top, as the flusher would put them. Leases a native Db holds expire by the
    /// Db's clock only. For tests (and loom models, which have no clock) of expiry racing an
    /// ack.
    ///
    /// ```
    /// use lifostore::{CancelToken, Error, MemDb, Storage};
    ///
    /// # fn main() -> Result<(), lifostore::Error> {
    /// let storage = Storage::new(MemDb::new())?;
    /// storage.push(&CancelToken::new(), "x")?;
    /// let lease = storage.try_pop_lease()?.expect("an item");
    /// storage.expire_leases_now();
    /// assert!(matches!(lease.ack(), Err(Error::LeaseExpired)));
    /// assert_eq!(storage.try_pop()?, Some(b"x".to_vec()));
    /// # Ok(())
    /// # }
    /// ```
    pub fn expire_leases_now(&self) {
        let mut state = self.core.state.lock();
        let now = Instant::now();
        state.leases().make_items_due(now);
        let due = state.leases().take_due(now);
        let items = due.into_iter().filter_map(|held| match held.what {
            What::Item { data, pushed_at } => Some((Arc::unwrap_or_clone(data), pushed_at)),
            What::InDb => None,
        });
        let items: Vec<_> = items.collect();
        put_back(&self.core, state, items);
    }
}
