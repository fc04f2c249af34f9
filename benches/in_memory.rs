//! In-memory path: lifostore over a MemDb with a window long enough that nothing flushes,
//! beside the floor any design pays and crossbeam-channel (the usual hand-off).
//!
//! Groups (each compares its contenders in the same run):
//! * `pair_16B`: one thread, push then pop of a 16-byte item cloned from a 16-byte template,
//!   against the bare stack exactly as the core-speed target names it: `parking_lot::Mutex<Vec<Vec<u8>>>` +
//!   `parking_lot::Condvar`, a pair being lock, push, unlock, `notify_one`, then lock, pop,
//!   unlock. Direct calls, no trait object.
//! * `pair_1thread`: the earlier, heavier shape (100-byte `vec![0; 100]` items, calls through
//!   `Arc<dyn Stack>`, a pop with a wait loop), against the same stack, std's Mutex and
//!   crossbeam-channel. Kept so the older figures stay comparable.
//! * `handoff_16B_NxN` (N = 1, 2, 4, 16): N pusher threads hand 16-byte items to N popper threads
//!   (`iter_custom` + `Barrier`); time per item. The bare stack's popper waits on the condvar.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use lifostore::{CancelToken, MemDb, Storage};

/// The 16-byte template the `pair_16B` and `handoff_16B` items are cloned from.
const TEMPLATE: [u8; 16] = *b"lifostore-item16";

/// The operations every contender offers.
trait Stack: Send + Sync + 'static {
    fn push(&self, item: Vec<u8>);
    fn pop(&self) -> Vec<u8>;
}

struct Lifo(Storage<MemDb>, CancelToken);

impl Lifo {
    /// A storage that keeps everything in memory, as the unbounded channel and the bare stack
    /// do: window 1 h, and room for 16 M items, because the flusher writes early once the
    /// buffer is half full, and in a flat-out hand-off the pushers run ahead of the poppers by
    /// up to a few million items per criterion sample (with 1 M items of room, 0.3-3.6 M of
    /// 10 M handed-over items went through the MemDb and came back one Db pop each). One
    /// flushed item teaches it the Db's speed first (as `benches/memory.rs` does), so the
    /// slow-start capacity (256 items before the first write) does not apply either.
    fn new() -> Self {
        let storage = Storage::builder()
            .max_unflushed_age(Duration::from_secs(3600))
            .max_buffered_items(1 << 24)
            .build(MemDb::new())
            .expect("storage");
        let token = CancelToken::new();
        storage.push(&token, vec![0u8]).expect("push");
        storage.flush(&token).expect("flush");
        assert_eq!(storage.pop(&token).expect("pop"), vec![0u8]);
        // A pop that finds the Db empty lets the storage know it is: later pops on an empty
        // memory wait for a push instead of asking the Db.
        assert!(storage.try_pop().expect("try_pop").is_none());
        Lifo(storage, token)
    }
}

impl Stack for Lifo {
    fn push(&self, item: Vec<u8>) {
        self.0.push(&self.1, item).expect("push");
    }
    fn pop(&self) -> Vec<u8> {
        self.0.pop(&self.1).expect("pop")
    }
}

/// The bare stack of the core-speed target: `parking_lot::Mutex<Vec<Vec<u8>>>` + `parking_lot::Condvar`.
#[derive(Default)]
struct BareStack(parking_lot::Mutex<Vec<Vec<u8>>>, parking_lot::Condvar);

impl BareStack {
    /// Lock, pop, unlock: the pair's second half (one thread, so never empty).
    fn try_pop(&self) -> Option<Vec<u8>> {
        self.0.lock().pop()
    }
}

impl Stack for BareStack {
    /// Lock, push, unlock, `notify_one`.
    fn push(&self, item: Vec<u8>) {
        self.0.lock().push(item);
        self.1.notify_one();
    }
    /// Lock, pop; while empty, wait on the condvar.
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

impl Channel {
    fn new() -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        Channel(tx, rx)
    }
}

impl Stack for Channel {
    fn push(&self, item: Vec<u8>) {
        self.0.send(item).expect("send");
    }
    fn pop(&self) -> Vec<u8> {
        self.1.recv().expect("recv")
    }
}

/// The core-speed target's pair: one thread, 16-byte items cloned from a template, direct calls.
fn pair_16b(c: &mut Criterion) {
    let mut g = c.benchmark_group("pair_16B");
    let template = TEMPLATE.to_vec();
    let lifo = Lifo::new();
    g.bench_function("lifostore", |b| {
        b.iter(|| {
            lifo.0.push(&lifo.1, template.clone()).expect("push");
            lifo.0.pop(&lifo.1).expect("pop")
        })
    });
    let bare = BareStack::default();
    g.bench_function("bare_stack", |b| {
        b.iter(|| {
            bare.push(template.clone());
            bare.try_pop().expect("pop")
        })
    });
    g.finish();
}

/// The earlier, heavier pair: 100-byte items built with `vec!`, calls through `dyn Stack`.
fn pair_100b_dyn(c: &mut Criterion) {
    let contenders: Vec<(&str, Arc<dyn Stack>)> = vec![
        ("lifostore", Arc::new(Lifo::new())),
        ("parking_lot_stack", Arc::new(BareStack::default())),
        ("std_mutex_stack", Arc::new(StdStack::default())),
        ("crossbeam_channel", Arc::new(Channel::new())),
    ];
    let mut g = c.benchmark_group("pair_1thread");
    for (name, s) in contenders {
        g.bench_function(name, |b| {
            b.iter(|| {
                s.push(vec![0u8; 100]);
                s.pop()
            })
        });
    }
    g.finish();
}

/// `pairs` pushers and `pairs` poppers hand over about `iters` 16-byte items in total (a
/// multiple of `pairs`); the time from the start barrier to the last join.
fn hand_off(s: &Arc<dyn Stack>, pairs: u64, iters: u64) -> Duration {
    let per = iters.div_ceil(pairs);
    let barrier = Arc::new(Barrier::new(2 * pairs as usize + 1));
    let mut threads = Vec::new();
    for _ in 0..pairs {
        let (s1, b1) = (s.clone(), barrier.clone());
        threads.push(std::thread::spawn(move || {
            let template = TEMPLATE.to_vec();
            b1.wait();
            for _ in 0..per {
                s1.push(template.clone());
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

fn hand_offs(c: &mut Criterion) {
    for pairs in [1u64, 2, 4, 16] {
        let contenders: Vec<(&str, Arc<dyn Stack>)> = vec![
            ("lifostore", Arc::new(Lifo::new())),
            ("crossbeam_channel", Arc::new(Channel::new())),
            ("bare_stack", Arc::new(BareStack::default())),
        ];
        let mut g = c.benchmark_group(format!("handoff_16B_{pairs}x{pairs}"));
        for (name, s) in contenders {
            g.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    // Per item: `iters` rounded up to a multiple of `pairs`, divided back.
                    let items = iters.max(pairs).div_ceil(pairs) * pairs;
                    hand_off(&s, pairs, items).mul_f64(iters as f64 / items as f64)
                })
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
    targets = pair_16b, pair_100b_dyn, hand_offs
}
criterion_main!(benches);
