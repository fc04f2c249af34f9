//! Soak: 60 s (LIFOSTORE_SOAK_SECS overrides) of mixed load with injected faults, ending in
//! one figures line. Run: `cargo test --release --test soak -- --ignored soak --nocapture`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lifostore::testing::{Faults, FaultyDb, StampedDb};
use lifostore::{CancelToken, Error, MemDb, Storage};

#[test]
#[ignore = "soak: 60 s, run on demand"]
fn soak() {
    let secs: u64 = std::env::var("LIFOSTORE_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let window = Duration::from_millis(200);
    let faults = Faults {
        fail_rate: 0.05,
        half_batch_rate: 0.1,
        spike_rate: 0.01,
        spike: Duration::from_millis(20),
        panic_rate: 0.0,
    };
    let db = StampedDb::new(
        FaultyDb::new(MemDb::with_latency(Duration::from_micros(500)), 11).with_faults(faults),
    );
    let storage = Arc::new(
        Storage::builder()
            .max_unflushed_age(window)
            .max_buffered_items(5_000)
            .close_timeout(Duration::from_secs(30))
            .build(db),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let peak_bytes = Arc::new(AtomicUsize::new(0));
    let pushed = Arc::new(Mutex::new(Vec::new()));
    let popped = Arc::new(Mutex::new(Vec::new()));
    let pushed_at = Arc::new(Mutex::new(std::collections::HashMap::new()));
    let cancel_lat = Arc::new(Mutex::new(Vec::new()));
    let mut handles = Vec::new();
    for w in 0..4u64 {
        let (s, stop, ops, pushed, pushed_at) = (
            storage.clone(),
            stop.clone(),
            ops.clone(),
            pushed.clone(),
            pushed_at.clone(),
        );
        handles.push(std::thread::spawn(move || {
            let t = CancelToken::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let id = w << 40 | i;
                i += 1;
                match s.push(
                    &t.with_timeout(Duration::from_millis(50)),
                    id.to_le_bytes().to_vec(),
                ) {
                    Ok(()) => {
                        pushed_at.lock().unwrap().insert(id, Instant::now());
                        pushed.lock().unwrap().push(id);
                    }
                    Err(Error::DeadlineExceeded | Error::Db(_)) => {}
                    Err(e) => panic!("{e}"),
                }
                ops.fetch_add(1, Ordering::Relaxed);
                if i.is_multiple_of(64) {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        }));
    }
    for _ in 0..3 {
        let (s, stop, ops, popped, lat) = (
            storage.clone(),
            stop.clone(),
            ops.clone(),
            popped.clone(),
            cancel_lat.clone(),
        );
        handles.push(std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let t = CancelToken::new().with_timeout(Duration::from_millis(1 + n % 5));
                let started = Instant::now();
                match s.pop(&t) {
                    Ok(x) => popped
                        .lock()
                        .unwrap()
                        .push(u64::from_le_bytes(x.try_into().unwrap())),
                    Err(Error::DeadlineExceeded) => {
                        if let Some(d) = t.deadline() {
                            lat.lock()
                                .unwrap()
                                .push(Instant::now().saturating_duration_since(d.max(started)));
                        }
                    }
                    Err(Error::Db(_)) => {}
                    Err(e) => panic!("{e}"),
                }
                ops.fetch_add(1, Ordering::Relaxed);
                // Poppers run slower than pushers, so items age and go through the Db.
                std::thread::sleep(Duration::from_micros(50));
            }
        }));
    }
    {
        let (s, stop, peak) = (storage.clone(), stop.clone(), peak_bytes.clone());
        handles.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(s.stats().buffered_bytes, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
        }));
    }
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    storage.close().unwrap();

    let pushed = pushed.lock().unwrap().clone();
    let popped = popped.lock().unwrap().clone();
    let arrivals = storage.db().arrivals();
    let pushed_at = pushed_at.lock().unwrap();
    let mut worst = Duration::ZERO;
    for (data, at) in &arrivals {
        let id = u64::from_le_bytes(data.as_slice().try_into().unwrap());
        if let Some(p) = pushed_at.get(&id) {
            worst = worst.max(at.saturating_duration_since(*p));
        }
    }
    let left: Vec<u64> = storage
        .db()
        .inner()
        .inner()
        .snapshot()
        .into_iter()
        .map(|x| u64::from_le_bytes(x.try_into().unwrap()))
        .collect();
    let mut seen = HashSet::new();
    let mut duplicates = 0;
    for id in popped.iter().chain(left.iter()) {
        if !seen.insert(*id) {
            duplicates += 1;
        }
    }
    let lost = pushed.iter().filter(|id| !seen.contains(id)).count();
    let mut lat = cancel_lat.lock().unwrap().clone();
    lat.sort();
    let p99 = lat
        .get((lat.len().saturating_sub(1)) * 99 / 100)
        .copied()
        .unwrap_or_default();
    println!(
        "soak {secs}s: operations {}, faults injected {}, items lost {lost}, duplicates {duplicates}, \
         peak buffered bytes {}, worst unflushed age {worst:?} (window {window:?}), p99 deadline wake latency {p99:?}",
        ops.load(Ordering::Relaxed),
        storage.db().inner().counts().total(),
        peak_bytes.load(Ordering::Relaxed),
    );
    assert_eq!(lost, 0);
    assert_eq!(duplicates, 0);
}
