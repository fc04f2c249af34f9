//! Promise 2, exactly-once delivery: an item pushed with `Ok` is returned by at most one
//! `pop`; while the process lives nothing is lost; `close` (and `Drop`, best effort) leaves
//! every unpopped item in the Db.
//!
//! Here: many threads pushing and popping (single and batch), the seed program's 1000 pushers
//! and 1000 poppers, close and drop. Deeper: the history checker
//! (`tests/reliability_history.rs`), the soak (`tests/soak.rs`, ignored) and the loom models
//! `concurrent_push_pop_flush_keeps_every_item_once`, `cancel_racing_push_and_pop_loses_nothing`,
//! `close_waits_for_a_batch_in_flight`, `a_db_pop_racing_a_landing_batch_never_hides_it`.

use std::collections::HashSet;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lifostore::{CancelToken, Error, MemDb, Storage, Unconfirmed};

use crate::common::{id_of, ids, item, quiet, sorted_ids, wait_until_blocked, within};

// ---- 2. Exactly once ----------------------------------------------------------------------

#[test]
fn many_threads_every_item_exactly_once_and_close_keeps_the_rest() {
    let s = Arc::new(
        Storage::builder()
            .max_unflushed_age(Duration::from_millis(30))
            .max_buffered_items(64)
            .build(MemDb::with_latency(Duration::from_micros(200)))
            .unwrap(),
    );
    let t = CancelToken::new();
    let popped = Arc::new(Mutex::new(Vec::new()));
    std::thread::scope(|scope| {
        for w in 0..4u64 {
            let (s, t) = (&s, &t);
            scope.spawn(move || {
                for i in 0..500 {
                    s.push(t, item(w * 1000 + i)).unwrap();
                }
            });
        }
        for _ in 0..3 {
            let (s, popped) = (&s, &popped);
            scope.spawn(move || {
                let t = CancelToken::new();
                for _ in 0..400 {
                    let x = s.pop(&t).unwrap();
                    popped.lock().unwrap().push(id_of(&x));
                }
            });
        }
    });
    s.close().unwrap();
    let mut all: Vec<u64> = popped.lock().unwrap().clone();
    assert_eq!(all.len(), 1200);
    all.extend(s.db().snapshot().iter().map(|x| id_of(x)));
    let unique: HashSet<u64> = all.iter().copied().collect();
    assert_eq!(unique.len(), all.len(), "an item came out twice");
    let pushed: HashSet<u64> = (0..4)
        .flat_map(|w| (0..500).map(move |i| w * 1000 + i))
        .collect();
    assert_eq!(unique, pushed, "an item was lost");
}

#[test]
fn drop_leaves_every_unpopped_item_in_the_db() {
    let db = Arc::new(MemDb::new());
    {
        let s = Storage::new(db.clone()).unwrap();
        let t = CancelToken::new();
        for i in 0..100 {
            s.push(&t, item(i)).unwrap();
        }
        s.pop(&t).unwrap();
    }
    assert_eq!(db.len(), 99);
}

#[test]
fn concurrent_batch_pushers_and_poppers_see_every_item_once() {
    let s = Arc::new(
        Storage::builder()
            .max_unflushed_age(Duration::from_millis(20))
            .max_buffered_items(64)
            .build(MemDb::with_latency(Duration::from_micros(200)))
            .unwrap(),
    );
    let t = CancelToken::new();
    let got = std::thread::scope(|sc| {
        for p in 0..4u64 {
            let (s, t) = (&s, &t);
            sc.spawn(move || {
                for b in 0..50u64 {
                    let base = p * 10_000 + b * 10;
                    s.push_batch(t, (base..base + 10).map(item)).unwrap();
                }
            });
        }
        let poppers: Vec<_> = (0..3)
            .map(|_| {
                let (s, t) = (&s, &t);
                sc.spawn(move || {
                    let mut mine = Vec::new();
                    let quiet = t.with_timeout(Duration::from_millis(300));
                    while let Ok(batch) = s.pop_batch(&quiet, 7) {
                        assert!(!batch.is_empty() && batch.len() <= 7);
                        mine.extend(ids(&batch));
                    }
                    mine
                })
            })
            .collect();
        poppers
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    s.close().unwrap();
    let mut all = got.clone();
    all.extend(ids(&s.db().snapshot()));
    let unique: HashSet<u64> = all.iter().copied().collect();
    assert_eq!(unique.len(), all.len(), "an item came out twice");
    assert_eq!(unique.len(), 4 * 500, "an item was lost");
    assert!(s.stats().pops_from_db > 0 || s.db().is_empty());
}

#[test]
fn close_during_durable_pushes_keeps_every_accepted_item() {
    let s = Arc::new(quiet(MemDb::with_latency(Duration::from_millis(2))));
    let results: Vec<_> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let s = &s;
                sc.spawn(move || (i, s.push_durable(&CancelToken::new(), item(i))))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(3));
        s.close().unwrap();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let in_db: HashSet<u64> = ids(&s.db().snapshot()).into_iter().collect();
    assert_eq!(in_db.len(), s.db().len(), "an item twice in the Db");
    for (i, r) in results {
        match r {
            Ok(())
            | Err(Error::NotYetDurable {
                why: Unconfirmed::Closed,
                ..
            }) => {
                assert!(in_db.contains(&i), "accepted item {i} lost: {r:?}")
            }
            Err(Error::Closed) => assert!(!in_db.contains(&i), "refused item {i} stored"),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn thousand_pushers_thousand_poppers_one_token() {
    const N: usize = 1000;
    let storage = Arc::new(Storage::new(MemDb::with_latency(Duration::from_millis(5))).unwrap());
    let token = CancelToken::new().with_timeout(Duration::from_secs(120));
    let start = Arc::new(Barrier::new(2 * N));
    let pushers: Vec<_> = (0..N)
        .map(|i| {
            let (s, t, b) = (storage.clone(), token.clone(), start.clone());
            std::thread::spawn(move || {
                b.wait();
                let ts = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_nanos();
                s.push(&t, format!("{i} {ts}")).unwrap();
            })
        })
        .collect();
    let poppers: Vec<_> = (0..N)
        .map(|_| {
            let (s, t, b) = (storage.clone(), token.clone(), start.clone());
            std::thread::spawn(move || {
                b.wait();
                s.pop(&t).unwrap()
            })
        })
        .collect();
    for p in pushers {
        p.join().unwrap();
    }
    let mut ids = HashSet::new();
    for p in poppers {
        let text = String::from_utf8(p.join().unwrap()).unwrap();
        let id: usize = text.split(' ').next().unwrap().parse().unwrap();
        assert!(ids.insert(id), "item {id} popped twice");
    }
    assert_eq!(ids, (0..N).collect::<HashSet<_>>());
    let stats = storage.stats();
    storage.close().unwrap();
    assert!(storage.db().is_empty());
    println!(
        "seed: {} Db calls against {} naive; {stats:?}",
        stats.db_calls(),
        2 * N
    );
    assert!(
        stats.db_calls() < 100,
        "expected far fewer Db calls than 2000: {stats:?}"
    );
    assert_eq!(stats.db_calls(), storage.db().calls().total());
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
