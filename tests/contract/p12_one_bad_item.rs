//! Promise 12, one bad item never stops the rest: an item the Db refuses for good is refused
//! at `push` when the Db's limits say so, or set aside (a dead-letter hook, a counter in
//! `Stats`); it is never retried forever, and every other item keeps flowing within the
//! window.
//!
//! Here: poison isolation in atomic and partial batches, the hook, set-aside bounds, the
//! window for the other items, limits refused at `push` (through the test wrappers too).
//! Deeper: the loom model `poison_isolation_racing_a_pop_keeps_every_item_once`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lifostore::testing::{FaultyDb, StampedDb};
use lifostore::{
    CancelToken, Db, DbError, DeadLetter, Error, FileDb, FileDbOptions, MemDb, PushBatchError,
    Storage, TryPushError,
};

use crate::common::{TempDir, item};

fn all(db: &FileDb) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(x) = db.pop().unwrap() {
        out.push(x);
    }
    out
}

/// A token with a deadline, so a storage that retried a poisoned batch forever fails the test
/// instead of hanging it.
fn token() -> CancelToken {
    CancelToken::new().with_timeout(Duration::from_secs(20))
}

/// Items whose id is a multiple of 7 are poison.
fn poison(data: &[u8]) -> bool {
    data.len() == 8 && u64::from_le_bytes(data.try_into().unwrap_or([0; 8])) % 7 == 0
}

fn ids(items: &[Vec<u8>]) -> Vec<u64> {
    items
        .iter()
        .map(|x| u64::from_le_bytes(x.as_slice().try_into().expect("8-byte item")))
        .collect()
}

/// Pushes 1..=100 (poison: 7, 14, ..., 98) through a storage over a FaultyDb that refuses
/// poison, flushes, and checks the Db holds exactly the rest, in push order.
fn isolates_poison(prefix_stored: bool) {
    let db = FaultyDb::new(MemDb::new(), 3).reject_items(poison, prefix_stored);
    let storage = Storage::builder()
        .max_unflushed_age(Duration::from_millis(200))
        .max_batch(32)
        .build(db)
        .unwrap();
    let t = token();
    for i in 1..=100 {
        storage.push(&t, item(i)).unwrap();
    }
    storage.flush(&t).unwrap();
    let stored = ids(&storage.db().inner().snapshot());
    let want: Vec<u64> = (1..=100).filter(|i| i % 7 != 0).collect();
    assert_eq!(stored, want, "everything else stored once, in push order");
    let letters = storage.take_dead_letters();
    assert_eq!(
        ids(&letters.iter().map(|l| l.item.clone()).collect::<Vec<_>>()),
        (1..=100).filter(|i| i % 7 == 0).collect::<Vec<u64>>()
    );
    assert!(letters.iter().all(|l| l.error.is_permanent()));
    let stats = storage.stats();
    assert_eq!(stats.dead_letters, 14, "{stats:?}");
    assert_eq!(stats.dead_letters_held, 0, "taken above");
    assert_eq!(stats.items_flushed, 86, "{stats:?}");
    // One call per batch of 32, plus at most log2(32) + 2 per poison item: never one call per
    // item (100), nor a retry loop.
    assert!(stats.db_push_calls <= 4 + 14 * 7, "{stats:?}");
    // The storage keeps accepting and flushing pushes afterwards.
    storage.push(&t, item(1000)).unwrap();
    storage.flush(&t).unwrap();
    assert_eq!(storage.pop(&t).unwrap(), item(1000));
    storage.close().unwrap();
}

/// A user's Db over a FileDb that does not state the file's item limit: the storage accepts
/// items the file will refuse, as a Db whose limit is unknown would.
struct Unstated(FileDb);

impl Db for Unstated {
    fn push(&self, data: &[u8]) -> Result<(), DbError> {
        self.0.push(data)
    }
    fn pop(&self) -> Result<Option<Vec<u8>>, DbError> {
        self.0.pop()
    }
    fn push_batch(&self, items: &[&[u8]]) -> Result<(), PushBatchError> {
        self.0.push_batch(items)
    }
}

fn check_zero_length_and_max_len<D: Db + 'static>(storage: Storage<D>, max: usize) {
    let t = CancelToken::new();
    storage.push(&t, Vec::new()).unwrap();
    storage.push(&t, vec![7; max]).unwrap();
    match storage.push(&t, vec![7; max + 1]) {
        Err(Error::ItemTooLarge { len, max: m }) => assert_eq!((len, m), (max + 1, max)),
        other => panic!("expected ItemTooLarge, got {other:?}"),
    }
    assert!(matches!(
        storage.push(&t, vec![0; 10 * max]),
        Err(Error::ItemTooLarge { .. })
    ));
    assert_eq!(storage.stats().pushes, 2, "a too large item was stored");
    // Through the Db and back: the empty item stays an empty item, not "no item".
    storage.flush(&t).unwrap();
    assert_eq!(storage.stats().items_flushed, 2);
    assert_eq!(storage.pop(&t).unwrap(), vec![7; max]);
    assert_eq!(storage.pop(&t).unwrap(), Vec::<u8>::new());
    assert_eq!(storage.try_pop().unwrap(), None);
    storage.close().unwrap();
}

#[test]
fn a_poison_item_in_an_atomic_batch_is_isolated_and_the_rest_stored_in_order() {
    isolates_poison(false);
}

#[test]
fn a_poison_item_after_a_stored_prefix_is_isolated_and_the_rest_stored_in_order() {
    isolates_poison(true);
}

#[test]
fn the_dead_letter_hook_receives_each_poison_item_once() {
    let got: Arc<Mutex<Vec<DeadLetter>>> = Arc::default();
    let sink = Arc::clone(&got);
    let db = FaultyDb::new(MemDb::new(), 5).reject_items(poison, false);
    let storage = Storage::builder()
        .dead_letter(move |letter| sink.lock().unwrap().push(letter))
        .build(db)
        .unwrap();
    let t = token();
    for i in 1..=30 {
        storage.push(&t, item(i)).unwrap();
    }
    storage.flush(&t).unwrap();
    let letters = got.lock().unwrap().clone();
    assert_eq!(
        ids(&letters.iter().map(|l| l.item.clone()).collect::<Vec<_>>()),
        vec![7, 14, 21, 28]
    );
    assert!(matches!(letters[0].error, DbError::Rejected { .. }));
    assert!(storage.take_dead_letters().is_empty(), "the hook took them");
    assert_eq!(storage.stats().dead_letters, 4);
    storage.close().unwrap();
}

#[test]
fn a_panicking_hook_leaves_its_items_aside() {
    lifostore::testing::quiet_injected_panics();
    let db = FaultyDb::new(MemDb::new(), 5).reject_items(poison, false);
    let storage = Storage::builder()
        .dead_letter(|_| panic!("{}: hook", lifostore::testing::INJECTED_PANIC))
        .build(db)
        .unwrap();
    let t = token();
    for i in 1..=10 {
        storage.push(&t, item(i)).unwrap();
    }
    storage.flush(&t).unwrap();
    let kept = storage.take_dead_letters();
    assert_eq!(
        ids(&kept.iter().map(|l| l.item.clone()).collect::<Vec<_>>()),
        vec![7]
    );
    assert_eq!(storage.db().inner().len(), 9);
    storage.close().unwrap();
}

#[test]
fn poison_kept_aside_is_bounded() {
    let db = FaultyDb::new(MemDb::new(), 5).reject_items(poison, false);
    let storage = Storage::builder().max_dead_letters(2).build(db).unwrap();
    let t = token();
    for i in 1..=35 {
        storage.push(&t, item(i)).unwrap(); // poison: 7 14 21 28 35
    }
    storage.flush(&t).unwrap();
    let stats = storage.stats();
    assert_eq!(
        (
            stats.dead_letters,
            stats.dead_letters_held,
            stats.dead_letters_dropped
        ),
        (5, 2, 3),
        "{stats:?}"
    );
    let kept = storage.take_dead_letters();
    assert_eq!(
        ids(&kept.iter().map(|l| l.item.clone()).collect::<Vec<_>>()),
        vec![28, 35]
    );
    storage.close().unwrap();
}

#[test]
fn poison_never_blocks_the_window_for_the_other_items() {
    // Without isolation the flusher retried the poisoned batch forever and, one window later,
    // every push was refused. Now pushes keep flowing and reach the Db within the window.
    let window = Duration::from_millis(100);
    let db = FaultyDb::new(MemDb::new(), 9).reject_items(poison, false);
    let storage = Storage::builder()
        .max_unflushed_age(window)
        .build(db)
        .unwrap();
    let t = token();
    let started = Instant::now();
    let mut i = 1;
    while started.elapsed() < window * 4 {
        storage
            .push(&t, item(i))
            .expect("pushes are never refused because of poison");
        i += 1;
        std::thread::sleep(Duration::from_millis(1));
    }
    let stats = storage.stats();
    assert!(stats.db_failing_for.is_none(), "{stats:?}");
    assert!(stats.dead_letters > 0, "{stats:?}");
    storage.close().unwrap();
    let stats = storage.stats();
    let stored = storage.db().inner().len() as u64;
    assert_eq!(stored + stats.dead_letters_held as u64, i - 1);
}

#[test]
fn a_real_file_db_limit_mismatch_is_isolated_not_retried_forever() {
    let dir = TempDir::new("poison-file");
    let file = FileDb::open_with(
        dir.file("q.lifo"),
        FileDbOptions::default().max_item_len(64),
    )
    .unwrap();
    let storage = Storage::builder()
        .max_item_len(1 << 20)
        .build(Unstated(file))
        .unwrap();
    let t = token();
    storage.push(&t, b"small-1".to_vec()).unwrap();
    storage.push(&t, vec![b'x'; 1000]).unwrap(); // accepted: the Db stated no limit
    storage.push(&t, b"small-2".to_vec()).unwrap();
    storage.flush(&t).unwrap();
    let letters = storage.take_dead_letters();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].item.len(), 1000);
    assert!(matches!(
        letters[0].error,
        DbError::ItemTooLarge { len: 1000, max: 64 }
    ));
    storage.close().unwrap();
    let file = &storage.db().0;
    assert_eq!(file.pop().unwrap(), Some(b"small-2".to_vec()));
    assert_eq!(file.pop().unwrap(), Some(b"small-1".to_vec()));
    assert_eq!(file.pop().unwrap(), None);
}

#[test]
fn the_same_mismatch_through_file_db_directly_is_refused_at_push() {
    let dir = TempDir::new("poison-file-direct");
    let storage = Storage::builder()
        .max_item_len(1 << 20)
        .open_with(
            dir.file("q.lifo"),
            FileDbOptions::default().max_item_len(64),
        )
        .unwrap();
    match storage.push(&token(), vec![b'x'; 1000]) {
        Err(Error::ItemTooLarge { len: 1000, max: 64 }) => {}
        other => panic!("{other:?}"),
    }
    storage.close().unwrap();
}

/// The test wrappers forward what the Db states about itself in one value
/// (`Db::capabilities`), so a limit of the wrapped Db holds through them: a `FaultyDb` (and a
/// `StampedDb`) over a FileDb that stores at most 64 bytes per item makes the storage refuse a
/// longer item at `push`, instead of accepting an item every batch write would refuse.
#[test]
fn wrappers_keep_the_wrapped_file_dbs_item_limit() {
    let dir = TempDir::new("poison-wrapped-limit");
    let options = FileDbOptions::default().max_item_len(64);
    let file = FileDb::open_with(dir.file("faulty.lifo"), options.clone()).unwrap();
    let storage = Storage::new(FaultyDb::new(file, 7)).unwrap();
    match storage.push(&token(), vec![b'x'; 65]) {
        Err(Error::ItemTooLarge { len: 65, max: 64 }) => {}
        other => panic!("FaultyDb over a 64-byte FileDb: {other:?}"),
    }
    storage.push(&token(), vec![b'x'; 64]).unwrap();
    storage.close().unwrap();
    assert_eq!(storage.db().inner().len().unwrap(), 1);

    let file = FileDb::open_with(dir.file("stamped.lifo"), options).unwrap();
    let storage = Storage::new(StampedDb::new(file)).unwrap();
    assert!(matches!(
        storage.try_push(vec![b'x'; 65]),
        Err(TryPushError::Failed {
            error: Error::ItemTooLarge { max: 64, .. },
            ..
        })
    ));
    storage.close().unwrap();
}

#[test]
fn zero_length_items_and_items_at_and_past_max_item_len() {
    check_zero_length_and_max_len(
        Storage::builder()
            .max_item_len(16)
            .build(MemDb::new())
            .unwrap(),
        16,
    );
    let dir = TempDir::new("bad-input");
    let db = FileDb::open(dir.file("items.lifo")).unwrap();
    check_zero_length_and_max_len(
        Storage::builder().max_item_len(4096).build(db).unwrap(),
        4096,
    );
    // max_buffered_bytes lowers max_item_len to fit.
    let s = Storage::builder()
        .max_buffered_bytes(100)
        .build(MemDb::new())
        .unwrap();
    assert!(matches!(
        s.push(&CancelToken::new(), vec![0; 101]),
        Err(Error::ItemTooLarge { len: 101, max: 100 })
    ));
    s.push(&CancelToken::new(), vec![0; 100]).unwrap();
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
fn a_durable_item_the_db_refuses_for_good_is_dead_lettered() {
    let db = FaultyDb::new(MemDb::new(), 1).reject_items(|x| x == item(9), false);
    let s = Storage::builder().build(db).unwrap();
    let t = CancelToken::new();
    s.push(&t, item(1)).unwrap();
    assert!(matches!(
        s.push_durable(&t, item(9)),
        Err(Error::DeadLettered(_))
    ));
    s.push_durable(&t, item(2)).unwrap();
    assert_eq!(s.db().inner().snapshot(), vec![item(1), item(2)]);
    let letters = s.take_dead_letters();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].item, item(9));
}
