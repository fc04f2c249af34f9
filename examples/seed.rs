//! The original usage: 1000 threads push "i timestamp" while 1000 threads pop, all sharing one
//! cancellation token. Runs on the embedded default (a FileDb in a temporary directory); pass
//! `--mem` for a MemDb that sleeps 5 ms per call, like the original mock database.
//!
//! ```text
//! cargo run --release --example seed            # FileDb in a temp dir
//! cargo run --release --example seed -- --mem   # MemDb, 5 ms per call
//! ```
//!
//! The README ("What the seed example prints") explains each number it prints.

use std::collections::HashSet;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lifostore::{CancelToken, Db, MemDb, Storage};

const PUSHERS: usize = 1000;
const POPPERS: usize = 1000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let use_mem = std::env::args().any(|a| a == "--mem");
    if use_mem {
        println!("db: MemDb, 5 ms per call");
        let storage = Storage::new(MemDb::with_latency(Duration::from_millis(5)))?;
        run(storage)
    } else {
        let dir = std::env::temp_dir().join(format!("lifostore-seed-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("seed.lifo");
        println!("db: FileDb at {}", path.display());
        let result = run(Storage::open(&path)?);
        std::fs::remove_dir_all(&dir)?;
        result
    }
}

fn run<D: Db + 'static>(storage: Storage<D>) -> Result<(), Box<dyn std::error::Error>> {
    let storage = Arc::new(storage);
    let token = CancelToken::new().with_timeout(Duration::from_secs(60));
    let start = Arc::new(Barrier::new(PUSHERS + POPPERS + 1));
    let began = Instant::now();

    let pushers: Vec<_> = (0..PUSHERS)
        .map(|i| {
            let (storage, token, start) = (storage.clone(), token.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                let nanos = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos());
                storage.push(&token, format!("{i} {nanos}"))
            })
        })
        .collect();
    let poppers: Vec<_> = (0..POPPERS)
        .map(|_| {
            let (storage, token, start) = (storage.clone(), token.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                storage.pop(&token)
            })
        })
        .collect();
    start.wait();

    for p in pushers {
        p.join().map_err(|_| "pusher panicked")??;
    }
    let mut seen = HashSet::new();
    for p in poppers {
        let item = p.join().map_err(|_| "popper panicked")??;
        let text = String::from_utf8(item)?;
        let id: usize = text.split(' ').next().unwrap_or("").parse()?;
        if !seen.insert(id) {
            return Err(format!("item {id} popped twice").into());
        }
    }
    let wall = began.elapsed();
    let stats = storage.stats();
    storage.close()?;

    println!(
        "items pushed and popped: {} (each exactly once)",
        seen.len()
    );
    println!("wall time: {wall:.2?}");
    println!(
        "db calls: {} against {} for one call per operation",
        stats.db_calls(),
        PUSHERS + POPPERS
    );
    println!(
        "  {} write(s) storing {} item(s); {} pop(s): {} returned an item, {} found the db empty",
        stats.db_push_calls,
        stats.items_flushed,
        stats.db_pop_calls,
        stats.pops_from_db,
        stats.db_pop_calls.saturating_sub(stats.pops_from_db)
    );
    println!(
        "pops served from memory: {}; pushes that waited for room: {}",
        stats.pops_from_memory, stats.push_waits
    );
    println!("stats: {stats:?}");
    Ok(())
}
