//! Db-level leases on the embedded backends (MemDb, FileDb); the server backends run the same
//! contract in `tests/backends.rs`.

use std::time::Duration;

use lifostore::{Db, DbLeases, MemDb};

mod common;
use common::leases::lease_contract;

#[test]
fn memdb_keeps_the_lease_contract() {
    lease_contract(&MemDb::new(), Duration::from_millis(50));
}

/// A Db with only push and pop offers no leases (`Db::leases` is `None`): the storage leases
/// its items by popping them and holding them itself, as
/// `storage_leases::a_fallback_db_lease_is_held_by_the_storage` checks.
#[test]
fn a_db_without_native_leases_offers_none() {
    let db = MemDb::new().single_item_only();
    struct Plain<'a>(&'a MemDb);
    impl Db for Plain<'_> {
        fn push(&self, data: &[u8]) -> Result<(), lifostore::DbError> {
            self.0.push(data)
        }
        fn pop(&self) -> Result<Option<Vec<u8>>, lifostore::DbError> {
            self.0.pop()
        }
    }
    let plain = Plain(&db);
    assert!(plain.leases().is_none());
    assert_eq!(plain.capabilities(), lifostore::Capabilities::default());
    assert!(db.leases().is_some(), "MemDb keeps leases itself");
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("lifostore-leases-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn filedb_keeps_the_lease_contract() {
    let dir = temp_dir("contract");
    let db = lifostore::FileDb::open(dir.join("stack.lifo")).expect("open");
    lease_contract(&db, Duration::from_millis(50));
    std::fs::remove_dir_all(&dir).expect("clean up");
}

/// A held lease survives closing and reopening the file, stays hidden, and can be acked by
/// the new handle. The file is format version 3 (which has leases) from the start.
#[test]
fn filedb_leases_survive_reopen() {
    let dir = temp_dir("reopen");
    let path = dir.join("stack.lifo");
    let db = lifostore::FileDb::open(&path).expect("open");
    db.push_batch(&[b"a", b"b", b"c"]).expect("push");
    let leased = db.pop_lease(2, Duration::from_secs(60)).expect("lease");
    drop(db);
    let bytes = std::fs::read(&path).expect("read");
    assert_eq!(&bytes[8..12], &3u32.to_le_bytes(), "format version 3");
    let db = lifostore::FileDb::open(&path).expect("reopen");
    assert_eq!(db.len().expect("len"), 1, "leased items are not counted");
    db.ack(&[leased[0].id]).expect("ack after reopen");
    db.release(&leased[1..]).expect("release after reopen");
    assert_eq!(
        db.pop_batch(5).expect("pop"),
        vec![b"b".to_vec(), b"a".to_vec()]
    );
    std::fs::remove_dir_all(&dir).expect("clean up");
}

/// Child mode of the consumer kill loop: `<path>|<seed>`.
#[test]
fn lease_consumer_child() {
    let Ok(spec) = std::env::var(common::lease_crash::CHILD_ENV) else {
        return;
    };
    let (path, mode) = spec.rsplit_once('|').expect("path|seed or path|hold");
    let db = lifostore::FileDb::open(path).expect("open in child");
    common::lease_crash::child_main(Box::new(db), mode);
}

/// A lease whose holder process died comes back on top, above what was pushed meanwhile.
#[test]
fn filedb_lease_of_a_killed_process_comes_back_on_top() {
    if std::env::var_os(common::lease_crash::CHILD_ENV).is_some() {
        return;
    }
    let dir = temp_dir("holder");
    let path = dir.join("stack.lifo");
    let db = lifostore::FileDb::open(&path).expect("open");
    common::lease_crash::back_on_top_after_the_holder_died(&db, &path.display().to_string());
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn filedb_consumer_killed_in_a_loop_acks_each_item_once_or_keeps_it() {
    if std::env::var_os(common::lease_crash::CHILD_ENV).is_some() {
        return;
    }
    let dir = temp_dir("kill");
    let path = dir.join("stack.lifo");
    let db = lifostore::FileDb::open(&path).expect("open");
    let seed = lifostore_seed();
    let spec = path.display().to_string();
    let r = common::lease_crash::consumer_kill_loop(&db, &spec, 1000, 12, seed);
    println!(
        "FileDb consumer kill loop (seed {seed}): 12 kills, {} acked, {} left, {} redelivered \
         ({} after a release, the rest after a kill)",
        r.acked, r.left, r.redelivered, r.after_release
    );
    assert!(r.acked > 0, "the children acked nothing: {r:?}");
    std::fs::remove_dir_all(&dir).expect("clean up");
}

/// The seed for randomized tests: LIFOSTORE_SEED, or the clock (printed by callers).
fn lifostore_seed() -> u64 {
    std::env::var("LIFOSTORE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
}

/// Figures: `cargo test --release --test leases -- --ignored --nocapture lease_rates`.
#[test]
#[ignore = "figures: run on demand with --release"]
fn lease_rates() {
    let dir = temp_dir("rates");
    let file = lifostore::FileDb::open(dir.join("rates.lifo")).expect("open");
    let mem = MemDb::new();
    for (name, db) in [("MemDb", &mem as &dyn Db), ("FileDb", &file)] {
        for batch in [1usize, 64] {
            let rounds = if batch == 1 { 200 } else { 20 };
            let (pop, lease) = common::leases::lease_rates(db, batch, rounds);
            println!(
                "{name} batch {batch:>2}: pop {pop:>10.0}/s, lease+ack {lease:>10.0}/s, ratio {:.2}",
                lease / pop
            );
        }
    }
    std::fs::remove_dir_all(&dir).expect("clean up");
}

/// A damaged lease log is reported; salvage puts every leased item it can read back on top,
/// so salvage loses no leased item, and keeps the old log beside the file.
#[test]
fn filedb_salvage_puts_leased_items_back() {
    let dir = temp_dir("salvage");
    let path = dir.join("stack.lifo");
    let db = lifostore::FileDb::open(&path).expect("open");
    db.push_batch(&[b"a", b"b", b"c"]).expect("push");
    let first = db.pop_lease(1, Duration::from_secs(60)).expect("lease c");
    db.pop_lease(1, Duration::from_secs(60)).expect("lease b");
    db.ack(&[first[0].id]).expect("ack c");
    drop(db);
    let log = dir.join("stack.lifo.leases");
    let bytes = std::fs::read(&log).expect("read the log");
    std::fs::write(&log, &bytes[..bytes.len() - 1]).expect("cut the log");
    let err = lifostore::FileDb::open(&path).expect_err("a cut log is damage");
    assert!(err.to_string().contains("salvage"), "{err}");
    let options = lifostore::FileDbOptions::default().salvage(true);
    let db = lifostore::FileDb::open_with(&path, options).expect("salvage");
    // The ack entry was cut off, so c's lease counts as held too: both come back.
    assert_eq!(db.salvage_report().map(|r| r.kept), Some(3));
    assert_eq!(
        db.pop_batch(5).expect("pop"),
        vec![b"b".to_vec(), b"c".to_vec(), b"a".to_vec()]
    );
    let kept_log = std::fs::read_dir(&dir)
        .expect("list")
        .filter_map(Result::ok)
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("stack.lifo.leases.damaged-")
        });
    assert!(kept_log, "the old lease log is kept beside the file");
    std::fs::remove_dir_all(&dir).expect("clean up");
}

/// A process that knows it is the file's only consumer can take its dead predecessor's
/// leases back at open instead of waiting for their deadlines.
#[test]
fn filedb_can_return_every_lease_at_open() {
    let dir = temp_dir("return-on-open");
    let path = dir.join("stack.lifo");
    let db = lifostore::FileDb::open(&path).expect("open");
    db.push_batch(&[b"a", b"b", b"c"]).expect("push");
    let leased = db.pop_lease(2, Duration::from_secs(3600)).expect("lease");
    db.push(b"d").expect("push above the leases");
    drop(db);
    let db = lifostore::FileDb::open(&path).expect("plain reopen");
    assert_eq!(
        db.len().expect("len"),
        2,
        "a plain open leaves the leases held"
    );
    drop(db);
    let options = lifostore::FileDbOptions::default().return_leases_on_open(true);
    let db = lifostore::FileDb::open_with(&path, options).expect("reopen");
    assert_eq!(
        db.pop_batch(5).expect("pop"),
        vec![b"c".to_vec(), b"b".to_vec(), b"d".to_vec(), b"a".to_vec()],
        "the leases come back on top, newest first as they were"
    );
    let ids: Vec<_> = leased.iter().map(|l| l.id).collect();
    assert!(matches!(
        db.ack(&ids),
        Err(lifostore::DbError::LeaseExpired { count: 2 })
    ));
    std::fs::remove_dir_all(&dir).expect("clean up");
}
