//! Salvage: rebuilding a damaged [`FileDb`](super::FileDb) file from every record that checks
//! out, into a new file that replaces the original only once it has been checked.

use std::fs;
use std::path::{Path, PathBuf};

use super::format::{
    DATA_START, Header, OpRule, REC_OVERHEAD, Superblock, encode_record, header_page, parse_record,
    read_header,
};
use super::io::{StdVfs, Vfs};
use super::lease_log::{log_path, replay_prefix};
use super::recovery::{backup_path, io_err, open_err, roll_forward, sibling};
use super::{FileDb, FileDbOptions};
use crate::error::DbError;

/// What [`FileDb::salvage`] kept and dropped.
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

/// The region worth scanning, the newest operation whose records count, and the length of
/// the lease log the current state names (`None`: no valid slot, read all that checks out).
struct Scan {
    limit: u64,
    max_op: u64,
    leases: Option<u32>,
}

/// See [`FileDb::salvage`].
pub(super) fn salvage(path: &Path, max_item_len: usize) -> Result<SalvageReport, DbError> {
    super::io::refuse_special(path).map_err(open_err("read", path))?;
    let bytes = fs::read(path).map_err(io_err("read", path))?;
    let Some(scan) = plan(path, &bytes, max_item_len)? else {
        return Ok(SalvageReport::default()); // nothing was ever stored: open initialises it
    };
    let (mut kept, mut count, dropped) = keep_valid_records(&bytes, &scan, max_item_len);
    for item in leased_items(path, &scan) {
        encode_record(&mut kept, scan.max_op.max(1), &item);
        count += 1;
    }
    let sb = Superblock {
        op: scan.max_op.saturating_add(1),
        top: DATA_START + kept.len() as u64,
        count,
        leases: 0,
    };
    let mut out = header_page(sb);
    out.extend_from_slice(&kept);
    let tmp = sibling(path, &format!("salvage-{}", std::process::id()));
    let original = replace_checked(path, &tmp, &out, count, max_item_len);
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
        kept: count,
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
    let scan = match read_header(head, len) {
        Header::TornInit => return Ok(None),
        Header::Foreign => {
            return Err(DbError::NotADatabase {
                path: path.to_path_buf(),
                detail: "it does not start with the lifostore magic, so salvage leaves it alone"
                    .into(),
            });
        }
        Header::Version(found) => {
            return Err(DbError::UnsupportedVersion {
                path: path.to_path_buf(),
                found,
                supported: super::format::VERSION_LEASES,
            });
        }
        Header::BadChecksum | Header::Valid(None) => Scan {
            limit: len,
            max_op: u64::MAX - 2,
            leases: None,
        },
        Header::Valid(Some(sb)) => {
            let rolled = roll_forward(sb, |at, op| {
                let ok = parse_record(bytes, at, len, OpRule::Exactly(op));
                Ok::<_, DbError>(ok.filter(|end| end - at <= max_item_len as u64 + REC_OVERHEAD))
            })?;
            Scan {
                limit: rolled.top.min(len),
                max_op: rolled.op,
                leases: Some(rolled.leases),
            }
        }
    };
    Ok(Some(scan))
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

/// Walks the data region, keeping every record that checks out; returns the kept bytes, their
/// record count and the number of bytes dropped.
fn keep_valid_records(bytes: &[u8], scan: &Scan, max_item_len: usize) -> (Vec<u8>, u64, u64) {
    let (mut kept, mut count, mut dropped) = (Vec::new(), 0u64, 0u64);
    let mut at = DATA_START;
    while at + REC_OVERHEAD <= scan.limit {
        let rec = parse_record(bytes, at, scan.limit, OpRule::AtMost(scan.max_op))
            .filter(|end| end - at <= max_item_len as u64 + REC_OVERHEAD);
        match rec {
            Some(end) => {
                kept.extend_from_slice(&bytes[at as usize..end as usize]);
                count += 1;
                at = end;
            }
            None => {
                dropped += 1;
                at += 1;
            }
        }
    }
    dropped += scan.limit.saturating_sub(at.max(DATA_START));
    (kept, count, dropped)
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
    let options = FileDbOptions::default()
        .max_item_len(max_item_len)
        .shared(false);
    let check = FileDb::open_with(tmp, options)?;
    if check.len()? != count {
        return Err(super::recovery::damage(
            tmp,
            DATA_START,
            "the salvaged copy does not read back; the original was left untouched",
        ));
    }
    drop(check);
    let backup = backup_path(path);
    fs::hard_link(path, &backup).map_err(io_err("keep a copy of", path))?;
    fs::rename(tmp, path).map_err(io_err("rename the salvaged copy over", path))?;
    StdVfs
        .sync_dir(path)
        .map_err(io_err("sync the directory of", path))?;
    Ok(backup)
}
