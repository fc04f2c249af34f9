//! Draining a backlog that reached the Db: 2000 flushed items popped with
//! `try_pop_batch(1024)` (one Db call per 1024 items) beside `try_pop` one by one (one Db call
//! per item), in the same run, over a MemDb costing 100 µs per call (an expensive remote Db)
//! and over a FileDb. Each iteration drains a freshly filled storage; filling is not timed.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lifostore::{Db, FileDb, FileDbOptions, MemDb, Storage};

const N: usize = 2000;

fn file_db() -> FileDb {
    let d = std::env::temp_dir().join(format!("lifostore-drain-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("bench dir");
    let path: PathBuf = d.join("drain.lifo");
    let _ = std::fs::remove_file(&path);
    FileDb::open_with(&path, FileDbOptions::default().shared(false)).expect("open")
}

/// A storage whose Db holds `N` items (ids 0..N) and whose memory is empty.
fn filled<D: Db + 'static>(db: D) -> Storage<D> {
    let items: Vec<Vec<u8>> = (0..N as u64).map(|i| i.to_le_bytes().to_vec()).collect();
    let refs: Vec<&[u8]> = items.iter().map(Vec::as_slice).collect();
    db.push_batch(&refs).expect("fill");
    Storage::builder()
        .max_unflushed_age(Duration::from_secs(600))
        .build(db)
        .expect("storage")
}

fn drain_batch<D>(s: &Storage<D>) -> usize {
    let mut n = 0;
    loop {
        let got = s.try_pop_batch(1024).expect("pop_batch").len();
        if got == 0 {
            return n;
        }
        n += got;
    }
}

fn drain_one_by_one<D>(s: &Storage<D>) -> usize {
    let mut n = 0;
    while s.try_pop().expect("pop").is_some() {
        n += 1;
    }
    n
}

fn bench_drain<D: Db + 'static>(c: &mut Criterion, name: &str, make: impl Fn() -> D) {
    let mut g = c.benchmark_group(format!("drain_2000_flushed_{name}"));
    g.sample_size(10).throughput(Throughput::Elements(N as u64));
    for (how, drain) in [
        (
            "pop_batch_1024",
            drain_batch::<D> as fn(&Storage<D>) -> usize,
        ),
        ("pop_one_by_one", drain_one_by_one::<D>),
    ] {
        let s = filled(make());
        let calls_before = s.stats().db_pop_calls;
        assert_eq!(drain(&s), N);
        println!(
            "{name} {how}: {} Db calls for {N} items",
            s.stats().db_pop_calls - calls_before
        );
        g.bench_function(BenchmarkId::new(how, N), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let s = filled(make());
                    let t = Instant::now();
                    assert_eq!(drain(&s), N);
                    total += t.elapsed();
                }
                total
            })
        });
    }
    g.finish();
}

fn drain(c: &mut Criterion) {
    bench_drain(c, "memdb_100us", || {
        MemDb::with_latency(Duration::from_micros(100))
    });
    bench_drain(c, "filedb", file_db);
}

criterion_group!(benches, drain);
criterion_main!(benches);
