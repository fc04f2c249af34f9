//! FileDb beside the durable stores a user would otherwise pick, in one run: queue-file
//! (a durable FIFO file: `add` with sync writes, `add_n`), bstack (an fsync-durable byte
//! stack), SQLite used as a stack (integer primary key, delete newest with RETURNING,
//! synchronous=FULL, WAL, one transaction per op or batch), and the raw floor (append the
//! same bytes, one `sync_data` per batch). 100-byte and 4 KiB items, batch 1, 64 and 1024.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lifostore::{Db, FileDb, FileDbOptions};

fn fresh(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lifostore-peers-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("dir");
    let p = d.join(name);
    let _ = std::fs::remove_file(&p);
    let _ = std::fs::remove_file(p.with_extension("db-wal"));
    p
}

fn sqlite(path: &PathBuf) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(path).expect("sqlite");
    c.pragma_update(None, "journal_mode", "WAL").expect("wal");
    c.pragma_update(None, "synchronous", "FULL").expect("full");
    c.execute(
        "CREATE TABLE IF NOT EXISTS s (id INTEGER PRIMARY KEY, data BLOB NOT NULL)",
        [],
    )
    .expect("table");
    c
}

fn sqlite_push(c: &mut rusqlite::Connection, items: &[&[u8]]) {
    let tx = c.transaction().expect("tx");
    {
        let mut st = tx
            .prepare_cached("INSERT INTO s (data) VALUES (?1)")
            .expect("prep");
        for i in items {
            st.execute([i]).expect("insert");
        }
    }
    tx.commit().expect("commit");
}

fn sqlite_pop(c: &mut rusqlite::Connection, n: usize) -> Vec<Vec<u8>> {
    let tx = c.transaction().expect("tx");
    let out = {
        let mut st = tx
            .prepare_cached(
                "DELETE FROM s WHERE id IN (SELECT id FROM s ORDER BY id DESC LIMIT ?1) RETURNING data",
            )
            .expect("prep");
        st.query_map([n as i64], |r| r.get::<_, Vec<u8>>(0))
            .expect("query")
            .collect::<Result<Vec<_>, _>>()
            .expect("rows")
    };
    tx.commit().expect("commit");
    out
}

fn push(c: &mut Criterion) {
    for size in [100usize, 4096] {
        let item = vec![0x3Cu8; size];
        let mut g = c.benchmark_group(format!("peers_push_{size}B"));
        for batch in [1usize, 64, 1024] {
            g.throughput(Throughput::Elements(batch as u64));
            let items: Vec<&[u8]> = (0..batch).map(|_| item.as_slice()).collect();

            let db = FileDb::open_with(fresh("f.lifo"), FileDbOptions::default().shared(false))
                .expect("filedb");
            g.bench_with_input(
                BenchmarkId::new("lifostore_filedb", batch),
                &batch,
                |b, _| b.iter(|| db.push_batch(&items).expect("push")),
            );

            let mut raw = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .open(fresh("raw.bin"))
                .expect("raw");
            let bytes: Vec<u8> = items.iter().flat_map(|i| i.iter().copied()).collect();
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

            let mut q = queue_file::QueueFile::open(fresh("q.qf")).expect("queue-file");
            q.set_sync_writes(true);
            g.bench_with_input(BenchmarkId::new("queue_file", batch), &batch, |b, _| {
                b.iter(|| {
                    if batch == 1 {
                        q.add(items[0]).expect("add")
                    } else {
                        q.add_n(items.iter()).expect("add_n")
                    }
                })
            });

            let bs = bstack::BStack::open(fresh("b.bstack")).expect("bstack");
            g.bench_with_input(BenchmarkId::new("bstack", batch), &batch, |b, _| {
                // One push of the batch's bytes: one write and one durable sync.
                b.iter(|| bs.push(&bytes).expect("push"))
            });

            let mut sq = sqlite(&fresh("s.db"));
            g.bench_with_input(BenchmarkId::new("sqlite_full", batch), &batch, |b, _| {
                b.iter(|| sqlite_push(&mut sq, &items))
            });
        }
        g.finish();
    }
}

fn pop(c: &mut Criterion) {
    for size in [100usize, 4096] {
        let item = vec![0x3Cu8; size];
        let mut g = c.benchmark_group(format!("peers_pop_{size}B"));
        for batch in [1usize, 64, 1024] {
            g.throughput(Throughput::Elements(batch as u64));
            let items: Vec<&[u8]> = (0..batch).map(|_| item.as_slice()).collect();
            let bytes: Vec<u8> = items.iter().flat_map(|i| i.iter().copied()).collect();

            let db = FileDb::open_with(fresh("f.lifo"), FileDbOptions::default().shared(false))
                .expect("filedb");
            g.bench_with_input(
                BenchmarkId::new("lifostore_filedb", batch),
                &batch,
                |b, _| {
                    b.iter_custom(|iters| {
                        timed(
                            iters,
                            || db.push_batch(&items).expect("fill"),
                            || {
                                std::hint::black_box(db.pop_batch(batch).expect("pop"));
                            },
                        )
                    })
                },
            );

            let mut q = queue_file::QueueFile::open(fresh("q.qf")).expect("queue-file");
            q.set_sync_writes(true);
            g.bench_with_input(
                BenchmarkId::new("queue_file_fifo", batch),
                &batch,
                |b, _| {
                    b.iter_custom(|iters| {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            q.add_n(items.iter()).expect("fill");
                            let t = Instant::now();
                            for _ in 0..batch {
                                std::hint::black_box(q.peek().expect("peek"));
                            }
                            q.remove_n(batch).expect("remove_n");
                            total += t.elapsed();
                        }
                        total
                    })
                },
            );

            let bs = bstack::BStack::open(fresh("b.bstack")).expect("bstack");
            g.bench_with_input(BenchmarkId::new("bstack", batch), &batch, |b, _| {
                b.iter_custom(|iters| {
                    timed(
                        iters,
                        || {
                            bs.push(&bytes).expect("fill");
                        },
                        || {
                            std::hint::black_box(bs.pop(bytes.len() as u64).expect("pop"));
                        },
                    )
                })
            });

            let mut sq = sqlite(&fresh("s.db"));
            g.bench_with_input(BenchmarkId::new("sqlite_full", batch), &batch, |b, _| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        sqlite_push(&mut sq, &items);
                        let t = Instant::now();
                        std::hint::black_box(sqlite_pop(&mut sq, batch));
                        total += t.elapsed();
                    }
                    total
                })
            });
        }
        g.finish();
    }
    let _ = std::fs::remove_dir_all(
        std::env::temp_dir().join(format!("lifostore-peers-{}", std::process::id())),
    );
}

fn timed(iters: u64, mut fill: impl FnMut(), mut op: impl FnMut()) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        fill();
        let t = Instant::now();
        op();
        total += t.elapsed();
    }
    total
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_secs(1));
    targets = push, pop
}
criterion_main!(benches);
