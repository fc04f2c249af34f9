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
    CancelToken, Db, DbError, Error, FileDb, FileDbError, FileDbOptions, SalvageReport, Storage,
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
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "config.toml",
            b"[server]\nport = 8080\nname = 'x'\n".to_vec(),
        ),
        ("tiny", vec![7]),
        ("zeros", vec![0; 100]),
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
    let top = 4096 + 3 * 20 + b"alpha-itembravo-itemcharlie-item".len();
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
