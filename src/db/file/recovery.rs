//! Reading a [`FileDb`](super::FileDb)'s state back: the header, the current superblock, the
//! roll-forward of push batches whose commit slot was lost, first-time initialisation, and
//! salvage. The rules are in `docs/FORMAT.md`.

use std::path::{Path, PathBuf};

use super::format::{
    DATA_START, Header, OpRule, REC_HEAD, REC_OVERHEAD, SLOT_OFFSETS, Superblock, header_page,
    parse_record, read_header, u32_at, u64_at,
};
use super::io::{FileIo, NotARegularFile, Vfs};
use crate::error::DbError;

/// What a file holds, as read under the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Found {
    /// Zero bytes, or a torn first initialisation: no item was ever stored.
    Uninitialised,
    /// The current state, push batches rolled forward.
    State(Superblock),
}

/// Maps an I/O error of operation `op` on `path` to a [`DbError::Io`].
pub(super) fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DbError {
    move |e| DbError::io(op, path, e)
}

/// Like [`io_err`], but a path that is not a regular file ([`NotARegularFile`], from
/// [`refuse_special`](super::io::refuse_special) or the `Vfs`'s open) is
/// [`DbError::NotADatabase`]: nothing was read or written, and retrying cannot help.
pub(super) fn open_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DbError {
    move |e| match e
        .get_ref()
        .and_then(|e| e.downcast_ref::<NotARegularFile>())
    {
        Some(what) => DbError::NotADatabase {
            path: path.to_path_buf(),
            detail: format!("it is {what}"),
        },
        None => DbError::io(op, path, e),
    }
}

/// A [`DbError::Corrupt`] at `offset` of `path`.
pub(super) fn damage(path: &Path, offset: u64, detail: impl Into<String>) -> DbError {
    DbError::Corrupt {
        path: path.to_path_buf(),
        offset,
        detail: detail.into(),
    }
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
    let sb = match read_header(&page, len) {
        Header::TornInit => return Ok(Found::Uninitialised),
        Header::Valid(Some(sb)) => sb,
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
    let rolled = roll_forward(sb, |at, op| record_at(io, path, at, len, op, max_item_len))?;
    Ok(Found::State(rolled))
}

/// The error for a header that is not `Valid(Some(_))` or `TornInit`.
fn header_error(path: &Path, page: &[u8], header: Header) -> DbError {
    match header {
        Header::Foreign => DbError::NotADatabase {
            path: path.to_path_buf(),
            detail: format!(
                "its first bytes are {:02x?}, not the lifostore magic",
                &page[..page.len().min(8)]
            ),
        },
        Header::Version(found) => DbError::UnsupportedVersion {
            path: path.to_path_buf(),
            found,
            supported: super::format::VERSION_LEASES,
        },
        Header::BadChecksum => damage(path, 8, "header checksum mismatch"),
        _ => damage(
            path,
            SLOT_OFFSETS[0],
            "both superblock slots fail their checksum",
        ),
    }
}

/// Rolls `sb` forward over the push batches found above its top: records carrying operation
/// `op + 1`, then `op + 1` again (same batch) or `op + 2` (the next one), and so on.
/// `record_at(at, op)` returns the end of a valid record written by `op` at `at`, if any.
pub(super) fn roll_forward<E>(
    sb: Superblock,
    mut record_at: impl FnMut(u64, u64) -> Result<Option<u64>, E>,
) -> Result<Superblock, E> {
    let (mut at, mut last, mut rolled) = (sb.top, sb.op, 0);
    loop {
        let next = match record_at(at, last + 1)? {
            Some(end) => Some((end, last + 1)),
            None if rolled > 0 => record_at(at, last)?.map(|end| (end, last)),
            None => None,
        };
        let Some((end, op)) = next else { break };
        (at, last, rolled) = (end, op, rolled + 1);
    }
    Ok(Superblock {
        op: last,
        top: at,
        count: sb.count + rolled,
        leases: sb.leases,
    })
}

/// If a valid record written by operation `op` starts at `at` (in a file of `len` bytes),
/// returns its end.
fn record_at(
    io: &dyn FileIo,
    path: &Path,
    at: u64,
    len: u64,
    op: u64,
    max_item_len: usize,
) -> Result<Option<u64>, DbError> {
    if at + REC_OVERHEAD > len {
        return Ok(None);
    }
    let mut head = [0u8; REC_HEAD as usize];
    io.read_at(&mut head, at).map_err(io_err("read", path))?;
    let n = u32_at(&head, 0) as u64;
    if u64_at(&head, 8) != op || n > max_item_len as u64 || at + REC_OVERHEAD + n > len {
        return Ok(None);
    }
    let mut rec = vec![0u8; (REC_OVERHEAD + n) as usize];
    io.read_at(&mut rec, at).map_err(io_err("read", path))?;
    Ok(parse_record(&rec, 0, rec.len() as u64, OpRule::Exactly(op)).map(|end| at + end))
}

/// Writes the header page of an empty database into a zero-length (or torn-init) file: all but
/// the magic first, synced, then the magic, synced. A crash in between leaves a file without
/// the magic that [`read_header`] recognises as a torn initialisation, never one that looks
/// like a damaged database.
pub(super) fn initialise(io: &dyn FileIo, vfs: &dyn Vfs, path: &Path) -> Result<(), DbError> {
    let page = header_page(Superblock::FRESH);
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
