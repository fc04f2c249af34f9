//! I/O saved: Db calls and wall time of lifostore against a naive storage that calls the Db
//! for every push and pop, over a MemDb that sleeps per call. Db call counts are printed
//! (`io_saved:` lines) before each group is timed.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use lifostore::{CancelToken, Db, MemDb, Storage};

/// The naive baseline: every push and pop is one Db call; a pop on an empty Db retries
/// every millisecond.
struct Naive(MemDb);

impl Naive {
    fn push(&self, item: &[u8]) {
        self.0.push(item).expect("push");
    }
    fn pop(&self) -> Vec<u8> {
        loop {
            if let Some(x) = self.0.pop().expect("pop") {
                return x;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

const SEED_THREADS: usize = 1000;

/// 1000 pushers and 1000 poppers, one item each; returns (wall, Db calls).
fn seed_lifostore() -> (Duration, u64) {
    let s = Arc::new(Storage::new(MemDb::with_latency(Duration::from_millis(5))).unwrap());
    let t = CancelToken::new();
    let wall = threads(
        SEED_THREADS,
        {
            let (s, t) = (s.clone(), t.clone());
            move |i| s.push(&t, format!("{i}")).expect("push")
        },
        {
            let (s, t) = (s.clone(), t.clone());
            move |_| {
                std::hint::black_box(s.pop(&t).expect("pop"));
            }
        },
    );
    s.close().expect("close");
    (wall, s.db().calls().total())
}

fn seed_naive() -> (Duration, u64) {
    let s = Arc::new(Naive(MemDb::with_latency(Duration::from_millis(5))));
    let wall = threads(
        SEED_THREADS,
        {
            let s = s.clone();
            move |i| s.push(format!("{i}").as_bytes())
        },
        {
            let s = s.clone();
            move |_| {
                std::hint::black_box(s.pop());
            }
        },
    );
    (wall, s.0.calls().total())
}

fn threads(
    n: usize,
    push: impl Fn(usize) + Send + Sync + Clone + 'static,
    pop: impl Fn(usize) + Send + Sync + Clone + 'static,
) -> Duration {
    let barrier = Arc::new(Barrier::new(2 * n + 1));
    let mut hs = Vec::new();
    for i in 0..n {
        let (b, f) = (barrier.clone(), push.clone());
        hs.push(std::thread::spawn(move || {
            b.wait();
            f(i)
        }));
        let (b, f) = (barrier.clone(), pop.clone());
        hs.push(std::thread::spawn(move || {
            b.wait();
            f(i)
        }));
    }
    barrier.wait();
    let start = Instant::now();
    for h in hs {
        h.join().expect("thread");
    }
    start.elapsed()
}

const BURST: u64 = 2000;
const LATENCY: Duration = Duration::from_micros(100);

/// N pushes, all flushed to the Db, then N pops; returns (wall, Db calls).
fn burst_lifostore() -> (Duration, u64) {
    let s = Storage::new(MemDb::with_latency(LATENCY)).unwrap();
    let t = CancelToken::new();
    let start = Instant::now();
    for i in 0..BURST {
        s.push(&t, i.to_le_bytes().to_vec()).expect("push");
    }
    s.flush(&t).expect("flush");
    for _ in 0..BURST {
        std::hint::black_box(s.pop(&t).expect("pop"));
    }
    (start.elapsed(), s.db().calls().total())
}

fn burst_naive() -> (Duration, u64) {
    let s = Naive(MemDb::with_latency(LATENCY));
    let start = Instant::now();
    for i in 0..BURST {
        s.push(&i.to_le_bytes());
    }
    for _ in 0..BURST {
        std::hint::black_box(s.pop());
    }
    (start.elapsed(), s.0.calls().total())
}

/// Pops keep up: push and pop interleaved within the window; returns (wall, Db calls).
fn keep_up_lifostore() -> (Duration, u64) {
    let s = Storage::new(MemDb::with_latency(LATENCY)).unwrap();
    let t = CancelToken::new();
    let start = Instant::now();
    for i in 0..BURST {
        s.push(&t, i.to_le_bytes().to_vec()).expect("push");
        std::hint::black_box(s.pop(&t).expect("pop"));
    }
    (start.elapsed(), s.db().calls().total())
}

fn keep_up_naive() -> (Duration, u64) {
    let s = Naive(MemDb::with_latency(LATENCY));
    let start = Instant::now();
    for i in 0..BURST {
        s.push(&i.to_le_bytes());
        std::hint::black_box(s.pop());
    }
    (start.elapsed(), s.0.calls().total())
}

type Scenario = fn() -> (Duration, u64);

fn group(c: &mut Criterion, name: &str, lifo: Scenario, naive: Scenario) {
    let (wl, cl) = lifo();
    let (wn, cn) = naive();
    println!(
        "io_saved: {name}: lifostore {cl} Db calls in {wl:.2?}; naive {cn} Db calls in {wn:.2?}; \
         {:.0}x fewer calls",
        cn as f64 / (cl.max(1)) as f64
    );
    let mut g = c.benchmark_group(format!("io_saved_{name}"));
    g.bench_function("lifostore", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| lifo().0).sum())
    });
    g.bench_function("naive", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| naive().0).sum())
    });
    g.finish();
}

fn io_saved(c: &mut Criterion) {
    group(c, "seed_1000x1000_5ms", seed_lifostore, seed_naive);
    group(c, "keep_up_2000_100us", keep_up_lifostore, keep_up_naive);
    group(
        c,
        "burst_then_drain_2000_100us",
        burst_lifostore,
        burst_naive,
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_secs(3));
    targets = io_saved
}
criterion_main!(benches);
