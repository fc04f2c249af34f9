//! How late the scheduler runs threads while a timing test runs.
//!
//! A time bound the engine promises (the window, a wake-up at a deadline) is kept by threads
//! that must be scheduled to keep it; on a machine whose CPUs are taken, any thread may run
//! tens of milliseconds late, and no engine can do better than the scheduler. A probe thread
//! sleeps 2 ms at a time and records its worst oversleep; a test then checks its bound plus
//! that lateness. On an idle machine the allowance is well under a millisecond, so the test
//! keeps its teeth; on a busy one it fails only if the engine is late beyond what the
//! scheduler did to every thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A running probe; [`Lateness::stop`] ends it and returns the worst oversleep seen.
pub struct Lateness {
    stop: Arc<AtomicBool>,
    probe: JoinHandle<(Duration, Duration)>,
}

impl Lateness {
    /// Starts the probe.
    pub fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let probe = std::thread::spawn(move || {
            let step = Duration::from_millis(2);
            let (mut worst, mut total, mut n) = (Duration::ZERO, Duration::ZERO, 0u32);
            while !flag.load(Ordering::Relaxed) {
                let asked = Instant::now() + step;
                std::thread::sleep(step);
                let late = Instant::now().saturating_duration_since(asked);
                worst = worst.max(late);
                total += late;
                n += 1;
            }
            (worst, total / n.max(1))
        });
        Lateness { stop, probe }
    }

    /// Ends the probe; the worst oversleep it saw.
    pub fn stop(self) -> Duration {
        self.stop_with_mean().0
    }

    /// Ends the probe; the worst and the mean oversleep of its 2 ms sleeps.
    pub fn stop_with_mean(self) -> (Duration, Duration) {
        self.stop.store(true, Ordering::Relaxed);
        self.probe.join().expect("the lateness probe panicked")
    }
}
