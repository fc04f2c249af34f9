//! Promise 5, bounded memory: the buffer has a capacity; when it fills, the flusher writes
//! early, and if the Db cannot keep up, `push` blocks until there is room or its token ends;
//! a Db slower than the pushers paces them within the window.
//!
//! Here: the capacity never exceeded, blocked pushes and what unblocks them, a slow
//! single-item Db pacing pushers, batches that could never fit, `try_push` handing the item
//! back. Deeper: the capacity and pace rules (`src/engine/policy.rs`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lifostore::testing::{FaultyDb, StampedDb};
use lifostore::{CancelToken, Error, MemDb, Storage, TryPushError};

use crate::common::lateness::Lateness;
use crate::common::{id_of, ids, item, sorted_ids, wait_until_blocked, within};

/// A storage whose buffer (2 items) is full and whose Db is down, so only a pop makes room.
fn full_storage() -> Storage<FaultyDb<MemDb>> {
    let storage = Storage::builder()
        .max_buffered_items(2)
        .close_timeout(Duration::from_secs(5))
        .build(FaultyDb::new(MemDb::new(), 1))
        .unwrap();
    storage.db().set_down(true);
    let t = CancelToken::new();
    storage.push(&t, item(1)).unwrap();
    storage.push(&t, item(2)).unwrap();
    storage
}

// ---- 5. Bounded memory --------------------------------------------------------------------

#[test]
fn full_buffer_blocks_push_until_its_deadline_and_stores_nothing() {
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
fn slow_single_item_db_paces_pushers_within_the_window() {
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
    let lateness = Lateness::start(window);
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
    let (done, (late, mean_late)) = (Instant::now(), lateness.stop_with_mean());
    if mean_late >= Duration::from_millis(8) {
        // As in a_slow_single_item_db_paces_pushers_within_the_window: the Db slowed > 5x.
        println!("not judged: sleeps overran by {mean_late:?} on average");
        return;
    }
    assert!(
        done <= deadline + Duration::from_millis(100) + late,
        "backlog outlived the window (scheduler lateness {late:?})"
    );
    assert_eq!(s.db().len(), n, "pushes outran the Db: {:?}", s.stats());
    assert!(s.stats().push_waits > 0, "push never slowed down");
}

#[test]
fn buffered_items_never_exceed_the_capacity_and_pushes_wait_for_room() {
    let cap = 32;
    let storage = Storage::builder()
        .max_buffered_items(cap)
        .max_batch(8)
        .build(MemDb::with_latency(Duration::from_millis(5)))
        .unwrap();
    let peak = AtomicUsize::new(0);
    let samples = AtomicUsize::new(0);
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let (storage, peak, samples, done) = (&storage, &peak, &samples, &done);
        s.spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(storage.stats().buffered_items, Ordering::Relaxed);
                samples.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_micros(100));
            }
        });
        let pushers: Vec<_> = (0..3u64)
            .map(|w| {
                s.spawn(move || {
                    let t = CancelToken::new();
                    for i in 0..150 {
                        storage.push(&t, item(w << 32 | i)).unwrap();
                    }
                })
            })
            .collect();
        for p in pushers {
            p.join().unwrap();
        }
        done.store(true, Ordering::Relaxed);
    });
    let stats = storage.stats();
    let peak = peak.load(Ordering::Relaxed);
    println!(
        "capacity {cap}: peak buffered {peak} over {} samples; {} of {} pushes waited",
        samples.load(Ordering::Relaxed),
        stats.push_waits,
        stats.pushes
    );
    assert!(peak <= cap, "buffered {peak} items, capacity {cap}");
    assert!(peak >= cap / 2, "the buffer never got near full ({peak})");
    assert!(stats.push_waits > 0, "no push ever waited for room");
    storage.close().unwrap();
    assert_eq!(storage.db().len(), 450, "items lost under backpressure");
}

#[test]
fn a_blocked_push_unblocks_when_a_pop_makes_room() {
    let storage = full_storage();
    let popped_at = Mutex::new(None);
    let t = CancelToken::new();
    std::thread::scope(|s| {
        let pusher = s.spawn(|| {
            let r = storage.push(&t, item(3));
            (r, Instant::now())
        });
        wait_until_blocked(&t);
        assert!(!pusher.is_finished(), "push did not block on a full buffer");
        assert_eq!(storage.try_pop().unwrap(), Some(item(2)));
        *popped_at.lock().unwrap() = Some(Instant::now());
        let (r, returned) = pusher.join().unwrap();
        r.unwrap();
        let lag = returned.saturating_duration_since(popped_at.lock().unwrap().unwrap());
        println!("blocked push returned {lag:?} after a pop made room");
        assert!(lag < Duration::from_millis(500), "{lag:?}");
    });
    assert_eq!(storage.stats().push_waits, 1);
    storage.db().set_down(false);
    storage.close().unwrap();
    assert_eq!(sorted_ids(storage.db().inner()), vec![1, 3]);
}

#[test]
fn a_blocked_push_returns_its_tokens_reason_and_stores_nothing() {
    let storage = full_storage();
    // Cancelled while blocked.
    let t = CancelToken::new();
    std::thread::scope(|s| {
        let pusher = s.spawn(|| storage.push(&t, item(3)));
        wait_until_blocked(&t);
        assert!(!pusher.is_finished(), "push did not block on a full buffer");
        t.cancel();
        assert!(matches!(pusher.join().unwrap(), Err(Error::Cancelled)));
    });
    // Deadline passes while blocked.
    let started = Instant::now();
    let r = storage.push(
        &CancelToken::new().with_timeout(Duration::from_millis(30)),
        item(4),
    );
    assert!(matches!(r, Err(Error::DeadlineExceeded)), "{r:?}");
    assert!(started.elapsed() >= Duration::from_millis(30));
    // A parent's cancel reaches a push blocked on a child token.
    let root = CancelToken::new();
    let child = root.child().with_timeout(Duration::from_secs(60));
    std::thread::scope(|s| {
        let pusher = s.spawn(|| storage.push(&child, item(5)));
        wait_until_blocked(&root);
        root.cancel();
        assert!(matches!(pusher.join().unwrap(), Err(Error::Cancelled)));
    });
    let stats = storage.stats();
    assert_eq!(stats.pushes, 2, "{stats:?}");
    assert_eq!(stats.buffered_items, 2, "{stats:?}");
    // A later pop still finds the newest pushed item, not a phantom.
    assert_eq!(storage.try_pop().unwrap(), Some(item(2)));
    storage.db().set_down(false);
    storage.close().unwrap();
    assert_eq!(sorted_ids(storage.db().inner()), vec![1]);
}

#[test]
fn a_slow_single_item_db_paces_pushers_within_the_window() {
    let window = Duration::from_secs(1);
    let db =
        StampedDb::new(MemDb::with_latency(Duration::from_millis(2)).single_item_only()).per_item();
    let storage = Storage::builder()
        .max_unflushed_age(window)
        .build(db)
        .unwrap();
    let pushed_at = Mutex::new(HashMap::new());
    let run_for = Duration::from_millis(2500);
    let lateness = Lateness::start(window);
    let started = Instant::now();
    std::thread::scope(|s| {
        for w in 0..4u64 {
            let (storage, pushed_at) = (&storage, &pushed_at);
            s.spawn(move || {
                let t = CancelToken::new();
                let mut i = 0;
                while started.elapsed() < run_for {
                    let id = w << 32 | i;
                    i += 1;
                    storage.push(&t, item(id)).unwrap();
                    pushed_at.lock().unwrap().insert(id, Instant::now());
                }
            });
        }
    });
    let pushed_at = pushed_at.into_inner().unwrap();
    let stats = storage.stats();
    // Everything still buffered must land within the window of its push.
    std::thread::sleep(window + Duration::from_millis(200));
    let (late, mean_late) = lateness.stop_with_mean();
    let arrivals = storage.db().arrivals();
    let mut worst = Duration::ZERO;
    for (data, at) in &arrivals {
        worst = worst.max(at.saturating_duration_since(pushed_at[&id_of(data)]));
    }
    println!(
        "pace: {} pushes in {run_for:?} ({:.0}/s) over a Db measured at {:.0} items/s; \
         {} pushes waited; worst age at arrival {worst:?} (window {window:?}, scheduler \
         lateness {late:?})",
        pushed_at.len(),
        pushed_at.len() as f64 / run_for.as_secs_f64(),
        stats.db_items_per_sec.unwrap_or(0.0),
        stats.push_waits,
    );
    assert_eq!(
        arrivals.len(),
        pushed_at.len(),
        "items not in the Db a window after their push"
    );
    assert!(stats.push_waits > 0, "pushers were never slowed down");
    // The Db's 2 ms calls are sleeps: on a machine so busy that a sleep overruns by 8 ms on
    // average, every call takes 5x its time or more, beyond the latency jump the capacity
    // plans for (promise 5's headroom), and the window is not this test's to judge.
    if mean_late >= Duration::from_millis(8) {
        println!("not judged: sleeps overran by {mean_late:?} on average (the Db slowed > 5x)");
        storage.close().unwrap();
        return;
    }
    assert!(
        worst <= window + late,
        "an item reached the Db {worst:?} after its push, window {window:?} + the scheduler's \
         worst lateness {late:?}"
    );
    storage.close().unwrap();
}

// ---- push_batch and try_push ----------------------------------------------------------------

#[test]
fn push_batch_keeps_order_and_refuses_what_could_never_fit() {
    let s = Storage::builder()
        .max_buffered_items(4)
        .max_buffered_bytes(64)
        .max_item_len(16)
        .build(MemDb::new())
        .unwrap();
    let t = CancelToken::new();
    s.push_batch(&t, [item(1), item(2), item(3)]).unwrap();
    assert_eq!(ids(&s.try_pop_batch(10).unwrap()), vec![3, 2, 1]);
    let too_many = s.push_batch(&t, (0..5).map(item)).unwrap_err();
    assert!(
        matches!(
            too_many,
            Error::BatchTooLarge {
                items: 5,
                max_items: 4,
                ..
            }
        ),
        "{too_many:?}"
    );
    let too_big = s.push_batch(&t, [vec![0; 16], vec![0; 16], vec![0; 16], vec![0; 17]]);
    assert!(
        matches!(
            too_big,
            Err(Error::BatchItemTooLarge {
                index: 3,
                len: 17,
                max: 16
            })
        ),
        "{too_big:?}"
    );
    let too_many_bytes = s.push_batch(
        &t,
        vec![vec![0; 16], vec![0; 16], vec![0; 16], vec![0; 16], vec![1]],
    );
    assert!(matches!(too_many_bytes, Err(Error::BatchTooLarge { .. })));
    assert_eq!(s.len_in_memory(), 0, "a refused batch stored something");
    s.push_batch(&t, Vec::<Vec<u8>>::new()).unwrap();
    assert!(too_many.to_string().contains("split"), "{too_many}");
}

#[test]
fn push_batch_waits_for_room_for_the_whole_batch_or_stores_nothing() {
    // The Db is down, so the flusher frees no room: only pops do.
    let s = Arc::new(
        Storage::builder()
            .max_unflushed_age(Duration::from_secs(600))
            .max_buffered_items(4)
            .build(FaultyDb::new(MemDb::new(), 1))
            .unwrap(),
    );
    s.db().set_down(true);
    let t = CancelToken::new();
    s.push_batch(&t, (1..=3).map(item)).unwrap();
    // Room for 1 more, not 2: the batch waits until its deadline and stores nothing.
    let quick = t.with_timeout(Duration::from_millis(50));
    let r = s.push_batch(&quick, [item(4), item(5)]);
    assert!(matches!(r, Err(Error::DeadlineExceeded)), "{r:?}");
    assert_eq!(s.len_in_memory(), 3, "a timed-out batch stored a part");
    // A blocked batch goes in whole once a pop makes room for all of it.
    let waiting = t.child();
    let pusher = {
        let (s, c) = (s.clone(), waiting.clone());
        std::thread::spawn(move || s.push_batch(&c, [item(6), item(7)]))
    };
    wait_until_blocked(&waiting);
    assert_eq!(s.len_in_memory(), 3);
    assert_eq!(ids(&s.try_pop_batch(1).unwrap()), vec![3]);
    within(Duration::from_secs(5), move || pusher.join().unwrap()).unwrap();
    assert_eq!(ids(&s.try_pop_batch(10).unwrap()), vec![7, 6, 2, 1]);
    s.db().set_down(false);
}

#[test]
fn try_push_hands_the_item_back_when_full_or_failed() {
    // The Db is down, so the flusher's early write frees no room.
    let s = Storage::builder()
        .max_unflushed_age(Duration::from_secs(600))
        .max_buffered_items(1)
        .max_item_len(8)
        .build(FaultyDb::new(MemDb::new(), 1))
        .unwrap();
    s.db().set_down(true);
    s.try_push(item(1)).unwrap();
    match s.try_push(item(2)) {
        Err(TryPushError::Full(back)) => assert_eq!(back, item(2)),
        other => panic!("expected Full: {other:?}"),
    }
    let err = s.try_push(vec![0; 9]).unwrap_err();
    assert!(!err.is_full());
    assert!(matches!(
        &err,
        TryPushError::Failed {
            error: Error::ItemTooLarge { .. },
            ..
        }
    ));
    assert_eq!(err.into_inner(), vec![0; 9]);
    s.db().set_down(false);
    s.close().unwrap();
    match s.try_push(item(3)) {
        Err(TryPushError::Failed {
            item: back,
            error: Error::Closed,
        }) => assert_eq!(back, item(3)),
        other => panic!("expected Closed: {other:?}"),
    }
    assert_eq!(s.db().inner().snapshot(), vec![item(1)]);
}
