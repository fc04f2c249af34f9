//! Group commit: 64 threads each doing `push_durable` over a FileDb, beside a per-operation
//! fsync peer measured in the same run (64 threads each calling `FileDb::push`, one fsync per
//! item: what a caller who needs each item durable gets without group commit), and the raw
//! floor at the batch size group commit produced (append that many framed items, one
//! `sync_data`). 100-byte items. Throughput is items per second.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lifostore::{CancelToken, Db, FileDb, FileDbOptions, Storage};

const THREADS: usize = 64;
const ITEM: usize = 100;

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("lifostore-gc-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("bench dir");
    d
}

fn open_db(name: &str) -> FileDb {
    let path = dir().join(name);
    let _ = std::fs::remove_file(&path);
    FileDb::open_with(&path, FileDbOptions::default().shared(false)).expect("open")
}

/// What each crew thread runs in one iteration, given its number.
type Job = Arc<dyn Fn(usize) + Send + Sync>;

/// `THREADS` threads kept between iterations (spawning 64 threads per iteration would be
/// measured too): each `run` releases them all at once, each calls `work(thread)`, and `run`
/// returns the time until the last one finished.
struct Crew {
    start: Arc<Barrier>,
    done: Arc<Barrier>,
    work: Arc<Mutex<Option<Job>>>,
    handles: Vec<std::thread::JoinHandle<()>>,
}

impl Crew {
    fn new() -> Self {
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

    fn run(&self, job: Job) -> Duration {
        *self.work.lock().expect("work") = Some(job);
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

fn group_commit(c: &mut Criterion) {
    let crew = Crew::new();
    let item = vec![0xA5u8; ITEM];
    let mut g = c.benchmark_group("durable_push_64_threads_100B");
    g.sample_size(10).measurement_time(Duration::from_secs(5));

    // lifostore: push_durable, group commit.
    let per_thread = 32;
    g.throughput(Throughput::Elements((THREADS * per_thread) as u64));
    let storage = Arc::new(
        Storage::builder()
            .max_unflushed_age(Duration::from_secs(60))
            .build(open_db("group.lifo"))
            .expect("storage"),
    );
    g.bench_function("lifostore_push_durable", |b| {
        let (s, item) = (storage.clone(), item.clone());
        let job: Job = Arc::new(move |_| {
            let t = CancelToken::new();
            for _ in 0..per_thread {
                s.push_durable(&t, item.clone()).expect("push_durable");
            }
        });
        b.iter_custom(|iters| (0..iters).map(|_| crew.run(job.clone())).sum())
    });
    let stats = storage.stats();
    let batch = (stats.items_flushed / stats.db_push_calls.max(1)).max(1) as usize;
    println!(
        "group commit: {} items in {} Db writes, mean batch {batch}",
        stats.items_flushed, stats.db_push_calls
    );

    // Peer: one fsync per item, 64 threads calling FileDb::push.
    let per_thread = 2;
    g.throughput(Throughput::Elements((THREADS * per_thread) as u64));
    let db = Arc::new(open_db("per-op.lifo"));
    g.bench_function("filedb_push_per_item", |b| {
        let (db, item) = (db.clone(), item.clone());
        let job: Job = Arc::new(move |_| {
            for _ in 0..per_thread {
                db.push(&item).expect("push");
            }
        });
        b.iter_custom(|iters| (0..iters).map(|_| crew.run(job.clone())).sum())
    });

    // The floor at the batch size group commit produced.
    g.throughput(Throughput::Elements(batch as u64));
    let mut raw = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(dir().join("raw.bin"))
        .expect("raw");
    let mut bytes = Vec::with_capacity(batch * (ITEM + 20));
    for _ in 0..batch {
        bytes.extend_from_slice(&(ITEM as u32).to_le_bytes());
        bytes.extend_from_slice(&[0u8; 12]);
        bytes.extend_from_slice(&item);
        bytes.extend_from_slice(&(ITEM as u32).to_le_bytes());
    }
    g.bench_function(format!("raw_append_fdatasync_batch_{batch}"), |b| {
        b.iter(|| {
            raw.write_all(&bytes).expect("write");
            raw.sync_data().expect("sync")
        })
    });
    g.finish();
    drop(crew);
    let _ = std::fs::remove_dir_all(dir());
}

criterion_group!(benches, group_commit);
criterion_main!(benches);
