//! Promise 3 at full load: pushers flat out over a Db whose write latency jumps five-fold for
//! a while. The flusher's schedule and the buffer's capacity follow the slowest recent writes,
//! so every item still reaches the Db within the window after its push returned: the storage
//! paces the pushers instead.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use lifostore::testing::StampedDb;
use lifostore::{CancelToken, Db, DbError, MemDb, PushBatchError, Storage};

mod common;
use common::{id_of, item};

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
        "{} pushes in 1.3 s, worst unflushed age {worst:?} (window {window:?}), {} writes",
        acked.len(),
        stats.db_push_calls
    );
    assert!(
        acked.len() > 10_000,
        "pushers were paced to a crawl: {}",
        acked.len()
    );
    assert!(
        worst <= window,
        "an item waited {worst:?} > window {window:?}"
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
