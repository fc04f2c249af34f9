//! Bad input to the public API (promises 2, 7, 8): zero-length items, items at and past
//! `max_item_len`, tokens that already ended, calls after close, close twice, close and drop
//! while other threads are blocked, and a Db that panics. Each case gets its documented error,
//! nothing hangs (blocking parts run under a watchdog), nothing panics, nothing is lost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lifostore::testing::{FaultyDb, INJECTED_PANIC, quiet_injected_panics};
use lifostore::{CancelReason, CancelToken, Db, DbError, Error, FileDb, MemDb, Storage};

mod common;
use common::{TempDir, item, sorted_ids, wait_until_blocked, within};

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
fn ended_tokens_return_their_reason_with_no_side_effect() {
    let storage = Storage::new(MemDb::new()).unwrap();
    let live = CancelToken::new();
    let cancelled = CancelToken::new();
    cancelled.cancel();
    let parent = CancelToken::new();
    let child_of_cancelled = parent.child().with_timeout(Duration::from_secs(60));
    parent.cancel();
    let expired = CancelToken::new().with_deadline(Instant::now() - Duration::from_millis(1));
    let zero = CancelToken::new().with_timeout(Duration::ZERO);
    // A token whose deadline passed and that was cancelled afterwards keeps the first reason.
    let expired_then_cancelled = CancelToken::new().with_timeout(Duration::from_millis(1));
    std::thread::sleep(Duration::from_millis(5));
    expired_then_cancelled.cancel();
    let ended = [
        (&cancelled, CancelReason::Cancelled),
        (&child_of_cancelled, CancelReason::Cancelled),
        (&expired, CancelReason::DeadlineExceeded),
        (&zero, CancelReason::DeadlineExceeded),
        (&expired_then_cancelled, CancelReason::DeadlineExceeded),
    ];
    storage.push(&live, item(1)).unwrap();
    for (token, reason) in ended {
        assert_eq!(token.reason(), Some(reason));
        let want = |r: &Error| match reason {
            CancelReason::Cancelled => matches!(r, Error::Cancelled),
            CancelReason::DeadlineExceeded => matches!(r, Error::DeadlineExceeded),
        };
        let e = storage.push(token, item(2)).unwrap_err();
        assert!(want(&e), "push: {e:?}");
        let e = storage.pop(token).unwrap_err();
        assert!(want(&e), "pop: {e:?}");
        let e = storage.flush(token).unwrap_err();
        assert!(want(&e), "flush: {e:?}");
    }
    let stats = storage.stats();
    assert_eq!(
        (stats.pushes, stats.pops, stats.items_flushed),
        (1, 0, 0),
        "an ended call had a side effect: {stats:?}"
    );
    assert!(storage.db().is_empty(), "an ended flush wrote");
    assert_eq!(
        storage.pop(&live).unwrap(),
        item(1),
        "an ended pop took the item"
    );
    // An ended pop also takes nothing from the Db.
    storage.push(&live, item(3)).unwrap();
    storage.flush(&live).unwrap();
    assert!(matches!(storage.pop(&cancelled), Err(Error::Cancelled)));
    assert_eq!(storage.db().len(), 1);
    assert_eq!(storage.db().calls().pop_calls, 0);
    storage.close().unwrap();
}

#[test]
fn calls_after_close_return_closed_and_close_is_idempotent() {
    let storage = Storage::new(MemDb::new()).unwrap();
    let t = CancelToken::new();
    storage.push(&t, item(1)).unwrap();
    storage.close().unwrap();
    storage.close().unwrap();
    assert!(matches!(storage.push(&t, item(2)), Err(Error::Closed)));
    assert!(matches!(storage.pop(&t), Err(Error::Closed)));
    assert!(matches!(storage.try_pop(), Err(Error::Closed)));
    assert!(matches!(storage.flush(&t), Err(Error::Closed)));
    storage.close().unwrap();
    assert_eq!(
        sorted_ids(storage.db()),
        vec![1],
        "close lost or duplicated"
    );
    // Each error says what happened and what to do (promise 8).
    let closed = Error::Closed.to_string();
    assert!(closed.contains("closed") && closed.contains("open a new storage"));
    assert!(Error::Cancelled.to_string().contains("cancelled"));
    assert!(Error::DeadlineExceeded.to_string().contains("deadline"));
    let db = common::error_chain(&Error::Db(DbError::msg("disk on fire")));
    assert!(
        db.contains("database") && db.contains("disk on fire"),
        "{db}"
    );
}

#[test]
fn close_wakes_every_blocked_caller_with_closed_and_nothing_hangs() {
    let t = CancelToken::new();
    // Pops blocked on an empty storage.
    let empty = Arc::new(Storage::new(MemDb::new()).unwrap());
    // Pushes blocked on a full buffer over a slow Db.
    let full = Arc::new(
        Storage::builder()
            .max_buffered_items(1)
            .build(MemDb::with_latency(Duration::from_millis(200)))
            .unwrap(),
    );
    full.push(&t, item(1)).unwrap();
    let tokens: Vec<CancelToken> = (0..6).map(|_| t.child()).collect();
    let mut waiters = Vec::new();
    for (i, token) in tokens.iter().cloned().enumerate() {
        let (empty, full) = (empty.clone(), full.clone());
        waiters.push(std::thread::spawn(move || {
            if i % 2 == 0 {
                empty.pop(&token).map(|_| ())
            } else {
                full.push(&token, item(100 + i as u64))
            }
        }));
    }
    // Every waiter blocked (registered on its token) or already done (a push may find room
    // once the flusher wrote item 1).
    let until = Instant::now() + Duration::from_secs(5);
    while !tokens
        .iter()
        .zip(&waiters)
        .all(|(token, w)| lifostore::testing::registrations(token) > 0 || w.is_finished())
    {
        assert!(Instant::now() < until, "the waiters never blocked");
        std::thread::sleep(Duration::from_micros(50));
    }
    let (e, f) = (empty.clone(), full.clone());
    within(Duration::from_secs(10), move || {
        e.close().unwrap();
        f.close().unwrap();
    });
    let mut stored = vec![1];
    for (i, w) in waiters.into_iter().enumerate() {
        let r = within(Duration::from_secs(5), move || w.join().unwrap());
        match r {
            Err(Error::Closed) => {}
            // A push may have found room before the close (the flusher wrote item 1).
            Ok(()) if i % 2 == 1 => stored.push(100 + i as u64),
            other => panic!("waiter {i}: expected Closed, got {other:?}"),
        }
    }
    stored.sort();
    assert_eq!(sorted_ids(full.db()), stored, "close lost or duplicated");
    assert!(
        tokens
            .iter()
            .all(|t| lifostore::testing::registrations(t) == 0)
    );
}

#[test]
fn dropping_a_storage_leaves_its_items_in_the_db() {
    // `Drop` is a best-effort close. While other threads are blocked in a call they hold a
    // reference (or an `Arc`) to the storage, so the borrow checker makes "drop while blocked"
    // impossible; `close` from another thread (above) is that case. Here: drop with buffered
    // items, on a Db shared through an Arc, and drop of a storage whose callers gave up.
    let db = Arc::new(MemDb::with_latency(Duration::from_millis(1)));
    let storage = Storage::new(Arc::clone(&db)).unwrap();
    let t = CancelToken::new();
    for i in 0..20 {
        storage.push(&t, item(i)).unwrap();
    }
    assert_eq!(storage.pop(&t).unwrap(), item(19));
    within(Duration::from_secs(10), move || drop(storage));
    assert_eq!(sorted_ids(&db), (0..19).collect::<Vec<_>>());

    let db = Arc::new(MemDb::new());
    let storage = Arc::new(Storage::new(Arc::clone(&db)).unwrap());
    let token = CancelToken::new();
    let waiter = {
        let (s, token) = (storage.clone(), token.clone());
        std::thread::spawn(move || {
            let r = s.pop(&token);
            drop(s); // maybe the last handle: drops (closes) the storage on this thread
            r
        })
    };
    drop(storage);
    wait_until_blocked(&token);
    token.cancel();
    let r = within(Duration::from_secs(10), move || waiter.join().unwrap());
    assert!(matches!(r, Err(Error::Cancelled)), "{r:?}");
    assert!(db.is_empty());
}

#[test]
fn a_panicking_db_is_reported_on_the_call_and_loses_nothing() {
    quiet_injected_panics();
    // Call 1 is the first flush's write, call 3 the Db call of the first pop; both panic.
    let storage = Storage::new(
        FaultyDb::new(MemDb::new(), 1)
            .panic_on_call(1)
            .panic_on_call(3),
    )
    .unwrap();
    let t = CancelToken::new();
    storage.push(&t, item(1)).unwrap();
    storage.push(&t, item(2)).unwrap();
    match storage.flush(&t) {
        Err(Error::Db(DbError::Panicked(msg))) => assert!(msg.contains(INJECTED_PANIC), "{msg}"),
        other => panic!("expected Db(Panicked) from the flush, got {other:?}"),
    }
    assert_eq!(
        storage.stats().buffered_items,
        2,
        "a panicked write lost items"
    );
    storage.flush(&t).unwrap(); // call 2: the retry stores both
    assert_eq!(sorted_ids(storage.db().inner()), vec![1, 2]);
    match storage.pop(&t) {
        Err(Error::Db(DbError::Panicked(msg))) => assert!(msg.contains(INJECTED_PANIC), "{msg}"),
        other => panic!("expected Db(Panicked) from the pop, got {other:?}"),
    }
    assert_eq!(storage.db().inner().len(), 2, "a panicked pop took an item");
    assert_eq!(storage.pop(&t).unwrap(), item(2));
    storage.close().unwrap();
    assert_eq!(sorted_ids(storage.db().inner()), vec![1]);
}

#[test]
fn the_flusher_survives_a_panicking_db_and_nothing_is_lost_or_doubled() {
    quiet_injected_panics();
    let window = Duration::from_millis(20);
    // The flusher's first write panics; it must retry on its own (no flush, no close).
    let storage = Storage::builder()
        .max_unflushed_age(window)
        .build(FaultyDb::new(MemDb::new(), 1).panic_on_call(1))
        .unwrap();
    let t = CancelToken::new();
    storage.push(&t, item(1)).unwrap();
    let until = Instant::now() + Duration::from_secs(5);
    while storage.db().inner().is_empty() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(storage.db().counts().panics, 1);
    assert_eq!(sorted_ids(storage.db().inner()), vec![1], "flusher died");
    assert!(storage.stats().db_failures >= 1);
    drop(storage);

    // Random panics on a third of all calls, flusher and callers alike.
    let storage = Storage::builder()
        .max_unflushed_age(window)
        .max_buffered_items(32)
        .close_timeout(Duration::from_secs(10))
        .build(FaultyDb::new(MemDb::new(), 3).panic_rate(0.3))
        .unwrap();
    let mut popped = Vec::new();
    let mut panicked_calls = 0;
    for i in 0..300 {
        storage.push(&t, item(i)).unwrap();
        if i % 3 == 0 {
            match storage.try_pop() {
                Ok(Some(x)) => popped.push(u64::from_le_bytes(x.try_into().unwrap())),
                Ok(None) => {}
                Err(Error::Db(DbError::Panicked(_))) => panicked_calls += 1,
                Err(e) => panic!("{e}"),
            }
        }
        if i % 50 == 0 {
            match storage.flush(&t) {
                Ok(()) => {}
                Err(Error::Db(DbError::Panicked(_))) => panicked_calls += 1,
                Err(e) => panic!("{e}"),
            }
        }
    }
    storage.close().unwrap();
    let counts = storage.db().counts();
    println!(
        "{} injected panics, {panicked_calls} reported to callers",
        counts.panics
    );
    assert!(counts.panics > 0);
    // FaultyDb panics before storing: nothing may be missing, nothing doubled.
    let mut all = sorted_ids(storage.db().inner());
    all.extend(popped);
    all.sort();
    assert_eq!(all, (0..300).collect::<Vec<_>>());
}
