//! Many worker processes, each with its own Storage over one shared Db, push and pop at once;
//! the parent checks that every item was popped exactly once or is still in the Db.
//!
//! ```text
//! cargo run --release --example workers -- 4 file:/tmp/shared.lifo
//! cargo run --release --features redis --example workers -- 4 redis://127.0.0.1:6379/
//! cargo run --release --features postgres --example workers -- 4 postgres://postgres@127.0.0.1/postgres
//! ```

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lifostore::{CancelToken, Db, DbError, FileDb, Storage};

const PER_WORKER: u64 = 1000;

fn open(spec: &str) -> Result<Box<dyn Db>, DbError> {
    if let Some(path) = spec.strip_prefix("file:") {
        return Ok(Box::new(FileDb::open(path)?));
    }
    #[cfg(feature = "redis")]
    if spec.starts_with("redis://") {
        return Ok(Box::new(
            lifostore::RedisDb::open(spec)?.with_key("lifostore_workers"),
        ));
    }
    #[cfg(feature = "postgres")]
    if spec.starts_with("postgres://") {
        return Ok(Box::new(
            lifostore::PostgresDb::open(spec)?.with_table("lifostore_workers")?,
        ));
    }
    Err(DbError::msg(format!(
        "unsupported backend {spec:?}: use file:PATH, or redis://... / postgres://... with the \
         matching cargo feature"
    )))
}

fn worker(who: u64, spec: &str) -> Result<(), Box<dyn std::error::Error>> {
    let storage = Storage::builder()
        .max_unflushed_age(Duration::from_millis(100))
        .shared_poll_interval(Duration::from_millis(10))
        .build(open(spec)?)?;
    let token = CancelToken::new();
    let mut popped = Vec::new();
    for i in 0..PER_WORKER {
        storage.push(&token, (who << 32 | i).to_le_bytes().to_vec())?;
        if i % 2 == 1 {
            let item = storage.pop(&token)?;
            popped.push(u64::from_le_bytes(item.as_slice().try_into()?));
        }
    }
    storage.close()?;
    let ids: Vec<String> = popped.iter().map(u64::to_string).collect();
    println!("{}", ids.join(" "));
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--worker") {
        return worker(args[2].parse()?, &args[3]);
    }
    let n: u64 = args.get(1).map_or(Ok(4), |a| a.parse())?;
    let default_spec = format!(
        "file:{}",
        std::env::temp_dir()
            .join("lifostore-workers.lifo")
            .display()
    );
    let spec = args.get(2).cloned().unwrap_or(default_spec);
    // Start from an empty Db so the totals check is exact.
    let db = open(&spec)?;
    while !db.pop_batch(10_000)?.is_empty() {}
    drop(db);

    let started = Instant::now();
    let exe = std::env::current_exe()?;
    let children: Vec<_> = (1..=n)
        .map(|who| {
            Command::new(&exe)
                .args(["--worker", &who.to_string(), &spec])
                .stdout(Stdio::piped())
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    let mut all = Vec::new();
    for (who, child) in (1..=n).zip(children) {
        let out = child.wait_with_output()?;
        if !out.status.success() {
            return Err(format!("worker {who} failed").into());
        }
        let ids: Vec<u64> = String::from_utf8(out.stdout)?
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        println!("worker {who}: pushed {PER_WORKER}, popped {}", ids.len());
        all.extend(ids);
    }
    let popped = all.len();
    let db = open(&spec)?;
    loop {
        let batch = db.pop_batch(10_000)?;
        if batch.is_empty() {
            break;
        }
        for item in batch {
            all.push(u64::from_le_bytes(item.as_slice().try_into()?));
        }
    }
    let left = all.len() - popped;
    let unique: HashSet<u64> = all.iter().copied().collect();
    let pushed: HashSet<u64> = (1..=n)
        .flat_map(|w| (0..PER_WORKER).map(move |i| w << 32 | i))
        .collect();
    println!(
        "total: pushed {}, popped {popped}, left in the Db {left}, duplicates {}, lost {} ({:.2?})",
        pushed.len(),
        all.len() - unique.len(),
        pushed.difference(&unique).count(),
        started.elapsed()
    );
    if unique != pushed || unique.len() != all.len() {
        return Err("totals check failed".into());
    }
    println!("totals check: every item exactly once");
    Ok(())
}
