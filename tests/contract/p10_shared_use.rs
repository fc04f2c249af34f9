//! Promise 10, shared use: several processes over one shared Db (a file, a Redis key, a
//! PostgreSQL table) each pop distinct items: none twice, none lost.
//!
//! Here: threads sharing one FileDb handle. Deeper: four processes over one file
//! (`tests/file_db_processes.rs`), four worker processes over Redis and PostgreSQL
//! (`tests/backends.rs`).

use lifostore::{Db, FileDb};

use crate::common::TempDir;

fn all(db: &FileDb) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(x) = db.pop().unwrap() {
        out.push(x);
    }
    out
}

#[test]
fn threads_share_one_file_db() {
    let dir = TempDir::new("threads");
    let db = FileDb::open(dir.file("db.lifo")).unwrap();
    let popped = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for t in 0..4u32 {
            let (db, popped) = (&db, &popped);
            s.spawn(move || {
                for i in 0..50u32 {
                    db.push(&(t * 1000 + i).to_le_bytes()).unwrap();
                    if i % 2 == 0
                        && let Some(x) = db.pop().unwrap()
                    {
                        popped.lock().unwrap().push(x);
                    }
                }
            });
        }
    });
    let mut got = popped.into_inner().unwrap();
    got.extend(all(&db));
    got.sort();
    let before = got.len();
    got.dedup();
    assert_eq!(got.len(), before, "an item came out twice");
    assert_eq!(got.len(), 200);
}
