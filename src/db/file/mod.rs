//! [`FileDb`]: the embedded durable default, one file, std only.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

mod crc32c;
use crate::db::{Db, DbError, PushBatchError};
use crate::sync::Mutex;

const MAGIC: [u8; 8] = *b"LIFOSTK\0";
const VERSION: u32 = 1;
/// Size of the header page; item data starts here.
const DATA_START: u64 = 4096;
/// The two superblock slots, in separate 512-byte sectors of the header page.
const SLOT_OFFSETS: [u64; 2] = [512, 1024];
const SLOT_LEN: usize = 32;
/// Record framing: `len u32 | crc u32 | op u64` before the data, `len u32` after it.
const REC_HEAD: u64 = 16;
const REC_TAIL: u64 = 4;
const REC_OVERHEAD: u64 = REC_HEAD + REC_TAIL;
/// Shrink the file when it is over four times its live size and at least this much is dead.
const SHRINK_SLACK: u64 = 1 << 20;

/// Options for [`FileDb::open_with`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FileDbOptions {
    /// Largest item accepted, in bytes (default 64 MiB). Larger pushes fail with
    /// [`DbError::ItemTooLarge`]; on open, a length field above it counts as damage.
    pub max_item_len: usize,
    /// Whether other processes may use the file too ([`Db::is_shared`]); default `true`.
    /// A storage over a shared Db re-checks it while a `pop` waits on an empty storage.
    pub shared: bool,
    /// On damage found at open, rebuild the file from every record that checks out instead
    /// of failing (default `false`). See [`FileDb::salvage`].
    pub salvage: bool,
}

impl Default for FileDbOptions {
    fn default() -> Self {
        FileDbOptions {
            max_item_len: 64 << 20,
            shared: true,
            salvage: false,
        }
    }
}

impl FileDbOptions {
    /// Sets [`max_item_len`](Self::max_item_len).
    pub fn max_item_len(mut self, n: usize) -> Self {
        self.max_item_len = n;
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
}

/// What [`FileDb::salvage`] kept and dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SalvageReport {
    /// Items that checked out and were kept, in their order.
    pub kept: u64,
    /// Bytes of the data region that did not check out and were dropped.
    pub dropped_bytes: u64,
}

/// The durable state named by a superblock slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Superblock {
    /// Operation number: every committed push batch or pop batch adds one.
    op: u64,
    /// End of the live data: the top of the stack.
    top: u64,
    /// Items stored.
    count: u64,
}

impl Superblock {
    fn encode(&self) -> [u8; SLOT_LEN] {
        let mut b = [0u8; SLOT_LEN];
        b[0..8].copy_from_slice(&self.op.to_le_bytes());
        b[8..16].copy_from_slice(&self.top.to_le_bytes());
        b[16..24].copy_from_slice(&self.count.to_le_bytes());
        let crc = crc32c::checksum(&b[0..24]);
        b[24..28].copy_from_slice(&crc.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<Superblock> {
        let crc = u32::from_le_bytes(b.get(24..28)?.try_into().ok()?);
        if crc32c::checksum(b.get(0..24)?) != crc {
            return None;
        }
        let word = |i: usize| -> Option<u64> {
            Some(u64::from_le_bytes(b.get(i..i + 8)?.try_into().ok()?))
        };
        let sb = Superblock {
            op: word(0)?,
            top: word(8)?,
            count: word(16)?,
        };
        (sb.top >= DATA_START).then_some(sb)
    }
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[i..i + 4]);
    u32::from_le_bytes(w)
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(w)
}

fn record_crc(len: u32, op: u64, data: &[u8]) -> u32 {
    let mut head = [0u8; 12];
    head[0..4].copy_from_slice(&len.to_le_bytes());
    head[4..12].copy_from_slice(&op.to_le_bytes());
    crc32c::extend(crc32c::checksum(&head), data)
}

fn encode_record(out: &mut Vec<u8>, op: u64, data: &[u8]) {
    let len = data.len() as u32;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&record_crc(len, op, data).to_le_bytes());
    out.extend_from_slice(&op.to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&len.to_le_bytes());
}

fn header_page(sb: Superblock) -> Vec<u8> {
    let mut page = vec![0u8; DATA_START as usize];
    page[0..8].copy_from_slice(&MAGIC);
    page[8..12].copy_from_slice(&VERSION.to_le_bytes());
    let crc = crc32c::checksum(&page[0..12]);
    page[12..16].copy_from_slice(&crc.to_le_bytes());
    let slot = SLOT_OFFSETS[(sb.op % 2) as usize] as usize;
    page[slot..slot + SLOT_LEN].copy_from_slice(&sb.encode());
    page
}

/// A durable LIFO [`Db`] in one file, written with std alone: the embedded default.
///
/// Every `push`, `pop` and batch is durable when it returns (`fdatasync`), a popped item never
/// comes back after a crash, and an item whose push returned `Ok` survives `kill -9`, power
/// loss and torn writes. Open is O(1): it reads the header and the top record, never the whole
/// file. Several threads and several processes may share one file: every operation holds an
/// exclusive advisory lock on the file (`File::lock`) and re-reads the superblock.
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
///
/// # File format
/// All integers are little-endian; checksums are CRC-32C.
///
/// **Header page** (bytes 0..4096):
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 8 | magic `LIFOSTK\0` |
/// | 8 | 4 | format version, `1` |
/// | 12 | 4 | CRC-32C of bytes 0..12 |
/// | 512 | 32 | superblock slot 0 |
/// | 1024 | 32 | superblock slot 1 |
///
/// A **superblock** is `op u64 | top u64 | count u64 | crc u32 | 0u32`: `op` counts committed
/// operations, `top` is the end of the live data (the top of the stack), `count` the number of
/// items, `crc` covers the first 24 bytes. Operation `op` writes slot `op % 2`, so a commit
/// never overwrites the slot describing the state before it. The current state is the valid
/// slot with the higher `op`.
///
/// **Records** fill the data region from byte 4096 up to `top`, oldest first:
/// `len u32 | crc u32 | op u64 | data (len bytes) | len u32`. `crc` covers `len`, `op` and the
/// data; `op` is the operation that wrote the record; the trailing `len` lets a pop find the
/// start of the top record from `top` without scanning.
///
/// **Push batch** (`op` g → g+1): append all records with `op = g+1` at `top` in one write and
/// `fdatasync`: from then on the batch is durable. Then write slot `(g+1) % 2` *without* a
/// sync: it is a hint that the next operation's sync makes durable, and recovery does not need
/// it (see roll forward). One sync per batch, whatever its size. **Pop batch**: read the top
/// records walking down from `top`, verify each, write the next slot with the lower `top`,
/// `fdatasync`: one sync per batch, and the pop is durable when it returns.
///
/// **Recovery.** A crash can tear at most the writes since the last sync. Torn records past
/// `top` are never read. A torn or unsynced slot fails its checksum or still holds an older
/// state, so the valid slot with the highest `op` is used. Then *roll forward*: while valid
/// records starting at `top` carry `op = current + 1` (or the same `op` as the record before,
/// within one batch), they are push batches that were synced before their slots were; they are
/// kept. Records left above `top` by pops carry older `op`s and are never rolled forward. So a
/// lost or damaged slot of a push never loses items; at worst (a pop's slot damaged) the last
/// popped batch comes back, which a crash before the pop returned requires anyway.
///
/// **Damage.** Open checks the magic (else [`DbError::NotADatabase`]), the version (else
/// [`DbError::UnsupportedVersion`]), the header checksum, that a slot is valid, that `top` is
/// within the file, and the top record; a failure is [`DbError::Corrupt`] naming the file and
/// the offset. A pop that meets a damaged record fails the same way and changes nothing.
/// Damaged files are never truncated silently: [`FileDb::salvage`] (or
/// [`FileDbOptions::salvage`]) rebuilds the file from every record that checks out and
/// reports what it dropped. Lengths read from the file are checked against the file size and
/// `max_item_len` before anything is allocated.
///
/// **Space.** The stack reuses the space above `top`; when the file is over four times its
/// live size and more than 1 MiB of it is dead, a pop shrinks it (`set_len`).
#[derive(Debug)]
pub struct FileDb {
    path: PathBuf,
    opts: FileDbOptions,
    file: Mutex<File>,
    salvaged: Option<SalvageReport>,
}

impl FileDb {
    /// Opens the database at `path`, creating it if it does not exist.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, DbError> {
        Self::open_with(path, FileDbOptions::default())
    }

    /// Opens the database at `path` with `options`, creating it if it does not exist.
    ///
    /// Errors: I/O errors, [`DbError::NotADatabase`], [`DbError::UnsupportedVersion`],
    /// [`DbError::Corrupt`] (unless `options.salvage`).
    pub fn open_with(path: impl AsRef<Path>, options: FileDbOptions) -> Result<Self, DbError> {
        let path = path.as_ref().to_path_buf();
        create_if_missing(&path)?;
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        let mut db = FileDb {
            path,
            opts: options,
            file: Mutex::new(file),
            salvaged: None,
        };
        match db.check_on_open() {
            Ok(()) => Ok(db),
            Err(DbError::Corrupt { .. }) if db.opts.salvage => {
                let report = FileDb::salvage(&db.path)?;
                let file = OpenOptions::new().read(true).write(true).open(&db.path)?;
                db.file = Mutex::new(file);
                db.salvaged = Some(report);
                db.check_on_open()?;
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

    /// Number of items stored (reads the superblock).
    pub fn len(&self) -> Result<u64, DbError> {
        self.locked(|_, sb| Ok(sb.count))
    }

    /// Whether the file holds no items.
    pub fn is_empty(&self) -> Result<bool, DbError> {
        Ok(self.len()? == 0)
    }

    /// Rebuilds a damaged file at `path` from every record that checks out, oldest first, and
    /// replaces it atomically. Use it when open reports [`DbError::Corrupt`]. No other process
    /// may have the file open meanwhile.
    ///
    /// It keeps records below the superblock's `top` (or, if no superblock slot is valid, all
    /// records in the file, which may bring back popped items) and reports the bytes dropped.
    pub fn salvage(path: impl AsRef<Path>) -> Result<SalvageReport, DbError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path)?;
        let (limit, max_op) = match read_header(path, &bytes) {
            Ok(Some(sb)) => (sb.top.min(bytes.len() as u64), sb.op),
            Ok(None) | Err(DbError::Corrupt { .. }) => (bytes.len() as u64, u64::MAX - 1),
            Err(e) => return Err(e),
        };
        let mut kept = Vec::new();
        let mut kept_count = 0u64;
        let mut dropped = 0u64;
        let mut at = DATA_START;
        while at + REC_OVERHEAD <= limit {
            match parse_record(&bytes, at, limit, max_op) {
                Some(end) => {
                    kept.extend_from_slice(&bytes[at as usize..end as usize]);
                    kept_count += 1;
                    at = end;
                }
                None => {
                    dropped += 1;
                    at += 1;
                }
            }
        }
        dropped += limit.saturating_sub(at);
        let sb = Superblock {
            op: max_op.saturating_add(1).min(u64::MAX - 1),
            top: DATA_START + kept.len() as u64,
            count: kept_count,
        };
        let mut out = header_page(sb);
        out.extend_from_slice(&kept);
        let tmp = sibling(path, "salvage");
        write_synced(&tmp, &out)?;
        std::fs::rename(&tmp, path)?;
        sync_dir(path)?;
        Ok(SalvageReport {
            kept: kept_count,
            dropped_bytes: dropped,
        })
    }

    fn damage(&self, offset: u64, detail: impl Into<String>) -> DbError {
        DbError::Corrupt {
            path: self.path.clone(),
            offset,
            detail: detail.into(),
        }
    }

    /// Validates the state open depends on: header, a slot, `top` within the file, and the
    /// top record.
    fn check_on_open(&self) -> Result<(), DbError> {
        self.locked(|file, sb| {
            if sb.count > 0 {
                self.read_top_record(file, &mut ReadWindow::new(1), sb.top, sb.op)?;
            }
            Ok(())
        })
    }

    /// Runs `f` under the in-process mutex and the cross-process file lock, with the current
    /// superblock.
    fn locked<T>(
        &self,
        f: impl FnOnce(&File, Superblock) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let file = self.file.lock();
        file.lock()?;
        let result = self.current(&file).and_then(|sb| f(&file, sb));
        let unlocked = file.unlock();
        let value = result?;
        unlocked?;
        Ok(value)
    }

    /// Reads the header and picks the current superblock, rolling forward a push batch whose
    /// slot write tore (see the format's recovery rules).
    fn current(&self, file: &File) -> Result<Superblock, DbError> {
        let len = file.metadata()?.len();
        if len < DATA_START {
            return Err(self.damage(
                len,
                format!("the file is {len} bytes, shorter than its {DATA_START}-byte header"),
            ));
        }
        let mut page = vec![0u8; DATA_START as usize];
        file.read_exact_at(&mut page, 0)?;
        let mut sb = read_header(&self.path, &page)?.ok_or_else(|| {
            self.damage(SLOT_OFFSETS[0], "both superblock slots fail their checksum")
        })?;
        if sb.top > len {
            return Err(self.damage(
                len,
                format!(
                    "the file ends at byte {len} but its data runs to byte {}: it was truncated",
                    sb.top
                ),
            ));
        }
        // Roll forward: push batches whose records were synced but whose commit slot (written
        // after the records, made durable only by the next sync) did not survive. Each batch's
        // records carry its operation number: op+1, then op+1 or op+2, and so on.
        let mut at = sb.top;
        let mut last = sb.op;
        let mut rolled = 0;
        loop {
            let next = self
                .record_at(file, at, len, last + 1)?
                .map(|end| (end, last + 1))
                .or(if rolled > 0 {
                    self.record_at(file, at, len, last)?.map(|end| (end, last))
                } else {
                    None
                });
            let Some((end, op)) = next else { break };
            at = end;
            last = op;
            rolled += 1;
        }
        if rolled > 0 {
            sb = Superblock {
                op: last,
                top: at,
                count: sb.count + rolled,
            };
        }
        Ok(sb)
    }

    /// If a valid record written by operation `op` starts at `at`, returns its end.
    fn record_at(&self, file: &File, at: u64, len: u64, op: u64) -> Result<Option<u64>, DbError> {
        if at + REC_OVERHEAD > len {
            return Ok(None);
        }
        let mut head = [0u8; REC_HEAD as usize];
        file.read_exact_at(&mut head, at)?;
        let n = u32_at(&head, 0) as u64;
        if u64_at(&head, 8) != op
            || n > self.opts.max_item_len as u64
            || at + REC_OVERHEAD + n > len
        {
            return Ok(None);
        }
        let mut rec = vec![0u8; (REC_OVERHEAD + n) as usize];
        file.read_exact_at(&mut rec, at)?;
        Ok(parse_record(&rec, 0, rec.len() as u64, op).map(|end| at + end))
    }

    /// Reads and verifies the record ending at `top` through `window`; returns its start and
    /// data.
    fn read_top_record(
        &self,
        file: &File,
        window: &mut ReadWindow,
        top: u64,
        op: u64,
    ) -> Result<(u64, Vec<u8>), DbError> {
        if top < DATA_START + REC_OVERHEAD {
            return Err(self.damage(
                top,
                "the superblock counts items but the data region is empty",
            ));
        }
        let tail = window.get(file, top - REC_TAIL, top)?;
        let n = u32_at(tail, 0) as u64;
        if n > self.opts.max_item_len as u64 || n + REC_OVERHEAD > top - DATA_START {
            return Err(self.damage(
                top - REC_TAIL,
                format!(
                    "record length {n} does not fit (limit {}, {} bytes below)",
                    self.opts.max_item_len,
                    top - DATA_START
                ),
            ));
        }
        let start = top - REC_OVERHEAD - n;
        let rec = window.get(file, start, top)?;
        if parse_record(rec, 0, rec.len() as u64, op).is_none() {
            return Err(self.damage(start, "record checksum mismatch"));
        }
        Ok((
            start,
            rec[REC_HEAD as usize..(REC_HEAD + n) as usize].to_vec(),
        ))
    }

    /// Writes the slot for `sb`; `durable` syncs it before returning.
    fn commit(&self, file: &File, sb: Superblock, durable: bool) -> io::Result<()> {
        file.write_all_at(&sb.encode(), SLOT_OFFSETS[(sb.op % 2) as usize])?;
        if durable {
            file.sync_data()?;
        }
        Ok(())
    }
}

/// A buffered stretch of the file below the top, so a batch pop reads the file in a few
/// large reads instead of two small reads per record.
struct ReadWindow {
    start: u64,
    bytes: Vec<u8>,
    /// How far below the requested range to read ahead.
    ahead: u64,
}

impl ReadWindow {
    /// A window sized for popping `items` records: 4 KiB for one, up to 256 KiB for many.
    fn new(items: usize) -> Self {
        let ahead = (items as u64).saturating_mul(256).clamp(4 << 10, 256 << 10);
        ReadWindow {
            start: 0,
            bytes: Vec::new(),
            ahead,
        }
    }

    /// The bytes `from..to` of `file` (callers have checked `to - from` against the item
    /// limit), reading `from - ahead .. to` if they are not buffered.
    fn get(&mut self, file: &File, from: u64, to: u64) -> io::Result<&[u8]> {
        let end = self.start + self.bytes.len() as u64;
        if from < self.start || to > end {
            let begin = from
                .min(to.saturating_sub(self.ahead))
                .max(DATA_START.min(from));
            self.bytes.resize((to - begin) as usize, 0);
            file.read_exact_at(&mut self.bytes, begin)?;
            self.start = begin;
        }
        let lo = (from - self.start) as usize;
        Ok(&self.bytes[lo..lo + (to - from) as usize])
    }
}

/// Checks a record at `at` (ending by `limit`) written by an operation <= `max_op` (or
/// exactly `max_op` when rolling forward is asked via equality by the caller); returns its end.
fn parse_record(bytes: &[u8], at: u64, limit: u64, max_op: u64) -> Option<u64> {
    let at_us = usize::try_from(at).ok()?;
    let head = bytes.get(at_us..at_us + REC_HEAD as usize)?;
    let n = u32_at(head, 0);
    let crc = u32_at(head, 4);
    let op = u64_at(head, 8);
    let end = at.checked_add(REC_OVERHEAD + n as u64)?;
    if op > max_op || op == 0 || end > limit {
        return None;
    }
    let data = bytes.get(at_us + REC_HEAD as usize..at_us + (REC_HEAD as usize) + n as usize)?;
    let tail = bytes.get((end - REC_TAIL) as usize..end as usize)?;
    if u32_at(tail, 0) != n || record_crc(n, op, data) != crc {
        return None;
    }
    Some(end)
}

/// Validates the header page; returns the current superblock, or `None` if no slot is valid.
fn read_header(path: &Path, page: &[u8]) -> Result<Option<Superblock>, DbError> {
    let foreign = |detail: String| DbError::NotADatabase {
        path: path.to_path_buf(),
        detail,
    };
    if page.len() < DATA_START as usize {
        return Err(DbError::Corrupt {
            path: path.to_path_buf(),
            offset: page.len() as u64,
            detail: format!(
                "the file is {} bytes, shorter than its {DATA_START}-byte header",
                page.len()
            ),
        });
    }
    if page[0..8] != MAGIC {
        return Err(foreign(format!(
            "its first bytes are {:02x?}, not the lifostore magic",
            &page[0..8]
        )));
    }
    let header_crc = u32_at(page, 12);
    if crc32c::checksum(&page[0..12]) != header_crc {
        return Err(DbError::Corrupt {
            path: path.to_path_buf(),
            offset: 8,
            detail: "header checksum mismatch".into(),
        });
    }
    let version = u32_at(page, 8);
    if version != VERSION {
        return Err(DbError::UnsupportedVersion {
            path: path.to_path_buf(),
            found: version,
            supported: VERSION,
        });
    }
    let slots = SLOT_OFFSETS.map(|o| Superblock::decode(&page[o as usize..o as usize + SLOT_LEN]));
    Ok(match slots {
        [Some(a), Some(b)] => Some(if b.op > a.op { b } else { a }),
        [a, b] => a.or(b),
    })
}

fn sibling(path: &Path, what: &str) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".{what}-{}", std::process::id()));
    path.with_file_name(name)
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let f = File::create(path)?;
    f.write_all_at(bytes, 0)?;
    f.sync_all()
}

fn sync_dir(path: &Path) -> io::Result<()> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => File::open(dir)?.sync_all(),
        None => File::open(".")?.sync_all(),
    }
}

/// Creates a fresh database at `path` unless a file is there: the header is written and
/// synced in a temporary file, then hard-linked into place, which fails if another process
/// got there first. So a file at `path` always has a complete header.
fn create_if_missing(path: &Path) -> Result<(), DbError> {
    if path.exists() {
        return Ok(());
    }
    let tmp = sibling(path, "init");
    let page = header_page(Superblock {
        op: 1,
        top: DATA_START,
        count: 0,
    });
    write_synced(&tmp, &page)?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => sync_dir(path)?,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

impl Db for FileDb {
    fn push(&self, data: &[u8]) -> Result<(), DbError> {
        self.push_batch(&[data]).map_err(|e| e.source)
    }

    fn pop(&self) -> Result<Option<Vec<u8>>, DbError> {
        Ok(self.pop_batch(1)?.pop())
    }

    /// One write and one `fdatasync` for the whole batch. Atomic: on error nothing is stored.
    fn push_batch(&self, items: &[&[u8]]) -> Result<(), PushBatchError> {
        let fail = |source| PushBatchError { stored: 0, source };
        if let Some(big) = items
            .iter()
            .find(|i| i.len() > self.opts.max_item_len.min(u32::MAX as usize))
        {
            return Err(fail(DbError::ItemTooLarge {
                len: big.len(),
                max: self.opts.max_item_len,
            }));
        }
        if items.is_empty() {
            return Ok(());
        }
        self.locked(|file, sb| {
            let op = sb.op + 1;
            let total: usize = items.iter().map(|i| i.len() + REC_OVERHEAD as usize).sum();
            let mut buf = Vec::with_capacity(total);
            for item in items {
                encode_record(&mut buf, op, item);
            }
            file.write_all_at(&buf, sb.top)?;
            // The one sync a push needs: from here the records are durable and recovery rolls
            // them forward even if the slot below never reaches the disk.
            file.sync_data()?;
            self.commit(
                file,
                Superblock {
                    op,
                    top: sb.top + buf.len() as u64,
                    count: sb.count + items.len() as u64,
                },
                false,
            )?;
            Ok(())
        })
        .map_err(fail)
    }

    /// Newest first; one `fdatasync` for the whole batch. On error nothing is taken.
    fn pop_batch(&self, max: usize) -> Result<Vec<Vec<u8>>, DbError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        self.locked(|file, sb| {
            let mut out = Vec::new();
            let mut top = sb.top;
            let mut window = ReadWindow::new(max);
            while out.len() < max && top > DATA_START && (out.len() as u64) < sb.count {
                let (start, data) = self.read_top_record(file, &mut window, top, sb.op)?;
                out.push(data);
                top = start;
            }
            if out.is_empty() {
                return Ok(out);
            }
            self.commit(
                file,
                Superblock {
                    op: sb.op + 1,
                    top,
                    count: sb.count - out.len() as u64,
                },
                true,
            )?;
            let len = file.metadata()?.len();
            if len > top.saturating_mul(4) && len - top > SHRINK_SLACK {
                // Dead space past `top` is never read; dropping it cannot lose data.
                file.set_len(top)?;
                file.sync_data()?;
            }
            Ok(out)
        })
    }

    fn is_shared(&self) -> bool {
        self.opts.shared
    }
}
