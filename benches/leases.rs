//! Leases through the storage: `pop_lease` + `ack` against a plain `pop`, over MemDb and FileDb,
//! measured in the same run. Two shapes per backend:
//! * `from_memory`: one thread pushes a 100-byte item and takes it back (the item never leaves
//!   memory): `push` + `pop` against `push` + `pop_lease` + `ack`;
//! * `from_db`: the items were flushed to the Db first (not timed); each iteration takes one
//!   from the Db: `pop` (one `Db::pop`) against `pop_lease` + `ack` (`Db::pop_lease` and
//!   `Db::ack`: on FileDb 2 + 2 syncs against 1).
//!
//! Redis and PostgreSQL figures for the Db calls alone come from the `lease_rates` figures
//! tests (`tests/leases.rs`, `tests/backends.rs`, `--ignored`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use lifostore::{CancelToken, Db, FileDb, FileDbOptions, MemDb, Storage};

const ITEM: [u8; 100] = [0xA5; 100];

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("lifostore-bench-leases-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("bench dir");
    d
}

/// A storage over `db` that keeps pushed items in memory (1 h window) and leases for a minute.
fn storage<D: Db + 'static>(db: D) -> Storage<D> {
    Storage::builder()
        .max_unflushed_age(Duration::from_secs(3600))
        .lease_ttl(Duration::from_secs(60))
        .build(db)
        .expect("storage")
}

fn file_db(name: &str) -> FileDb {
    let path = dir().join(name);
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(path.with_extension("lifo.leases"));
    FileDb::open_with(&path, FileDbOptions::default().shared(false)).expect("open")
}

/// Takes one item the plain way or the leased way.
fn take<D>(s: &Storage<D>, t: &CancelToken, leased: bool) {
    if leased {
        s.pop_lease(t).expect("lease").ack().expect("ack");
    } else {
        s.pop(t).expect("pop");
    }
}

fn from_memory<D: Db + 'static>(c: &mut Criterion, name: &str, db: impl Fn() -> D) {
    let mut g = c.benchmark_group(format!("from_memory_{name}"));
    for (label, leased) in [("pop", false), ("lease_ack", true)] {
        let s = storage(db());
        let t = CancelToken::new();
        g.bench_function(BenchmarkId::from_parameter(label), |b| {
            b.iter(|| {
                s.push(&t, ITEM.to_vec()).expect("push");
                take(&s, &t, leased);
            })
        });
    }
    g.finish();
}

/// Puts `n` items in the Db through the storage, in batches of at most 128.
fn fill_db<D>(s: &Storage<D>, t: &CancelToken, n: u64) {
    let mut left = n;
    while left > 0 {
        let k = left.min(128);
        s.push_batch(t, (0..k).map(|_| ITEM.to_vec()))
            .expect("push");
        s.flush(t).expect("flush");
        left -= k;
    }
}

fn from_db<D: Db + 'static>(c: &mut Criterion, name: &str, db: impl Fn() -> D) {
    let mut g = c.benchmark_group(format!("from_db_{name}"));
    g.sample_size(10);
    for (label, leased) in [("pop", false), ("lease_ack", true)] {
        let s = storage(db());
        let t = CancelToken::new();
        g.bench_function(BenchmarkId::from_parameter(label), |b| {
            b.iter_custom(|iters| {
                fill_db(&s, &t, iters);
                let started = Instant::now();
                for _ in 0..iters {
                    take(&s, &t, leased);
                }
                started.elapsed()
            })
        });
    }
    g.finish();
}

fn leases(c: &mut Criterion) {
    from_memory(c, "memdb", MemDb::new);
    from_memory(c, "filedb", || file_db("mem.lifo"));
    from_db(c, "memdb", MemDb::new);
    from_db(c, "filedb", || file_db("db.lifo"));
    std::fs::remove_dir_all(dir()).ok();
}

criterion_group!(benches, leases);
criterion_main!(benches);
