//! Salvage: rebuilding a damaged `FileDb` file from every record that checks
//! out, into a new file that replaces the original only once it has been checked.

use std::fs;
use std::path::{Path, PathBuf};

use super::error::FileDbError;
use super::format::{
    DATA_START, Header, Layout, Origin, REC_TAIL, Superblock, VERSION, encode_record, header_page,
    new_salt, parse_record, read_header,
};
use super::io::{StdVfs, Vfs};
use super::lease_log::{highest_lease_op, log_path, replay_prefix};
use super::read_ahead::ReadAhead;
use super::recovery::{
    Found, Located, backup_path, io_err, open_err, read_state, roll_forward, roll_forward_legacy,
    sibling,
};
use crate::error::DbError;

/// What [`FileDb::salvage`](crate::FileDb::salvage) kept and dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SalvageReport {
    /// Items that checked out and were kept, in their order.
    pub kept: u64,
    /// Bytes of the data region that did not check out and were dropped.
    pub dropped_bytes: u64,
    /// Where the damaged original was kept (`<name>.damaged-<unix seconds>` beside it), or
    /// `None` when there was nothing to rewrite (an empty or never-initialised file).
    pub original: Option<PathBuf>,
}

/// The region worth scanning and how to read it.
struct Scan {
    limit: u64,
    /// Where the legacy-layout records end (`None`: no valid slot says, so try both layouts).
    legacy: Option<u64>,
    /// The operation number of the current state (0 when no slot is valid).
    op: u64,
    /// The length of the lease log the current state names (`None`: read all that checks out).
    leases: Option<u32>,
}

/// See `FileDb::salvage`.
pub(super) fn salvage(path: &Path, max_item_len: usize) -> Result<SalvageReport, DbError> {
    super::io::refuse_special(path).map_err(open_err("read", path))?;
    let bytes = fs::read(path).map_err(io_err("read", path))?;
    let Some(scan) = plan(path, &bytes, max_item_len)? else {
        return Ok(SalvageReport::default()); // nothing was ever stored: open initialises it
    };
    let (mut items, dropped, legacy_op) = valid_items(&bytes, &scan, max_item_len);
    items.extend(leased_items(path, &scan));
    // Above every operation the file may have numbered a lease with, so no lease id repeats.
    let op = scan.op.max(legacy_op).max(highest_lease_op(path)) + 1;
    let mut sb = Superblock {
        op,
        count: items.len() as u64,
        salt: new_salt(),
        ..Superblock::fresh()
    };
    let mut kept = Vec::new();
    for item in &items {
        encode_record(&mut kept, 0, sb.salt, item);
    }
    sb.top += kept.len() as u64;
    let mut out = header_page(sb);
    out.extend_from_slice(&kept);
    let tmp = sibling(path, &format!("salvage-{}", std::process::id()));
    let original = replace_checked(path, &tmp, &out, sb.count, max_item_len);
    if original.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    if original.is_ok() {
        // The new file names no lease log; keep the old one beside it, as the original.
        let log = log_path(path);
        if log.exists() {
            let _ = fs::rename(&log, backup_path(&log));
        }
    }
    Ok(SalvageReport {
        kept: sb.count,
        dropped_bytes: dropped,
        original: Some(original?),
    })
}

/// Decides what to scan, or `None` for a file that never held an item. Foreign files and
/// newer versions are refused: salvage never writes to them.
fn plan(path: &Path, bytes: &[u8], max_item_len: usize) -> Result<Option<Scan>, DbError> {
    let len = bytes.len() as u64;
    if len == 0 {
        return Ok(None);
    }
    let head = &bytes[..bytes.len().min(DATA_START as usize)];
    let (version, sb) = match read_header(head, len) {
        Header::TornInit => return Ok(None),
        Header::Foreign => {
            return Err(DbError::File(FileDbError::NotADatabase {
                path: path.to_path_buf(),
                detail: "it does not start with the lifostore magic, so salvage leaves it alone"
                    .into(),
            }));
        }
        Header::Version(found) => {
            return Err(DbError::File(FileDbError::UnsupportedVersion {
                path: path.to_path_buf(),
                found,
                supported: VERSION,
            }));
        }
        Header::BadChecksum | Header::Valid { current: None, .. } => {
            let (limit, legacy, op, leases) = (len, None, 0, None);
            return Ok(Some(Scan {
                limit,
                legacy,
                op,
                leases,
            }));
        }
        Header::Valid {
            version,
            current: Some(sb),
        } => (version, sb),
    };
    let rolled = if version == VERSION {
        roll_forward(sb, in_memory(bytes, Layout::Salted, max_item_len))?
    } else {
        roll_forward_legacy(sb, in_memory(bytes, Layout::Legacy, max_item_len))?
    };
    Ok(Some(Scan {
        limit: rolled.top.min(len),
        legacy: Some(rolled.legacy.min(len)),
        op: rolled.op,
        leases: Some(rolled.leases),
    }))
}

/// Roll-forward's record reader over the whole file in memory.
fn in_memory(
    bytes: &[u8],
    layout: Layout,
    max_item_len: usize,
) -> impl FnMut(u64, &dyn Fn(Origin) -> bool) -> Located<DbError> {
    move |at, accept| {
        let rec = parse_record(bytes, at, bytes.len() as u64, layout);
        let fits = |end: u64| end - at <= max_item_len as u64 + layout.overhead();
        Ok(rec.filter(|&(end, origin)| accept(origin) && fits(end)))
    }
}

/// The items of the leases held in the lease log beside `path`, oldest lease first: they go
/// back on top of the salvaged stack, so salvage loses no leased item.
fn leased_items(path: &Path, scan: &Scan) -> Vec<Vec<u8>> {
    let Ok(mut log) = fs::read(log_path(path)) else {
        return Vec::new();
    };
    if let Some(len) = scan.leases {
        log.truncate(len as usize);
    }
    let table = replay_prefix(&log, path);
    table.iter().map(|(_, held)| held.item.clone()).collect()
}

/// Walks the data region, keeping every record that checks out; returns their items, the
/// number of bytes dropped and the highest operation number a legacy record carried.
fn valid_items(bytes: &[u8], scan: &Scan, max_item_len: usize) -> (Vec<Vec<u8>>, u64, u64) {
    let (mut items, mut dropped, mut legacy_op) = (Vec::new(), 0u64, 0u64);
    let mut at = DATA_START;
    while at + REC_TAIL < scan.limit {
        let layouts: &[(Layout, u64)] = match scan.legacy {
            Some(end) if at < end => &[(Layout::Legacy, end)],
            Some(_) => &[(Layout::Salted, scan.limit)],
            None => &[(Layout::Salted, scan.limit), (Layout::Legacy, scan.limit)],
        };
        let rec = layouts.iter().find_map(|&(layout, limit)| {
            let fits = |end: u64| end - at <= max_item_len as u64 + layout.overhead();
            let rec = parse_record(bytes, at, limit, layout).filter(|&(end, _)| fits(end));
            rec.map(|(end, origin)| (end, origin, layout))
        });
        match rec {
            Some((end, origin, layout)) => {
                let data = at + layout.head()..end - REC_TAIL;
                items.push(bytes[data.start as usize..data.end as usize].to_vec());
                if let Origin::Legacy { op } = origin {
                    legacy_op = legacy_op.max(op);
                }
                at = end;
            }
            None => {
                dropped += 1;
                at += 1;
            }
        }
    }
    dropped += scan.limit.saturating_sub(at.max(DATA_START));
    (items, dropped, legacy_op)
}

/// Whether the file at `path` reads back as a database of `count` items whose top record
/// checks out: what opening it checks.
fn reads_back(path: &Path, count: u64, max_item_len: usize) -> Result<bool, DbError> {
    let io = StdVfs.open(path).map_err(io_err("open", path))?;
    let sb = match read_state(&*io, path, max_item_len)? {
        Found::State(sb) => sb,
        Found::Uninitialised => return Ok(count == 0),
        // Salvage writes the current version; an older one did not come from it.
        Found::Legacy { .. } => return Ok(false),
    };
    if sb.count > 0 {
        ReadAhead::new(1).top_record(&*io, path, max_item_len, &sb, sb.top)?;
    }
    Ok(sb.count == count)
}

/// Writes `out` to `tmp`, checks that it opens with `count` items, keeps the original at a
/// backup path (a hard link), and renames `tmp` over `path`. Returns the backup path.
fn replace_checked(
    path: &Path,
    tmp: &Path,
    out: &[u8],
    count: u64,
    max_item_len: usize,
) -> Result<PathBuf, DbError> {
    let file = fs::File::create(tmp).map_err(io_err("create", tmp))?;
    std::io::Write::write_all(&mut &file, out).map_err(io_err("write", tmp))?;
    file.sync_all().map_err(io_err("sync", tmp))?;
    if !reads_back(tmp, count, max_item_len)? {
        return Err(super::recovery::damage(
            tmp,
            DATA_START,
            "the salvaged copy does not read back; the original was left untouched",
        ));
    }
    let backup = backup_path(path);
    fs::hard_link(path, &backup).map_err(io_err("keep a copy of", path))?;
    fs::rename(tmp, path).map_err(io_err("rename the salvaged copy over", path))?;
    StdVfs
        .sync_dir(path)
        .map_err(io_err("sync the directory of", path))?;
    Ok(backup)
}
