//! The API's own behaviour, beside the promises (tests/contract/): builder settings do not
//! depend on their order, the `try_` forms never wait for a push, a batch of zero, `try_iter`,
//! and the sizes (`len`, `len_in_memory`, `is_empty`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use lifostore::testing::FaultyDb;
use lifostore::{CancelToken, Db, Error, FileDb, MemDb, Storage};

mod common;
use common::{TempDir, id_of, item, wait_until_blocked, within};

/// How long `close` keeps retrying a Db that is down, for a builder configured by `configure`.
fn close_wait(
    configure: impl FnOnce(
        lifostore::StorageBuilder<FaultyDb<MemDb>>,
    ) -> lifostore::StorageBuilder<FaultyDb<MemDb>>,
) -> Duration {
    let storage = configure(Storage::builder())
        .build(FaultyDb::new(MemDb::new(), 1))
        .unwrap();
    storage.push(&CancelToken::new(), vec![1]).unwrap();
    storage.db().set_down(true);
    match storage.close() {
        Err(Error::CloseIncomplete { waited, .. }) => {
            storage.db().set_down(false);
            waited
        }
        other => panic!("close over a Db that is down returned {other:?}"),
    }
}

#[test]
fn close_timeout_holds_whichever_order_it_is_set_in() {
    let (short, long) = (Duration::from_millis(200), Duration::from_secs(20));
    let before = close_wait(|b| b.close_timeout(short).max_unflushed_age(long));
    let after = close_wait(|b| b.max_unflushed_age(long).close_timeout(short));
    for waited in [before, after] {
        assert!(waited >= short, "close gave up early: {waited:?}");
        assert!(
            waited < long / 2,
            "close_timeout was reset by max_unflushed_age: {waited:?}"
        );
    }
}

#[test]
fn max_item_len_holds_whichever_order_it_is_set_in() {
    let t = CancelToken::new();
    for storage in [
        Storage::builder().max_item_len(10).max_buffered_bytes(100),
        Storage::builder().max_buffered_bytes(100).max_item_len(10),
    ] {
        let storage = storage.build(MemDb::new()).unwrap();
        storage.push(&t, vec![0; 10]).unwrap();
        assert!(matches!(
            storage.push(&t, vec![0; 11]),
            Err(Error::ItemTooLarge { len: 11, max: 10 })
        ));
    }
    // And max_item_len never exceeds max_buffered_bytes, in either order.
    for storage in [
        Storage::builder()
            .max_item_len(1000)
            .max_buffered_bytes(100),
        Storage::builder()
            .max_buffered_bytes(100)
            .max_item_len(1000),
    ] {
        let storage = storage.build(MemDb::new()).unwrap();
        assert!(matches!(
            storage.push(&t, vec![0; 101]),
            Err(Error::ItemTooLarge { len: 101, max: 100 })
        ));
    }
}

#[test]
fn try_pop_on_an_empty_storage_does_not_wait_for_a_push() {
    let storage = Arc::new(Storage::new(MemDb::new()).unwrap());
    let t = CancelToken::new();
    // A pop blocked on the empty storage, waiting for a push that never comes.
    let blocked = {
        let (s, t) = (storage.clone(), t.clone());
        std::thread::spawn(move || s.pop(&t))
    };
    wait_until_blocked(&t);
    let s = storage.clone();
    assert_eq!(
        within(Duration::from_secs(10), move || s.try_pop()).unwrap(),
        None
    );
    t.cancel();
    assert!(matches!(blocked.join().unwrap(), Err(Error::Cancelled)));
}

#[test]
fn try_pop_waits_only_for_db_calls_under_way() {
    // A Db pop of another caller is under way (100 ms per call): try_pop waits for its answer
    // and its own Db call, not for a push, and finds the Db's one item taken.
    let storage = Arc::new(Storage::new(MemDb::with_latency(Duration::from_millis(100))).unwrap());
    storage.db().push(b"only").unwrap();
    let t = CancelToken::new();
    let popper = {
        let (s, t) = (storage.clone(), t.clone());
        std::thread::spawn(move || s.pop(&t))
    };
    while storage.stats().db_pop_calls == 0 {
        std::thread::yield_now();
    }
    let s = storage.clone();
    let started = Instant::now();
    let got = within(Duration::from_secs(10), move || s.try_pop()).unwrap();
    assert_eq!(got, None, "the popper under way had the only item");
    assert_eq!(popper.join().unwrap().unwrap(), b"only");
    println!("try_pop returned after {:?}", started.elapsed());
}

/// A storage whose flusher never writes on its own during a test (long window, big buffer).
fn quiet(db: MemDb) -> Storage<MemDb> {
    Storage::builder()
        .max_unflushed_age(Duration::from_secs(600))
        .build(db)
        .unwrap()
}

#[test]
fn pop_batch_of_zero_returns_at_once_and_takes_nothing() {
    let s = quiet(MemDb::new());
    let t = CancelToken::new();
    s.push(&t, item(1)).unwrap();
    let ended = CancelToken::new();
    ended.cancel();
    assert!(s.pop_batch(&ended, 0).unwrap().is_empty());
    assert!(s.try_pop_batch(0).unwrap().is_empty());
    assert_eq!(s.len_in_memory(), 1);
}

#[test]
fn try_iter_drains_memory_and_db_without_waiting() {
    let s = quiet(MemDb::new());
    let t = CancelToken::new();
    s.push_batch(&t, (1..=2).map(item)).unwrap();
    s.flush(&t).unwrap();
    s.push(&t, item(3)).unwrap();
    let got: Vec<u64> = s.try_iter().map(|x| id_of(&x.unwrap())).collect();
    assert_eq!(got, vec![3, 2, 1]);
    assert_eq!(s.try_iter().count(), 0);
}

// ---- sizes ----------------------------------------------------------------------------------

#[test]
fn sizes_count_memory_and_db() {
    let s = quiet(MemDb::new());
    let t = CancelToken::new();
    assert_eq!(s.is_empty().unwrap(), Some(true));
    s.push_batch(&t, (1..=3).map(item)).unwrap();
    s.flush(&t).unwrap();
    s.push(&t, item(4)).unwrap();
    assert_eq!(s.len_in_memory(), 1);
    assert_eq!(s.len().unwrap(), Some(4));
    assert_eq!(s.stats().db_len, Some(3), "a quiet count is kept");
    s.pop_batch(&t, 2).unwrap(); // 4, from memory
    s.pop_batch(&t, 2).unwrap(); // 3, 2 from the Db
    assert_eq!(s.len().unwrap(), Some(1));
    assert_eq!(s.stats().db_len, Some(1));
}

#[test]
fn sizes_over_a_file_db_and_an_uncountable_db() {
    let dir = TempDir::new("batch-sizes");
    let path = dir.file("q.lifo");
    {
        let s = Storage::open(&path).unwrap();
        s.push_batch(&CancelToken::new(), (0..5).map(item)).unwrap();
        s.close().unwrap();
    }
    let s = Storage::builder()
        .build(FileDb::open(&path).unwrap())
        .unwrap();
    assert_eq!(s.stats().db_len, None, "not known before it is asked");
    assert_eq!(s.len().unwrap(), Some(5));
    assert_eq!(s.is_empty().unwrap(), Some(false));

    /// A Db that cannot count (the trait's default).
    struct Uncountable(MemDb);
    impl Db for Uncountable {
        fn push(&self, data: &[u8]) -> Result<(), lifostore::DbError> {
            self.0.push(data)
        }
        fn pop(&self) -> Result<Option<Vec<u8>>, lifostore::DbError> {
            self.0.pop()
        }
    }
    let s = Storage::new(Uncountable(MemDb::new())).unwrap();
    assert_eq!(s.len().unwrap(), None);
    assert_eq!(s.is_empty().unwrap(), None);
    s.push(&CancelToken::new(), item(1)).unwrap();
    assert_eq!(s.is_empty().unwrap(), Some(false));
}
