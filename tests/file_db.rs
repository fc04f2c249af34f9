//! FileDb: durability across reopen, batches, limits, damage handling, space reclaim.

use std::path::Path;

mod common;
use common::TempDir;

use lifostore::{
    CancelToken, Db, DbError, DbLease, Error, FileDb, FileDbOptions, LeaseId, SalvageReport,
    Storage,
};

fn all(db: &FileDb) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(x) = db.pop().unwrap() {
        out.push(x);
    }
    out
}

#[test]
fn items_survive_reopen_newest_first() {
    let dir = TempDir::new("reopen");
    let path = dir.file("db.lifo");
    {
        let db = FileDb::open(&path).unwrap();
        db.push(b"one").unwrap();
        db.push_batch(&[b"two", b"three", b""]).unwrap();
        assert_eq!(db.len().unwrap(), 4);
    }
    let db = FileDb::open(&path).unwrap();
    assert_eq!(
        db.pop_batch(2).unwrap(),
        vec![b"".to_vec(), b"three".to_vec()]
    );
    drop(db);
    let db = FileDb::open(&path).unwrap();
    assert_eq!(all(&db), vec![b"two".to_vec(), b"one".to_vec()]);
    assert_eq!(db.pop().unwrap(), None);
    assert!(db.is_empty().unwrap());
}

#[test]
fn storage_open_uses_file_db() {
    let dir = TempDir::new("storage-open");
    let path = dir.file("s.lifo");
    let t = CancelToken::new();
    {
        let s = Storage::open(&path).unwrap();
        for i in 0..100u32 {
            s.push(&t, i.to_le_bytes().to_vec()).unwrap();
        }
        s.close().unwrap();
    }
    let s = Storage::open(&path).unwrap();
    assert_eq!(s.pop(&t).unwrap(), 99u32.to_le_bytes());
    assert_eq!(s.db().len().unwrap(), 99);
}

#[test]
fn oversize_item_fails_clearly_and_a_batch_holding_one_stores_nothing() {
    let dir = TempDir::new("size");
    let db = FileDb::open_with(dir.file("db"), FileDbOptions::default().max_item_len(10)).unwrap();
    db.push(&[7u8; 10]).unwrap();
    match db.push(&[0u8; 11]) {
        Err(DbError::ItemTooLarge { len: 11, max: 10 }) => {}
        other => panic!("{other:?}"),
    }
    let err = db.push_batch(&[b"ok", &[0u8; 11]]).unwrap_err();
    assert_eq!(err.stored, 0);
    assert_eq!(all(&db), vec![vec![7u8; 10]]);
}

#[test]
fn default_item_limit_is_at_least_64_mib() {
    assert!(FileDbOptions::default().max_item_len >= 64 << 20);
}

#[test]
fn foreign_and_newer_files_are_refused_with_the_path_named() {
    let dir = TempDir::new("foreign");
    let path = dir.file("notes.txt");
    std::fs::write(&path, vec![b'x'; 5000]).unwrap();
    let err = FileDb::open(&path).unwrap_err();
    assert!(matches!(err, DbError::NotADatabase { .. }), "{err}");
    assert!(err.to_string().contains("notes.txt"), "{err}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        vec![b'x'; 5000],
        "a foreign file must be left alone"
    );

    // A valid header claiming version 4 (this build writes 3, and reads and upgrades 1 and 2).
    let newer = dir.file("newer.lifo");
    drop(FileDb::open(&newer).unwrap());
    let mut bytes = std::fs::read(&newer).unwrap();
    bytes[8..12].copy_from_slice(&4u32.to_le_bytes());
    let crc = crc32c(&bytes[0..12]);
    bytes[12..16].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&newer, &bytes).unwrap();
    match FileDb::open(&newer) {
        Err(DbError::UnsupportedVersion {
            found: 4,
            supported: 3,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
}

/// Bitwise CRC-32C, independent of the crate's table-driven one.
fn crc32c(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// Builds a file whose acknowledged content is `[c, b, a]` (newest first); the last operation
/// is `last_op_pop ? a pop of "d" : a push of "d"`.
fn build(path: &Path, last_op_pop: bool) -> Vec<Vec<u8>> {
    let db = FileDb::open(path).unwrap();
    db.push_batch(&[b"alpha-item", b"bravo-item", b"charlie-item"])
        .unwrap();
    db.push(b"delta-item").unwrap();
    if last_op_pop {
        assert_eq!(db.pop().unwrap().unwrap(), b"delta-item");
        vec![
            b"charlie-item".to_vec(),
            b"bravo-item".to_vec(),
            b"alpha-item".to_vec(),
        ]
    } else {
        let mut v = vec![b"delta-item".to_vec()];
        v.extend([
            b"charlie-item".to_vec(),
            b"bravo-item".to_vec(),
            b"alpha-item".to_vec(),
        ]);
        v
    }
}

/// Opens `path` and pops everything, checking that every item returned is one of `expected`
/// in order; returns what came out and the first error.
fn read_back(path: &Path) -> Result<(Vec<Vec<u8>>, Option<DbError>), DbError> {
    let db = FileDb::open(path)?;
    let mut out = Vec::new();
    loop {
        match db.pop() {
            Ok(Some(x)) => out.push(x),
            Ok(None) => return Ok((out, None)),
            Err(e) => return Ok((out, Some(e))),
        }
    }
}

#[test]
fn truncation_at_every_offset_recovers_exactly_or_reports_damage() {
    let dir = TempDir::new("truncate");
    let good = dir.file("good.lifo");
    let expected = build(&good, true);
    let bytes = std::fs::read(&good).unwrap();
    let cut_path = dir.file("cut.lifo");
    let (mut exact, mut reported) = (0, 0);
    for cut in 0..=bytes.len() {
        std::fs::write(&cut_path, &bytes[..cut]).unwrap();
        match read_back(&cut_path) {
            // A zero-length file is a new, empty database.
            Ok((items, None)) if cut == 0 => assert!(items.is_empty()),
            // Fewer bytes than the magic: not a lifostore file, and left alone.
            Err(DbError::NotADatabase { .. }) if cut < 8 => {
                assert_eq!(std::fs::read(&cut_path).unwrap(), &bytes[..cut]);
                reported += 1;
            }
            Ok((items, None)) => {
                assert_eq!(items, expected, "cut at {cut}: wrong items");
                exact += 1;
            }
            Ok((items, Some(e))) => panic!("cut at {cut}: opened, then {e} after {items:?}"),
            Err(e) => {
                assert!(matches!(e, DbError::Corrupt { .. }), "cut at {cut}: {e}");
                assert!(e.to_string().contains("cut.lifo"), "{e}");
                reported += 1;
            }
        }
    }
    // Everything from the end of the live data on is garbage a pop never reads.
    assert!(
        exact > 0 && reported > 0,
        "exact {exact}, reported {reported}"
    );
}

#[test]
fn flipped_bytes_are_detected_never_returned() {
    let dir = TempDir::new("flip");
    for last_op_pop in [false, true] {
        let good = dir.file("good.lifo");
        let _ = std::fs::remove_file(&good);
        let expected = build(&good, last_op_pop);
        let bytes = std::fs::read(&good).unwrap();
        let flip_path = dir.file("flip.lifo");
        let data_end = bytes.len();
        let mut offsets: Vec<usize> = vec![0, 3, 7, 8, 12, 15];
        offsets.extend((512..544).step_by(3)); // slot 0
        offsets.extend((1024..1056).step_by(3)); // slot 1
        offsets.extend((4096..data_end).step_by(5)); // records: len, crc, op, data, trailer
        for &off in &offsets {
            let mut b = bytes.clone();
            b[off] ^= 0x5A;
            std::fs::write(&flip_path, &b).unwrap();
            match read_back(&flip_path) {
                Ok((items, err)) => {
                    // Whatever comes out is a correct item, in LIFO order, and nothing
                    // acknowledged is silently missing: either all of it comes out, or a
                    // Corrupt error stops the pops. One documented exception: a damaged slot
                    // of a *pop* is treated like a torn write, so the popped item comes back.
                    let mut allowed = expected.clone();
                    if last_op_pop && items.first().map(|x| x.as_slice()) == Some(b"delta-item") {
                        allowed.insert(0, b"delta-item".to_vec());
                    }
                    assert!(allowed.starts_with(&items), "flip at {off}: got {items:?}");
                    match err {
                        None => assert_eq!(items, allowed, "flip at {off}: items silently lost"),
                        Some(e) => {
                            assert!(matches!(e, DbError::Corrupt { .. }), "flip at {off}: {e}")
                        }
                    }
                }
                Err(e) => assert!(
                    matches!(e, DbError::Corrupt { .. } | DbError::NotADatabase { .. }),
                    "flip at {off}: {e}"
                ),
            }
        }
    }
}

#[test]
fn damage_below_intact_data_is_reported_then_salvaged() {
    let dir = TempDir::new("salvage");
    let path = dir.file("db.lifo");
    build(&path, true);
    let mut bytes = std::fs::read(&path).unwrap();
    // Damage the data of the oldest item ("alpha-item" starts right after its 16-byte head).
    bytes[4096 + 16 + 2] ^= 0xFF;
    std::fs::write(&path, &bytes).unwrap();
    let (items, err) = read_back(&path).unwrap();
    assert_eq!(
        items,
        vec![b"charlie-item".to_vec(), b"bravo-item".to_vec()]
    );
    let err = err.expect("the damaged item must be reported");
    assert!(
        err.to_string().contains("offset") || err.to_string().contains("byte"),
        "{err}"
    );
    // read_back popped two items; the damaged one is still there, and blocks further pops
    // until an explicit salvage.
    let report = FileDb::salvage(&path).unwrap();
    assert_eq!(report.kept, 0);
    assert!(report.dropped_bytes > 0);
    let db = FileDb::open(&path).unwrap();
    assert_eq!(db.pop().unwrap(), None);
}

#[test]
fn salvage_option_keeps_what_checks_out_when_the_tail_is_cut() {
    let dir = TempDir::new("salvage-open");
    let path = dir.file("db.lifo");
    build(&path, false);
    let bytes = std::fs::read(&path).unwrap();
    // Cut inside the newest record ("delta-item"): the three older ones are intact.
    std::fs::write(&path, &bytes[..bytes.len() - 5]).unwrap();
    assert!(matches!(FileDb::open(&path), Err(DbError::Corrupt { .. })));
    let db = FileDb::open_with(&path, FileDbOptions::default().salvage(true)).unwrap();
    let report = db.salvage_report().cloned().unwrap();
    assert_eq!(report.kept, 3);
    assert!(report.dropped_bytes > 0);
    assert_eq!(
        all(&db),
        vec![
            b"charlie-item".to_vec(),
            b"bravo-item".to_vec(),
            b"alpha-item".to_vec()
        ]
    );
}

#[test]
fn steady_push_pop_keeps_the_file_bounded() {
    let dir = TempDir::new("space");
    let path = dir.file("db.lifo");
    let db = FileDb::open_with(&path, FileDbOptions::default().shared(false)).unwrap();
    let item = vec![1u8; 4096];
    let mut max_len = 0;
    for round in 0..200 {
        let batch: Vec<&[u8]> = (0..(1 + round % 50)).map(|_| item.as_slice()).collect();
        db.push_batch(&batch).unwrap();
        max_len = max_len.max(std::fs::metadata(&path).unwrap().len());
        db.pop_batch(batch.len()).unwrap();
    }
    // Largest batch: 50 items of ~4 KiB = ~205 KB on top of the header.
    assert!(max_len < 300_000, "file grew to {max_len}");
    // After a big burst and drain, the file shrinks back.
    let big: Vec<&[u8]> = (0..2000).map(|_| item.as_slice()).collect();
    db.push_batch(&big).unwrap();
    assert!(std::fs::metadata(&path).unwrap().len() > 8_000_000);
    db.pop_batch(2000).unwrap();
    assert!(std::fs::metadata(&path).unwrap().len() < 1 << 20);
}

#[test]
fn threads_share_one_file_db() {
    let dir = TempDir::new("threads");
    let db = FileDb::open(dir.file("db.lifo")).unwrap();
    let popped = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for t in 0..4u32 {
            let (db, popped) = (&db, &popped);
            s.spawn(move || {
                for i in 0..50u32 {
                    db.push(&(t * 1000 + i).to_le_bytes()).unwrap();
                    if i % 2 == 0
                        && let Some(x) = db.pop().unwrap()
                    {
                        popped.lock().unwrap().push(x);
                    }
                }
            });
        }
    });
    let mut got = popped.into_inner().unwrap();
    got.extend(all(&db));
    got.sort();
    let before = got.len();
    got.dedup();
    assert_eq!(got.len(), before, "an item came out twice");
    assert_eq!(got.len(), 200);
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

/// The bytes of every file in `dir`, by name.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn foreign_files_of_any_size_are_never_written_with_or_without_salvage() {
    let dir = TempDir::new("foreign-any");
    // A fresh header page without its magic is a torn initialisation (opened and initialised
    // again); with one byte that initialisation never writes there, it is somebody else's.
    let mut stray = fresh_header_page(&TempDir::new("foreign-fresh"));
    stray[..8].fill(0);
    stray[3000] = 1;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "config.toml",
            b"[server]\nport = 8080\nname = 'x'\n".to_vec(),
        ),
        ("tiny", vec![7]),
        ("zeros", vec![0; 100]),
        ("zeros-4095", vec![0; 4095]),
        ("zeros-4097", vec![0; 4097]),
        ("x-4096", vec![b'x'; 4096]),
        ("header-with-a-stray-byte", stray),
        ("big.bin", vec![b'x'; 5000]),
        (
            "huge.bin",
            (0..200_000u32).map(|i| (i % 251) as u8).collect(),
        ),
    ];
    for (name, bytes) in &cases {
        let path = dir.file(name);
        std::fs::write(&path, bytes).unwrap();
        let before = snapshot(dir.path());
        for salvage in [false, true] {
            let opts = FileDbOptions::default().salvage(salvage);
            match FileDb::open_with(&path, opts) {
                Err(DbError::NotADatabase { path: p, .. }) => assert_eq!(p, path),
                other => panic!("{name} (salvage {salvage}): {other:?}"),
            }
            match FileDb::salvage(&path) {
                Err(e @ DbError::NotADatabase { .. }) => {
                    assert!(e.to_string().contains(name), "{e}")
                }
                other => panic!("{name}: salvage gave {other:?}"),
            }
            match Storage::builder().open_with(&path, FileDbOptions::default().salvage(true)) {
                Err(Error::Db(DbError::NotADatabase { .. })) => {}
                other => panic!("{name}: builder gave {other:?}"),
            }
        }
        assert_eq!(
            snapshot(dir.path()),
            before,
            "{name}: a foreign file was written"
        );
    }
}

#[test]
fn an_empty_file_is_initialised_as_an_empty_database() {
    let dir = TempDir::new("empty-file");
    let path = dir.file("empty.lifo");
    std::fs::write(&path, b"").unwrap();
    assert_eq!(FileDb::salvage(&path).unwrap(), SalvageReport::default());
    let db = FileDb::open(&path).unwrap();
    assert_eq!(db.len().unwrap(), 0);
    db.push(b"first").unwrap();
    drop(db);
    let db = FileDb::open(&path).unwrap();
    assert_eq!(db.pop().unwrap(), Some(b"first".to_vec()));
}

#[test]
fn salvage_writes_a_checked_copy_and_keeps_the_original() {
    let dir = TempDir::new("salvage-copy");
    let path = dir.file("q.lifo");
    build(&path, false);
    let mut damaged = std::fs::read(&path).unwrap();
    let len = damaged.len();
    damaged[len - 3] ^= 0xff; // the newest record's trailer
    std::fs::write(&path, &damaged).unwrap();
    assert!(matches!(FileDb::open(&path), Err(DbError::Corrupt { .. })));
    let report = FileDb::salvage(&path).unwrap();
    assert_eq!(report.kept, 3, "{report:?}");
    let original = report.original.clone().expect("the original is kept");
    assert_eq!(original.parent(), path.parent());
    assert!(
        original
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("q.lifo.damaged-")
    );
    assert_eq!(
        std::fs::read(&original).unwrap(),
        damaged,
        "the original is kept as it was"
    );
    let names: Vec<String> = snapshot(dir.path()).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names.len(),
        2,
        "only the database and its original remain: {names:?}"
    );
    let (items, err) = read_back(&path).unwrap();
    assert!(err.is_none());
    assert_eq!(
        items,
        vec![
            b"charlie-item".to_vec(),
            b"bravo-item".to_vec(),
            b"alpha-item".to_vec()
        ]
    );
}

#[test]
fn the_salvage_hint_can_be_followed_through_the_builder() {
    let dir = TempDir::new("salvage-hint");
    let path = dir.file("q.lifo");
    build(&path, true);
    let mut bytes = std::fs::read(&path).unwrap();
    let top = 4096 + 3 * 28 + b"alpha-itembravo-itemcharlie-item".len();
    bytes[top - 3] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let err = Storage::builder().open(&path).unwrap_err();
    let text = common::error_chain(&err);
    assert!(
        text.contains("salvage") && text.contains("open_with"),
        "{text}"
    );
    let storage = Storage::builder()
        .open_with(&path, FileDbOptions::default().salvage(true))
        .unwrap();
    let report = storage.db().salvage_report().cloned().expect("it salvaged");
    assert_eq!(report.kept, 2, "{report:?}");
    let t = lifostore::CancelToken::new();
    assert_eq!(storage.pop(&t).unwrap(), b"bravo-item");
    storage.close().unwrap();
}

#[test]
fn io_errors_name_the_path_and_the_operation_with_advice_that_fits() {
    let dir = TempDir::new("io-errors");
    let cases = [
        (dir.path().to_path_buf(), "directory"),
        (dir.file("missing/sub/q.lifo"), "does not exist"),
    ];
    for (path, advice) in cases {
        let err = FileDb::open(&path).unwrap_err();
        assert!(matches!(err, DbError::Io { op: "open", .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains(&*path.to_string_lossy()), "{text}");
        assert!(text.contains(advice), "{text}");
        assert!(
            !text.contains("os error"),
            "the source is not repeated: {text}"
        );
    }
}

#[test]
fn a_storage_refuses_at_push_what_its_file_db_could_never_store() {
    let dir = TempDir::new("limit-mismatch");
    let opts = FileDbOptions::default().max_item_len(100);
    let storage = Storage::builder()
        .max_item_len(1 << 20)
        .open_with(dir.file("q.lifo"), opts)
        .unwrap();
    let t = lifostore::CancelToken::new();
    match storage.push(&t, vec![0u8; 101]) {
        Err(Error::ItemTooLarge { len: 101, max: 100 }) => {}
        other => panic!("expected ItemTooLarge from push, got {other:?}"),
    }
    storage.push(&t, vec![1u8; 100]).unwrap();
    storage.flush(&t).unwrap();
    assert_eq!(storage.db().len().unwrap(), 1);
    storage.close().unwrap();
}

/// The header page a new database starts with, as initialisation writes it.
fn fresh_header_page(dir: &TempDir) -> Vec<u8> {
    let path = dir.file("fresh.lifo");
    drop(FileDb::open(&path).unwrap());
    let page = std::fs::read(&path).unwrap();
    assert_eq!(page.len(), 4096, "a new database is one header page");
    page
}

/// The header page version 1 started with (older builds), cut to `len` bytes, magic left out.
fn legacy_fresh_page_without_magic(len: usize) -> Vec<u8> {
    let mut page = vec![0u8; 4096];
    page[8..12].copy_from_slice(&1u32.to_le_bytes());
    let mut head = b"LIFOSTK\0".to_vec();
    head.extend_from_slice(&1u32.to_le_bytes());
    page[12..16].copy_from_slice(&crc32c(&head).to_le_bytes());
    page[1024..1032].copy_from_slice(&1u64.to_le_bytes());
    page[1032..1040].copy_from_slice(&4096u64.to_le_bytes());
    let crc = crc32c(&page[1024..1048]);
    page[1048..1052].copy_from_slice(&crc.to_le_bytes());
    page.truncate(len);
    page
}

/// Issue 26: initialisation writes the header page but its magic, syncs, then the magic. A
/// power loss or a full disk in between may leave any of the page's sectors written or not
/// (4096 zero bytes included), a prefix of it, or part of the magic: the file never held an
/// item, so open initialises it again instead of refusing it as `NotADatabase`.
#[test]
fn a_first_initialisation_cut_anywhere_is_initialised_again() {
    let dir = TempDir::new("torn-init");
    let fresh = fresh_header_page(&dir);
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    for kept in 0u32..256 {
        let mut bytes = vec![0u8; 4096];
        for s in (0..8).filter(|s| kept & (1 << s) != 0) {
            bytes[s * 512..(s + 1) * 512].copy_from_slice(&fresh[s * 512..(s + 1) * 512]);
        }
        bytes[..8].fill(0);
        cases.push((format!("sectors {kept:08b}"), bytes));
    }
    for cut in [8, 9, 12, 16, 100, 1030, 2048, 4095] {
        let mut bytes = vec![0u8; 4096];
        bytes[8..cut].copy_from_slice(&fresh[8..cut]);
        cases.push((format!("a write cut at byte {cut}"), bytes));
    }
    for kept in 1..8 {
        let mut bytes = fresh.clone();
        bytes[kept..8].fill(0);
        cases.push((format!("{kept} bytes of the magic"), bytes));
    }
    for len in [16, 1000, 4096] {
        let bytes = legacy_fresh_page_without_magic(len);
        cases.push((format!("an older build's page cut at {len}"), bytes));
    }
    let path = dir.file("torn.lifo");
    for (what, bytes) in cases {
        std::fs::write(&path, &bytes).unwrap();
        let db = FileDb::open(&path).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(db.len().unwrap(), 0, "{what}");
        db.push(b"first").unwrap();
        drop(db);
        let db = FileDb::open(&path).unwrap();
        assert_eq!(db.pop().unwrap(), Some(b"first".to_vec()), "{what}");
    }
}

/// Files an older build wrote (format versions 1 and 2, kept in `tests/fixtures`, see its
/// README) open with every item and lease, and are upgraded in place to version 3, which older
/// builds refuse: records of the old layout are read below the new ones.
#[test]
fn files_of_versions_1_and_2_are_read_and_upgraded_in_place() {
    let dir = TempDir::new("upgrade");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let v1 = dir.file("v1.lifo");
    std::fs::copy(fixtures.join("version1.stack"), &v1).unwrap();
    let db = FileDb::open(&v1).unwrap();
    assert_eq!(std::fs::read(&v1).unwrap()[8..12], 3u32.to_le_bytes());
    assert_eq!(
        db.len().unwrap(),
        5,
        "two batches rolled forward by the old rules"
    );
    db.push(b"new-1").unwrap();
    drop(db);
    let db = FileDb::open(&v1).unwrap();
    let names = ["new-1", "v1-c1", "v1-b2", "v1-b1", "v1-a2", "v1-a1"];
    assert_eq!(all(&db), names.map(|n| n.as_bytes().to_vec()));
    db.push_batch(&[b"new-2", b"new-3"]).unwrap();
    drop(db);
    let db = FileDb::open(&v1).unwrap();
    assert_eq!(all(&db), [b"new-3".to_vec(), b"new-2".to_vec()]);

    let v2 = dir.file("v2.lifo");
    std::fs::copy(fixtures.join("version2.stack"), &v2).unwrap();
    std::fs::copy(fixtures.join("version2.leases"), dir.file("v2.lifo.leases")).unwrap();
    let db = FileDb::open(&v2).unwrap();
    assert_eq!(std::fs::read(&v2).unwrap()[8..12], 3u32.to_le_bytes());
    assert_eq!(db.len().unwrap(), 4, "the leased items are not counted");
    db.ack(&[LeaseId(3145729)]).unwrap();
    assert!(matches!(
        db.ack(&[LeaseId(3145730)]),
        Err(DbError::LeaseExpired { count: 1 })
    ));
    let x4 = DbLease {
        id: LeaseId(3145728),
        item: b"v2-x4".to_vec(),
    };
    db.release(&[x4]).unwrap();
    let leased = db.pop_lease(1, std::time::Duration::from_secs(60)).unwrap();
    assert_eq!(leased[0].item, b"v2-x4");
    assert!(leased[0].id.0 > 3145730, "lease ids never repeat in a file");
    db.ack(&[leased[0].id]).unwrap();
    let names = ["v2-y1", "v2-x3", "v2-x2", "v2-x1"];
    assert_eq!(all(&db), names.map(|n| n.as_bytes().to_vec()));
}
