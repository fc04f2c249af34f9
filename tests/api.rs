//! The API's own promises (issue 10, item 4 and 5): builder settings do not depend on their
//! order, `try_pop` never waits for a push, and error messages do not repeat their source.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lifostore::testing::FaultyDb;
use lifostore::{CancelToken, Db, DbError, Error, MemDb, Storage};

mod common;
use common::{wait_until_blocked, within};

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

#[test]
fn messages_do_not_repeat_their_source() {
    let cases = [
        Error::Db(DbError::msg("disk on fire")),
        Error::Db(DbError::from(std::io::Error::other("disk on fire"))),
        Error::CloseIncomplete {
            unflushed: 3,
            waited: Duration::from_secs(1),
            source: DbError::msg("disk on fire"),
        },
        Error::NotYetDurable {
            why: lifostore::Unconfirmed::DbFailed,
            source: Some(DbError::msg("disk on fire")),
        },
        Error::DeadLettered(DbError::msg("disk on fire")),
    ];
    for err in cases {
        let top = err.to_string();
        assert!(!top.contains("disk on fire"), "{top:?} repeats its source");
        let chain = common::error_chain(&err);
        assert_eq!(chain.matches("disk on fire").count(), 1, "{chain}");
    }
    let closed = Error::Closed.to_string();
    assert!(
        !closed.contains("database"),
        "{closed:?} claims where leftover items are"
    );
}
