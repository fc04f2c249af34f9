//! One test (or a few) per numbered promise of docs/CONTRACT.md, on real threads; test names
//! start with the promise's number (`p1_` .. `p8_`). docs/CONTRACT.md maps every promise to
//! the tests that check it, here and in the other files.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lifostore::testing::{FaultyDb, INJECTED_FAILURE, StampedDb};
use lifostore::{CancelToken, Db, DbError, Error, MemDb, Storage};

mod common;
use common::{id_of, item, wait_until_blocked, wait_until_blocked_n};

fn drain(storage: &Storage<impl Db>) -> Vec<u64> {
    let mut out = Vec::new();
    while let Some(x) = storage.try_pop().unwrap() {
        out.push(id_of(&x));
    }
    out
}

// ---- 1. Newest first ----------------------------------------------------------------------

#[test]
fn p1_newest_first_across_buffer_and_db() {
    let s = Storage::new(MemDb::new()).unwrap();
    let t = CancelToken::new();
    for i in 0..5 {
        s.push(&t, item(i)).unwrap();
    }
    s.flush(&t).unwrap(); // 0..5 in the Db
    for i in 5..10 {
        s.push(&t, item(i)).unwrap();
    }
    assert_eq!(s.db().len(), 5);
    assert_eq!(drain(&s), (0..10).rev().collect::<Vec<_>>());
}

#[test]
fn p1_newest_first_with_a_batch_in_flight() {
    // A slow Db keeps a batch in flight while we pop: the pop must return the newest in-flight
    // item (after it lands), never an older Db item and never a copy the Db also keeps.
    let s = Arc::new(Storage::new(MemDb::with_latency(Duration::from_millis(100))).unwrap());
    let t = CancelToken::new();
    s.db().push(&item(100)).unwrap(); // an older item already in the Db
    for i in 0..3 {
        s.push(&t, item(i)).unwrap();
    }
    let flusher = {
        let (s, t) = (s.clone(), t.clone());
        std::thread::spawn(move || s.flush(&t))
    };
    while s.stats().in_flight_items == 0 {
        std::thread::yield_now();
    }
    assert_eq!(id_of(&s.pop(&t).unwrap()), 2);
    flusher.join().unwrap().unwrap();
    s.push(&t, item(3)).unwrap();
    assert_eq!(drain(&s), vec![3, 1, 0, 100]);
}

// ---- 2. Exactly once ----------------------------------------------------------------------

#[test]
fn p2_many_threads_every_item_exactly_once_and_close_keeps_the_rest() {
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
fn p2_drop_leaves_every_unpopped_item_in_the_db() {
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

// ---- 3. Bounded loss ----------------------------------------------------------------------

#[test]
fn p3_every_unpopped_item_reaches_the_db_within_the_window_under_load() {
    let window = Duration::from_millis(200);
    let s = Arc::new(
        Storage::builder()
            .max_unflushed_age(window)
            .build(StampedDb::new(MemDb::new()))
            .unwrap(),
    );
    let pushed_at = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for w in 0..3u64 {
            let (s, pushed_at) = (&s, &pushed_at);
            scope.spawn(move || {
                let t = CancelToken::new();
                for i in 0..300 {
                    s.push(&t, item(w * 10_000 + i)).unwrap();
                    pushed_at
                        .lock()
                        .unwrap()
                        .push((w * 10_000 + i, Instant::now()));
                    std::thread::sleep(Duration::from_millis(2));
                }
            });
        }
    });
    // Wait a window for the last items, without popping anything.
    std::thread::sleep(window + Duration::from_millis(50));
    let arrivals: std::collections::HashMap<u64, Instant> = s
        .db()
        .arrivals()
        .iter()
        .map(|(x, at)| (id_of(x), *at))
        .collect();
    let pushed = pushed_at.lock().unwrap();
    let mut worst = Duration::ZERO;
    for (i, at) in pushed.iter() {
        let arrived = arrivals
            .get(i)
            .unwrap_or_else(|| panic!("item {i} never reached the Db"));
        worst = worst.max(arrived.saturating_duration_since(*at));
    }
    println!("worst push-to-Db age: {worst:?} (window {window:?})");
    assert!(
        worst <= window,
        "an item waited {worst:?} > window {window:?}"
    );
}

// ---- 4. Little I/O ------------------------------------------------------------------------

#[test]
fn p4_items_popped_within_the_window_never_touch_the_db() {
    let s = Storage::new(MemDb::new()).unwrap();
    let t = CancelToken::new();
    for round in 0..100 {
        for i in 0..10 {
            s.push(&t, item(round * 10 + i)).unwrap();
        }
        for _ in 0..10 {
            s.pop(&t).unwrap();
        }
    }
    let stats = s.stats();
    assert_eq!(stats.db_calls(), 0, "{stats:?}");
    assert_eq!(s.db().calls().total(), 0);
}

#[test]
fn p4_flushes_are_batched() {
    let s = Storage::builder()
        .max_batch(1024)
        .build(MemDb::new())
        .unwrap();
    let t = CancelToken::new();
    for i in 0..5000 {
        s.push(&t, item(i)).unwrap();
    }
    s.flush(&t).unwrap();
    assert_eq!(s.db().len(), 5000);
    // At most one slow-start write of 16 items (the buffer passed half the initial capacity of
    // 256 before the Db's speed was known), then the flush: the rest in batches of 1024.
    let calls = s.db().calls().push_calls;
    assert!((5..=6).contains(&calls), "{calls} writes: {:?}", s.stats());
}

#[test]
fn p4_pop_calls_the_db_only_when_memory_holds_nothing_newer() {
    let s = Storage::new(MemDb::new()).unwrap();
    let t = CancelToken::new();
    s.push(&t, item(1)).unwrap();
    s.flush(&t).unwrap();
    s.push(&t, item(2)).unwrap();
    assert_eq!(id_of(&s.pop(&t).unwrap()), 2);
    assert_eq!(s.db().calls().pop_calls, 0);
    assert_eq!(id_of(&s.pop(&t).unwrap()), 1);
    assert_eq!(s.db().calls().pop_calls, 1);
    // Once the Db said "empty", pops on an empty storage stop asking it.
    assert_eq!(s.try_pop().unwrap(), None);
    assert_eq!(s.try_pop().unwrap(), None);
    assert_eq!(s.db().calls().pop_calls, 2);
}

// ---- 5. Bounded memory --------------------------------------------------------------------

#[test]
fn p5_full_buffer_blocks_push_until_its_deadline_and_stores_nothing() {
    let s = Storage::builder()
        .max_buffered_items(4)
        .build(MemDb::with_latency(Duration::from_millis(300)))
        .unwrap();
    let t = CancelToken::new();
    for i in 0..4 {
        s.push(&t, item(i)).unwrap();
    }
    // The flusher starts writing early (full buffer), but the Db is slow: no room for 300 ms.
    let short = t.with_timeout(Duration::from_millis(50));
    let started = Instant::now();
    assert!(matches!(
        s.push(&short, item(99)),
        Err(Error::DeadlineExceeded)
    ));
    assert!(started.elapsed() >= Duration::from_millis(45));
    assert!(s.stats().buffered_items <= 4);
    s.close().unwrap();
    let mut left: Vec<u64> = s.db().snapshot().iter().map(|x| id_of(x)).collect();
    left.sort();
    assert_eq!(
        left,
        vec![0, 1, 2, 3],
        "the refused item must not be stored"
    );
}

#[test]
fn p5_slow_single_item_db_paces_pushers_within_the_window() {
    // 2 ms per item and no native batches: the Db absorbs ~500 items/s. With a 1 s window the
    // storage must slow pushers down so that every item still reaches the Db in time.
    let window = Duration::from_secs(1);
    let db = MemDb::with_latency(Duration::from_millis(2)).single_item_only();
    let s = Arc::new(
        Storage::builder()
            .max_unflushed_age(window)
            .build(db)
            .unwrap(),
    );
    let t = CancelToken::new();
    let started = Instant::now();
    let mut pushed_at = Vec::new();
    while started.elapsed() < Duration::from_millis(2500) {
        s.push(&t, item(pushed_at.len() as u64)).unwrap();
        pushed_at.push(Instant::now());
        let held = s.stats().buffered_items;
        assert!(held <= 100_000);
    }
    let n = pushed_at.len();
    // Everything pushed must be in the Db within the window of its push.
    let deadline = *pushed_at.last().unwrap() + window;
    while s.db().len() < n && Instant::now() < deadline + Duration::from_millis(500) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        Instant::now() <= deadline + Duration::from_millis(100),
        "backlog outlived the window"
    );
    assert_eq!(s.db().len(), n, "pushes outran the Db: {:?}", s.stats());
    assert!(s.stats().push_waits > 0, "push never slowed down");
}

// ---- 6. Db failures lose nothing ----------------------------------------------------------

#[test]
fn p6_a_db_failing_half_its_calls_loses_nothing() {
    let s = Storage::builder()
        .max_unflushed_age(Duration::from_millis(50))
        .max_batch(64)
        // A third of the calls fail; half the batch writes store their first half, then fail:
        // the storage must keep exactly the rest.
        .build(
            FaultyDb::new(MemDb::new(), 6)
                .fail_rate(0.3)
                .half_batch_rate(0.5),
        )
        .unwrap();
    let t = CancelToken::new();
    let mut failures = 0;
    for i in 0..2000 {
        // Promise 6: once the Db has failed for a window (50 ms here: a loaded CI machine can
        // get there), a push is refused and stores nothing. Write on this thread, then push the
        // same item again: the checks below would see it twice if the refused push had stored it.
        while let Err(e) = s.push(&t, item(i)) {
            assert!(matches!(e, Error::Db(_)), "{e}");
            failures += 1; // the refusal reports the Db's failure
            let _ = s.flush(&t); // may fail again: the loop pushes again either way
        }
    }
    while let Err(e) = s.flush(&t) {
        assert!(matches!(e, Error::Db(_)), "{e}");
        failures += 1;
    }
    assert!(failures > 0, "the flaky Db never failed");
    assert!(s.stats().db_failures > 0);
    let mut popped = Vec::new();
    loop {
        match s.try_pop() {
            Ok(Some(x)) => popped.push(id_of(&x)),
            Ok(None) => break,
            Err(Error::Db(_)) => continue, // a failed pop takes nothing; try again
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(popped, (0..2000).rev().collect::<Vec<_>>());
}

#[test]
fn p6_push_is_refused_once_the_db_has_failed_for_a_window() {
    let window = Duration::from_millis(100);
    let s = Storage::builder()
        .max_unflushed_age(window)
        .close_timeout(Duration::from_secs(5))
        .build(FaultyDb::new(MemDb::new(), 1))
        .unwrap();
    s.db().set_down(true);
    let t = CancelToken::new();
    s.push(&t, item(1)).unwrap();
    std::thread::sleep(window + Duration::from_millis(50));
    match s.push(&t, item(2)) {
        Err(Error::Db(e)) => assert!(common::error_chain(&e).contains(INJECTED_FAILURE), "{e}"),
        other => panic!("expected a Db error, got {other:?}"),
    }
    s.db().set_down(false);
    s.close().unwrap();
    let left: Vec<u64> = s.db().inner().snapshot().iter().map(|x| id_of(x)).collect();
    assert_eq!(left, vec![1], "item 1 kept, item 2 never stored");
}

// ---- 7. Cancellation ----------------------------------------------------------------------

#[test]
fn p7_ended_tokens_have_no_side_effect() {
    let s = Storage::new(MemDb::new()).unwrap();
    let live = CancelToken::new();
    s.push(&live, item(1)).unwrap();
    let cancelled = CancelToken::new();
    cancelled.cancel();
    let expired = CancelToken::new().with_deadline(Instant::now());
    assert!(matches!(s.push(&cancelled, item(2)), Err(Error::Cancelled)));
    assert!(matches!(
        s.push(&expired, item(3)),
        Err(Error::DeadlineExceeded)
    ));
    assert!(matches!(s.pop(&cancelled), Err(Error::Cancelled)));
    assert!(matches!(s.pop(&expired), Err(Error::DeadlineExceeded)));
    assert!(matches!(s.flush(&cancelled), Err(Error::Cancelled)));
    assert_eq!(s.stats().pushes, 1);
    assert_eq!(id_of(&s.pop(&live).unwrap()), 1);
    assert_eq!(s.try_pop().unwrap(), None);
}

#[test]
fn p7_blocked_pop_wakes_promptly_on_cancel_and_on_deadline() {
    let s = Arc::new(Storage::new(MemDb::new()).unwrap());
    let t = CancelToken::new();
    let waiter = {
        let (s, t) = (s.clone(), t.clone());
        std::thread::spawn(move || {
            let r = s.pop(&t);
            (r, Instant::now())
        })
    };
    wait_until_blocked(&t);
    let cancelled_at = Instant::now();
    t.cancel();
    let (r, woke_at) = waiter.join().unwrap();
    assert!(matches!(r, Err(Error::Cancelled)), "{r:?}");
    let latency = woke_at.duration_since(cancelled_at);
    assert!(
        latency < Duration::from_millis(250),
        "woke after {latency:?}"
    );

    let d = CancelToken::new().with_timeout(Duration::from_millis(30));
    let started = Instant::now();
    assert!(matches!(s.pop(&d), Err(Error::DeadlineExceeded)));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(29) && waited < Duration::from_millis(300),
        "{waited:?}"
    );
}

#[test]
fn p7_parent_cancel_wakes_a_pop_blocked_on_a_child_token() {
    let s = Arc::new(Storage::new(MemDb::new()).unwrap());
    let root = CancelToken::new();
    let child = root.child().with_timeout(Duration::from_secs(60));
    let waiter = {
        let s = s.clone();
        std::thread::spawn(move || s.pop(&child))
    };
    wait_until_blocked(&root); // a blocked call registers on its token's ancestors too
    root.cancel();
    assert!(matches!(waiter.join().unwrap(), Err(Error::Cancelled)));
    assert_eq!(
        lifostore::testing::registrations(&root),
        0,
        "the blocked pop left a registration behind"
    );
}

#[test]
fn p7_blocked_pop_takes_a_push_and_close_wakes_the_rest() {
    let s = Arc::new(Storage::new(MemDb::new()).unwrap());
    let t = CancelToken::new();
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let (s, t) = (s.clone(), t.clone());
            std::thread::spawn(move || s.pop(&t))
        })
        .collect();
    wait_until_blocked_n(&t, 3);
    s.push(&t, item(7)).unwrap();
    // One of them takes it (a state to reach, not an event anyone signals).
    while s.stats().pops == 0 {
        std::thread::yield_now();
    }
    s.close().unwrap();
    let results: Vec<_> = waiters.into_iter().map(|w| w.join().unwrap()).collect();
    let got: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(got, vec![&item(7)]);
    assert_eq!(
        results
            .iter()
            .filter(|r| matches!(r, Err(Error::Closed)))
            .count(),
        2
    );
}

// ---- 8. Clear errors ----------------------------------------------------------------------

#[test]
fn p8_errors_say_what_happened_and_what_to_do() {
    let cases: Vec<(Error, &str)> = vec![
        (Error::Cancelled, "cancelled"),
        (Error::DeadlineExceeded, "deadline"),
        (Error::Closed, "closed"),
        (Error::Db(DbError::msg("disk on fire")), "disk on fire"),
        (Error::ItemTooLarge { len: 10, max: 5 }, "max_item_len"),
    ];
    for (err, needle) in cases {
        let text = common::error_chain(&err);
        assert!(text.contains(needle), "{text:?} lacks {needle:?}");
    }
    let io: DbError = std::io::Error::other("boom").into();
    let err = Error::from(io);
    assert!(std::error::Error::source(&err).is_some());
    let s = Storage::builder()
        .max_item_len(4)
        .build(MemDb::new())
        .unwrap();
    let t = CancelToken::new();
    assert!(matches!(
        s.push(&t, vec![0; 5]),
        Err(Error::ItemTooLarge { len: 5, max: 4 })
    ));
    s.push(&t, Vec::new()).unwrap();
    assert_eq!(s.pop(&t).unwrap(), Vec::<u8>::new());
    s.close().unwrap();
    assert!(matches!(s.push(&t, vec![1]), Err(Error::Closed)));
    assert!(matches!(s.pop(&t), Err(Error::Closed)));
    assert!(s.close().is_ok(), "close is idempotent");
}

#[test]
fn p4_a_crowd_of_poppers_makes_about_one_db_call_per_item() {
    // 20 items in the Db (count unknown to the storage), 200 poppers finding memory empty:
    // they must not make 200 Db calls to share 20 items.
    let s = Arc::new(Storage::new(MemDb::with_latency(Duration::from_millis(2))).unwrap());
    let t = CancelToken::new();
    for i in 0..20 {
        s.db().push(&item(i)).unwrap();
    }
    let calls_before = s.db().calls().pop_calls;
    let got: Vec<Option<u64>> = std::thread::scope(|scope| {
        let hs: Vec<_> = (0..200)
            .map(|_| {
                let (s, t) = (&s, &t);
                scope.spawn(move || {
                    let short = t.with_timeout(Duration::from_millis(300));
                    s.pop(&short).ok().map(|x| id_of(&x))
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let popped: HashSet<u64> = got.iter().flatten().copied().collect();
    assert_eq!(popped, (0..20).collect::<HashSet<_>>());
    let calls = s.db().calls().pop_calls - calls_before;
    assert!(calls <= 2 * 20 + 2, "{calls} Db pop calls for 20 items");
}
