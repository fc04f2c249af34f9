//! The API's own promises (issue 10, item 4 and 5): builder settings do not depend on their
//! order, `try_pop` never waits for a push, and error messages do not repeat their source.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lifostore::testing::FaultyDb;
use lifostore::{CancelToken, Db, DbError, Error, MemDb, PushBatchError, Storage, TryPushError};

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
    // The reason at the top: errors that are their cause (Db), or whose cause is the news
    // (a refused item, a failed try_push or batch push).
    let io = || {
        DbError::io(
            "write",
            "/var/q.lifo",
            std::io::Error::other("disk on fire"),
        )
    };
    let at_the_top: Vec<Box<dyn std::error::Error>> = vec![
        Box::new(Error::Db(DbError::msg("disk on fire"))),
        Box::new(Error::DeadLettered(DbError::Rejected {
            reason: "disk on fire".into(),
        })),
        Box::new(TryPushError::Failed {
            item: vec![1],
            error: Error::Db(DbError::msg("disk on fire")),
        }),
        Box::new(PushBatchError {
            stored: 2,
            source: DbError::msg("disk on fire"),
        }),
    ];
    for err in &at_the_top {
        let top = err.to_string();
        assert!(top.contains("disk on fire"), "{top:?} hides its reason");
        let chain = common::error_chain(&**err);
        assert_eq!(chain.matches("disk on fire").count(), 1, "{chain}");
    }
    // The OS's words stay in the source; the top names the operation, the path and a fix.
    let with_os_source: Vec<Box<dyn std::error::Error>> = vec![
        Box::new(Error::Db(io())),
        Box::new(Error::from(std::io::Error::other("disk on fire"))),
        Box::new(TryPushError::Failed {
            item: vec![1],
            error: Error::Db(io()),
        }),
        Box::new(PushBatchError {
            stored: 0,
            source: io(),
        }),
        Box::new(Error::CloseIncomplete {
            unflushed: 3,
            waited: Duration::from_secs(1),
            source: DbError::msg("disk on fire"),
        }),
        Box::new(Error::NotYetDurable {
            why: lifostore::Unconfirmed::DbFailed,
            source: Some(DbError::msg("disk on fire")),
        }),
    ];
    for err in &with_os_source {
        let top = err.to_string();
        assert!(!top.contains("disk on fire"), "{top:?} repeats its source");
        let chain = common::error_chain(&**err);
        assert_eq!(chain.matches("disk on fire").count(), 1, "{chain}");
    }
    let closed = Error::Closed.to_string();
    assert!(
        !closed.contains("database"),
        "{closed:?} claims where leftover items are"
    );
}

#[test]
fn a_foreign_error_chain_is_spelled_out_once_in_other() {
    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("redis: connecting to redis://127.0.0.1:1/")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
    let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
    let err = Error::Db(DbError::other(Outer(refused)));
    assert_eq!(
        common::error_chain(&err),
        "the database failed: redis: connecting to redis://127.0.0.1:1/: refused"
    );
    // A foreign error that prints its source and returns it too: shown once.
    #[derive(Debug)]
    struct Loud(std::io::Error);
    impl std::fmt::Display for Loud {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "connecting: {}", self.0)
        }
    }
    impl std::error::Error for Loud {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
    let err = Error::Db(DbError::other(Loud(std::io::Error::other("refused"))));
    assert_eq!(err.to_string(), "the database failed: connecting: refused");
}
