//! Promise 9, durable file default: `FileDb` needs nothing but std and a path; after a crash at
//! any instant it opens, keeps every item whose write returned `Ok` and was not popped, and
//! never returns a partial or corrupted item; a damaged or foreign file gets a clear error
//! naming the file and the damage, and intact data is never silently dropped.
//!
//! Here: reopening, truncation at every offset, flipped bytes, damage and salvage, foreign
//! files, space reclaim. Deeper: the SIGKILL loop (`tests/file_db_crash.rs`) and FileDb's unit
//! tests (`src/db/file/`).

use std::path::Path;

use lifostore::{
    CancelToken, Db, DbError, DbLease, DbLeases, Error, FileDb, FileDbError, FileDbOptions,
    LeaseId, SalvageReport, Storage,
};

use crate::common::TempDir;

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
fn default_item_limit_is_at_least_64_mib() {
    assert!(FileDbOptions::default().max_item_len >= 64 << 20);
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
            Err(DbError::File(FileDbError::NotADatabase { .. })) if cut < 8 => {
                assert_eq!(std::fs::read(&cut_path).unwrap(), &bytes[..cut]);
                reported += 1;
            }
            Ok((items, None)) => {
                assert_eq!(items, expected, "cut at {cut}: wrong items");
                exact += 1;
            }
            Ok((items, Some(e))) => panic!("cut at {cut}: opened, then {e} after {items:?}"),
            Err(e) => {
                assert!(
                    matches!(e, DbError::File(FileDbError::Corrupt { .. })),
                    "cut at {cut}: {e}"
                );
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
                            assert!(
                                matches!(e, DbError::File(FileDbError::Corrupt { .. })),
                                "flip at {off}: {e}"
                            )
                        }
                    }
                }
                Err(e) => assert!(
                    matches!(
                        e,
                        DbError::File(FileDbError::Corrupt { .. })
                            | DbError::File(FileDbError::NotADatabase { .. })
                    ),
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
    assert!(matches!(
        FileDb::open(&path),
        Err(DbError::File(FileDbError::Corrupt { .. }))
    ));
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
                Err(DbError::File(FileDbError::NotADatabase { path: p, .. })) => {
                    assert_eq!(p, path)
                }
                other => panic!("{name} (salvage {salvage}): {other:?}"),
            }
            match FileDb::salvage(&path) {
                Err(e @ DbError::File(FileDbError::NotADatabase { .. })) => {
                    assert!(e.to_string().contains(name), "{e}")
                }
                other => panic!("{name}: salvage gave {other:?}"),
            }
            match Storage::builder().open_with(&path, FileDbOptions::default().salvage(true)) {
                Err(Error::Db(DbError::File(FileDbError::NotADatabase { .. }))) => {}
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
    assert!(matches!(
        FileDb::open(&path),
        Err(DbError::File(FileDbError::Corrupt { .. }))
    ));
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
    let text = crate::common::error_chain(&err);
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

/// Initialisation writes the header page but its magic, syncs, then the magic. A
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
