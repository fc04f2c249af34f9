//! [`Storage`]: the public face of the engine. Each method is one dispatch to the walk that
//! does its work (`take`, `admit`, the writer, the durable wait), with the wait as a
//! parameter: a blocking form and its `try_` form differ only in that.

use std::sync::Arc;
use std::time::Instant;

use super::core::Core;
use super::iter::{Iter, TryIter};
use super::ops::admit::{ManyItems, OneItem, Refused, admit};
use super::ops::lease::{Lease, Leasing};
use super::ops::take::{Many, One, take};
use super::ops::watch::Watcher;
use super::ops::{count, durable, lease_to_db, write};
use super::state::dead_letters::DeadLetter;
use super::stats::Stats;
use super::waiter::{Wait, live};
use crate::error::{Error, TryPushError};
use crate::sync::{JoinHandle, Mutex};
use crate::token::CancelToken;

/// A durable LIFO store: a bounded in-memory stack in front of a [`Db`](crate::Db), with a background
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
/// # Reading order
/// Open a storage with [`open`](Self::open) (a file), [`new`](Self::new) (any Db) or
/// [`builder`](Self::builder); [`push`](Self::push) and [`pop`](Self::pop) items; then the
/// other forms of each: `try_` (never waits for a push or for room), batch, durable, lease and
/// iterator; [`flush`](Self::flush), the sizes, [`close`](Self::close) and
/// [`stats`](Self::stats). Each blocking form and its `try_` form are one walk with the wait
/// as a parameter, so they follow the same rules.
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
    /// The thread that turns a shared Db's wake-ups into re-checks, if the Db gives them.
    watcher: Mutex<Option<Watcher>>,
}

impl<D> Storage<D> {
    /// A storage over `core` and its Db, whose flusher thread `flusher` runs.
    pub(crate) fn started(
        core: Arc<Core>,
        db: Arc<D>,
        flusher: JoinHandle<()>,
        watcher: Option<Watcher>,
    ) -> Self {
        Storage {
            core,
            db,
            flusher: Mutex::new(Some(flusher)),
            watcher: Mutex::new(watcher),
        }
    }

    /// Pushes `data` on top. Returns once the item is buffered; it reaches the Db within the
    /// window (or on `flush`/`close`).
    ///
    /// Blocks while the buffer is full (writing the oldest batch itself when nobody is).
    /// Errors: [`Error::ItemTooLarge`], the token's reason,
    /// [`Error::Closed`], or [`Error::Db`] when the Db has failed for longer than the window.
    /// On every error nothing was stored.
    pub fn push(&self, token: &CancelToken, data: impl Into<Vec<u8>>) -> Result<(), Error> {
        let item = OneItem::checked(&self.core.cfg, data.into()).map_err(Refused::into_error)?;
        let admitted = admit(&self.core, Wait::Until(token), item);
        admitted.map(drop).map_err(Refused::into_error)
    }

    /// Removes and returns the newest item, blocking while the storage is empty.
    ///
    /// Looks in memory first; if the newest items are being written, waits for that write
    /// and takes them from the Db; asks the Db only when memory holds nothing newer.
    /// Errors: the token's reason, [`Error::Closed`], [`Error::Db`]; on every error nothing
    /// was taken.
    pub fn pop(&self, token: &CancelToken) -> Result<Vec<u8>, Error> {
        take(&self.core, Wait::Until(token), &One, blocking)
    }

    /// Pushes `data` if there is room now; never waits.
    ///
    /// [`TryPushError::Full`] hands the item back when the buffer is full (the flusher is told
    /// to write early); [`TryPushError::Failed`] hands it back with the reason `push` would
    /// give ([`Error::ItemTooLarge`], [`Error::Closed`], [`Error::Db`]). Either way nothing was
    /// stored.
    ///
    /// ```
    /// use lifostore::{MemDb, Storage, TryPushError};
    /// use std::time::Duration;
    /// # fn main() -> Result<(), lifostore::Error> {
    /// // Room for one item; a slow Db, so "first" is still held (buffered or being written)
    /// // when "second" comes.
    /// let db = MemDb::with_latency(Duration::from_millis(300));
    /// let storage = Storage::builder().max_buffered_items(1).build(db)?;
    /// storage.try_push("first").expect("room for one");
    /// match storage.try_push("second") {
    ///     Err(TryPushError::Full(item)) => assert_eq!(item, b"second"),
    ///     other => panic!("expected Full, got {other:?}"),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn try_push(&self, data: impl Into<Vec<u8>>) -> Result<(), TryPushError> {
        let item =
            OneItem::checked(&self.core.cfg, data.into()).map_err(Refused::into_try_push_error)?;
        let admitted = admit(&self.core, Wait::UnderWay, item);
        admitted
            .map(drop)
            .map_err(|r| r.into_bytes().into_try_push_error())
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
        take(&self.core, Wait::UnderWay, &One, Ok)
    }

    /// Pushes every item of `items`, in order (the last one ends on top, the newest), or none.
    ///
    /// Blocks until there is room for the whole batch (a batch always fits an empty buffer).
    /// Errors, each with nothing stored: [`Error::BatchItemTooLarge`] naming the first item
    /// over `max_item_len`; [`Error::BatchTooLarge`] at once for a batch with more items than
    /// `max_buffered_items` or more bytes than `max_buffered_bytes` (it could never fit); the
    /// token's reason; [`Error::Closed`]; [`Error::Db`] when the Db has failed for longer than
    /// the window. An empty batch returns `Ok` at once.
    ///
    /// ```
    /// use lifostore::{CancelToken, MemDb, Storage};
    /// # fn main() -> Result<(), lifostore::Error> {
    /// let storage = Storage::new(MemDb::new())?;
    /// let token = CancelToken::new();
    /// storage.push_batch(&token, vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()])?;
    /// assert_eq!(storage.pop(&token)?, b"c"); // the last one is the newest
    /// # Ok(())
    /// # }
    /// ```
    pub fn push_batch<I>(&self, token: &CancelToken, items: I) -> Result<(), Error>
    where
        I: IntoIterator,
        I::Item: Into<Vec<u8>>,
    {
        let items = items.into_iter().map(Into::into).collect();
        let Some(batch) = ManyItems::checked(&self.core.cfg, items)? else {
            return live(token); // an empty batch
        };
        let admitted = admit(&self.core, Wait::Until(token), batch);
        admitted.map(drop).map_err(Refused::into_error)
    }

    /// Removes and returns up to `max` items, newest first, blocking until there is at least
    /// one.
    ///
    /// A batch comes from one tier: when memory holds items, up to `max` of them (taken at
    /// once, so strictly newest first); when memory is empty, **one**
    /// [`Db::pop_batch`](crate::Db::pop_batch) call, after waiting for a batch being written,
    /// as [`pop`](Self::pop) does. Draining a backlog in the Db so costs one Db call per `max`
    /// items (2000 flushed items, `max` 1024: three calls, the last finding the Db empty).
    ///
    /// A memory batch is not topped up from the Db in the same call: that Db call runs without
    /// the storage's lock, and a write landing meanwhile would put items pushed after the
    /// memory part on top of the Db, so the batch would no longer be newest first. The rest
    /// comes with the next call.
    ///
    /// The items are the caller's once returned: the storage never pre-fetches, so nothing
    /// lives only in RAM outside it. `max == 0` returns an empty `Vec` at once, without
    /// looking at the token or the storage. Errors: the token's reason, [`Error::Closed`],
    /// [`Error::Db`]; on every error nothing was taken.
    ///
    /// ```
    /// use lifostore::{CancelToken, MemDb, Storage};
    /// # fn main() -> Result<(), lifostore::Error> {
    /// let storage = Storage::new(MemDb::new())?;
    /// let token = CancelToken::new();
    /// storage.push_batch(&token, ["a", "b", "c"])?;
    /// assert_eq!(storage.pop_batch(&token, 2)?, vec![b"c".to_vec(), b"b".to_vec()]);
    /// assert_eq!(storage.pop_batch(&token, 1024)?, vec![b"a".to_vec()]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn pop_batch(&self, token: &CancelToken, max: usize) -> Result<Vec<Vec<u8>>, Error> {
        if max == 0 {
            return Ok(Vec::new());
        }
        take(&self.core, Wait::Until(token), &Many(max), blocking)
    }

    /// Like [`pop_batch`](Self::pop_batch) but returns an empty `Vec` instead of waiting for a
    /// push. It waits only as [`try_pop`](Self::try_pop) does: for a batch being written when
    /// memory is empty, for its own Db call, and for Db pops of other callers under way.
    ///
    /// ```
    /// use lifostore::{CancelToken, MemDb, Storage};
    /// # fn main() -> Result<(), lifostore::Error> {
    /// let storage = Storage::new(MemDb::new())?;
    /// assert!(storage.try_pop_batch(1024)?.is_empty());
    /// storage.push(&CancelToken::new(), "x")?;
    /// assert_eq!(storage.try_pop_batch(1024)?, vec![b"x".to_vec()]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn try_pop_batch(&self, max: usize) -> Result<Vec<Vec<u8>>, Error> {
        if max == 0 {
            return Ok(Vec::new());
        }
        take(&self.core, Wait::UnderWay, &Many(max), |got| {
            Ok(got.unwrap_or_default())
        })
    }

    /// Pushes `data` and returns `Ok` only once it is in the Db (or was popped by then: a pop
    /// that took it owns it). Concurrent durable pushes share Db writes (group commit): while
    /// one write is in flight the next ones gather, and the next write, which starts as soon
    /// as that one lands, takes all of them together with the older buffered items, in push
    /// order. A lone durable push with no write in flight writes at once.
    ///
    /// Errors before the item was accepted store nothing, as `push`'s do:
    /// [`Error::ItemTooLarge`], the token's reason ([`Error::Cancelled`],
    /// [`Error::DeadlineExceeded`]), [`Error::Closed`], [`Error::Db`] (refused: the Db has
    /// failed for longer than the window).
    ///
    /// Once accepted, the item is **kept** whatever happens. If the call then stops waiting,
    /// it returns [`Error::NotYetDurable`] with the reason ([`Unconfirmed`](crate::Unconfirmed): token cancelled
    /// or expired, storage closed, or a write holding the item failed, with the Db's error as
    /// the source): the item stays in the storage like one of a plain `push` that returned
    /// `Ok`, and reaches the Db within the window (or through `close`). Only when the Db
    /// refuses the item for good is it not kept: [`Error::DeadLettered`], and the item went to
    /// the dead-letter hook. As with every call, a Db write this call is making itself is not
    /// interrupted: it may return up to one Db round trip after its token ended.
    ///
    /// ```
    /// use lifostore::{CancelToken, MemDb, Storage};
    /// # fn main() -> Result<(), lifostore::Error> {
    /// let storage = Storage::new(MemDb::new())?;
    /// storage.push_durable(&CancelToken::new(), "must not be lost")?;
    /// assert_eq!(storage.db().snapshot(), vec![b"must not be lost".to_vec()]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn push_durable(&self, token: &CancelToken, data: impl Into<Vec<u8>>) -> Result<(), Error> {
        durable::push_durable(&self.core, token, data.into())
    }

    /// Leases the newest item, blocking while the storage is empty: the item is hidden from
    /// every other pop until the [`Lease`] is acked (gone for good) or released, dropped or
    /// past its deadline (back on top). See [`Lease`] for the guarantees and
    /// [`StorageBuilder::lease_ttl`](crate::StorageBuilder::lease_ttl) for the deadline.
    ///
    /// Takes from where [`pop`](Self::pop) would: memory first (newest), after waiting for a
    /// batch in flight when memory holds nothing newer, then the Db (one call:
    /// [`DbLeases::pop_lease`](crate::DbLeases::pop_lease), or a pop for a Db without leases).
    /// Errors: the token's reason, [`Error::Closed`], [`Error::Db`]; on every error nothing was
    /// leased.
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
        take(&self.core, Wait::Until(token), &Leasing, blocking)
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
        take(&self.core, Wait::UnderWay, &Leasing, Ok)
    }

    /// A blocking iterator of popped items, newest first; see [`Iter`] for how it ends and how
    /// to tell why (the last item is `Err` with the reason: the token ended, or
    /// [`Error::Closed`]).
    ///
    /// There is no `pop_timeout`: `pop(&token.with_timeout(d))` (and `iter` over such a token)
    /// says the same and keeps the caller's cancellation, which a bare timeout would drop.
    ///
    /// ```
    /// use lifostore::{CancelToken, Error, MemDb, Storage};
    /// use std::time::Duration;
    /// # fn main() -> Result<(), lifostore::Error> {
    /// let storage = Storage::new(MemDb::new())?;
    /// let token = CancelToken::new();
    /// storage.push_batch(&token, ["a", "b"])?;
    /// let quick = token.with_timeout(Duration::from_millis(20));
    /// let mut got = Vec::new();
    /// for item in storage.iter(&quick) {
    ///     match item {
    ///         Ok(item) => got.push(item),
    ///         Err(Error::DeadlineExceeded) => break, // nothing more came within 20 ms
    ///         Err(e) => return Err(e),
    ///     }
    /// }
    /// assert_eq!(got, vec![b"b".to_vec(), b"a".to_vec()]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn iter<'a>(&'a self, token: &'a CancelToken) -> Iter<'a, D> {
        Iter::new(&self.core, token)
    }

    /// An iterator that drains what the storage holds now, newest first, without waiting for
    /// pushes (each step is a [`try_pop`](Self::try_pop)).
    ///
    /// ```
    /// use lifostore::{CancelToken, MemDb, Storage};
    /// # fn main() -> Result<(), lifostore::Error> {
    /// let storage = Storage::new(MemDb::new())?;
    /// storage.push_batch(&CancelToken::new(), ["a", "b"])?;
    /// let all: Result<Vec<_>, _> = storage.try_iter().collect();
    /// assert_eq!(all?, vec![b"b".to_vec(), b"a".to_vec()]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn try_iter(&self) -> TryIter<'_, D> {
        TryIter::new(&self.core)
    }

    /// Writes every item pushed before this call (and not yet popped) to the Db, on the
    /// calling thread, and returns when they are all there.
    ///
    /// Errors: the token's reason (items stay buffered), [`Error::Closed`], or [`Error::Db`]
    /// for a failed write (its items stay buffered and the flusher retries them).
    pub fn flush(&self, token: &CancelToken) -> Result<(), Error> {
        write::flush(&self.core, token)
    }

    /// Items the storage holds, memory plus Db, or `Ok(None)` when the Db cannot count
    /// ([`Db::item_count`](crate::Db::item_count)). Asks the Db (one call) unless the storage already knows
    /// its count exactly. Items moving between memory and the Db during that call may be
    /// counted twice or not at all; the answer is exact when no write or Db pop overlaps it
    /// (and then the storage keeps the count, so later calls and [`Stats::db_len`](
    /// crate::Stats::db_len) need no Db call). Errors: [`Error::Db`].
    ///
    /// ```
    /// use lifostore::{CancelToken, MemDb, Storage};
    /// # fn main() -> Result<(), lifostore::Error> {
    /// let storage = Storage::new(MemDb::new())?;
    /// let token = CancelToken::new();
    /// storage.push_batch(&token, ["a", "b"])?;
    /// storage.flush(&token)?;
    /// storage.push(&token, "c")?;
    /// assert_eq!(storage.len()?, Some(3));
    /// assert_eq!(storage.is_empty()?, Some(false));
    /// # Ok(())
    /// # }
    /// ```
    pub fn len(&self) -> Result<Option<u64>, Error> {
        count::len(&self.core)
    }

    /// Items held in memory now (buffered plus being written); one lock, no Db call.
    ///
    /// ```
    /// use lifostore::{CancelToken, MemDb, Storage};
    /// # fn main() -> Result<(), lifostore::Error> {
    /// let storage = Storage::new(MemDb::new())?;
    /// storage.push(&CancelToken::new(), "x")?;
    /// assert_eq!(storage.len_in_memory(), 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn len_in_memory(&self) -> usize {
        self.core.state.lock().len_in_memory()
    }

    /// Whether the storage holds no item, memory and Db; `Ok(None)` when memory is empty and
    /// the Db cannot count. See [`len`](Self::len).
    pub fn is_empty(&self) -> Result<Option<bool>, Error> {
        if self.len_in_memory() > 0 {
            return Ok(Some(false));
        }
        Ok(self.len()?.map(|n| n == 0))
    }

    /// Hands over the poison items kept aside (oldest first): items the Db refused for good,
    /// isolated from their batches while everything else was stored. Only used when no
    /// [`dead_letter`](crate::StorageBuilder::dead_letter) hook is set (or the hook panicked).
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

    /// The Db behind this storage (for its own counters or direct inspection).
    pub fn db(&self) -> &D {
        &self.db
    }

    /// Stops the storage: wakes every blocked call with [`Error::Closed`], stops the flusher,
    /// and writes every buffered item to the Db. Idempotent: later calls return `Ok` once
    /// everything is written.
    ///
    /// Leases stay valid. An item leased from memory whose lease outlasts the window (a
    /// [`lease_ttl`](crate::StorageBuilder::lease_ttl) over a Db with native leases) is written
    /// to the Db still leased, as the flusher would have when it came due; its guard's ack or
    /// release then ends the lease in the Db. Any other lease's item is written when its guard
    /// releases it (or acks it late).
    ///
    /// If the Db keeps failing for `close_timeout`, returns [`Error::CloseIncomplete`]; the
    /// items stay buffered and calling `close` again retries.
    pub fn close(&self) -> Result<(), Error> {
        self.core.close();
        if let Some(watcher) = self.watcher.lock().take() {
            watcher.stop();
        }
        // The flusher sees `closed` and returns after any batch it is writing lands.
        if let Some(handle) = self.flusher.lock().take() {
            // A panic in the flusher would be a bug of ours (Db panics are caught); the drain
            // finishes its work either way.
            let _ = handle.join();
        }
        // Leases that outlast the window: their items to the Db, still leased, as the flusher
        // would have when they came due.
        lease_to_db::write_all_now(&self.core);
        write::drain(&self.core)
    }

    /// Counters and gauges; cheap (one lock).
    pub fn stats(&self) -> Stats {
        self.core.state.lock().stats(Instant::now())
    }
}

/// A blocking take's answer: a blocking walk ends with `None` only if it may not wait, which it
/// may.
#[inline]
fn blocking<T>(got: Option<T>) -> Result<T, Error> {
    got.ok_or_else(|| Error::Closed)
}

#[cfg(feature = "testing")]
impl<D> Storage<D> {
    /// Testing: every lease taken through this storage expires now, as if its deadline had
    /// passed: the items the storage holds itself (leases from memory, and from a Db without
    /// native leases) go back on top, as the flusher would put them; the leases a native Db
    /// holds for it are returned on top through the Db, on the calling thread. Skipped: a lease
    /// whose return is already in flight. A lease whose item is being written to the Db still
    /// leased (see [`write_leased_items_now`](Self::write_leased_items_now)) is past its
    /// deadline from now on, and comes back on top once the write has landed (the next
    /// taking call waits for that). Leases a process that died held expire by the Db's clock
    /// only. For tests (and loom models, which have no clock) of expiry racing an ack.
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
        super::ops::lease::expire_now(&self.core);
    }

    /// Testing: every item leased from memory that would go to the Db still leased before its
    /// lease ends (a [`lease_ttl`](crate::StorageBuilder::lease_ttl) longer than its remaining
    /// window, over a Db with native leases) is due for it now, and written on the calling
    /// thread, as the flusher writes it when the window comes due. For tests (and loom models,
    /// which have no clock) of that write racing an ack or a release.
    ///
    /// ```
    /// use lifostore::{CancelToken, MemDb, Storage};
    /// use std::sync::Arc;
    /// use std::time::Duration;
    ///
    /// # fn main() -> Result<(), lifostore::Error> {
    /// let db = Arc::new(MemDb::new());
    /// let storage = Storage::builder()
    ///     .lease_ttl(Duration::from_secs(3600))
    ///     .build(Arc::clone(&db))?;
    /// storage.push(&CancelToken::new(), "x")?;
    /// let lease = storage.try_pop_lease()?.expect("an item");
    /// storage.write_leased_items_now();
    /// assert_eq!(db.leased_items(), vec![b"x".to_vec()], "in the Db, still leased");
    /// lease.ack()?;
    /// assert_eq!(db.leased(), 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn write_leased_items_now(&self) {
        lease_to_db::write_all_now(&self.core);
    }

    /// Testing: acts as if the Db's watch ([`Db::watch`](crate::Db::watch)) had just said
    /// that another handle stored items: every waiting pop asks the Db again. For tests (and
    /// loom models, which have no sockets) of a wake-up racing a blocked pop, over a Db
    /// another "process" pushes to directly.
    ///
    /// ```
    /// use lifostore::{CancelToken, Db, MemDb, Storage};
    /// use std::{sync::Arc, time::Duration};
    ///
    /// # fn main() -> Result<(), lifostore::Error> {
    /// let db = Arc::new(MemDb::new().shared(true));
    /// let storage = Storage::builder()
    ///     .shared_poll_interval(Duration::from_secs(3600)) // never polls in this example
    ///     .build(Arc::clone(&db))?;
    /// assert_eq!(storage.try_pop()?, None);               // the Db is empty: asked once
    /// db.push(b"from another process")?;
    /// storage.db_changed_now();
    /// assert_eq!(storage.pop(&CancelToken::new())?, b"from another process");
    /// # Ok(())
    /// # }
    /// ```
    pub fn db_changed_now(&self) {
        super::ops::watch::db_changed(&self.core);
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
