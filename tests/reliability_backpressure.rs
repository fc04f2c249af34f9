//! Backpressure (promise 5): a small buffer over a slow Db never holds more than its capacity
//! (sampled from another thread); `push` blocks while it is full, unblocks when room appears,
//! or returns its token's reason with nothing stored. And the pace rule: over a Db with only
//! one-item writes (2 ms each) and a 1 s window, heavy pushing is slowed so that every item
//! still reaches the Db within the window.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use lifostore::testing::{FaultyDb, StampedDb};
use lifostore::{CancelToken, Error, MemDb, Storage};

mod common;
use common::{id_of, item, sorted_ids, wait_until_blocked};

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
    let arrivals = storage.db().arrivals();
    let mut worst = Duration::ZERO;
    for (data, at) in &arrivals {
        worst = worst.max(at.saturating_duration_since(pushed_at[&id_of(data)]));
    }
    println!(
        "pace: {} pushes in {run_for:?} ({:.0}/s) over a Db measured at {:.0} items/s; \
         {} pushes waited; worst age at arrival {worst:?} (window {window:?})",
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
    assert!(
        worst <= window,
        "an item reached the Db {worst:?} after its push, window {window:?}"
    );
    storage.close().unwrap();
}
