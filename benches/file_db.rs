//! Durable path: FileDb push and pop at batch 1, 64 and 1024 for 100-byte and 4 KiB items,
//! beside the raw floor (append the same bytes, one `sync_data` per batch); Storage over
//! FileDb end to end; FileDb open time for 1 MiB, 64 MiB and 1 GiB files.
//! Peers (queue-file, bstack, SQLite) are in bench-peers/, measured the same way.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lifostore::{CancelToken, Db, FileDb, FileDbOptions, Storage};

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("lifostore-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("bench dir");
    d
}

fn quick() -> bool {
    std::env::args().any(|a| a == "--test")
}

fn open_db(name: &str) -> FileDb {
    let path = dir().join(name);
    let _ = std::fs::remove_file(&path);
    FileDb::open_with(&path, FileDbOptions::default().shared(false)).expect("open")
}

fn push_pop(c: &mut Criterion) {
    for size in [100usize, 4096] {
        let item = vec![0xA5u8; size];
        let mut g = c.benchmark_group(format!("durable_push_{size}B"));
        for batch in [1usize, 64, 1024] {
            g.throughput(Throughput::Elements(batch as u64));
            let items: Vec<&[u8]> = (0..batch).map(|_| item.as_slice()).collect();
            let db = open_db("push.lifo");
            g.bench_with_input(BenchmarkId::new("filedb", batch), &batch, |b, _| {
                b.iter(|| db.push_batch(&items).expect("push"))
            });
            let path = dir().join("raw.bin");
            let mut raw = OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .open(&path)
                .expect("raw");
            let mut bytes = Vec::with_capacity(batch * (size + 20));
            for _ in 0..batch {
                bytes.extend_from_slice(&(size as u32).to_le_bytes());
                bytes.extend_from_slice(&[0u8; 12]);
                bytes.extend_from_slice(&item);
                bytes.extend_from_slice(&(size as u32).to_le_bytes());
            }
            g.bench_with_input(
                BenchmarkId::new("raw_append_fdatasync", batch),
                &batch,
                |b, _| {
                    b.iter(|| {
                        raw.write_all(&bytes).expect("write");
                        raw.sync_data().expect("sync")
                    })
                },
            );
        }
        g.finish();

        let mut g = c.benchmark_group(format!("durable_pop_{size}B"));
        for batch in [1usize, 64, 1024] {
            g.throughput(Throughput::Elements(batch as u64));
            let items: Vec<&[u8]> = (0..batch).map(|_| item.as_slice()).collect();
            let db = open_db("pop.lifo");
            g.bench_with_input(BenchmarkId::new("filedb", batch), &batch, |b, _| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        db.push_batch(&items).expect("refill");
                        let t = Instant::now();
                        std::hint::black_box(db.pop_batch(batch).expect("pop"));
                        total += t.elapsed();
                    }
                    total
                })
            });
        }
        g.finish();
    }
}

fn storage_end_to_end(c: &mut Criterion) {
    let mut g = c.benchmark_group("storage_over_filedb");
    let n = 1024u64;
    g.throughput(Throughput::Elements(n));
    let storage = Storage::builder()
        .max_unflushed_age(Duration::from_secs(3600))
        .build(open_db("storage.lifo"))
        .unwrap();
    let token = CancelToken::new();
    g.bench_function("push_1024_then_flush_100B", |b| {
        b.iter(|| {
            for _ in 0..n {
                storage.push(&token, vec![0x5Au8; 100]).expect("push");
            }
            storage.flush(&token).expect("flush")
        })
    });
    g.bench_function("push_pop_within_window_100B", |b| {
        b.iter(|| {
            for _ in 0..n {
                storage.push(&token, vec![0x5Au8; 100]).expect("push");
                std::hint::black_box(storage.pop(&token).expect("pop"));
            }
        })
    });
    g.finish();
}

fn open_time(c: &mut Criterion) {
    let mut g = c.benchmark_group("filedb_open");
    let sizes: &[(&str, u64)] = if quick() {
        &[("1MiB", 1 << 20)]
    } else {
        &[("1MiB", 1 << 20), ("64MiB", 64 << 20), ("1GiB", 1 << 30)]
    };
    for &(label, bytes) in sizes {
        let path = dir().join(format!("open-{label}.lifo"));
        let _ = std::fs::remove_file(&path);
        {
            // Created once, outside the timed part: 4 KiB items in batches of 1024.
            let db = FileDb::open(&path).expect("create");
            let item = vec![1u8; 4096];
            let batch: Vec<&[u8]> = (0..1024).map(|_| item.as_slice()).collect();
            let per_batch = 1024 * 4116;
            for _ in 0..bytes.div_ceil(per_batch) {
                db.push_batch(&batch).expect("fill");
            }
        }
        let _ = File::open(&path).and_then(|f| f.sync_all());
        g.bench_function(label, |b| {
            b.iter(|| std::hint::black_box(FileDb::open(&path).expect("open")))
        });
        let _ = std::fs::remove_file(&path);
    }
    g.finish();
    let _ = std::fs::remove_dir_all(dir());
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    targets = push_pop, storage_end_to_end, open_time
}
criterion_main!(benches);
