//! The lease log of a [`FileDb`](super::FileDb): `<name>.leases` beside the stack file, an
//! append-only list of entries whose valid length is named by the stack file's superblock
//! (`docs/FORMAT.md`, "Leases"). Pure functions over bytes, like `format.rs`.

use std::path::{Path, PathBuf};

use super::crc32c;
use super::error::FileDbError;
use super::format::{u32_at, u64_at};
use super::recovery::{damage, sibling};
use crate::db::lease::LeaseTable;
use crate::error::DbError;

/// Entry framing: `kind u8 | 0 u8 ×3 | len u32 | id u64 | deadline u64 | crc u32`, then
/// `len` bytes of data (a leased item; none for the other kinds).
const ENTRY_HEAD: usize = 28;

/// Lease ids are `op << BATCH_BITS | index`: the operation that took the lease, and the
/// item's index in its batch counted from the oldest. `op` never repeats in a file, so
/// neither does an id, even after the log is emptied.
pub(super) const BATCH_BITS: u32 = 20;
/// The most items one `pop_lease` takes from a FileDb.
pub(super) const MAX_BATCH: usize = 1 << BATCH_BITS;

/// What an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// An item was leased (the entry carries it).
    Lease = 1,
    /// A lease was acked: the item is gone.
    Ack = 2,
    /// A lease was released or expired: the item is back on the stack.
    Return = 3,
}

/// Where the lease log of the stack file at `path` lives.
pub(super) fn log_path(path: &Path) -> PathBuf {
    sibling(path, "leases")
}

/// Appends one entry to `out`.
pub(super) fn encode(out: &mut Vec<u8>, kind: Kind, id: u64, deadline: u64, data: &[u8]) {
    let start = out.len();
    out.push(kind as u8);
    out.extend_from_slice(&[0u8; 3]);
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&deadline.to_le_bytes());
    let crc = crc32c::extend(crc32c::checksum(&out[start..start + 24]), data);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(data);
}

/// One entry of the log.
struct Entry<'a> {
    kind: u8,
    id: u64,
    deadline: u64,
    data: &'a [u8],
    /// Where the next entry starts.
    next: usize,
}

/// The entry at `at` of `bytes`, or what is wrong with it.
fn entry_at(bytes: &[u8], at: usize) -> Result<Entry<'_>, &'static str> {
    const CUT: &str = "a lease-log entry is cut short";
    let head = bytes.get(at..at + ENTRY_HEAD).ok_or(CUT)?;
    let next = at + ENTRY_HEAD + u32_at(head, 4) as usize;
    let data = bytes.get(at + ENTRY_HEAD..next).ok_or(CUT)?;
    if crc32c::extend(crc32c::checksum(&head[0..24]), data) != u32_at(head, 24) {
        return Err("a lease-log entry fails its checksum");
    }
    Ok(Entry {
        kind: head[0],
        id: u64_at(head, 8),
        deadline: u64_at(head, 16),
        data,
        next,
    })
}

/// Replays the log `bytes` (exactly the length the superblock names) into the table of held
/// leases. Every entry must check out: the superblock named them only once they were synced.
pub(super) fn replay(bytes: &[u8], path: &Path) -> Result<LeaseTable, DbError> {
    let mut table = LeaseTable::default();
    let mut at = 0usize;
    let bad = |at: usize, what: &str| damage(&log_path(path), at as u64, what.to_string());
    while at < bytes.len() {
        let e = entry_at(bytes, at).map_err(|what| bad(at, what))?;
        match e.kind {
            1 => table.insert(e.id, e.data.to_vec(), e.deadline),
            2 | 3 if table.remove(e.id).is_some() => {}
            2 | 3 => return Err(bad(at, "a lease-log entry ends a lease that is not held")),
            _ => return Err(bad(at, "a lease-log entry has an unknown kind")),
        }
        at = e.next;
    }
    Ok(table)
}

/// The highest operation number a lease id in the log beside `path` names, over every entry
/// that checks out from the start (named by a slot or not): no lease was taken by a later
/// operation, because each one writes its entries (at the end of the named log or, when no
/// lease is held, at byte 0). 0 without a log.
pub(super) fn highest_lease_op(path: &Path) -> u64 {
    let Ok(bytes) = std::fs::read(log_path(path)) else {
        return 0;
    };
    let (mut at, mut highest) = (0usize, 0u64);
    while let Ok(e) = entry_at(&bytes, at) {
        highest = highest.max(e.id >> BATCH_BITS);
        at = e.next;
    }
    highest
}

/// The leases held by the longest prefix of `bytes` that replays cleanly: for salvage, which
/// keeps every leased item it can find.
pub(super) fn replay_prefix(bytes: &[u8], path: &Path) -> LeaseTable {
    match replay(bytes, path) {
        Ok(table) => table,
        Err(DbError::File(FileDbError::Corrupt { offset, .. })) => {
            let end = usize::try_from(offset).unwrap_or(0).min(bytes.len());
            replay(&bytes[..end], path).unwrap_or_default()
        }
        Err(_) => LeaseTable::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_keeps_what_is_still_held_and_refuses_damage() {
        let mut log = Vec::new();
        encode(&mut log, Kind::Lease, 7, 100, b"seven");
        encode(&mut log, Kind::Lease, 8, 200, b"eight");
        encode(&mut log, Kind::Ack, 7, 0, b"");
        let t = replay(&log, Path::new("x")).expect("replay");
        let held: Vec<(u64, Vec<u8>)> = t.iter().map(|(id, h)| (id, h.item.clone())).collect();
        assert_eq!(held, vec![(8, b"eight".to_vec())]);
        let mut torn = log.clone();
        torn.truncate(log.len() - 1);
        assert!(matches!(
            replay(&torn, Path::new("x")),
            Err(DbError::File(FileDbError::Corrupt { .. }))
        ));
        let mut flipped = log.clone();
        flipped[30] ^= 1;
        assert!(matches!(
            replay(&flipped, Path::new("x")),
            Err(DbError::File(FileDbError::Corrupt { .. }))
        ));
        let prefix = replay_prefix(&torn, Path::new("x"));
        assert_eq!(
            prefix.iter().count(),
            2,
            "the ack was cut off: both leases held"
        );
        encode(&mut log, Kind::Return, 7, 0, b"");
        assert!(replay(&log, Path::new("x")).is_err(), "ends a lease twice");
    }
}
