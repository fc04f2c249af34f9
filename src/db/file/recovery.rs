//! Reading a [`FileDb`](super::FileDb)'s state back: the header, the current superblock, the
//! roll-forward of push batches whose commit slot was lost, first-time initialisation, and
//! salvage. The rules are in `docs/FORMAT.md`.

use std::path::{Path, PathBuf};

use super::error::FileDbError;
use super::format::{
    DATA_START, Header, Layout, Origin, SLOT_OFFSETS, Superblock, VERSION, header_page,
    header_start, new_salt, parse_record, read_head, read_header,
};
use super::io::{FileIo, NotARegularFile, Vfs};
use crate::error::DbError;

/// What a file holds, as read under the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Found {
    /// Zero bytes, or a torn first initialisation: no item was ever stored.
    Uninitialised,
    /// A file of version 1 or 2: its state by that version's rules (push batches rolled
    /// forward by operation number) and the operation number of its durable slot. It is
    /// upgraded before anything else touches it ([`upgrade`]).
    Legacy { durable_op: u64, state: Superblock },
    /// The current state, push batches rolled forward.
    State(Superblock),
}

/// Maps an I/O error of operation `op` on `path` to a [`DbError::Io`].
pub(super) fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DbError {
    move |e| DbError::io(op, path, e)
}

/// Like [`io_err`], but a path that is not a regular file ([`NotARegularFile`], from
/// [`refuse_special`](super::io::refuse_special) or the `Vfs`'s open) is
/// [`FileDbError::NotADatabase`]: nothing was read or written, and retrying cannot help.
pub(super) fn open_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DbError {
    move |e| match e
        .get_ref()
        .and_then(|e| e.downcast_ref::<NotARegularFile>())
    {
        Some(what) => DbError::File(FileDbError::NotADatabase {
            path: path.to_path_buf(),
            detail: format!("it is {what}"),
        }),
        None => DbError::io(op, path, e),
    }
}

/// A [`FileDbError::Corrupt`] at `offset` of `path`.
pub(super) fn damage(path: &Path, offset: u64, detail: impl Into<String>) -> DbError {
    FileDbError::Corrupt {
        path: path.to_path_buf(),
        offset,
        detail: detail.into(),
    }
    .into()
}

/// Reads the header and picks the current superblock, rolling forward the push batches whose
/// records were synced but whose commit slot did not survive.
pub(super) fn read_state(
    io: &dyn FileIo,
    path: &Path,
    max_item_len: usize,
) -> Result<Found, DbError> {
    let len = io.len().map_err(io_err("stat", path))?;
    if len == 0 {
        return Ok(Found::Uninitialised);
    }
    let mut page = vec![0u8; len.min(DATA_START) as usize];
    io.read_at(&mut page, 0).map_err(io_err("read", path))?;
    let (version, sb) = match read_header(&page, len) {
        Header::TornInit => return Ok(Found::Uninitialised),
        Header::Valid {
            version,
            current: Some(sb),
        } => (version, sb),
        other => return Err(header_error(path, &page, other)),
    };
    if sb.top > len {
        return Err(damage(
            path,
            len,
            format!(
                "the file ends at byte {len} but its data runs to byte {}: it was truncated",
                sb.top
            ),
        ));
    }
    let limit = max_item_len as u64;
    if version == VERSION {
        let read = |at, accept: &dyn Fn(Origin) -> bool| {
            record_at(io, path, (at, len), Layout::Salted, accept, limit)
        };
        return Ok(Found::State(roll_forward(sb, read)?));
    }
    let read = |at, accept: &dyn Fn(Origin) -> bool| {
        record_at(io, path, (at, len), Layout::Legacy, accept, limit)
    };
    let state = roll_forward_legacy(sb, read)?;
    Ok(Found::Legacy {
        durable_op: sb.op,
        state,
    })
}

/// The error for a header that is not `Valid` with a slot, or `TornInit`.
fn header_error(path: &Path, page: &[u8], header: Header) -> DbError {
    match header {
        Header::Foreign => DbError::File(FileDbError::NotADatabase {
            path: path.to_path_buf(),
            detail: format!(
                "its first bytes are {:02x?}, not the lifostore magic",
                &page[..page.len().min(8)]
            ),
        }),
        Header::Version(found) => DbError::File(FileDbError::UnsupportedVersion {
            path: path.to_path_buf(),
            found,
            supported: VERSION,
        }),
        Header::BadChecksum => damage(path, 8, "header checksum mismatch"),
        _ => damage(
            path,
            SLOT_OFFSETS[0],
            "both superblock slots fail their checksum",
        ),
    }
}

/// What a record reader answers: the end and origin of the valid record it found, if any.
pub(super) type Located<E> = Result<Option<(u64, Origin)>, E>;

/// Rolls `sb` forward over the push batches found above its top. A batch's records name the
/// salt of the state it extended (`parent`) and a salt of its own, which the state after it
/// takes: so the first record must name the current state's salt, the next ones the same
/// parent and salt as the one before (the same batch), or the salt of that batch as parent
/// (the next batch), and so on. `record_at(at, accept)` returns the end and origin of a valid
/// record at `at` whose origin `accept` takes, if there is one.
pub(super) fn roll_forward<E>(
    sb: Superblock,
    mut record_at: impl FnMut(u64, &dyn Fn(Origin) -> bool) -> Located<E>,
) -> Result<Superblock, E> {
    let mut cur = sb;
    let mut batch_parent = None;
    loop {
        let salt = cur.salt;
        let accept = |origin: Origin| match origin {
            Origin::Salted { parent, salt: own } => {
                let next_batch = parent == salt && own != salt && own != 0;
                next_batch || (Some(parent) == batch_parent && own == salt)
            }
            Origin::Legacy { .. } => false,
        };
        let Some((end, Origin::Salted { parent, salt: own })) = record_at(cur.top, &accept)? else {
            break;
        };
        if own != cur.salt {
            (cur.op, cur.salt, batch_parent) = (cur.op + 1, own, Some(parent));
        }
        (cur.top, cur.count) = (end, cur.count + 1);
    }
    Ok(cur)
}

/// Roll-forward by the rules of versions 1 and 2, which named batches by operation number:
/// records carrying operation `op + 1`, then `op + 1` again (same batch) or `op + 2` (the next
/// one), and so on. Used once per file, to read it before the upgrade.
pub(super) fn roll_forward_legacy<E>(
    sb: Superblock,
    mut record_at: impl FnMut(u64, &dyn Fn(Origin) -> bool) -> Located<E>,
) -> Result<Superblock, E> {
    let (mut at, mut last, mut rolled) = (sb.top, sb.op, 0);
    let written_by = |op: u64| move |origin: Origin| origin == Origin::Legacy { op };
    loop {
        let next = match record_at(at, &written_by(last + 1))? {
            Some((end, _)) => Some((end, last + 1)),
            None if rolled > 0 => record_at(at, &written_by(last))?.map(|(end, _)| (end, last)),
            None => None,
        };
        let Some((end, op)) = next else { break };
        (at, last, rolled) = (end, op, rolled + 1);
    }
    Ok(Superblock {
        op: last,
        top: at,
        count: sb.count + rolled,
        legacy: at,
        ..sb
    })
}

/// If a valid record of `layout` whose origin `accept` takes starts at `at` (in a file of
/// `len` bytes: `(at, len)`) and holds at most `max_item_len` bytes, returns its end and
/// origin. The head is read first, so a record that is not wanted costs one small read.
fn record_at(
    io: &dyn FileIo,
    path: &Path,
    (at, len): (u64, u64),
    layout: Layout,
    accept: &dyn Fn(Origin) -> bool,
    max_item_len: u64,
) -> Located<DbError> {
    if at + layout.overhead() > len {
        return Ok(None);
    }
    let mut head = vec![0u8; layout.head() as usize];
    io.read_at(&mut head, at).map_err(io_err("read", path))?;
    let (n, origin) = read_head(&head, layout);
    if !accept(origin) || n > max_item_len || at + layout.overhead() + n > len {
        return Ok(None);
    }
    let mut rec = vec![0u8; (layout.overhead() + n) as usize];
    io.read_at(&mut rec, at).map_err(io_err("read", path))?;
    let parsed = parse_record(&rec, 0, rec.len() as u64, layout);
    Ok(parsed.map(|(end, origin)| (at + end, origin)))
}

/// Upgrades a file of version 1 or 2 whose durable slot has operation `durable_op` and whose
/// state, rolled forward by the old rules, is `state`: writes that state as a version-3 slot
/// (every record below its top legacy, a new salt) into the slot the durable one is not in,
/// syncs, then writes the version and syncs. A crash in between leaves the old version, whose
/// readers cannot decode the new slot and still find the durable one.
pub(super) fn upgrade(
    io: &dyn FileIo,
    path: &Path,
    durable_op: u64,
    state: Superblock,
) -> Result<Superblock, DbError> {
    let mut op = state.op + 1;
    if op % 2 == durable_op % 2 {
        op += 1;
    }
    let sb = Superblock {
        op,
        salt: new_salt(),
        legacy: state.top,
        ..state
    };
    io.write_at(&sb.encode(), sb.slot_offset())
        .and_then(|()| io.sync())
        .map_err(io_err("write the superblock of", path))?;
    io.write_at(&header_start(VERSION)[8..16], 8)
        .and_then(|()| io.sync())
        .map_err(io_err("write the header of", path))?;
    Ok(sb)
}

/// Writes the header page of an empty database into a zero-length (or torn-init) file: the
/// file extended to the page's length (so no short write leaves it shorter), all but the magic,
/// synced, then the magic, synced. Whatever a crash or a failed write leaves in between is a
/// file [`read_header`] recognises as a torn initialisation, never one that looks like a
/// damaged database or a foreign file.
pub(super) fn initialise(io: &dyn FileIo, vfs: &dyn Vfs, path: &Path) -> Result<(), DbError> {
    let page = header_page(Superblock::fresh());
    io.set_len(DATA_START).map_err(io_err("extend", path))?;
    io.write_at(&page[8..], 8).map_err(io_err("write", path))?;
    io.sync().map_err(io_err("sync", path))?;
    io.write_at(&page[..8], 0).map_err(io_err("write", path))?;
    io.sync().map_err(io_err("sync", path))?;
    vfs.sync_dir(path)
        .map_err(io_err("sync the directory of", path))
}

/// Where salvage keeps the damaged original: `<name>.damaged-<unix seconds>` beside it.
pub(super) fn backup_path(path: &Path) -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    sibling(path, &format!("damaged-{secs}"))
}

/// `<name>.<what>` beside `path`.
pub(super) fn sibling(path: &Path, what: &str) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".{what}"));
    path.with_file_name(name)
}
