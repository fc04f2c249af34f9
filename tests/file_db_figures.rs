//! Figures for FileDb (not assertions): batch push/pop rates and the open time of a 1 GiB
//! file. Run: `cargo test --release --test file_db_figures -- --ignored --nocapture`.
//! Criterion benchmarks in benches/ measure the same with statistics.

use std::time::Instant;

use lifostore::{Db, FileDb, FileDbOptions};

mod common;
use common::{TempDir, batch_rates};

#[test]
#[ignore = "figures: run on demand in release mode"]
fn batch_rates_and_open_time() {
    let dir = TempDir::new("figures");
    for batch in [1usize, 64, 1024] {
        let path = dir.file(&format!("rate-{batch}.lifo"));
        let db = FileDb::open_with(&path, FileDbOptions::default().shared(false)).unwrap();
        let (push, pop) = batch_rates(&db, batch, (4096 / batch).clamp(4, 400));
        println!(
            "FileDb 100-byte items, batch {batch:>4}: push {push:>10.0} items/s, pop {pop:>10.0} items/s"
        );
    }
    let path = dir.file("big.lifo");
    {
        let db = FileDb::open(&path).unwrap();
        let chunk = vec![7u8; 1 << 20];
        let batch: Vec<&[u8]> = (0..64).map(|_| chunk.as_slice()).collect();
        for _ in 0..16 {
            db.push_batch(&batch).unwrap(); // 16 x 64 MiB = 1 GiB
        }
    }
    let size = std::fs::metadata(&path).unwrap().len();
    let t = Instant::now();
    let db = FileDb::open(&path).unwrap();
    let open = t.elapsed();
    assert_eq!(db.len().unwrap(), 1024);
    println!(
        "FileDb open of a {:.2} GiB file: {open:?}",
        size as f64 / (1u64 << 30) as f64
    );
}
