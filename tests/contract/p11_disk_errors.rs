//! Promise 11, disk errors lose nothing and duplicate nothing: when a FileDb read, write, sync
//! or truncate fails (or writes only part of its bytes), the call reports the error; after it,
//! and after a reopen, every acknowledged unpopped item is there exactly once, and nothing
//! popped comes back unless its pop reported an error.
//!
//! Here: batches whose commit slots never reached the disk, rolled forward by open and by
//! salvage. Deeper: every I/O call of a workload failing, short-written or losing dirty pages
//! (`src/db/file/fault_tests.rs`), libfiu's random I/O faults (`tests/file_db_fiu.rs`), and
//! replies lost by the server backends (`tests/backends/faults.rs`).

use std::path::Path;

use lifostore::{Db, FileDb};

use crate::common::TempDir;

fn all(db: &FileDb) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(x) = db.pop().unwrap() {
        out.push(x);
    }
    out
}

/// Writes a1 a2, pops a2 (its slot is synced), pushes b1 b2 b3 and c1, and returns the file's
/// bytes with the header page as it was before those two pushes: a power cut that lost their
/// commit slots (a push's slot is only made durable by the next sync). The file holds, newest
/// first, c1 b3 b2 b1 a1.
fn push_batches_losing_their_slots(path: &Path) -> Vec<u8> {
    let db = FileDb::open(path).unwrap();
    db.push_batch(&[b"a1", b"a2"]).unwrap();
    assert_eq!(db.pop().unwrap().unwrap(), b"a2"); // a pop: its slot is synced
    let header_before = std::fs::read(path).unwrap()[..4096].to_vec();
    db.push_batch(&[b"b1", b"b2", b"b3"]).unwrap();
    db.push(b"c1").unwrap();
    drop(db);
    let mut bytes = std::fs::read(path).unwrap();
    bytes[..4096].copy_from_slice(&header_before);
    bytes
}

#[test]
fn push_batches_whose_commit_slots_never_reached_the_disk_are_rolled_forward() {
    // A push syncs its records, then writes its slot without a sync (the next sync makes it
    // durable). Simulate a power cut that lost the slots of the last two pushes: put back the
    // header page as it was before them. Open must roll both batches forward.
    let dir = TempDir::new("rollforward");
    let path = dir.file("db.lifo");
    let bytes = push_batches_losing_their_slots(&path);
    std::fs::write(&path, &bytes).unwrap();
    let db = FileDb::open(&path).unwrap();
    assert_eq!(db.len().unwrap(), 5);
    let expected: Vec<Vec<u8>> = [&b"c1"[..], b"b3", b"b2", b"b1", b"a1"]
        .iter()
        .map(|x| x.to_vec())
        .collect();
    assert_eq!(
        all(&db),
        expected,
        "the popped a2 must not come back either"
    );
}

#[test]
fn salvage_keeps_push_batches_whose_commit_slots_were_lost() {
    // The same lost slots as above, plus damage to the oldest record, so the file needs salvage.
    // Salvage must roll the synced batches forward as open does, not cut at the slot's top
    // (which silently dropped b1..c1 before).
    let dir = TempDir::new("salvage-rollforward");
    let path = dir.file("db.lifo");
    let mut bytes = push_batches_losing_their_slots(&path);
    bytes[4096 + 16] ^= 0xff; // the data of a1, the oldest record
    std::fs::write(&path, &bytes).unwrap();
    let report = FileDb::salvage(&path).unwrap();
    assert_eq!(report.kept, 4, "{report:?}");
    let db = FileDb::open(&path).unwrap();
    let expected: Vec<Vec<u8>> = [&b"c1"[..], b"b3", b"b2", b"b1"]
        .iter()
        .map(|x| x.to_vec())
        .collect();
    assert_eq!(all(&db), expected);
}
