//! A worker pool that leases jobs, does idempotent work, and acks.
//!
//! Producers push job ids; workers take them with `pop_lease`, "process" each one by recording
//! its result under the job id (doing a job twice writes the same result again: idempotent),
//! and ack. One job in ten fails half-way: the worker returns early, the lease is dropped and
//! released, and the job goes back on top for the next worker. At the end every job has a
//! result, and the redeliveries are counted.
//!
//! ```text
//! cargo run --release --example lease_worker [PATH]     # default: a file in the temp dir
//! ```

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lifostore::{CancelToken, Error, Lease, Storage};

const JOBS: u64 = 5_000;
const WORKERS: usize = 4;

/// The work: idempotent (a result keyed by the job id), and failing for one job in ten on its
/// first attempt.
fn process(lease: &Lease, results: &Mutex<HashMap<u64, u64>>, attempts: &AtomicUsize) -> bool {
    let id = u64::from_le_bytes(lease[..8].try_into().unwrap_or_default());
    attempts.fetch_add(1, Ordering::Relaxed);
    let mut results = results.lock().unwrap_or_else(|e| e.into_inner());
    if id % 10 == 7 && !results.contains_key(&(id | 1 << 63)) {
        results.insert(id | 1 << 63, 0); // remember the failed attempt
        return false;
    }
    results.insert(id, id * id);
    true
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).map_or_else(
        || std::env::temp_dir().join(format!("lease-worker-{}.lifo", std::process::id())),
        Into::into,
    );
    let storage = Storage::builder()
        .max_unflushed_age(Duration::from_secs(5))
        .lease_ttl(Duration::from_secs(10)) // longer than any job takes
        .open(&path)?;
    let token = CancelToken::new();
    for id in 0..JOBS {
        storage.push(&token, id.to_le_bytes().to_vec())?;
    }
    let results = Mutex::new(HashMap::new());
    let (attempts, acked) = (AtomicUsize::new(0), AtomicUsize::new(0));
    std::thread::scope(|s| {
        for _ in 0..WORKERS {
            let (storage, results, attempts, acked) = (&storage, &results, &attempts, &acked);
            s.spawn(move || -> Result<(), Error> {
                while let Some(lease) = storage.try_pop_lease()? {
                    if !process(&lease, results, attempts) {
                        continue; // dropped: released, back on top
                    }
                    lease.ack()?; // LeaseExpired would mean: it may run again (idempotent)
                    acked.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            });
        }
    });
    let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    let done = (0..JOBS).filter(|id| results.contains_key(id)).count();
    let attempts = attempts.into_inner();
    println!(
        "{done}/{JOBS} jobs done, {} acked, {attempts} attempts ({} redelivered after a failure)",
        acked.into_inner(),
        attempts - JOBS as usize
    );
    println!("stats: {:?}", storage.stats());
    storage.close()?;
    std::fs::remove_file(&path).ok();
    std::fs::remove_file(path.with_extension("lifo.leases")).ok();
    assert_eq!(done, JOBS as usize, "a job was lost");
    Ok(())
}
