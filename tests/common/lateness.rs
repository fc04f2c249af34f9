//! How late the scheduler ran this process's threads while a timing test ran.
//!
//! A time bound the engine promises (the window, a wake-up at a deadline) is kept by threads
//! that must be scheduled to keep it; on a machine whose CPUs are taken, any thread may wait
//! tens of milliseconds to run, and no engine can do better than the scheduler. A probe
//! thread measures two things meanwhile:
//! * its own oversleep: it sleeps 2 ms at a time and records how late it woke;
//! * on Linux, the time each storage's flusher thread (`lifostore-flusher`, the thread that
//!   writes items when they come due) spent runnable but waiting for a CPU (the second field
//!   of `/proc/self/task/<tid>/schedstat`), sampled every 10 ms: the most any flusher waited
//!   within one stretch of the test as long as the bound being judged (a window, say), since
//!   only waiting within one such stretch can make one item late. Other threads are left
//!   out by default: flat-out pushers wait for a CPU by design, and their waiting delays no
//!   write. [`Lateness::start_every_thread`] counts them all, for tests whose pushers mostly
//!   sleep and may write a batch themselves.
//!
//! A test then checks its bound plus the larger of the two (the waits of a thread that
//! called into a Db which then stalls count only through the probe). On an idle machine both are a
//! millisecond or so, so the test keeps its teeth; on a busy one it fails only if the engine
//! was late beyond what the scheduler withheld from its threads.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the probe reads the flushers' waits (every fifth 2 ms sleep).
const SAMPLE_EVERY: Duration = Duration::from_millis(10);

/// A running probe; [`Lateness::stop`] ends it and returns the allowance.
pub struct Lateness {
    stop: Arc<AtomicBool>,
    probe: JoinHandle<Measured>,
    stretch: Duration,
}

/// What the probe saw.
#[derive(Default)]
struct Measured {
    /// Whether every thread of the process counts, or only the flushers.
    every_thread: bool,
    worst_oversleep: Duration,
    total_oversleep: Duration,
    sleeps: u32,
    /// Per thread id: the runqueue wait (ns) seen at each sample, with when.
    waits: HashMap<String, Vec<(Instant, u64)>>,
}

impl Measured {
    fn sample_waits(&mut self) {
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return;
        };
        for task in tasks.flatten() {
            let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) else {
                continue;
            };
            let Some(wait) = text.split_whitespace().nth(1).and_then(|w| w.parse().ok()) else {
                continue;
            };
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if !self.every_thread && !comm.starts_with("lifostore-flush") {
                continue; // the kernel keeps 15 bytes of a thread's name
            }
            let tid = task.file_name().to_string_lossy().into_owned();
            self.waits
                .entry(tid)
                .or_default()
                .push((Instant::now(), wait));
        }
    }

    /// The most one flusher waited between two samples at most `stretch` apart (plus one
    /// sampling interval, so a stretch is never cut short by the sampling).
    fn worst_wait(&self, stretch: Duration) -> Duration {
        let span = stretch + SAMPLE_EVERY;
        let mut most = 0;
        for samples in self.waits.values() {
            let mut from = 0;
            for (to, &(at, wait)) in samples.iter().enumerate() {
                while at.duration_since(samples[from].0) > span {
                    from += 1;
                }
                most = most.max(wait.saturating_sub(samples[from.min(to)].1));
            }
        }
        Duration::from_nanos(most)
    }
}

impl Lateness {
    /// Starts the probe, for a bound of `stretch` (the flushers' waits count within any one
    /// stretch that long).
    pub fn start(stretch: Duration) -> Self {
        Self::spawn(stretch, false)
    }

    /// As [`Lateness::start`], counting the runqueue waits of every thread of the process:
    /// for tests whose pushers mostly sleep and may write a batch themselves (a full buffer
    /// with no write under way), so that their waiting delays items too.
    pub fn start_every_thread(stretch: Duration) -> Self {
        Self::spawn(stretch, true)
    }

    fn spawn(stretch: Duration, every_thread: bool) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let probe = std::thread::spawn(move || {
            let step = Duration::from_millis(2);
            let mut m = Measured {
                every_thread,
                ..Measured::default()
            };
            m.sample_waits();
            while !flag.load(Ordering::Relaxed) {
                let asked = Instant::now() + step;
                std::thread::sleep(step);
                let late = Instant::now().saturating_duration_since(asked);
                m.worst_oversleep = m.worst_oversleep.max(late);
                m.total_oversleep += late;
                m.sleeps += 1;
                if m.sleeps.is_multiple_of(5) {
                    m.sample_waits();
                }
            }
            m.sample_waits();
            m
        });
        Lateness {
            stop,
            probe,
            stretch,
        }
    }

    /// Ends the probe and keeps what it saw, for tests that judge each event by the waits of
    /// its own span ([`Probe::allowance_between`]).
    pub fn stop_probe(self) -> Probe {
        self.stop.store(true, Ordering::Relaxed);
        let measured = self.probe.join().expect("the lateness probe panicked");
        Probe { measured }
    }

    /// Ends the probe; the allowance: the larger of its worst oversleep and the most any
    /// flusher waited for a CPU within one stretch.
    pub fn stop(self) -> Duration {
        self.stop_with_mean().0
    }

    /// Ends the probe; the allowance (as [`Lateness::stop`]) and the mean oversleep of its
    /// 2 ms sleeps.
    pub fn stop_with_mean(self) -> (Duration, Duration) {
        self.stop.store(true, Ordering::Relaxed);
        let m = self.probe.join().expect("the lateness probe panicked");
        let allowance = m.worst_oversleep.max(m.worst_wait(self.stretch));
        (allowance, m.total_oversleep / m.sleeps.max(1))
    }
}

/// What a stopped probe saw ([`Lateness::stop_probe`]).
pub struct Probe {
    measured: Measured,
}

impl Probe {
    /// The allowance for an event that should have come within a bound and took from `from`
    /// to `to` (an item's push and its arrival in the Db, say): the larger of the probe's
    /// worst oversleep and what the counted threads waited for a CPU, summed, between the
    /// samples around `from` and `to` (a sampling interval wider on each side, never
    /// narrower). Summed, because delays compose along a chain of threads (a flusher waits for
    /// the lock a descheduled pusher holds, then waits for a CPU itself): the event's delay is
    /// at most the sum, so the check stays sound on any machine; on an idle one the sum is a
    /// millisecond or so and the bound keeps its teeth. The span is the event's own.
    pub fn allowance_between(&self, from: Instant, to: Instant) -> Duration {
        let mut total = 0;
        for samples in self.measured.waits.values() {
            let before = samples
                .iter()
                .rev()
                .find(|(at, _)| *at <= from)
                .or(samples.first());
            let after = samples.iter().find(|(at, _)| *at >= to).or(samples.last());
            if let (Some(&(_, w0)), Some(&(_, w1))) = (before, after) {
                total += w1.saturating_sub(w0);
            }
        }
        self.measured
            .worst_oversleep
            .max(Duration::from_nanos(total))
    }
}
