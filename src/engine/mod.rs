//! The engine: [`Storage`] (a thin facade), [`StorageBuilder`] and [`Stats`].
//!
//! * [`state`]: the state behind the mutex, its invariants and every mutation of it;
//! * [`policy`]: the settings and the pure rules (when to write, how much, capacity, backoff);
//! * [`waiter`]: how a blocking call waits on its token and a condition variable;
//! * [`writer`]: the writer role (a batch write, `close`'s drain, panic-safe Db calls);
//! * [`flusher`]: the background thread's loop;
//! * [`batch`], [`durable`], [`iter`]: the batch forms, the durable push with group commit,
//!   the iterators and sizes (each an `impl Storage` block over the same state steps);
//! * [`durable_waiters`]: the waiting durable pushes, one wake-up slot each.
//! * [`lease`]: `pop_lease` and the [`Lease`] guard, and the table of leases the engine holds.
//!
//! `push`, `pop` and `flush` below are short loops over named steps of the state, with one
//! [`Waiter`] per call.

mod batch;
mod durable;
mod durable_waiters;
mod flusher;
mod iter;
mod lease;
mod poison;
mod policy;
mod state;
mod waiter;
mod writer;

use std::marker::PhantomData;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::db::file::{FileDb, FileDbOptions};
use crate::db::{Db, DbError};
use crate::error::Error;
use crate::sync::{JoinHandle, Mutex, MutexGuard, SPIN_ROUNDS, backoff};
use crate::token::CancelToken;
pub use iter::{Iter, TryIter};
pub use lease::Lease;
pub use poison::DeadLetter;
use poison::DeadLetterHook;
use policy::{Config, DEFAULT_WINDOW};
use state::{Core, DbPopStep, DbPopTicket, State};
use waiter::{Waiter, live};

/// Smallest window accepted; shorter ones are raised to it.
const MIN_WINDOW: Duration = Duration::from_millis(10);

/// Longest duration any setting takes (one year); longer ones are lowered to it, so that no
/// deadline computed from a setting can overflow `Instant`.
const MAX_SETTING: Duration = Duration::from_secs(365 * 24 * 3600);

/// A durable LIFO store: a bounded in-memory stack in front of a [`Db`], with a background
/// flusher that writes the oldest items in batches before they reach the durability window.
///
/// # Guarantees
/// * **Newest first**: `pop` returns the newest item held in memory, in flight or in the Db.
/// * **Exactly once**: each item pushed with `Ok` is returned by at most one `pop`; nothing
///   is lost while the process lives; [`close`](Self::close) (and `Drop`, best effort, bounded
///   by `close_timeout`) leaves every unpopped item in the Db.
/// * **Bounded loss**: an unpopped item is in the Db at most `max_unflushed_age` after its
///   push returned, whenever the Db accepts writes. Items are written once three quarters of
///   the window have passed, or earlier when the buffer is half full (which includes one
///   slow-start write of the oldest 16 items when 128 or more are buffered before the Db's
///   speed is known); items popped before that never touch the Db.
/// * **Bounded memory**: at most `max_buffered_items` / `max_buffered_bytes` are held; a full
///   buffer makes the flusher write early and `push` block (a `push` that finds it full with
///   no write under way writes the oldest batch itself). The item capacity also shrinks to
///   what the Db can write in half a window at its measured speed, predicted for full batches
///   with room for a five-fold slowdown, so a slow or jittery Db paces pushers.
/// * **Db failures lose nothing**: failed writes stay buffered and are retried with backoff;
///   once a held item has outlived the window because the Db keeps failing, `push` returns
///   [`Error::Db`] instead of accepting more than it can keep.
///
/// # Blocking and cancellation
/// `push` blocks while the buffer is full, `pop` while the storage is empty, `flush` while
/// items are written. Each takes a [`CancelToken`]: an ended token makes the call return at
/// once with [`Error::Cancelled`] or [`Error::DeadlineExceeded`] and no side effect; a blocked
/// call wakes within milliseconds of its token ending. A Db call already under way is not
/// interrupted: a call may return up to one Db round trip after its token ended.
///
/// ```
/// use lifostore::{CancelToken, MemDb, Storage};
/// use std::time::Duration;
///
/// # fn main() -> Result<(), lifostore::Error> {
/// let storage = Storage::builder()
///     .max_unflushed_age(Duration::from_secs(10))
///     .build(MemDb::new())?;
/// let token = CancelToken::new();
/// storage.push(&token, "a")?;
/// storage.push(&token, "b")?;
/// storage.flush(&token)?;                       // both are in the Db now
/// assert_eq!(storage.pop(&token)?, b"b");
/// assert_eq!(storage.try_pop()?, Some(b"a".to_vec()));
/// assert_eq!(storage.try_pop()?, None);
/// # Ok(())
/// # }
/// ```
pub struct Storage<D> {
    core: Arc<Core>,
    /// The same Db as `core.db`, with its own type, for [`Storage::db`].
    db: Arc<D>,
    flusher: Mutex<Option<JoinHandle<()>>>,
}

/// Configures a [`Storage`]; from [`Storage::builder`].
///
/// Settings do not depend on the order they are given in: defaults that follow from other
/// settings (`close_timeout` from the window, `max_item_len` from `max_buffered_bytes`) are
/// derived when [`build`](Self::build) runs.
pub struct StorageBuilder<D> {
    window: Duration,
    max_items: usize,
    max_bytes: usize,
    max_item_len: Option<usize>,
    max_batch: usize,
    shared_poll: Duration,
    close_timeout: Option<Duration>,
    max_dead_letters: usize,
    dead_letter: Option<DeadLetterHook>,
    lease_ttl: Option<Duration>,
    /// The Db type the storage will have: fixed by `build(db)`, so `Storage::builder()` needs
    /// no type annotation.
    db: PhantomData<fn() -> D>,
}

impl<D> Default for StorageBuilder<D> {
    fn default() -> Self {
        StorageBuilder {
            window: DEFAULT_WINDOW,
            max_items: 100_000,
            max_bytes: 256 << 20,
            max_item_len: None,
            max_batch: 16_384,
            shared_poll: Duration::from_millis(100),
            close_timeout: None,
            max_dead_letters: 1024,
            dead_letter: None,
            lease_ttl: None,
            db: PhantomData,
        }
    }
}

impl<D> Clone for StorageBuilder<D> {
    fn clone(&self) -> Self {
        StorageBuilder {
            dead_letter: self.dead_letter.clone(),
            ..*self
        }
    }
}

impl<D> std::fmt::Debug for StorageBuilder<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageBuilder")
            .field("config", &self.config())
            .finish()
    }
}

impl<D> StorageBuilder<D> {
    /// The durability window (default 60 s): the longest an acknowledged item stays only in
    /// memory, so the most a crash can lose. Also the default `close_timeout`.
    ///
    /// Windows under 10 ms are raised to 10 ms (the flusher needs some time to write); every
    /// duration setting is capped at one year.
    pub fn max_unflushed_age(mut self, window: Duration) -> Self {
        self.window = window.clamp(MIN_WINDOW, MAX_SETTING);
        self
    }

    /// Most items held in memory (buffered plus in flight); default 100 000, at least 1.
    pub fn max_buffered_items(mut self, n: usize) -> Self {
        self.max_items = n.max(1);
        self
    }

    /// Most bytes held in memory; default 256 MiB, at least 1. `max_item_len` is lowered to
    /// fit.
    pub fn max_buffered_bytes(mut self, n: usize) -> Self {
        self.max_bytes = n.max(1);
        self
    }

    /// Largest item `push` accepts; default 64 MiB, at most `max_buffered_bytes` and at most
    /// the Db's own limit ([`Db::max_item_len`]).
    pub fn max_item_len(mut self, n: usize) -> Self {
        self.max_item_len = Some(n);
        self
    }

    /// Most items per Db write; default 16 384, at least 1.
    ///
    /// A Db write has a fixed cost per call (FileDb: one `fdatasync`) and a cost per item, so a
    /// backlog drains faster in larger batches. At a 100 ms window with two pushers flat out
    /// over FileDb, 16 384 gave 1.4-2.8x the pushes per second of 1024 on the same disk (see
    /// BENCHMARKS.md). The storage still writes smaller batches when fewer items are due.
    pub fn max_batch(mut self, n: usize) -> Self {
        self.max_batch = n.max(1);
        self
    }

    /// How often a `pop` blocked on an empty storage re-checks a shared Db ([`Db::is_shared`])
    /// for items other processes pushed; default 100 ms.
    pub fn shared_poll_interval(mut self, every: Duration) -> Self {
        self.shared_poll = every.clamp(Duration::from_micros(100), MAX_SETTING);
        self
    }

    /// Where poison items go: items the Db refuses for good ([`DbError::is_permanent`](crate::DbError::is_permanent), e.g.
    /// a value the server rejects). The writer isolates such an item by splitting its batch,
    /// stores everything else, and calls `hook` once with the item and the reason. Without a
    /// hook the storage keeps poison items aside for [`Storage::take_dead_letters`] (at most
    /// [`max_dead_letters`](Self::max_dead_letters)), counted in [`Stats::dead_letters`].
    ///
    /// The hook runs on the thread that wrote the batch (the flusher, a caller of `flush` or
    /// `close`, or a `push` that found the buffer full) while that thread holds the writer role: keep it short, and do not call this
    /// storage's blocking methods from it. A hook that panics is caught; its item is then
    /// kept aside.
    ///
    /// ```
    /// use lifostore::{CancelToken, DeadLetter, MemDb, Storage};
    /// use std::sync::mpsc;
    ///
    /// # fn main() -> Result<(), lifostore::Error> {
    /// let (tx, rx) = mpsc::sync_channel::<DeadLetter>(64);
    /// let storage = Storage::builder()
    ///     .dead_letter(move |letter| {
    ///         let _ = tx.try_send(letter); // never block the writer
    ///     })
    ///     .build(MemDb::new())?;
    /// storage.push(&CancelToken::new(), "fine")?;
    /// storage.close()?;
    /// assert!(rx.try_recv().is_err(), "MemDb refuses nothing");
    /// # Ok(())
    /// # }
    /// ```
    pub fn dead_letter(mut self, hook: impl Fn(DeadLetter) + Send + Sync + 'static) -> Self {
        self.dead_letter = Some(Arc::new(hook));
        self
    }

    /// Most poison items kept aside when no [`dead_letter`](Self::dead_letter) hook is set;
    /// default 1024. Beyond it the oldest is dropped and counted in
    /// [`Stats::dead_letters_dropped`], so memory stays bounded.
    pub fn max_dead_letters(mut self, n: usize) -> Self {
        self.max_dead_letters = n;
        self
    }

    /// How long `close` (and `Drop`) keeps retrying a failing Db before giving up; default:
    /// the window, whichever order the two are set in.
    pub fn close_timeout(mut self, limit: Duration) -> Self {
        self.close_timeout = Some(limit.min(MAX_SETTING));
        self
    }

    /// How long a [`Lease`] from [`Storage::pop_lease`] stays held before its item returns by
    /// itself (the visibility timeout); at least 1 ms, at most a year.
    ///
    /// Without it (the default):
    /// * a lease on an item taken from memory lasts until the flusher would have started
    ///   writing that item (its push stamp plus the flush age, at most three quarters of the
    ///   window), but at least a sixteenth of the window: on expiry the item is back on top
    ///   and due, so it reaches the Db within the window like any buffered item;
    /// * a lease on an item taken from the Db lasts one window.
    ///
    /// Set, it applies to every lease. A ttl longer than the flush age keeps an item leased
    /// from memory out of the Db for longer than the window: a crash while such a lease is
    /// held loses the item (at most once, as for a popped item), so the durability window
    /// does not cover it. Items leased from a Db with native leases are not affected.
    ///
    /// ```
    /// use lifostore::{MemDb, Storage};
    /// use std::time::Duration;
    ///
    /// # fn main() -> Result<(), lifostore::Error> {
    /// let storage = Storage::builder()
    ///     .lease_ttl(Duration::from_secs(30))
    ///     .build(MemDb::new())?;
    /// # storage.close()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = Some(ttl.clamp(Duration::from_millis(1), MAX_SETTING));
        self
    }

    /// The settings with their derived defaults filled in.
    fn config(&self) -> Config {
        Config {
            window: self.window,
            max_items: self.max_items,
            max_bytes: self.max_bytes,
            max_item_len: self.max_item_len.unwrap_or(64 << 20).min(self.max_bytes),
            max_batch: self.max_batch,
            shared_poll: self.shared_poll,
            close_timeout: self.close_timeout.unwrap_or(self.window),
            max_dead_letters: self.max_dead_letters,
        }
    }
}

impl<D: Db + 'static> StorageBuilder<D> {
    /// Builds a storage over `db` and starts its flusher thread.
    ///
    /// Fails with [`Error::FlusherUnavailable`] if the OS refuses to start the thread, or
    /// [`Error::Db`] if a Db not shared with other processes cannot say which leases it holds
    /// ([`Db::held_lease_deadlines`]); `db` is dropped then.
    pub fn build(self, db: D) -> Result<Storage<D>, Error> {
        let mut config = self.config();
        // Never accept an item the Db states it could not store: it would fail every batch.
        if let Some(limit) = db.max_item_len() {
            config.max_item_len = config.max_item_len.min(limit);
        }
        let db = Arc::new(db);
        let hook = self.dead_letter.clone();
        let erased = Arc::clone(&db) as Arc<dyn Db>;
        let core = Arc::new(Core::new(config, erased, hook, self.lease_ttl));
        if core.native_leases && !core.shared {
            lease::adopt_db_leases(&core, db.held_lease_deadlines()?);
        }
        let thread_core = Arc::clone(&core);
        let spawned = crate::sync::spawn("lifostore-flusher".into(), move || {
            flusher::run(thread_core)
        });
        let handle = spawned.map_err(|e| Error::FlusherUnavailable(Arc::new(e)))?;
        Ok(Storage {
            core,
            db,
            flusher: Mutex::new(Some(handle)),
        })
    }
}

impl StorageBuilder<FileDb> {
    /// Opens (or creates) a [`FileDb`] at `path` with its default options and builds a
    /// storage over it.
    pub fn open(self, path: impl AsRef<Path>) -> Result<Storage<FileDb>, Error> {
        self.open_with(path, FileDbOptions::default())
    }

    /// Opens (or creates) a [`FileDb`] at `path` with `options` (salvage, item limit, sharing)
    /// and builds a storage over it.
    ///
    /// ```
    /// use lifostore::{FileDbOptions, Storage};
    /// # fn main() -> Result<(), lifostore::Error> {
    /// let dir = std::env::temp_dir().join(format!("lifostore-openwith-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir).map_err(lifostore::DbError::from)?;
    /// let options = FileDbOptions::default().salvage(true).max_item_len(1 << 20);
    /// let storage = Storage::builder().open_with(dir.join("queue.lifo"), options)?;
    /// storage.close()?;
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok(())
    /// # }
    /// ```
    pub fn open_with(
        self,
        path: impl AsRef<Path>,
        options: FileDbOptions,
    ) -> Result<Storage<FileDb>, Error> {
        self.build(FileDb::open_with(path, options)?)
    }
}

impl Storage<FileDb> {
    /// The embedded default: a storage over a [`FileDb`] at `path`, 60 s window.
    ///
    /// ```
    /// # fn main() -> Result<(), lifostore::Error> {
    /// let dir = std::env::temp_dir().join(format!("lifostore-doc-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir).map_err(lifostore::DbError::from)?;
    /// let storage = lifostore::Storage::open(dir.join("queue.lifo"))?;
    /// storage.push(&lifostore::CancelToken::new(), "kept on disk")?;
    /// storage.close()?;
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok(())
    /// # }
    /// ```
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        StorageBuilder::default().open(path)
    }
}

impl<D: Db + 'static> Storage<D> {
    /// A storage over `db` with the default settings (60 s window); see
    /// [`StorageBuilder::build`] for the error.
    pub fn new(db: D) -> Result<Self, Error> {
        StorageBuilder::default().build(db)
    }
}

/// Counters and gauges of a [`Storage`], from [`Storage::stats`].
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Stats {
    /// Pushes that returned `Ok`.
    pub pushes: u64,
    /// Pops that returned an item (memory plus Db).
    pub pops: u64,
    /// Pops served from memory, without a Db call.
    pub pops_from_memory: u64,
    /// Pops served by the Db.
    pub pops_from_db: u64,
    /// Db write calls (one per batch, failed ones included).
    pub db_push_calls: u64,
    /// Db pop calls (including ones that found the Db empty).
    pub db_pop_calls: u64,
    /// Items written to the Db.
    pub items_flushed: u64,
    /// Failed Db writes.
    pub db_failures: u64,
    /// Pushes that had to wait for room.
    pub push_waits: u64,
    /// Poison items: items the Db refused for good ([`DbError::is_permanent`](crate::DbError::is_permanent)), isolated from
    /// their batch and handed to the dead-letter hook or kept aside.
    pub dead_letters: u64,
    /// Poison items kept aside now (no hook set), for [`Storage::take_dead_letters`].
    pub dead_letters_held: usize,
    /// Poison items dropped because more than
    /// [`max_dead_letters`](StorageBuilder::max_dead_letters) were kept aside.
    pub dead_letters_dropped: u64,
    /// Items in memory now (buffered plus in flight).
    pub buffered_items: usize,
    /// Bytes in memory now.
    pub buffered_bytes: usize,
    /// Items being written right now.
    pub in_flight_items: usize,
    /// Age of the oldest item waiting in memory (not counting an in-flight batch).
    pub oldest_unflushed_age: Option<Duration>,
    /// Measured Db write speed, items per second, once a write has succeeded.
    pub db_items_per_sec: Option<f64>,
    /// How long the Db has been failing, if it is.
    pub db_failing_for: Option<Duration>,
    /// Items in the Db, when the storage knows its count exactly (no Db call): for a Db not
    /// shared with other processes, once a pop found it empty or [`Storage::len`] counted it.
    pub db_len: Option<u64>,
    /// Leases taken with [`Storage::pop_lease`] / [`Storage::try_pop_lease`]. A lease taken
    /// from memory is not a pop; one taken from the Db also counts in `pops` and
    /// `pops_from_db`, as the answer of a Db pop call.
    pub leases: u64,
    /// Leases held now: taken, and not yet acked, released or expired (plus, over a Db not
    /// shared with other processes, the leases it held when the storage was built, until
    /// their deadline). Their items are not counted in `buffered_items` nor in
    /// [`Storage::len`].
    pub leases_held: usize,
    /// Leases whose deadline passed before an ack or a release (their items went back).
    pub leases_expired: u64,
}

impl Stats {
    /// All Db calls the storage made, writes and pops.
    pub fn db_calls(&self) -> u64 {
        self.db_push_calls + self.db_pop_calls
    }
}

impl<D> Storage<D> {
    /// Hands over the poison items kept aside (oldest first): items the Db refused for good,
    /// isolated from their batches while everything else was stored. Only used when no
    /// [`dead_letter`](StorageBuilder::dead_letter) hook is set (or the hook panicked).
    ///
    /// ```
    /// # use lifostore::{MemDb, Storage};
    /// # fn main() -> Result<(), lifostore::Error> {
    /// let storage = Storage::builder().build(MemDb::new())?;
    /// for letter in storage.take_dead_letters() {
    ///     eprintln!("refused for good ({}): {} bytes", letter.error, letter.item.len());
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn take_dead_letters(&self) -> Vec<DeadLetter> {
        self.core.state.lock().take_dead_letters()
    }

    /// A builder with the defaults (60 s window); finish with [`StorageBuilder::build`], which
    /// fixes the Db type.
    pub fn builder() -> StorageBuilder<D> {
        StorageBuilder::default()
    }

    /// The Db behind this storage (for its own counters or direct inspection).
    pub fn db(&self) -> &D {
        &self.db
    }

    /// Pushes `data` on top. Returns once the item is buffered; it reaches the Db within the
    /// window (or on `flush`/`close`).
    ///
    /// Blocks while the buffer is full. Errors: [`Error::ItemTooLarge`], the token's reason,
    /// [`Error::Closed`], or [`Error::Db`] when the Db has failed for longer than the window.
    /// On every error nothing was stored.
    pub fn push(&self, token: &CancelToken, data: impl Into<Vec<u8>>) -> Result<(), Error> {
        let data = data.into();
        let cfg = &self.core.cfg;
        if data.len() > cfg.max_item_len {
            return Err(Error::ItemTooLarge {
                len: data.len(),
                max: cfg.max_item_len,
            });
        }
        live(token)?;
        let mut state = self.core.state.lock();
        if state.accepts(cfg, data.len()) {
            // The common case, straight through: no waiter, no loop.
            self.push_locked(&mut state, data, false);
            return Ok(());
        }
        self.push_waiting(token, state, data)
    }

    /// Puts `data` on top and wakes whoever it concerns: a popper, and the flusher when the
    /// buffer wants an early write or the coarse clock needs its ticks again.
    #[inline]
    fn push_locked(&self, state: &mut State, data: Vec<u8>, waited: bool) {
        let clock_idle = state.push(data, waited);
        if clock_idle || state.wants_early_write(&self.core.cfg) {
            self.core.flusher.notify_one();
        }
        self.core.poppers.notify_one();
    }

    /// `push` when the fast path could not take the item: waits for room, or reports why not.
    #[inline(never)]
    fn push_waiting<'a>(
        &'a self,
        token: &CancelToken,
        mut state: MutexGuard<'a, State>,
        data: Vec<u8>,
    ) -> Result<(), Error> {
        let cfg = &self.core.cfg;
        let mut waiter = Waiter::new(&self.core, token, &self.core.pushers);
        loop {
            waiter.check(&state)?;
            if let Some(err) = state.refusing(cfg) {
                return Err(Error::Db(err.clone()));
            }
            if state.has_room(cfg, data.len()) {
                self.push_locked(&mut state, data, waiter.has_waited());
                return Ok(());
            }
            if !state.is_writing() {
                if let policy::Next::Write(n) = state.next(cfg, Instant::now()) {
                    // Full and nobody writing: take the writer role here rather than wait for
                    // the flusher thread, which may be starved of CPU by the very pushers
                    // that filled the buffer. Then re-check room: the write made some.
                    state = writer::write_batch(&self.core, state, n).0;
                    waiter.time_passed(); // a write takes time: re-check the token
                    continue;
                }
                self.core.flusher.notify_one(); // a failing Db: the flusher retries
            }
            let until = state.refusal_time(cfg);
            state = waiter.wait(state, until);
        }
    }

    /// Removes and returns the newest item, blocking while the storage is empty.
    ///
    /// Looks in memory first; if the newest items are being written, waits for that write
    /// and takes them from the Db; asks the Db only when memory holds nothing newer.
    /// Errors: the token's reason, [`Error::Closed`], [`Error::Db`]; on every error nothing
    /// was taken.
    pub fn pop(&self, token: &CancelToken) -> Result<Vec<u8>, Error> {
        live(token)?;
        let mut state = self.core.state.lock();
        if let Some(item) = self.take_at_once(&mut state) {
            return Ok(item);
        }
        match self.pop_waiting(token, true, state, &Popping)? {
            Some(item) => Ok(item),
            // pop_waiting only returns None when told not to wait.
            None => Err(Error::Closed),
        }
    }

    /// Like [`pop`](Self::pop) but returns `Ok(None)` instead of waiting for a push.
    ///
    /// It never waits for a push (nor for a shared Db's poll interval). It waits only for
    /// work already under way whose outcome decides which item is the newest:
    /// * a batch being written, when memory holds nothing newer: until that one Db write
    ///   returns (then its items are in the Db);
    /// * its own Db pop, when memory is empty and the Db may hold items: one Db call;
    /// * Db pops other callers have under way, when it may not start its own: until they
    ///   return (they may have taken the last items).
    ///
    /// So it returns within a few Db round trips. Errors: [`Error::Closed`], [`Error::Db`];
    /// on every error nothing was taken.
    pub fn try_pop(&self) -> Result<Option<Vec<u8>>, Error> {
        let mut state = self.core.state.lock();
        if let Some(item) = self.take_at_once(&mut state) {
            return Ok(Some(item));
        }
        // A token of its own that nobody can end: try_pop waits only for work under way.
        self.pop_waiting(&CancelToken::new(), false, state, &Popping)
    }

    /// The common case of `pop` and `try_pop`, straight through: the storage is open and the
    /// newest item is in memory.
    #[inline]
    fn take_at_once(&self, state: &mut State) -> Option<Vec<u8>> {
        if state.is_closed() {
            return None;
        }
        let item = state.take_newest()?;
        self.core.pushers.notify_one();
        Some(item)
    }

    /// `pop` and `try_pop` (and the lease forms, as `take` says) when memory had nothing to
    /// give at once: the in-flight batch, the Db, or (`wait`) a wait for a push.
    #[inline(never)]
    fn pop_waiting<'a, T: Take>(
        &'a self,
        token: &CancelToken,
        wait: bool,
        mut state: MutexGuard<'a, State>,
        take: &T,
    ) -> Result<Option<T::Out>, Error> {
        let mut waiter = Waiter::new(&self.core, token, &self.core.poppers);
        let mut spins = 0;
        loop {
            waiter.check(&state)?;
            if let Some(item) = take.take_from_memory(&self.core, &mut state) {
                self.core.pushers.notify_one();
                return Ok(Some(item));
            }
            if state.is_writing() {
                // The newest items are in flight. Taking one from memory would let the Db keep
                // a copy; skipping them would break LIFO. Wait for the batch to land.
                state = waiter.wait(state, None);
                continue;
            }
            match state.db_pop_step(&self.core.cfg, Instant::now()) {
                DbPopStep::Call(ticket) => {
                    let (guard, answer) = self.pop_from_db(state, ticket, take);
                    state = guard;
                    if let Some(item) = answer? {
                        return Ok(Some(item));
                    }
                }
                // try_pop: other calls are asking the Db; wait for their answer, not for pushes.
                DbPopStep::Wait {
                    others_asking: true,
                    ..
                } if !wait => state = waiter.wait(state, None),
                DbPopStep::Wait { .. } if !wait => return Ok(None),
                // A push is likely microseconds away under load: re-check a few times before
                // parking, since a park and its wakeup cost more than a whole hand-off.
                DbPopStep::Wait { .. } if spins < SPIN_ROUNDS => {
                    spins += 1;
                    drop(state);
                    backoff(spins);
                    state = self.core.state.lock();
                }
                DbPopStep::Wait { recheck_at, .. } => state = waiter.wait(state, recheck_at),
            }
        }
    }

    /// One Db pop, with the lock released during the call.
    fn pop_from_db<'a, T: Take>(
        &'a self,
        state: MutexGuard<'a, State>,
        ticket: DbPopTicket,
        take: &T,
    ) -> (MutexGuard<'a, State>, Result<Option<T::Out>, Error>) {
        drop(state);
        let answer = writer::call_db(|| take.take_from_db(&self.core));
        let mut state = self.core.state.lock();
        let answer = state.end_db_pop(ticket, answer, self.core.shared, Instant::now());
        self.core.poppers.notify_all(); // poppers waiting for a Db call's answer
        let answer = answer.map(|raw| raw.map(|raw| take.settle(&self.core, &mut state, raw)));
        (state, answer.map_err(Error::Db))
    }

    /// Writes every item pushed before this call (and not yet popped) to the Db, on the
    /// calling thread, and returns when they are all there.
    ///
    /// Errors: the token's reason (items stay buffered), [`Error::Closed`], or [`Error::Db`]
    /// for a failed write (its items stay buffered and the flusher retries them).
    pub fn flush(&self, token: &CancelToken) -> Result<(), Error> {
        live(token)?;
        let mut waiter = Waiter::new(&self.core, token, &self.core.landed);
        let mut state = self.core.state.lock();
        let target = state.last_seq();
        loop {
            waiter.check(&state)?;
            if state.flushed_through(target) {
                return Ok(());
            }
            if state.is_writing() {
                state = waiter.wait(state, None);
                continue;
            }
            let n = state.count_through(target, &self.core.cfg);
            let (guard, written) = writer::write_batch(&self.core, state, n);
            state = guard;
            written?;
        }
    }

    /// Counters and gauges; cheap (one lock).
    pub fn stats(&self) -> Stats {
        self.core.state.lock().stats(Instant::now())
    }

    /// Stops the storage: wakes every blocked call with [`Error::Closed`], stops the flusher,
    /// and writes every buffered item to the Db. Idempotent: later calls return `Ok` once
    /// everything is written.
    ///
    /// If the Db keeps failing for `close_timeout`, returns [`Error::CloseIncomplete`]; the
    /// items stay buffered and calling `close` again retries.
    pub fn close(&self) -> Result<(), Error> {
        self.core.close();
        // The flusher sees `closed` and returns after any batch it is writing lands.
        if let Some(handle) = self.flusher.lock().take() {
            // A panic in the flusher would be a bug of ours (Db panics are caught); the drain
            // finishes its work either way.
            let _ = handle.join();
        }
        writer::drain(&self.core)
    }
}

/// What a pop-like call takes, and from where: an item ([`Popping`]) or a lease
/// ([`lease::Leasing`]). `pop_waiting` is the same walk for both: memory, the in-flight batch,
/// the Db.
trait Take {
    /// What the Db call returns.
    type Raw;
    /// What the caller gets.
    type Out;
    /// Takes the newest buffered item (lock held).
    fn take_from_memory(&self, core: &Arc<Core>, state: &mut State) -> Option<Self::Out>;
    /// One Db call (lock released).
    fn take_from_db(&self, core: &Arc<Core>) -> Result<Option<Self::Raw>, DbError>;
    /// Turns the Db's answer into what the caller gets (lock held again).
    fn settle(&self, core: &Arc<Core>, state: &mut State, raw: Self::Raw) -> Self::Out;
}

/// `pop` and `try_pop`: the item leaves the storage for good.
struct Popping;

impl Take for Popping {
    type Raw = Vec<u8>;
    type Out = Vec<u8>;

    fn take_from_memory(&self, _: &Arc<Core>, state: &mut State) -> Option<Vec<u8>> {
        state.take_newest()
    }

    fn take_from_db(&self, core: &Arc<Core>) -> Result<Option<Vec<u8>>, DbError> {
        core.db.pop()
    }

    fn settle(&self, _: &Arc<Core>, _: &mut State, raw: Vec<u8>) -> Vec<u8> {
        raw
    }
}

impl<D> Drop for Storage<D> {
    /// Best-effort [`close`](Storage::close): bounded by `close_timeout`, errors ignored.
    fn drop(&mut self) {
        let _ = self.close();
    }
}

impl<D> std::fmt::Debug for Storage<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}
