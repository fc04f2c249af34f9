//! Promise 3, bounded loss: an unpopped item is in the Db no later than the window after its
//! push returned, whenever the Db accepts writes; after a crash only items younger than the
//! window may be missing.
//!
//! Here: every item's arrival in the Db timed against its push, under load, with faults, at
//! full load while the write latency jumps five-fold, and for durable pushes. Deeper: the
//! SIGKILL loop (`tests/file_db_crash.rs`), the window kept for leased items
//! (`p13_leases`), and the schedule and capacity rules (`src/engine/policy.rs`,
//! `src/engine/write_model.rs`).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lifostore::testing::{FaultyDb, StampedDb};
use lifostore::{CancelToken, Db, DbError, Error, MemDb, PushBatchError, Storage};

use crate::common::lateness::Lateness;
use crate::common::{id_of, ids, item, quiet, sorted_ids};

/// Waits up to `limit` for `cond`, checking every few milliseconds (a test-side observer; the
/// library itself never polls).
fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    cond()
}

/// A MemDb whose every write takes `base` times the current factor, as a disk whose
/// `fdatasync` turns slow.
struct JumpyDb {
    inner: MemDb,
    base: Duration,
    factor: AtomicU32,
}

impl Db for JumpyDb {
    fn push(&self, data: &[u8]) -> Result<(), DbError> {
        self.push_batch(&[data]).map_err(|e| e.source)
    }
    fn pop(&self) -> Result<Option<Vec<u8>>, DbError> {
        self.inner.pop()
    }
    fn push_batch(&self, items: &[&[u8]]) -> Result<(), PushBatchError> {
        std::thread::sleep(self.base * self.factor.load(Ordering::Relaxed));
        self.inner.push_batch(items)
    }
}

// ---- 3. Bounded loss ----------------------------------------------------------------------

#[test]
fn every_unpopped_item_reaches_the_db_within_the_window_under_load() {
    let window = Duration::from_millis(200);
    let s = Arc::new(
        Storage::builder()
            .max_unflushed_age(window)
            .build(StampedDb::new(MemDb::new()))
            .unwrap(),
    );
    let pushed_at = Mutex::new(Vec::new());
    let lateness = Lateness::start_every_thread(window);
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
    // Wait for the last items to be written, without popping anything (their age at arrival
    // is what is judged, not when this thread looks).
    let until = Instant::now() + Duration::from_secs(10);
    while s.stats().buffered_items + s.stats().in_flight_items > 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
    let probe = lateness.stop_probe();
    let arrivals: std::collections::HashMap<u64, Instant> = s
        .db()
        .arrivals()
        .iter()
        .map(|(x, at)| (id_of(x), *at))
        .collect();
    let pushed = pushed_at.lock().unwrap();
    let mut worst = (Duration::ZERO, Duration::ZERO);
    for (i, at) in pushed.iter() {
        let arrived = *arrivals
            .get(i)
            .unwrap_or_else(|| panic!("item {i} never reached the Db"));
        let age = arrived.saturating_duration_since(*at);
        // Judged by what the scheduler withheld from this process's threads during this
        // item's own life: any thread that waited for a CPU then may have delayed it.
        let late = probe.allowance_between(*at, arrived);
        assert!(
            age <= window + late,
            "item {i} waited {age:?} > window {window:?} + what the scheduler withheld from \
             this process's threads meanwhile {late:?}"
        );
        worst = worst.max((age, late));
    }
    println!(
        "worst push-to-Db age: {:?} (window {window:?}, scheduler lateness then {:?})",
        worst.0, worst.1
    );
}

#[test]
fn loss_window_holds_under_mixed_load_with_faults() {
    let window = Duration::from_millis(200);
    let db = StampedDb::new(
        FaultyDb::new(MemDb::with_latency(Duration::from_millis(1)), 7)
            .fail_rate(0.2)
            .half_batch_rate(0.2)
            .latency_spikes(0.05, Duration::from_millis(10)),
    );
    let storage = Storage::builder()
        .max_unflushed_age(window)
        .build(db)
        .unwrap();
    let pushed_at = Mutex::new(HashMap::new());
    let popped = Mutex::new(Vec::new());
    let stop = AtomicBool::new(false);
    let lateness = Lateness::start(window);
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
        let (storage, stop, popped) = (&storage, &stop, &popped);
        s.spawn(move || {
            // A popper taking some items, from memory and from the Db.
            while !stop.load(Ordering::Relaxed) {
                if let Ok(Some(x)) = storage.try_pop() {
                    popped.lock().unwrap().push(id_of(&x));
                }
                std::thread::sleep(Duration::from_millis(7));
            }
        });
        // The popper stops before a pusher's panic (a refused push) is passed on: the scope
        // waits for every thread, so passing it on first would hang the test, not fail it.
        let joined: Vec<_> = pushers.into_iter().map(|p| p.join()).collect();
        stop.store(true, Ordering::Relaxed);
        for pusher in joined {
            if let Err(panic) = pusher {
                std::panic::resume_unwind(panic);
            }
        }
    });
    // Every unpopped item must reach the Db within the window of its push, without close.
    assert!(
        eventually(window * 3, || storage.stats().buffered_items == 0),
        "items still only in memory long after the window: {:?}",
        storage.stats()
    );
    let late = lateness.stop();
    let pushed_at = pushed_at.into_inner().unwrap();
    let arrivals = storage.db().arrivals();
    let mut worst = Duration::ZERO;
    for (data, arrived) in &arrivals {
        worst = worst.max(arrived.saturating_duration_since(pushed_at[&id_of(data)]));
    }
    let counts = storage.db().inner().counts();
    let stats = storage.stats();
    println!(
        "loss window {window:?}: {} items reached the Db, worst age {worst:?}; faults injected {} \
         ({} failed calls, {} half batches, {} spikes); {} failed writes",
        arrivals.len(),
        counts.total(),
        counts.failures,
        counts.half_batches,
        counts.spikes,
        stats.db_failures
    );
    assert!(
        counts.failures > 0,
        "no write failed: the test tests nothing"
    );
    assert!(
        worst <= window + late,
        "an item waited {worst:?} in memory, window {window:?} + the scheduler's worst \
         lateness {late:?}"
    );
    // Nothing lost or duplicated: popped + in the Db = pushed.
    storage.close().unwrap();
    let mut all: Vec<u64> = popped.into_inner().unwrap();
    all.extend(sorted_ids(storage.db().inner().inner()));
    let distinct: HashSet<u64> = all.iter().copied().collect();
    assert_eq!(distinct.len(), all.len(), "an item was returned twice");
    assert_eq!(distinct, pushed_at.keys().copied().collect::<HashSet<_>>());
}

/// CORE BUG (promises 3 and 5), ignored until fixed: the pace rule learns the Db's speed only
/// from successful writes (`State::learn_rate(stored, elapsed)` in `flusher::write_batch`, fed
/// the duration of that one call), so the time a flaky Db spends in failed calls and in the
/// backoff between retries is not counted. With half the writes failing the real throughput is
/// a fraction of the learned rate, the capacity (`rate * window / 2`) stays far too high, and
/// items wait in memory well past the window while the Db accepts every other write. Here:
/// every call takes 1 ms, half fail, batches of at most 16: learned 16 000 items/s, capacity
/// 1 600 items, but only ~3 000 items/s reach the Db.
/// Run: `cargo test --test contract -- --ignored flaky`.
#[test]
#[ignore = "known limitation: a Db failing half its calls with small batches still misses the window (worst ~0.6 s for 200 ms); see the closing note"]
fn a_flaky_db_still_gets_every_item_within_the_window() {
    let window = Duration::from_millis(200);
    let db = StampedDb::new(
        FaultyDb::new(MemDb::new(), 5)
            .latency_spikes(1.0, Duration::from_millis(1))
            .fail_rate(0.5)
            .writes_only(),
    );
    let storage = Storage::builder()
        .max_unflushed_age(window)
        .max_batch(16)
        .close_timeout(Duration::from_secs(10))
        .build(db)
        .unwrap();
    let pushed_at = Mutex::new(HashMap::new());
    let refused = std::sync::atomic::AtomicU64::new(0);
    let started = Instant::now();
    std::thread::scope(|s| {
        for w in 0..2u64 {
            let (storage, pushed_at, refused) = (&storage, &pushed_at, &refused);
            s.spawn(move || {
                let t = CancelToken::new();
                let mut i = 0;
                while started.elapsed() < Duration::from_millis(1500) {
                    let id = w << 32 | i;
                    i += 1;
                    match storage.push(&t, item(id)) {
                        Ok(()) => {
                            pushed_at.lock().unwrap().insert(id, Instant::now());
                        }
                        // Refused: the storage saw an item outlive the window (promise 6).
                        Err(Error::Db(_)) => {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => panic!("{e}"),
                    }
                    std::thread::sleep(Duration::from_micros(100));
                }
            });
        }
    });
    storage.close().unwrap();
    let pushed_at = pushed_at.into_inner().unwrap();
    let mut ages: Vec<Duration> = storage
        .db()
        .arrivals()
        .iter()
        .map(|(d, at)| at.saturating_duration_since(pushed_at[&id_of(d)]))
        .collect();
    ages.sort();
    let stats = storage.stats();
    let late = ages.iter().filter(|a| **a > window).count();
    println!(
        "flaky Db: {} items, {late} arrived later than the window, worst {:?}; learned rate {:?} \
         items/s, {} writes, {} failed, {} pushes waited, {} refused",
        ages.len(),
        ages.last(),
        stats.db_items_per_sec,
        stats.db_push_calls,
        stats.db_failures,
        stats.push_waits,
        refused.load(Ordering::Relaxed)
    );
    assert_eq!(
        late, 0,
        "items outlived the window while the Db accepted writes"
    );
}

#[test]
fn the_window_holds_when_write_latency_jumps_five_fold_under_flat_out_pushers() {
    let window = Duration::from_millis(300);
    let db = StampedDb::new(JumpyDb {
        inner: MemDb::new(),
        base: Duration::from_millis(4),
        factor: AtomicU32::new(1),
    });
    let storage = Arc::new(
        Storage::builder()
            .max_unflushed_age(window)
            .build(db)
            .unwrap(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let lateness = Lateness::start(window);
    let pushers: Vec<_> = (0..2u64)
        .map(|p| {
            let (s, stop) = (Arc::clone(&storage), Arc::clone(&stop));
            std::thread::spawn(move || {
                let t = CancelToken::new();
                let mut acked = Vec::new();
                let mut id = p << 40;
                while !stop.load(Ordering::Relaxed) {
                    s.push(&t, item(id)).unwrap();
                    acked.push((id, Instant::now()));
                    id += 1;
                }
                acked
            })
        })
        .collect();
    let inner = || storage.db().inner();
    std::thread::sleep(Duration::from_millis(400));
    inner().factor.store(5, Ordering::Relaxed); // writes take 20 ms instead of 4
    std::thread::sleep(Duration::from_millis(600));
    inner().factor.store(1, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<(u64, Instant)> = pushers
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    storage.close().unwrap();
    let late = lateness.stop();

    let arrivals: std::collections::HashMap<u64, Instant> = storage
        .db()
        .arrivals()
        .into_iter()
        .map(|(data, at)| (id_of(&data), at))
        .collect();
    assert_eq!(
        arrivals.len(),
        acked.len(),
        "every acknowledged item reached the Db once"
    );
    let worst = acked
        .iter()
        .map(|(id, at)| arrivals[id].saturating_duration_since(*at))
        .max()
        .unwrap_or_default();
    let stats = storage.stats();
    println!(
        "{} pushes in 1.3 s, worst unflushed age {worst:?} (window {window:?}, scheduler \
         lateness {late:?}), {} writes",
        acked.len(),
        stats.db_push_calls
    );
    assert!(
        acked.len() > 10_000,
        "pushers were paced to a crawl: {}",
        acked.len()
    );
    assert!(
        worst <= window + late,
        "an item waited {worst:?} > window {window:?} + the scheduler's worst lateness {late:?}"
    );
}

/// At light load the write-behind keeps batching: the flush age plans for the batches being
/// written, not for full batches extrapolated from small writes (which would pull it to zero:
/// one Db write per push). One push per millisecond for 0.6 s at a 100 ms window: items are
/// written at about three quarters of the window, ~75 per write.
#[test]
fn light_load_still_batches_its_writes() {
    let storage = Storage::builder()
        .max_unflushed_age(Duration::from_millis(100))
        .build(MemDb::with_latency(Duration::from_millis(1)))
        .unwrap();
    let t = CancelToken::new();
    let pushes = 600;
    for i in 0..pushes {
        storage.push(&t, item(i)).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    let writes = storage.stats().db_push_calls;
    storage.close().unwrap();
    println!("{pushes} pushes, {writes} Db writes before close");
    assert!(
        writes < pushes / 5,
        "{writes} Db writes for {pushes} paced pushes: the write-behind stopped batching"
    );
}

// ---- push_durable ---------------------------------------------------------------------------

#[test]
fn push_durable_returns_once_the_item_is_in_the_db_with_older_items_before_it() {
    let s = quiet(MemDb::new());
    let t = CancelToken::new();
    s.push_batch(&t, [item(1), item(2)]).unwrap();
    s.push_durable(&t, item(3)).unwrap();
    assert_eq!(
        ids(&s.db().snapshot()),
        vec![1, 2, 3],
        "push order kept in the Db"
    );
    s.push(&t, item(4)).unwrap();
    assert_eq!(ids(&s.pop_batch(&t, 10).unwrap()), vec![4]);
    assert_eq!(ids(&s.pop_batch(&t, 10).unwrap()), vec![3, 2, 1]);
}
