//! A small work queue: producers push jobs in batches, consumers drain them in batches
//! (newest first), and the one message that must not be lost - the end-of-day marker - is
//! pushed with `push_durable`, which returns only once it is in the Db.
//!
//! ```text
//! cargo run --release --example work_queue [PATH]     # default: a file in the temp dir
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lifostore::{CancelToken, Error, Storage};

const PRODUCERS: usize = 4;
const JOBS_PER_PRODUCER: usize = 2_500;
const CONSUMERS: usize = 2;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).map_or_else(
        || std::env::temp_dir().join(format!("work-queue-{}.lifo", std::process::id())),
        Into::into,
    );
    let storage = Storage::builder()
        .max_unflushed_age(Duration::from_secs(5)) // a crash loses at most 5 s of jobs
        .open(&path)?;
    let root = CancelToken::new();
    let done = AtomicUsize::new(0);

    std::thread::scope(|s| -> Result<(), Error> {
        let consumers: Vec<_> = (0..CONSUMERS)
            .map(|_| {
                let (storage, root, done) = (&storage, &root, &done);
                s.spawn(move || -> Result<usize, Error> {
                    let mut handled = 0;
                    // Drain in batches of up to 256; a batch is ours once returned.
                    loop {
                        match storage.pop_batch(root, 256) {
                            Ok(jobs) => {
                                handled += jobs.len();
                                let total = done.fetch_add(jobs.len(), Ordering::Relaxed);
                                if total + jobs.len() == PRODUCERS * JOBS_PER_PRODUCER {
                                    root.cancel(); // the last job: stop every consumer
                                }
                            }
                            Err(Error::Cancelled) => return Ok(handled), // shutting down
                            Err(e) => return Err(e),
                        }
                    }
                })
            })
            .collect();

        for p in 0..PRODUCERS {
            let storage = &storage;
            let root = &root;
            s.spawn(move || -> Result<(), Error> {
                for chunk in 0..JOBS_PER_PRODUCER / 100 {
                    // 100 jobs at once: all of them or none, the last one newest.
                    let jobs = (0..100).map(|i| format!("job {p}-{chunk}-{i}").into_bytes());
                    storage.push_batch(root, jobs)?;
                }
                Ok(())
            });
        }

        // The consumer that takes the last job cancels `root`, which wakes the others.
        for (i, c) in consumers.into_iter().enumerate() {
            let handled = c.join().expect("consumer thread")?;
            println!("consumer {i} handled {handled} jobs");
        }
        Ok(())
    })?;

    // The one message that must survive a crash: returns once it is in the file.
    storage.push_durable(&CancelToken::new(), "end of day")?;
    println!(
        "end-of-day marker is durable; storage holds {:?} item(s), stats: {:?}",
        storage.len()?,
        storage.stats()
    );
    storage.close()?;
    let _ = std::fs::remove_file(&path);
    Ok(())
}
