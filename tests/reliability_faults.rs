//! Loss window under stress, outages, backpressure, cancellation latency and bad input.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use lifostore::testing::{Faults, FaultyDb, StampedDb};
use lifostore::{CancelToken, DbError, Error, MemDb, Storage};

mod common;
use common::sorted_ids;

fn item(i: u64) -> Vec<u8> {
    i.to_le_bytes().to_vec()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

/// Runs `f` on a thread and fails the test if it does not finish within `limit` (a hang must
/// fail, not block CI).
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).expect("operation hung")
}

#[test]
fn loss_window_holds_under_load_with_faults() {
    let window = Duration::from_millis(200);
    let faults = Faults {
        fail_rate: 0.2,
        half_batch_rate: 0.2,
        spike_rate: 0.05,
        spike: Duration::from_millis(10),
        panic_rate: 0.0,
    };
    let db = StampedDb::new(
        FaultyDb::new(MemDb::with_latency(Duration::from_millis(1)), 7).with_faults(faults),
    );
    let storage = Arc::new(Storage::builder().max_unflushed_age(window).build(db));
    let pushed_at = std::sync::Mutex::new(HashMap::new());
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let mut pushers = Vec::new();
        for w in 0..3u64 {
            let (storage, pushed_at) = (&storage, &pushed_at);
            pushers.push(s.spawn(move || {
                let t = CancelToken::new();
                for i in 0..400 {
                    let id = w << 32 | i;
                    storage.push(&t, item(id)).unwrap();
                    pushed_at.lock().unwrap().insert(id, Instant::now());
                    std::thread::sleep(Duration::from_micros(1500));
                }
            }));
        }
        let (storage, stop) = (&storage, &stop);
        s.spawn(move || {
            // A popper that takes some items (they must never reach the Db).
            while !stop.load(Ordering::Relaxed) {
                let _ = storage.try_pop();
                std::thread::sleep(Duration::from_millis(7));
            }
        });
        for p in pushers {
            p.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
    });
    std::thread::sleep(window + Duration::from_millis(100));
    let pushed_at = pushed_at.into_inner().unwrap();
    let mut worst = Duration::ZERO;
    for (data, arrived) in storage.db().arrivals() {
        let id = u64::from_le_bytes(data.try_into().unwrap());
        worst = worst.max(arrived.saturating_duration_since(pushed_at[&id]));
    }
    let counts = storage.db().inner().counts();
    println!(
        "window {window:?}: worst unflushed age {worst:?}, faults injected {}",
        counts.total()
    );
    assert!(counts.total() > 0);
    assert!(
        worst <= window,
        "an item waited {worst:?} in memory, window {window:?}"
    );
    // Every item is either popped or in the Db: none still only in memory after the window.
    assert_eq!(storage.stats().buffered_items, 0, "{:?}", storage.stats());
}

#[test]
fn an_outage_longer_than_the_window_refuses_pushes_then_recovers_losing_nothing() {
    let window = Duration::from_millis(100);
    let db = FaultyDb::new(MemDb::new(), 1);
    let storage = Storage::builder()
        .max_unflushed_age(window)
        .close_timeout(Duration::from_secs(5))
        .build(db);
    let t = CancelToken::new();
    storage.db().set_down(true);
    for i in 0..10 {
        storage.push(&t, item(i)).unwrap();
    }
    std::thread::sleep(window + Duration::from_millis(30));
    match storage.push(&t, item(99)) {
        Err(Error::Db(e)) => assert!(e.to_string().contains("injected"), "{e}"),
        other => panic!("a push during a long outage must be refused, got {other:?}"),
    }
    assert!(storage.stats().db_failing_for.is_some());
    storage.db().set_down(false);
    // Recovery: the flusher's next retry (backoff <= window/8) writes the backlog.
    let deadline = Instant::now() + Duration::from_secs(2);
    while storage.db().inner().len() < 10 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(storage.db().inner().len(), 10);
    storage.push(&t, item(100)).unwrap();
    storage.close().unwrap();
    let left = sorted_ids(storage.db().inner());
    let mut expected: Vec<u64> = (0..10).collect();
    expected.push(100);
    assert_eq!(left, expected);
}

#[test]
fn backpressure_bounds_memory_and_push_unblocks_or_reports_its_token() {
    let cap = 32;
    let storage = Arc::new(
        Storage::builder()
            .max_buffered_items(cap)
            .max_batch(8)
            .build(MemDb::with_latency(Duration::from_millis(5))),
    );
    let peak = AtomicUsize::new(0);
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let (storage, peak, done) = (&storage, &peak, &done);
        s.spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(storage.stats().buffered_items, Ordering::Relaxed);
                std::thread::yield_now();
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
    println!(
        "peak buffered {} of {cap}; {} pushes waited",
        peak.load(Ordering::Relaxed),
        stats.push_waits
    );
    assert!(peak.load(Ordering::Relaxed) <= cap);
    assert!(stats.push_waits > 0, "the buffer never filled");

    // Full and slow: a push with a short deadline reports it and stores nothing.
    let slow = Storage::builder()
        .max_buffered_items(2)
        .build(MemDb::with_latency(Duration::from_millis(200)));
    let t = CancelToken::new();
    slow.push(&t, item(1)).unwrap();
    slow.push(&t, item(2)).unwrap();
    let cancelled = t.child();
    let c2 = cancelled.clone();
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        c2.cancel();
    });
    assert!(matches!(
        slow.push(&cancelled, item(3)),
        Err(Error::Cancelled)
    ));
    canceller.join().unwrap();
    slow.close().unwrap();
    assert_eq!(slow.db().len(), 2);
}

#[test]
fn cancellation_wakes_blocked_pops_within_milliseconds() {
    let storage = Arc::new(Storage::new(MemDb::new()));
    let mut cancel_lat = Vec::new();
    let mut deadline_lat = Vec::new();
    for trial in 0..2000 {
        let by_deadline = trial % 2 == 1;
        let t = if by_deadline {
            CancelToken::new().with_timeout(Duration::from_millis(1))
        } else {
            CancelToken::new()
        };
        let (s, t2) = (storage.clone(), t.clone());
        let waiter = std::thread::spawn(move || {
            let r = s.pop(&t2);
            (r, Instant::now())
        });
        let ended_at = if by_deadline {
            t.deadline().unwrap()
        } else {
            std::thread::sleep(Duration::from_micros(500));
            let at = Instant::now();
            t.cancel();
            at
        };
        let (r, woke) = waiter.join().unwrap();
        let lat = woke.saturating_duration_since(ended_at);
        if by_deadline {
            assert!(matches!(r, Err(Error::DeadlineExceeded)), "{r:?}");
            deadline_lat.push(lat);
        } else {
            assert!(matches!(r, Err(Error::Cancelled)), "{r:?}");
            cancel_lat.push(lat);
        }
    }
    cancel_lat.sort();
    deadline_lat.sort();
    println!(
        "wake latency over 1000 trials each: cancel p50 {:?} p99 {:?}; deadline p50 {:?} p99 {:?}",
        percentile(&cancel_lat, 0.5),
        percentile(&cancel_lat, 0.99),
        percentile(&deadline_lat, 0.5),
        percentile(&deadline_lat, 0.99)
    );
    // Generous bounds: the machine is shared and noisy; the figures are what matter.
    assert!(percentile(&cancel_lat, 0.99) < Duration::from_millis(50));
    assert!(percentile(&deadline_lat, 0.99) < Duration::from_millis(50));
}

#[test]
fn bad_input_gets_its_documented_error_and_nothing_hangs() {
    let storage = Arc::new(Storage::builder().max_item_len(16).build(MemDb::new()));
    let t = CancelToken::new();
    storage.push(&t, Vec::new()).unwrap();
    storage.push(&t, vec![1; 16]).unwrap();
    assert!(matches!(
        storage.push(&t, vec![1; 17]),
        Err(Error::ItemTooLarge { len: 17, max: 16 })
    ));
    assert_eq!(storage.stats().pushes, 2);
    assert_eq!(storage.pop(&t).unwrap(), vec![1; 16]);
    assert_eq!(storage.pop(&t).unwrap(), Vec::<u8>::new());

    // Drop while other threads are blocked in pop and push: they return Closed.
    let full = Arc::new(
        Storage::builder()
            .max_buffered_items(1)
            .build(MemDb::with_latency(Duration::from_millis(300))),
    );
    full.push(&t, item(1)).unwrap();
    let empty = Arc::new(Storage::new(MemDb::new()));
    let blocked_pop = {
        let (s, t) = (empty.clone(), t.clone());
        std::thread::spawn(move || s.pop(&t))
    };
    let blocked_push = {
        let (s, t) = (full.clone(), t.clone());
        std::thread::spawn(move || {
            s.push(&t, item(2)).ok();
            s.push(&t, item(3))
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    within(Duration::from_secs(5), move || {
        empty.close().unwrap();
        full.close().unwrap();
    });
    assert!(matches!(blocked_pop.join().unwrap(), Err(Error::Closed)));
    assert!(matches!(blocked_push.join().unwrap(), Err(Error::Closed)));
}

#[test]
fn a_panicking_db_is_reported_and_loses_nothing() {
    let faults = Faults {
        panic_rate: 0.3,
        ..Faults::default()
    };
    let storage = Storage::builder()
        .max_unflushed_age(Duration::from_millis(20))
        .close_timeout(Duration::from_secs(10))
        .build(FaultyDb::new(MemDb::new(), 3).with_faults(faults));
    let t = CancelToken::new();
    for i in 0..200 {
        storage.push(&t, item(i)).unwrap();
    }
    let mut saw_panic_error = false;
    for _ in 0..50 {
        match storage.flush(&t) {
            Ok(()) => break,
            Err(Error::Db(DbError::Panicked(msg))) => {
                assert!(msg.contains("injected panic"), "{msg}");
                saw_panic_error = true;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(storage.db().counts().panics > 0);
    storage.close().unwrap();
    let mut left = sorted_ids(storage.db().inner());
    left.dedup(); // a panicking write may have stored items before it panicked: never lost
    assert_eq!(left, (0..200).collect::<Vec<_>>());
    assert!(saw_panic_error || storage.stats().db_failures > 0);
}
