//! [`StorageBuilder`]: the settings of a storage, and the ways to open one: `Storage::open`
//! over a file, `Storage::new` over any Db, and the builder's `open`, `open_with` and
//! `build`.

use std::marker::PhantomData;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::core::Core;
use super::ops::flusher;
use super::ops::lease::adopt_db_leases;
use super::ops::watch::Watcher;
use super::policy::{Config, DEFAULT_MAX_UNFLUSHED_AGE};
use super::state::dead_letters::{DeadLetter, DeadLetterHook};
use super::storage::Storage;
use crate::db::Db;
use crate::db::file::{FileDb, FileDbOptions};
use crate::error::Error;
use crate::sync::spawn;

/// Smallest `max_unflushed_age` accepted; shorter ones are raised to it.
const MIN_MAX_UNFLUSHED_AGE: Duration = Duration::from_millis(10);

/// Longest duration any setting takes (one year); longer ones are lowered to it, so that no
/// deadline computed from a setting can overflow `Instant`.
const MAX_SETTING: Duration = Duration::from_secs(365 * 24 * 3600);

impl Storage<FileDb> {
    /// Opens (or creates) the file at `path` and builds a storage over it with the default
    /// settings: the embedded default, with a 60 s `max_unflushed_age`. For other settings,
    /// or [`FileDbOptions`], use [`Storage::builder`] and [`StorageBuilder::open`] or
    /// [`StorageBuilder::open_with`].
    ///
    /// Errors: [`Error::Db`] when the file cannot be opened (the source names the path and
    /// why), [`Error::FlusherUnavailable`].
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
    /// A storage over `db`, any [`Db`], with the default settings (60 s
    /// `max_unflushed_age`); see [`StorageBuilder::build`] for the errors. Over a file, use
    /// [`Storage::open`].
    ///
    /// ```
    /// use lifostore::{MemDb, Storage};
    ///
    /// # fn main() -> Result<(), lifostore::Error> {
    /// let storage = Storage::new(MemDb::new())?;
    /// # storage.close()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(db: D) -> Result<Self, Error> {
        StorageBuilder::default().build(db)
    }

    /// A builder with the default settings; finish it with [`StorageBuilder::build`] (any
    /// Db) or [`StorageBuilder::open`] / [`StorageBuilder::open_with`] (a file).
    ///
    /// ```
    /// use lifostore::{MemDb, Storage};
    /// use std::time::Duration;
    ///
    /// # fn main() -> Result<(), lifostore::Error> {
    /// let storage = Storage::builder()
    ///     .max_unflushed_age(Duration::from_secs(10))
    ///     .build(MemDb::new())?;
    /// # storage.close()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn builder() -> StorageBuilder<D> {
        StorageBuilder::default()
    }
}

/// Configures a [`Storage`]; from [`Storage::builder`].
///
/// Settings do not depend on the order they are given in: defaults that follow from other
/// settings (`close_timeout` from the window, `max_item_len` from `max_buffered_bytes`) are
/// derived when [`build`](Self::build) runs.
pub struct StorageBuilder<D> {
    max_unflushed_age: Duration,
    max_items: usize,
    max_bytes: usize,
    max_item_len: Option<usize>,
    max_batch: usize,
    shared_poll: Duration,
    shared_recheck: Duration,
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
            max_unflushed_age: DEFAULT_MAX_UNFLUSHED_AGE,
            max_items: 100_000,
            max_bytes: 256 << 20,
            max_item_len: None,
            max_batch: 16_384,
            shared_poll: Duration::from_millis(100),
            shared_recheck: Duration::from_secs(5),
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
    pub fn max_unflushed_age(mut self, age: Duration) -> Self {
        self.max_unflushed_age = age.clamp(MIN_MAX_UNFLUSHED_AGE, MAX_SETTING);
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
    /// the Db's own limit ([`Capabilities::max_item_len`](crate::Capabilities::max_item_len)).
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

    /// How often a `pop` blocked on an empty storage re-checks a shared Db
    /// ([`Capabilities::shared`](crate::Capabilities::shared)) that gives no wake-ups
    /// ([`Db::watch`](crate::Db::watch) returns `None`, or its watch broke) for items other
    /// processes pushed; default 100 ms. A Db with wake-ups uses
    /// [`shared_recheck_interval`](Self::shared_recheck_interval) instead.
    pub fn shared_poll_interval(mut self, every: Duration) -> Self {
        self.shared_poll = every.clamp(Duration::from_micros(100), MAX_SETTING);
        self
    }

    /// How often a `pop` blocked on an empty storage re-checks a shared Db that gives
    /// wake-ups ([`Db::watch`](crate::Db::watch): `FileDb` on Linux, `PostgresDb`,
    /// `RedisDb`); default 5 s, so an idle consumer makes at most 12 Db calls a minute.
    ///
    /// The wake-up, not this re-check, is what hands another process's item to a waiting
    /// pop within milliseconds. The re-check is the safety net for a wake-up that never came
    /// (a notifier killed between its commit and its notification, a dropped connection): it
    /// bounds how long such an item waits while a pop is blocked. A lease another process
    /// took is re-checked at its deadline (the wake-up carries it), and every wake-up that
    /// arrives makes the next pop ask the Db at once.
    pub fn shared_recheck_interval(mut self, every: Duration) -> Self {
        self.shared_recheck = every.clamp(Duration::from_micros(100), MAX_SETTING);
        self
    }

    /// Where poison items go: items the Db refuses for good ([`DbError::is_permanent`](crate::DbError::is_permanent), e.g.
    /// a value the server rejects). The writer isolates such an item by splitting its batch,
    /// stores everything else, and calls `hook` once with the item and the reason. Without a
    /// hook the storage keeps poison items aside for [`Storage::take_dead_letters`] (at most
    /// [`max_dead_letters`](Self::max_dead_letters)), counted in [`Stats::dead_letters`](crate::Stats::dead_letters).
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
    /// [`Stats::dead_letters_dropped`](crate::Stats::dead_letters_dropped), so memory stays bounded.
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

    /// How long a [`Lease`](crate::Lease) from [`Storage::pop_lease`] stays held before its item returns by
    /// itself (the visibility timeout); at least 1 ms, at most a year.
    ///
    /// Without it (the default):
    /// * a lease on an item taken from memory lasts until the flusher would have started
    ///   writing that item (its push stamp plus the flush age, at most three quarters of the
    ///   window), but at least a sixteenth of the window: on expiry the item is back on top
    ///   and due, so it reaches the Db within the window like any buffered item;
    /// * a lease on an item taken from the Db lasts one window.
    ///
    /// Set, every lease lasts the ttl, whatever the item's age (a fixed visibility timeout).
    /// An item leased from memory whose ttl outlasts the time the flusher would have written
    /// it (its push stamp plus the flush age):
    /// * over a Db with native leases ([`Db::leases`](crate::Db::leases): MemDb, FileDb,
    ///   Redis, PostgreSQL), is written to the Db at that time **still leased**
    ///   ([`DbLeases::push_leased`](crate::DbLeases::push_leased)), for the rest of its ttl
    ///   plus the margin every Db lease gets: both the window and the ttl hold. The item is in
    ///   the Db within the window, hidden until the lease ends; an ack removes it from the Db,
    ///   a release or the deadline puts it back on top, and if the process dies holding the
    ///   lease the Db returns it at its own deadline. The write is one Db call per item (the
    ///   flusher's; pops wait for it as for a batch in flight); if it fails, the item stays
    ///   leased in memory and the write is retried (every thirty-second of the window, between
    ///   1 ms and 1 s) until it lands or the lease ends;
    /// * over a Db without native leases, stays out of the Db until its lease ends: a crash
    ///   while such a lease is held loses the item (at most once, as for a popped item), so
    ///   the durability window does not cover it.
    ///
    /// Items leased from the Db are not affected: they are in the Db already.
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
            max_unflushed_age: self.max_unflushed_age,
            max_items: self.max_items,
            max_bytes: self.max_bytes,
            max_item_len: self.max_item_len.unwrap_or(64 << 20).min(self.max_bytes),
            max_batch: self.max_batch,
            shared_poll: self.shared_poll,
            shared_recheck: self.shared_recheck,
            close_timeout: self.close_timeout.unwrap_or(self.max_unflushed_age),
            max_dead_letters: self.max_dead_letters,
        }
    }
}

impl<D: Db + 'static> StorageBuilder<D> {
    /// Builds a storage over `db` and starts its flusher thread.
    ///
    /// Fails with [`Error::FlusherUnavailable`] if the OS refuses to start the thread, or
    /// [`Error::Db`] if a Db with leases, not shared with other processes, cannot say which
    /// leases it holds ([`DbLeases::held_deadlines`](crate::DbLeases::held_deadlines)); `db` is
    /// dropped then.
    pub fn build(self, db: D) -> Result<Storage<D>, Error> {
        let mut config = self.config();
        let capabilities = db.capabilities();
        // Never accept an item the Db states it could not store: it would fail every batch.
        if let Some(limit) = capabilities.max_item_len {
            config.max_item_len = config.max_item_len.min(limit);
        }
        let db = Arc::new(db);
        let hook = self.dead_letter.clone();
        let erased = Arc::clone(&db) as Arc<dyn Db>;
        let core = Arc::new(Core::new(config, erased, hook, self.lease_ttl));
        if let Some(leases) = db.leases().filter(|_| !capabilities.shared) {
            adopt_db_leases(&core, leases.held_deadlines()?);
        }
        let watcher = capabilities
            .shared
            .then(|| Watcher::start(&core, &*db))
            .flatten();
        let thread_core = Arc::clone(&core);
        let spawned = spawn("lifostore-flusher".into(), move || {
            flusher::run(thread_core)
        });
        let handle = match spawned {
            Ok(handle) => handle,
            Err(e) => {
                core.close();
                if let Some(watcher) = watcher {
                    watcher.stop();
                }
                return Err(Error::FlusherUnavailable(Arc::new(e)));
            }
        };
        Ok(Storage::started(core, db, handle, watcher))
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
