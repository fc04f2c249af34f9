//! [`FileDb`]: the embedded durable default, one file, std only.
//!
//! `format.rs` is the layout, `recovery.rs` reads a state back, `salvage.rs` rebuilds a damaged
//! file, `io.rs` is the one seam to the operating system. `docs/FORMAT.md` describes the format,
//! the recovery and error-path rules, and what they assume of the disk.

#[cfg(test)]
mod crash_images;
mod crc32c;
mod error;
#[cfg(test)]
mod fault_tests;
mod format;
mod io;
mod lease_log;
mod leasing;
#[cfg(test)]
mod power_loss_scripts;
#[cfg(test)]
mod power_loss_tests;
mod read_ahead;
mod recovery;
mod salvage;
#[cfg(test)]
mod sim;
#[cfg(target_os = "linux")]
mod wake_sockets;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use self::format::{REC_OVERHEAD, Superblock, encode_record, new_salt};
use self::io::{FileIo, StdVfs, Vfs};
use self::read_ahead::ReadAhead;
use self::recovery::{Found, damage, io_err, open_err, read_state};
use crate::db::interface::{Capabilities, Db, DbLeases, refuse_oversize};
use crate::db::lease::{DbLease, LeaseId, lease_result, system_time};
use crate::db::watch::DbWatch;
use crate::error::{DbError, PushBatchError};
use crate::sync::Mutex;

pub use self::error::FileDbError;
pub use self::salvage::SalvageReport;

/// Shrink the file when it is over four times its live size and at least this much is dead.
#[cfg(not(test))]
const SHRINK_SLACK: u64 = 1 << 20;
/// The crate's unit tests shrink at 16 KiB, so their simulated files stay small.
#[cfg(test)]
const SHRINK_SLACK: u64 = 16 << 10;
/// How many times a failed operation's undo is tried at once before the handle is left in
/// doubt (holding the file lock until a later call settles it).
const SETTLE_TRIES: usize = 2;

/// Options for [`FileDb::open_with`] and
/// [`StorageBuilder::open_with`](crate::StorageBuilder::open_with).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FileDbOptions {
    /// Largest item accepted, in bytes (default 64 MiB, at most `u32::MAX`). Larger pushes fail
    /// with [`DbError::ItemTooLarge`], and a storage over the file refuses them at `push`
    /// ([`Capabilities::max_item_len`]); on open, a length field above it counts as damage.
    pub max_item_len: usize,
    /// Whether other processes may use the file too ([`Capabilities::shared`]); default
    /// `true`.
    /// A storage over a shared Db re-checks it while a `pop` waits on an empty storage.
    pub shared: bool,
    /// On damage found at open, rebuild the file from every record that checks out instead
    /// of failing (default `false`). See [`FileDb::salvage`].
    pub salvage: bool,
    /// On open, put every held lease back on top at once instead of at its deadline (default
    /// `false`). Only for a file no other process uses while this one opens it: a lease a
    /// live process holds would be delivered twice. See [`DbLeases::pop_lease`].
    pub return_leases_on_open: bool,
}

impl Default for FileDbOptions {
    fn default() -> Self {
        FileDbOptions {
            max_item_len: 64 << 20,
            shared: true,
            salvage: false,
            return_leases_on_open: false,
        }
    }
}

impl FileDbOptions {
    /// Sets [`max_item_len`](Self::max_item_len) (capped at `u32::MAX`, the format's limit).
    pub fn max_item_len(mut self, n: usize) -> Self {
        self.max_item_len = n.min(u32::MAX as usize);
        self
    }

    /// Sets [`shared`](Self::shared).
    pub fn shared(mut self, shared: bool) -> Self {
        self.shared = shared;
        self
    }

    /// Sets [`salvage`](Self::salvage).
    pub fn salvage(mut self, salvage: bool) -> Self {
        self.salvage = salvage;
        self
    }

    /// Sets [`return_leases_on_open`](Self::return_leases_on_open).
    pub fn return_leases_on_open(mut self, on: bool) -> Self {
        self.return_leases_on_open = on;
        self
    }
}

/// A durable LIFO [`Db`] in one file, written with std alone: the embedded default.
///
/// A storage over a file is opened with [`Storage::open`](crate::Storage::open), or
/// [`StorageBuilder::open_with`](crate::StorageBuilder::open_with) for these options; `FileDb`
/// itself is for using the file directly as a Db.
///
/// Every `push`, `pop` and batch is durable when it returns (one `fdatasync` per batch), a
/// popped item never comes back after a crash, and an item whose push returned `Ok` survives
/// `kill -9`, power loss and torn writes. Open is O(1): it reads the header and the top record,
/// never the whole file. Several threads and several processes may share one file: every
/// operation holds an exclusive advisory lock on the file (`File::lock`) and re-reads the
/// superblock.
///
/// When the disk fails (a read, write, sync or truncate returns an error, or writes only part
/// of its bytes), every call reports what really happened: a push reported as failed is never
/// revived later, a pop that took effect is never reported as failed, and a pop reported as
/// failed took nothing. The format, the recovery rules and these error-path rules are written
/// down in `docs/FORMAT.md`.
///
/// Leases ([`Db::leases`]) are native and survive a crash: leased items move into a lease
/// log beside the file (`<name>.leases`, created on first use), named by the same superblock
/// commit that takes them off the stack; a lease costs two syncs per call (log, then slot)
/// whatever the batch size, an ack two (one when it ends the last held lease), a release
/// three. A released lease, and one whose holder died, comes back on top (above everything
/// pushed while it was leased): the latter at its deadline (wall clock), noticed by the next
/// pop, lease, ack or release of any process sharing the file, or at open with
/// [`FileDbOptions::return_leases_on_open`] (for a file only one process uses).
/// `docs/FORMAT.md`, "Leases", has the details.
///
/// The file is format version 3. Files of versions 1 and 2 (older builds) are read and
/// upgraded in place at open, after which older builds refuse them. Files that do not start
/// with lifostore's magic are refused with [`FileDbError::NotADatabase`] and never written,
/// whatever their size; a zero-length file is initialised as an empty database, and so is
/// what an initialisation cut by a crash leaves: exactly 4096 bytes, each zero or the byte a
/// new header has there (`docs/FORMAT.md`, "Create"). Anything that is not a regular file on
/// a disk (`/dev/null`, a FIFO, a socket, a device, a `/proc` file) is refused the same way,
/// before a byte is written.
///
/// ```
/// use lifostore::{Db, FileDb};
///
/// # fn main() -> Result<(), lifostore::DbError> {
/// let dir = std::env::temp_dir().join(format!("lifostore-filedb-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let db = FileDb::open(dir.join("stack.lifo"))?;
/// db.push_batch(&[b"old", b"new"]).map_err(|e| e.source)?;
/// assert_eq!(db.pop()?, Some(b"new".to_vec()));
/// drop(db);
/// let db = FileDb::open(dir.join("stack.lifo"))?;   // reopened: "old" is still there
/// assert_eq!(db.pop()?, Some(b"old".to_vec()));
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct FileDb {
    path: PathBuf,
    /// Where watching storages register for wake-ups (`<name>.wake`, see [`Db::watch`]).
    wake_dir: PathBuf,
    vfs: Arc<dyn Vfs>,
    opts: FileDbOptions,
    handle: Mutex<Handle>,
    salvaged: Option<SalvageReport>,
}

/// The open file and what this handle still owes it.
#[derive(Debug)]
struct Handle {
    io: Box<dyn FileIo>,
    /// The lease log (`<name>.leases`), opened on first use.
    log: Option<Box<dyn FileIo>>,
    /// A state the durable superblock slots may not describe yet, because an operation failed
    /// after it began changing the file (or its commit hint could not be written). Settled
    /// before anything else; while it is set, the handle keeps the file lock so no other
    /// process acts on a state that is about to be replaced.
    unsettled: Option<Unsettled>,
}

/// A state to write down: `state` under an operation number above `above`.
#[derive(Debug, Clone, Copy)]
struct Unsettled {
    /// The state the callers were told the file is in.
    state: Superblock,
    /// The operation number of the attempt that failed.
    above: u64,
}

impl Unsettled {
    /// The slot that settles it: `state` under operation `above + 2`, which lands on the failed
    /// attempt's slot (so a torn write there leaves the slot before it intact), and under a new
    /// salt, which no record the attempt wrote names, so roll-forward never revives them.
    fn slot(&self) -> Superblock {
        Superblock {
            op: self.above + 2,
            salt: new_salt(),
            ..self.state
        }
    }
}

impl FileDb {
    /// Opens the database at `path`, creating it if it does not exist.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, DbError> {
        Self::open_with(path, FileDbOptions::default())
    }

    /// Opens the database at `path` with `options`, creating it if it does not exist (or
    /// initialising it if the file is empty).
    ///
    /// Errors: [`DbError::Io`] naming the path and the operation, [`FileDbError::NotADatabase`]
    /// (the file is not a lifostore database, or not a regular file; it is left untouched),
    /// [`FileDbError::UnsupportedVersion`], [`FileDbError::Corrupt`] (unless `options.salvage`).
    pub fn open_with(path: impl AsRef<Path>, options: FileDbOptions) -> Result<Self, DbError> {
        Self::open_in(Arc::new(StdVfs), path.as_ref(), options)
    }

    /// [`open_with`](Self::open_with) through `vfs`.
    fn open_in(vfs: Arc<dyn Vfs>, path: &Path, options: FileDbOptions) -> Result<Self, DbError> {
        let io = vfs.open(path).map_err(open_err("open", path))?;
        let db = FileDb {
            path: path.to_path_buf(),
            wake_dir: wake_dir(path),
            vfs: vfs.clone(),
            opts: options,
            handle: Mutex::new(Handle {
                io,
                log: None,
                unsettled: None,
            }),
            salvaged: None,
        };
        match db.check_on_open(&*vfs) {
            Ok(()) => Ok(db),
            Err(DbError::File(FileDbError::Corrupt { .. })) if db.opts.salvage => {
                let opts = db.opts.clone();
                drop(db);
                let report = salvage::salvage(path, opts.max_item_len)?;
                let mut db = Self::open_in(vfs, path, opts.salvage(false))?;
                db.salvaged = Some(report);
                Ok(db)
            }
            Err(e) => Err(e),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What salvage dropped, if opening with [`FileDbOptions::salvage`] had to salvage.
    pub fn salvage_report(&self) -> Option<&SalvageReport> {
        self.salvaged.as_ref()
    }

    /// Number of items stored and not leased (reads the superblock).
    pub fn len(&self) -> Result<u64, DbError> {
        self.locked(|h| Ok(self.current(h)?.count))
    }

    /// Whether the file holds no items.
    pub fn is_empty(&self) -> Result<bool, DbError> {
        Ok(self.len()? == 0)
    }

    /// Rebuilds a damaged file at `path` from every record that checks out, oldest first. Use
    /// it when open reports [`FileDbError::Corrupt`]. No other process may have the file open
    /// meanwhile.
    ///
    /// The result is written to a new file beside it and checked (it must open and hold the
    /// items kept) before it is renamed into place; the damaged original is kept beside it as
    /// `<name>.damaged-<unix seconds>` ([`SalvageReport::original`]). It keeps the records of
    /// the current state (push batches rolled forward), or, if no superblock slot is valid, all
    /// records in the file, which may bring back popped items.
    ///
    /// A file that does not start with lifostore's magic is refused with
    /// [`FileDbError::NotADatabase`] and left untouched; an empty file needs no salvage.
    pub fn salvage(path: impl AsRef<Path>) -> Result<SalvageReport, DbError> {
        salvage::salvage(path.as_ref(), FileDbOptions::default().max_item_len)
    }

    /// Initialises an empty file (or one a crash left half initialised) and upgrades one of
    /// an older version, then validates the state open depends on: header, a slot, `top`
    /// within the file, and the top record.
    fn check_on_open(&self, vfs: &dyn Vfs) -> Result<(), DbError> {
        self.locked(|h| {
            let found = read_state(&*h.io, &self.path, self.opts.max_item_len)?;
            if found == Found::Uninitialised {
                return recovery::initialise(&*h.io, vfs, &self.path);
            }
            let sb = self.usable(h, found)?;
            if sb.count > 0 {
                let limit = self.opts.max_item_len;
                ReadAhead::new(1).top_record(&*h.io, &self.path, limit, &sb, sb.top)?;
            }
            let table = self.read_leases(h, sb)?;
            if self.opts.return_leases_on_open && !table.is_empty() {
                let ids: Vec<u64> = table.iter().map(|(id, _)| id).collect();
                self.return_leases(h, sb, table, &ids)?;
            }
            Ok(())
        })
    }

    /// Runs `f` under the in-process mutex and the cross-process file lock, after settling
    /// what an earlier failure left unsettled.
    fn locked<T>(&self, f: impl FnOnce(&mut Handle) -> Result<T, DbError>) -> Result<T, DbError> {
        let mut h = self.handle.lock();
        h.io.lock().map_err(io_err("lock", &self.path))?;
        let result = self.settle(&mut h).and_then(|()| f(&mut h));
        if h.unsettled.is_none() {
            // A failed unlock changes nothing the operation did (it is reported as it
            // happened); the lock is released with the file at the latest.
            let _ = h.io.unlock();
        }
        result
    }

    /// The current state (push batches rolled forward; a file of an older version upgraded
    /// first). The handle trusts nothing it read before: every operation reads the header
    /// again under the lock.
    fn current(&self, h: &Handle) -> Result<Superblock, DbError> {
        self.usable(h, read_state(&*h.io, &self.path, self.opts.max_item_len)?)
    }

    /// The state `found` as operations use it: a file of an older version is upgraded.
    fn usable(&self, h: &Handle, found: Found) -> Result<Superblock, DbError> {
        match found {
            Found::State(sb) => Ok(sb),
            Found::Legacy { durable_op, state } => {
                recovery::upgrade(&*h.io, &self.path, durable_op, state)
            }
            Found::Uninitialised => Err(damage(
                &self.path,
                0,
                "the file was emptied while open; reopen it",
            )),
        }
    }

    /// Writes down the unsettled state, if any: its slot, then a sync.
    fn settle(&self, h: &mut Handle) -> Result<(), DbError> {
        let Some(unsettled) = h.unsettled else {
            return Ok(());
        };
        let slot = unsettled.slot();
        h.io.write_at(&slot.encode(), slot.slot_offset())
            .and_then(|()| h.io.sync())
            .map_err(io_err("write the superblock of", &self.path))?;
        h.unsettled = None;
        Ok(())
    }

    /// Records that the file must say `state` again (above the failed attempt `above`), and
    /// tries to write it down at once.
    fn unsettle(&self, h: &mut Handle, state: Superblock, above: u64) {
        h.unsettled = Some(Unsettled { state, above });
        for _ in 0..SETTLE_TRIES {
            if self.settle(h).is_ok() {
                break;
            }
        }
    }

    /// Makes `after` the current state: its slot, then a sync. On failure the file is made
    /// to say `before` again and the failure is reported.
    fn commit(&self, h: &mut Handle, before: Superblock, after: Superblock) -> Result<(), DbError> {
        if let Err(e) = h.io.write_at(&after.encode(), after.slot_offset()) {
            return Err(self.undo(h, before, after, "write", e));
        }
        if let Err(e) = h.io.sync() {
            return Err(self.undo(h, before, after, "sync", e));
        }
        Ok(())
    }

    /// An operation that began changing the file failed with `err` during `op`: undo it so
    /// the file says `before` again, and report the failure.
    fn undo(
        &self,
        h: &mut Handle,
        before: Superblock,
        attempted: Superblock,
        op: &'static str,
        err: std::io::Error,
    ) -> DbError {
        self.unsettle(h, before, attempted.op);
        DbError::io(op, &self.path, err)
    }

    /// Reads up to `max` records down from the top of `sb`; returns them (newest first) and
    /// the new top.
    fn read_newest(
        &self,
        io: &dyn FileIo,
        sb: Superblock,
        max: usize,
    ) -> Result<(Vec<Vec<u8>>, u64), DbError> {
        let mut out = Vec::new();
        let mut top = sb.top;
        let mut ahead = ReadAhead::new(max);
        let limit = self.opts.max_item_len;
        while out.len() < max && (out.len() as u64) < sb.count {
            let (start, data) = ahead.top_record(io, &self.path, limit, &sb, top)?;
            out.push(data);
            top = start;
        }
        Ok((out, top))
    }

    /// Tells the storages watching the file that it gained items, or (`lease_due`) that a
    /// lease taken now comes back then. After the commit, with the file lock released.
    fn announce(&self, lease_due: Option<SystemTime>) {
        #[cfg(target_os = "linux")]
        if self.opts.shared {
            wake_sockets::notify(&self.wake_dir, lease_due);
        }
        #[cfg(not(target_os = "linux"))]
        let _ = lease_due;
    }

    /// Drops dead space past `top` when there is a lot of it. Called after a pop took
    /// effect: a failure here only leaves the dead space, so it is not reported.
    fn shrink(&self, io: &dyn FileIo, top: u64) {
        if let Ok(len) = io.len()
            && len > top.saturating_mul(4)
            && len - top > SHRINK_SLACK
        {
            // Dead space past `top` is never read; dropping it cannot lose data.
            let _ = io.set_len(top).and_then(|()| io.sync());
        }
    }
}

/// The directory where storages watching the database at `path` register: `<name>.wake`
/// beside it.
fn wake_dir(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".wake");
    path.with_file_name(name)
}

impl Drop for FileDb {
    fn drop(&mut self) {
        let mut h = self.handle.lock();
        if h.unsettled.is_some() {
            // Last chance to write down what a failure left unsettled; closing the file then
            // releases the lock either way.
            let _ = self.settle(&mut h);
        }
    }
}

impl Db for FileDb {
    fn push(&self, data: &[u8]) -> Result<(), DbError> {
        self.push_batch(&[data]).map_err(|e| e.source)
    }

    fn pop(&self) -> Result<Option<Vec<u8>>, DbError> {
        Ok(self.pop_batch(1)?.pop())
    }

    /// One write and one `fdatasync` for the whole batch. Atomic: on error nothing is stored,
    /// now or after a reopen (`docs/FORMAT.md`, "Error paths"). A power loss before it returns
    /// may leave a prefix of the batch on top ("What a torn batch leaves").
    fn push_batch(&self, items: &[&[u8]]) -> Result<(), PushBatchError> {
        let fail = |source| PushBatchError { stored: 0, source };
        refuse_oversize(items, self.opts.max_item_len.min(u32::MAX as usize))?;
        if items.is_empty() {
            return Ok(());
        }
        self.locked(|h| {
            let sb = self.current(h)?;
            let total: usize = items.iter().map(|i| i.len() + REC_OVERHEAD as usize).sum();
            let count = sb.count + items.len() as u64;
            let after = sb.then(sb.top + total as u64, count, sb.leases);
            // Each record names the state it extends and the state it makes: roll-forward
            // takes it only as an extension of this very state (`docs/FORMAT.md`).
            let mut buf = Vec::with_capacity(total);
            for item in items {
                encode_record(&mut buf, sb.salt, after.salt, item);
            }
            if let Err(e) = h.io.write_at(&buf, sb.top) {
                return Err(self.undo(h, sb, after, "write", e));
            }
            if let Err(e) = h.io.sync() {
                return Err(self.undo(h, sb, after, "sync", e));
            }
            // The batch is durable: recovery rolls it forward even if this commit hint never
            // reaches the disk. A failed hint is written down again before the next operation.
            if h.io.write_at(&after.encode(), after.slot_offset()).is_err() {
                self.unsettle(h, after, after.op);
            }
            Ok(())
        })
        .map_err(fail)?;
        self.announce(None);
        Ok(())
    }

    /// Newest first; one `fdatasync` for the whole batch. On error nothing is taken, now or
    /// after a reopen; once the commit is durable, the items are returned whatever follows.
    fn pop_batch(&self, max: usize) -> Result<Vec<Vec<u8>>, DbError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        self.locked(|h| {
            let (sb, _) = self.leased_state(h)?;
            let (out, top) = self.read_newest(&*h.io, sb, max)?;
            if out.is_empty() {
                return Ok(out);
            }
            let after = sb.then(top, sb.count - out.len() as u64, sb.leases);
            self.commit(h, sb, after)?;
            self.shrink(&*h.io, top);
            Ok(out)
        })
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
            .max_item_len(self.opts.max_item_len.min(u32::MAX as usize))
            .shared(self.opts.shared)
    }

    fn item_count(&self) -> Result<Option<u64>, DbError> {
        FileDb::len(self).map(Some)
    }

    fn leases(&self) -> Option<&dyn DbLeases> {
        Some(self)
    }

    /// Linux, shared files: a Unix datagram socket registered in `<name>.wake/` beside the
    /// file, sent a datagram after every push, release and lease commit of any handle
    /// (`wake_sockets.rs`). Other systems, and files opened with `shared(false)`: `None`.
    fn watch(&self) -> Result<Option<Box<dyn DbWatch>>, DbError> {
        #[cfg(target_os = "linux")]
        if self.opts.shared {
            return Ok(Some(Box::new(wake_sockets::FileWatch::register(
                &self.wake_dir,
            )?)));
        }
        Ok(None)
    }
}

impl DbLeases for FileDb {
    /// One append and sync of the lease log, then one slot and sync, whatever `max` (at most
    /// 2^20 per call). The lease survives a crash; at its deadline any call of any process
    /// sharing the file puts it back.
    fn pop_lease(&self, max: usize, ttl: Duration) -> Result<Vec<DbLease>, DbError> {
        let leases = self.lease_top(max, ttl)?;
        if !leases.is_empty() {
            self.announce(Some(SystemTime::now() + ttl));
        }
        Ok(leases)
    }

    /// Two syncs (log, then slot); one when it ends the last held lease.
    fn ack(&self, ids: &[LeaseId]) -> Result<(), DbError> {
        lease_result(self.ack_leases(ids)?)
    }

    /// Three syncs (log, records, slot); the items go back on top, oldest first.
    fn release(&self, leases: &[DbLease]) -> Result<(), DbError> {
        let ids: Vec<LeaseId> = leases.iter().map(|l| l.id).collect();
        let missing = self.release_leases(&ids)?;
        if missing < ids.len() {
            self.announce(None);
        }
        lease_result(missing)
    }

    /// Two syncs (log, then slot), whatever the number of items (at most 2^20 per call); the
    /// same lease entries as [`pop_lease`](DbLeases::pop_lease) writes (`docs/FORMAT.md`,
    /// "Leases"), so files it wrote are read by every build that reads leases. An item longer
    /// than the file's `max_item_len` fails the call with `ItemTooLarge`, nothing stored.
    fn push_leased(&self, items: &[&[u8]], ttl: Duration, _: u64) -> Result<Vec<LeaseId>, DbError> {
        refuse_oversize(items, self.opts.max_item_len.min(u32::MAX as usize))
            .map_err(|e| e.source)?;
        let ids = self.store_leased(items, ttl)?;
        if !ids.is_empty() {
            self.announce(Some(SystemTime::now() + ttl));
        }
        Ok(ids)
    }

    /// Reads the lease log (and returns the expired leases, which costs syncs).
    fn held_deadlines(&self) -> Result<Vec<SystemTime>, DbError> {
        Ok(self
            .lease_deadlines()?
            .into_iter()
            .map(system_time)
            .collect())
    }
}
