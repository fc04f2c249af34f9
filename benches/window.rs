//! The window at full load: Storage over a FileDb (temp dir), 2 pushers flat out with 100-byte
//! items for a fixed time, at windows of 100 ms and 1 s. Per run it prints pushes per second
//! and the worst unflushed age: the longest time from a `push` returning to the landing of the
//! Db batch that holds the item.
//!
//! How the age is measured: each item carries its pusher's number and a sequence number; each
//! pusher records the `Instant` after every `push` returns in a preallocated Vec; the FileDb is
//! wrapped in [`LandingDb`], which after each `push_batch` returns records, per pusher, the
//! range of sequence numbers the batch held and the instant it landed. After the run every
//! item is matched to its batch; an item missing or landed twice fails the run. (A pusher
//! preempted between `push` returning and its `Instant::now()` shortens that item's age by the
//! gap; the item pushed next is not affected.) Items still buffered when the pushers stop are
//! written by `close` and count like the others: the promise does not end with the load.
//! (`lifostore::testing::StampedDb` copies every item into a list under its lock, inside the
//! flusher's write path; this wrapper records two numbers per pusher per batch instead.)
//!
//! Not criterion: the figures are an age distribution and a rate per run, not the time of a
//! repeated operation. `cargo bench -p lifostore-benches --bench window` runs 10 runs of 3 s
//! at 100 ms and 3 runs of 5 s at 1 s (~1 min). `-- --test` (CI) runs one 0.3 s run at 100 ms. Options:
//! `-- --window-ms 100 --runs 10 --secs 3` runs only that configuration; `--max-batch N` sets
//! the storage's `max_batch` (default: the library's) to compare batch sizes.
//!
//! Besides the rate and the ages, each run prints what explains a missed window: the Db's
//! writes (count, busy share of the run, slowest, longest gap between two) and the storage's
//! own view sampled every 10 ms (most items held, range of its learned Db speed).
//!
//! After each run, the same-run baseline: the disk alone replays the FileDb's writes of that
//! run, in the same directory: each write's bytes (its items at the run's average framed size)
//! appended at the same offset from the start as the FileDb began it (or at once, if the
//! replay is behind), then `fdatasync`. Its slowest sync says whether the disk itself stalls
//! for longer than the window under that load: no write-behind store that syncs can keep a
//! window shorter than one sync of its disk.

use std::path::PathBuf;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use lifostore::{
    CancelToken, Capabilities, Db, DbError, DbLeases, FileDb, FileDbOptions, PushBatchError,
    Storage,
};
use parking_lot::Mutex;

const PUSHERS: usize = 2;
const ITEM_LEN: usize = 100;
/// Push-return instants preallocated per pusher and second of run: above one pusher's rate on
/// the 2-core machine (0.1-0.8 M/s), so the Vec does not grow (and copy) while pushers run.
const STAMPS_PER_SEC: usize = 2_000_000;

/// One landed batch, as far as one pusher's items go: its sequence numbers `first..=last`, the
/// instant its write began and the instant it landed.
#[derive(Clone, Copy)]
struct Landing {
    first: u64,
    last: u64,
    started: Instant,
    at: Instant,
}

/// A Db that stamps each batch's landing instant, per pusher (see the module docs).
struct LandingDb<D> {
    inner: D,
    landings: Mutex<Vec<Vec<Landing>>>,
    /// Every write call: when it started, how long it took, how many items it stored.
    writes: Mutex<Vec<(Instant, Duration, usize)>>,
}

/// The pusher number and sequence number an item carries in its first 9 bytes.
fn decode(item: &[u8]) -> Option<(usize, u64)> {
    let seq = u64::from_le_bytes(item.get(1..9)?.try_into().ok()?);
    Some((usize::from(*item.first()?), seq))
}

impl<D: Db> LandingDb<D> {
    fn new(inner: D) -> Self {
        LandingDb {
            inner,
            landings: Mutex::new((0..PUSHERS).map(|_| Vec::with_capacity(1 << 16)).collect()),
            writes: Mutex::new(Vec::with_capacity(1 << 16)),
        }
    }

    /// Records that `items` landed now, in a write that began at `started`.
    fn stamp(&self, items: &[&[u8]], started: Instant) {
        let at = Instant::now();
        self.writes
            .lock()
            .push((started, at - started, items.len()));
        let mut ranges: [Option<(u64, u64)>; PUSHERS] = [None; PUSHERS];
        for (pusher, seq) in items.iter().filter_map(|i| decode(i)) {
            let r = ranges[pusher].get_or_insert((seq, seq));
            r.0 = r.0.min(seq);
            r.1 = r.1.max(seq);
        }
        let mut landings = self.landings.lock();
        for (pusher, range) in ranges.iter().enumerate() {
            if let Some((first, last)) = *range {
                landings[pusher].push(Landing {
                    first,
                    last,
                    started,
                    at,
                });
            }
        }
    }
}

impl<D: Db> Db for LandingDb<D> {
    fn push(&self, data: &[u8]) -> Result<(), DbError> {
        let started = Instant::now();
        self.inner.push(data)?;
        self.stamp(&[data], started);
        Ok(())
    }
    fn pop(&self) -> Result<Option<Vec<u8>>, DbError> {
        self.inner.pop()
    }
    fn push_batch(&self, items: &[&[u8]]) -> Result<(), PushBatchError> {
        let started = Instant::now();
        let result = self.inner.push_batch(items);
        let stored = match &result {
            Ok(()) => items.len(),
            Err(e) => e.stored.min(items.len()),
        };
        self.stamp(&items[..stored], started);
        result
    }
    fn pop_batch(&self, max: usize) -> Result<Vec<Vec<u8>>, DbError> {
        self.inner.pop_batch(max)
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn item_count(&self) -> Result<Option<u64>, DbError> {
        self.inner.item_count()
    }
    fn leases(&self) -> Option<&dyn DbLeases> {
        self.inner.leases()
    }
}

/// The Db's writes while the pushers ran (the drain at `close` excluded).
#[derive(Default)]
struct Writes {
    count: usize,
    /// Fraction of the time from the first write's start to the last one's end spent writing.
    busy: f64,
    slowest: Duration,
    /// Items written per second of write time.
    rate: f64,
    /// Longest pause between one write's end and the next one's start.
    longest_gap: Duration,
}

impl Writes {
    fn of(log: &[(Instant, Duration, usize)], until: Instant) -> Writes {
        let log: Vec<_> = log.iter().filter(|(at, _, _)| *at < until).collect();
        let (Some(first), Some(last)) = (log.first(), log.last()) else {
            return Writes::default();
        };
        let span = (last.0 + last.1).saturating_duration_since(first.0);
        let writing: Duration = log.iter().map(|(_, took, _)| *took).sum();
        let items: usize = log.iter().map(|(_, _, n)| *n).sum();
        Writes {
            count: log.len(),
            busy: writing.as_secs_f64() / span.as_secs_f64().max(1e-9),
            slowest: log
                .iter()
                .map(|(_, took, _)| *took)
                .max()
                .unwrap_or_default(),
            rate: items as f64 / writing.as_secs_f64().max(1e-9),
            longest_gap: log
                .windows(2)
                .map(|w| w[1].0.saturating_duration_since(w[0].0 + w[0].1))
                .max()
                .unwrap_or_default(),
        }
    }
}

/// The storage's own view, sampled every 10 ms while the pushers run.
#[derive(Default)]
struct Held {
    /// Most items held in memory (buffered plus in flight).
    most: usize,
    /// The range of the storage's learned Db speed (items/s) over the samples.
    learned_rate: Option<(f64, f64)>,
}

/// Samples `storage.stats()` every 10 ms until `until` (100 lock takings a second: noise).
fn watch(storage: &Storage<LandingDb<FileDb>>, until: Instant) -> Held {
    let mut held = Held::default();
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10).min(until - Instant::now()));
        let stats = storage.stats();
        held.most = held.most.max(stats.buffered_items);
        if let Some(r) = stats.db_items_per_sec {
            let (lo, hi) = held.learned_rate.get_or_insert((r, r));
            (*lo, *hi) = (lo.min(r), hi.max(r));
        }
    }
    held
}

/// The item with the worst unflushed age.
#[derive(Default)]
struct Worst {
    age: Duration,
    /// From its push returning to the start of the write that stored it.
    queued: Duration,
    /// When its push returned, from the start of the run.
    pushed_after: Duration,
}

/// What one run measured.
struct Run {
    pushes: u64,
    secs: f64,
    writes: Writes,
    held: Held,
    worst: Worst,
    p99_age: Duration,
    over_window: u64,
    /// The FileDb's writes, for the raw-disk replay: when each began (from the start of the
    /// run) and its bytes.
    replay: Vec<(Duration, usize)>,
}

/// The disk alone, replaying a run's writes: appends, each followed by `fdatasync`.
struct RawDisk {
    slowest: Duration,
    /// When the slowest sync began, from the start.
    slowest_at: Duration,
    over_window: usize,
}

/// The raw-disk baseline (see the module docs): each write of `replay` appended at its offset
/// from the start (at once if behind), then `fdatasync`, in the bench directory.
fn raw_disk(window: Duration, replay: &[(Duration, usize)]) -> RawDisk {
    use std::io::Write;
    let path = dir().join("raw-disk.bin");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .expect("raw-disk file");
    let largest = replay.iter().map(|w| w.1).max().unwrap_or(0);
    let bytes = vec![0x5a_u8; largest];
    let mut out = RawDisk {
        slowest: Duration::ZERO,
        slowest_at: Duration::ZERO,
        over_window: 0,
    };
    let start = Instant::now();
    for &(offset, len) in replay {
        // Pacing to the recorded schedule, not polling: one sleep per write, none when behind.
        std::thread::sleep((start + offset).saturating_duration_since(Instant::now()));
        let began = Instant::now();
        file.write_all(&bytes[..len]).expect("raw-disk write");
        file.sync_data().expect("raw-disk fdatasync");
        let took = began.elapsed();
        out.over_window += usize::from(took > window);
        if took > out.slowest {
            out.slowest = took;
            out.slowest_at = began - start;
        }
    }
    drop(file);
    let _ = std::fs::remove_file(&path);
    out
}

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("lifostore-window-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("bench dir");
    d
}

/// One pusher: pushes flat out until `stop`, recording the instant each push returned.
fn pusher(
    storage: &Storage<LandingDb<FileDb>>,
    id: usize,
    stop: &AtomicBool,
    capacity: usize,
) -> Vec<Instant> {
    let token = CancelToken::new();
    let mut returned = Vec::with_capacity(capacity);
    let mut item = [0u8; ITEM_LEN];
    item[0] = id as u8;
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        item[1..9].copy_from_slice(&seq.to_le_bytes());
        storage.push(&token, item.to_vec()).expect("push");
        returned.push(Instant::now());
        seq += 1;
    }
    returned
}

/// One run: `PUSHERS` pushers for `secs`, then `close` (which writes the rest), then the ages.
fn run(window: Duration, secs: f64) -> Run {
    let path = dir().join(format!("window-{}.lifo", window.as_millis()));
    let _ = std::fs::remove_file(&path);
    let db = FileDb::open_with(&path, FileDbOptions::default().shared(false)).expect("open");
    let mut builder = Storage::builder().max_unflushed_age(window);
    if let Some(n) = arg::<usize>("--max-batch") {
        builder = builder.max_batch(n);
    }
    let storage = builder.build(LandingDb::new(db)).expect("storage");
    let stop = AtomicBool::new(false);
    let barrier = Barrier::new(PUSHERS + 1);
    let capacity = (secs * STAMPS_PER_SEC as f64) as usize;
    let (returned, start, elapsed, held) = std::thread::scope(|s| {
        let threads: Vec<_> = (0..PUSHERS)
            .map(|id| {
                let (storage, stop, barrier) = (&storage, &stop, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    pusher(storage, id, stop, capacity)
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let held = watch(&storage, start + Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
        let returned: Vec<Vec<Instant>> = threads
            .into_iter()
            .map(|t| t.join().expect("pusher"))
            .collect();
        (returned, start, start.elapsed(), held)
    });
    storage.close().expect("close");
    let landings = std::mem::take(&mut *storage.db().landings.lock());
    let log = std::mem::take(&mut *storage.db().writes.lock());
    let writes = Writes::of(&log, start + elapsed);
    drop(storage);
    let file_bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
    let _ = std::fs::remove_file(&path);
    let items: usize = log.iter().map(|w| w.2).sum();
    let replay = log
        .iter()
        .map(|&(at, _, n)| {
            let len = (file_bytes as u128 * n as u128 / items.max(1) as u128) as usize;
            (at.saturating_duration_since(start), len)
        })
        .collect();
    Run {
        writes,
        held,
        replay,
        ..ages(window, start, &returned, &landings, elapsed)
    }
}

/// Matches every item to the batch that landed it; panics if one is missing or landed twice.
fn ages(
    window: Duration,
    start: Instant,
    returned: &[Vec<Instant>],
    landings: &[Vec<Landing>],
    elapsed: Duration,
) -> Run {
    let mut all = Vec::new();
    let mut worst = Worst::default();
    for (pusher, stamps) in returned.iter().enumerate() {
        let mut next = 0u64;
        let mut sorted = landings[pusher].clone();
        sorted.sort_by_key(|l| l.first);
        for l in &sorted {
            assert_eq!(
                l.first, next,
                "pusher {pusher}: items {next}.. lost or twice"
            );
            for seq in l.first..=l.last {
                let pushed = stamps[seq as usize];
                let age = l.at.saturating_duration_since(pushed);
                if age > worst.age {
                    worst = Worst {
                        age,
                        queued: l.started.saturating_duration_since(pushed),
                        pushed_after: pushed.saturating_duration_since(start),
                    };
                }
                all.push(age);
            }
            next = l.last + 1;
        }
        assert_eq!(
            next as usize,
            stamps.len(),
            "pusher {pusher}: items never landed"
        );
    }
    all.sort_unstable();
    let p99_age = all
        .get(all.len().saturating_sub(1) * 99 / 100)
        .copied()
        .unwrap_or_default();
    Run {
        pushes: all.len() as u64,
        secs: elapsed.as_secs_f64(),
        writes: Writes::default(),
        held: Held::default(),
        worst,
        p99_age,
        over_window: all.iter().filter(|a| **a > window).count() as u64,
        replay: Vec::new(),
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// `runs` runs of `secs` at `window`; prints each and a summary line.
fn series(window: Duration, runs: usize, secs: f64) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mut rates = Vec::new();
    let mut worsts = Vec::new();
    let mut disk_stalled = 0;
    for i in 1..=runs {
        let r = run(window, secs);
        let raw = raw_disk(window, &r.replay);
        let rate = r.pushes as f64 / r.secs;
        println!(
            "window {:>5} ms run {i:>2}/{runs}: {:>6.3} M pushes/s ({} items in {:.2} s), \
             worst unflushed age {:>7.1} ms (pushed at {:.2} s, queued {:.1} ms before its write \
             began), p99 {:>6.1} ms, {} items over the window; \
             {} writes, Db busy {:.0} %, slowest write {:.1} ms, longest gap {:.1} ms; \
             held at most {} items, learned Db speed {:.2}-{:.2} M items/s (written: {:.2} M \
             per busy second)",
            window.as_millis(),
            rate / 1e6,
            r.pushes,
            r.secs,
            ms(r.worst.age),
            r.worst.pushed_after.as_secs_f64(),
            ms(r.worst.queued),
            ms(r.p99_age),
            r.over_window,
            r.writes.count,
            r.writes.busy * 100.0,
            ms(r.writes.slowest),
            ms(r.writes.longest_gap),
            r.held.most,
            r.held.learned_rate.unwrap_or_default().0 / 1e6,
            r.held.learned_rate.unwrap_or_default().1 / 1e6,
            r.writes.rate / 1e6,
        );
        println!(
            "  raw disk replaying these writes (append + fdatasync each): {} syncs, slowest \
             {:.1} ms (at {:.2} s), {} over the window",
            r.replay.len(),
            ms(raw.slowest),
            raw.slowest_at.as_secs_f64(),
            raw.over_window,
        );
        disk_stalled += usize::from(raw.slowest > window);
        rates.push(rate);
        worsts.push(ms(r.worst.age));
    }
    let kept = worsts.iter().filter(|w| **w <= ms(window)).count();
    println!(
        "window {:>5} ms, {runs} runs of {secs} s, {PUSHERS} pushers, {ITEM_LEN}-byte items: \
         median {:.3} M pushes/s (min {:.3}), worst unflushed age median {:.1} ms, \
         max {:.1} ms; window kept in {kept}/{runs} runs; the raw disk alone had a sync \
         longer than the window in {disk_stalled}/{runs} runs",
        window.as_millis(),
        median(rates.clone()) / 1e6,
        rates.iter().copied().fold(f64::INFINITY, f64::min) / 1e6,
        median(worsts.clone()),
        worsts.iter().copied().fold(0.0, f64::max),
    );
}

/// The value after `--name` on the command line.
fn arg<T: std::str::FromStr>(name: &str) -> Option<T> {
    let args: Vec<String> = std::env::args().collect();
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1)?.parse().ok()
}

fn main() {
    if std::env::args().any(|a| a == "--test") {
        series(Duration::from_millis(100), 1, 0.3);
    } else if let Some(ms) = arg::<u64>("--window-ms") {
        let runs = arg("--runs").unwrap_or(10);
        series(
            Duration::from_millis(ms),
            runs,
            arg("--secs").unwrap_or(3.0),
        );
    } else {
        series(Duration::from_millis(100), 10, 3.0);
        series(Duration::from_secs(1), 3, 5.0);
    }
    let _ = std::fs::remove_dir_all(dir());
}
