//! In-memory path: lifostore over a MemDb with a window long enough that nothing flushes,
//! beside the floor any design pays (a bare parking_lot Mutex<Vec> + Condvar stack), the same
//! with std's Mutex, and crossbeam-channel (the usual hand-off).

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use lifostore::{CancelToken, MemDb, Storage};

/// The operations every contender offers.
trait Stack: Send + Sync + 'static {
    fn push(&self, item: Vec<u8>);
    fn pop(&self) -> Vec<u8>;
}

struct Lifo(Storage<MemDb>, CancelToken);

impl Stack for Lifo {
    fn push(&self, item: Vec<u8>) {
        self.0.push(&self.1, item).expect("push");
    }
    fn pop(&self) -> Vec<u8> {
        self.0.pop(&self.1).expect("pop")
    }
}

#[derive(Default)]
struct ParkingLotStack(parking_lot::Mutex<Vec<Vec<u8>>>, parking_lot::Condvar);

impl Stack for ParkingLotStack {
    fn push(&self, item: Vec<u8>) {
        self.0.lock().push(item);
        self.1.notify_one();
    }
    fn pop(&self) -> Vec<u8> {
        let mut g = self.0.lock();
        loop {
            if let Some(x) = g.pop() {
                return x;
            }
            self.1.wait(&mut g);
        }
    }
}

#[derive(Default)]
struct StdStack(std::sync::Mutex<Vec<Vec<u8>>>, std::sync::Condvar);

impl Stack for StdStack {
    fn push(&self, item: Vec<u8>) {
        self.0.lock().unwrap().push(item);
        self.1.notify_one();
    }
    fn pop(&self) -> Vec<u8> {
        let mut g = self.0.lock().unwrap();
        loop {
            if let Some(x) = g.pop() {
                return x;
            }
            g = self.1.wait(g).unwrap();
        }
    }
}

struct Channel(
    crossbeam_channel::Sender<Vec<u8>>,
    crossbeam_channel::Receiver<Vec<u8>>,
);

impl Stack for Channel {
    fn push(&self, item: Vec<u8>) {
        self.0.send(item).expect("send");
    }
    fn pop(&self) -> Vec<u8> {
        self.1.recv().expect("recv")
    }
}

fn contenders() -> Vec<(&'static str, Arc<dyn Stack>)> {
    let (tx, rx) = crossbeam_channel::unbounded();
    vec![
        (
            "lifostore",
            Arc::new(Lifo(
                Storage::builder()
                    .max_unflushed_age(Duration::from_secs(3600))
                    .max_buffered_items(1 << 20)
                    .build(MemDb::new())
                    .unwrap(),
                CancelToken::new(),
            )),
        ),
        ("parking_lot_stack", Arc::new(ParkingLotStack::default())),
        ("std_mutex_stack", Arc::new(StdStack::default())),
        ("crossbeam_channel", Arc::new(Channel(tx, rx))),
    ]
}

fn single_thread_pair(c: &mut Criterion) {
    let mut g = c.benchmark_group("pair_1thread");
    for (name, s) in contenders() {
        g.bench_function(name, |b| {
            b.iter(|| {
                s.push(vec![0u8; 100]);
                s.pop()
            })
        });
    }
    g.finish();
}

/// `pairs` pushers and `pairs` poppers hand over `iters` items in total; time per item.
fn hand_off(s: &Arc<dyn Stack>, pairs: u64, iters: u64) -> Duration {
    let per = iters.div_ceil(pairs);
    let barrier = Arc::new(Barrier::new(2 * pairs as usize + 1));
    let mut threads = Vec::new();
    for _ in 0..pairs {
        let (s1, b1) = (s.clone(), barrier.clone());
        threads.push(std::thread::spawn(move || {
            b1.wait();
            for _ in 0..per {
                s1.push(vec![0u8; 100]);
            }
        }));
        let (s2, b2) = (s.clone(), barrier.clone());
        threads.push(std::thread::spawn(move || {
            b2.wait();
            for _ in 0..per {
                std::hint::black_box(s2.pop());
            }
        }));
    }
    barrier.wait();
    let start = Instant::now();
    for t in threads {
        t.join().expect("bench thread");
    }
    start.elapsed()
}

fn multi_thread(c: &mut Criterion) {
    for pairs in [1u64, 4] {
        let mut g = c.benchmark_group(format!("handoff_{pairs}x{pairs}"));
        for (name, s) in contenders() {
            g.bench_function(name, |b| {
                b.iter_custom(|iters| hand_off(&s, pairs, iters.max(pairs)))
            });
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = single_thread_pair, multi_thread
}
criterion_main!(benches);
