//! Shared by `benches/group_commit.rs` and `bench-peers/benches/group_commit_peers.rs`: 64
//! threads doing `push_durable` over a FileDb against per-operation-fsync peers and the raw
//! append+fdatasync floor, **interleaved**: each round measures every contender once, in the
//! same order, so disk and CPU noise (a 2-core machine shared with builds) hits all of them;
//! the summary gives each round's ratios and their medians. Each contender of each round is a
//! criterion benchmark (`<contender>/round<r>`); the summary's rate is the contender's items
//! over its measured time in that round (criterion's warm-up included), read back from
//! `iter_custom`.
#![allow(dead_code)] // each bench uses a subset

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use lifostore::{CancelToken, Db, FileDb, FileDbOptions, Storage};

pub const THREADS: usize = 64;
pub const ITEM: usize = 100;
/// Rounds of the interleaved comparison.
pub const ROUNDS: usize = 5;

/// A fresh path in this run's scratch directory.
pub fn fresh(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lifostore-gc-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("bench dir");
    let p = d.join(name);
    let _ = std::fs::remove_file(&p);
    p
}

/// Removes the scratch directory.
pub fn cleanup() {
    let _ = std::fs::remove_dir_all(fresh("x").parent().expect("dir"));
}

pub fn open_db(name: &str) -> FileDb {
    FileDb::open_with(fresh(name), FileDbOptions::default().shared(false)).expect("open")
}

/// What each crew thread runs in one iteration, given its number.
pub type Job = Arc<dyn Fn(usize) + Send + Sync>;

/// `THREADS` threads kept between iterations (spawning 64 threads per iteration would be
/// measured too): each `run` releases them all at once, each calls `work(thread)`, and `run`
/// returns the time until the last one finished.
pub struct Crew {
    start: Arc<Barrier>,
    done: Arc<Barrier>,
    work: Arc<Mutex<Option<Job>>>,
    handles: Vec<std::thread::JoinHandle<()>>,
}

impl Crew {
    pub fn new() -> Self {
        let start = Arc::new(Barrier::new(THREADS + 1));
        let done = Arc::new(Barrier::new(THREADS + 1));
        let work: Arc<Mutex<Option<Job>>> = Arc::default();
        let handles = (0..THREADS)
            .map(|i| {
                let (start, done, work) = (start.clone(), done.clone(), work.clone());
                std::thread::spawn(move || {
                    loop {
                        start.wait();
                        let Some(job) = work.lock().expect("work").clone() else {
                            return;
                        };
                        job(i);
                        done.wait();
                    }
                })
            })
            .collect();
        Crew {
            start,
            done,
            work,
            handles,
        }
    }

    pub fn run(&self, job: &Job) -> Duration {
        *self.work.lock().expect("work") = Some(job.clone());
        let t = Instant::now();
        self.start.wait();
        self.done.wait();
        t.elapsed()
    }
}

impl Drop for Crew {
    fn drop(&mut self) {
        *self.work.lock().expect("work") = None;
        self.start.wait();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// One run of a contender: items made durable, and the time it took.
pub type Run = Box<dyn FnMut() -> (u64, Duration)>;

/// A contender of the comparison.
pub struct Contender {
    pub name: String,
    /// Items per run (criterion's throughput), asked before each benchmark.
    pub items: Box<dyn Fn() -> u64>,
    pub run: Run,
}

/// A contender running `job` on the crew: `items` per run.
pub fn on_crew(name: &str, crew: &Arc<Crew>, items: u64, job: Job) -> Contender {
    let crew = crew.clone();
    Contender {
        name: name.to_string(),
        items: Box::new(move || items),
        run: Box::new(move || (items, crew.run(&job))),
    }
}

/// Mean items per Db write of the latest lifostore round, for the floor.
pub type BatchCell = Arc<AtomicUsize>;

/// lifostore: 64 threads, `per_thread` durable pushes each per run, over a FileDb. After each
/// run it stores the mean batch of the writes so far in this round into `batch`.
pub fn lifostore(crew: &Arc<Crew>, batch: &BatchCell) -> (Contender, Arc<Storage<FileDb>>) {
    let per_thread = 32;
    let storage = Arc::new(
        Storage::builder()
            .max_unflushed_age(Duration::from_secs(60))
            .build(open_db("group.lifo"))
            .expect("storage"),
    );
    let s = storage.clone();
    let item = vec![0xA5u8; ITEM];
    let job: Job = Arc::new(move |_| {
        let t = CancelToken::new();
        for _ in 0..per_thread {
            s.push_durable(&t, item.clone()).expect("push_durable");
        }
    });
    let mut c = on_crew(
        "lifostore_push_durable",
        crew,
        (THREADS * per_thread) as u64,
        job,
    );
    let (s, batch, mut inner) = (storage.clone(), batch.clone(), c.run);
    let mut last = (0, 0);
    c.run = Box::new(move || {
        let r = inner();
        let st = s.stats();
        let (items, writes) = (st.items_flushed - last.0, st.db_push_calls - last.1);
        if let Some(mean) = items.checked_div(writes) {
            batch.store(mean.max(1) as usize, Ordering::Relaxed);
        }
        last = (st.items_flushed, st.db_push_calls);
        r
    });
    (c, storage)
}

/// The per-op peer of the first measurement: 64 threads each calling `FileDb::push` (one
/// `fdatasync` per item).
pub fn filedb_per_op(crew: &Arc<Crew>) -> Contender {
    let per_thread = 2;
    let db = Arc::new(open_db("per-op.lifo"));
    let item = vec![0xA5u8; ITEM];
    let job: Job = Arc::new(move |_| {
        for _ in 0..per_thread {
            db.push(&item).expect("push");
        }
    });
    on_crew(
        "filedb_push_per_item",
        crew,
        (THREADS * per_thread) as u64,
        job,
    )
}

/// The raw floor: append the framed bytes of one batch of the size the latest lifostore run
/// produced (`batch`) to a plain file, then one `sync_data`. Items per second at that batch.
pub fn raw_floor(batch: &BatchCell) -> Contender {
    let mut raw = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(fresh("raw.bin"))
        .expect("raw");
    let batch = batch.clone();
    let items = batch.clone();
    Contender {
        name: "raw_append_fdatasync_at_lifostore_batch".to_string(),
        items: Box::new(move || items.load(Ordering::Relaxed).max(1) as u64),
        run: Box::new(move || {
            let n = batch.load(Ordering::Relaxed).max(1);
            let mut bytes = Vec::with_capacity(n * (ITEM + 20));
            for _ in 0..n {
                // FileDb's framing: length, 12 bytes of header, the item, length again.
                bytes.extend_from_slice(&(ITEM as u32).to_le_bytes());
                bytes.extend_from_slice(&[0u8; 12]);
                bytes.extend_from_slice(&[0xA5u8; ITEM]);
                bytes.extend_from_slice(&(ITEM as u32).to_le_bytes());
            }
            let t = Instant::now();
            raw.write_all(&bytes).expect("write");
            raw.sync_data().expect("sync");
            (n as u64, t.elapsed())
        }),
    }
}

/// Items and measured time of one contender in one round.
#[derive(Clone, Copy, Default)]
struct Tally {
    items: u64,
    time: Duration,
}

impl Tally {
    fn rate(&self) -> f64 {
        self.items as f64 / self.time.as_secs_f64().max(1e-9)
    }
}

/// Runs `ROUNDS` rounds of every contender in order (the first one is lifostore, the others
/// its peers), as criterion benchmarks of `group`, and prints the per-round rates, the ratios
/// lifostore / peer, and their medians. `batch` is the lifostore batch cell (for the floor).
pub fn compare(c: &mut Criterion, group: &str, contenders: &mut [Contender], batch: &BatchCell) {
    let mut g = c.benchmark_group(group);
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    let mut tallies = vec![vec![Tally::default(); contenders.len()]; ROUNDS];
    let mut batches = Vec::new();
    let mut loads = Vec::new();
    for (round, tally) in tallies.iter_mut().enumerate() {
        loads.push(load());
        for (k, contender) in contenders.iter_mut().enumerate() {
            let t = &mut tally[k];
            g.throughput(Throughput::Elements((contender.items)()));
            g.bench_function(format!("{}/round{round}", contender.name), |b| {
                b.iter_custom(|iters| {
                    let mut time = Duration::ZERO;
                    for _ in 0..iters {
                        let (n, d) = (contender.run)();
                        t.items += n;
                        t.time += d;
                        time += d;
                    }
                    time
                })
            });
            if k == 0 {
                batches.push(batch.load(Ordering::Relaxed));
            }
        }
    }
    g.finish();
    report(group, contenders, &tallies, &batches, &loads);
}

/// lifostore's totals over the whole run (for context switches per write under `perf stat`).
pub fn print_totals(stats: &lifostore::Stats) {
    println!(
        "lifostore totals: {} items in {} Db writes, mean batch {:.1}",
        stats.items_flushed,
        stats.db_push_calls,
        stats.items_flushed as f64 / stats.db_push_calls.max(1) as f64
    );
}

/// The load average (1 min) now, as `/proc/loadavg` says.
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".to_string())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn report(
    group: &str,
    contenders: &[Contender],
    tallies: &[Vec<Tally>],
    batches: &[usize],
    loads: &[String],
) {
    println!("\n{group}: items/s per round (interleaved), and lifostore / contender");
    for (round, tally) in tallies.iter().enumerate() {
        let ours = tally[0].rate();
        let cells: Vec<String> = contenders
            .iter()
            .zip(tally)
            .skip(1)
            .map(|(c, t)| format!("{} {:.0}/s ({:.1}x)", c.name, t.rate(), ours / t.rate()))
            .collect();
        println!(
            "round {round} (load {}): lifostore {:.0}/s, mean batch {}; {}",
            loads[round],
            ours,
            batches[round],
            cells.join("; ")
        );
    }
    println!("medians over {} rounds:", tallies.len());
    let ours = median(tallies.iter().map(|t| t[0].rate()).collect());
    println!("  lifostore_push_durable: {ours:.0}/s");
    for (k, c) in contenders.iter().enumerate().skip(1) {
        let rate = median(tallies.iter().map(|t| t[k].rate()).collect());
        let ratio = median(tallies.iter().map(|t| t[0].rate() / t[k].rate()).collect());
        println!(
            "  {}: {rate:.0}/s; median per-round ratio {ratio:.2}x",
            c.name
        );
    }
}
