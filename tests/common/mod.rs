//! Helpers shared by the integration tests (each test file is its own crate and uses a part).
#![allow(dead_code)]

pub mod crash;
pub mod lateness;
pub mod lease_crash;
pub mod leases;
pub mod linearizability;
pub mod proxy;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lifostore::{CancelToken, Error, MemDb, Storage};

/// An 8-byte test item carrying `id` (little endian).
pub fn item(id: u64) -> Vec<u8> {
    id.to_le_bytes().to_vec()
}

/// The ids of a batch of [`item`]s, in order.
pub fn ids(items: &[Vec<u8>]) -> Vec<u64> {
    items.iter().map(|x| id_of(x)).collect()
}

/// A storage whose flusher never writes on its own during a test (long window, big buffer).
pub fn quiet(db: MemDb) -> Storage<MemDb> {
    Storage::builder()
        .max_unflushed_age(Duration::from_secs(600))
        .build(db)
        .expect("a storage over MemDb")
}

/// Pushes `item(0)` and starts a `flush` of it on another thread; returns once that write is
/// in flight (the Db's latency keeps it there).
pub fn write_in_flight(
    s: &std::sync::Arc<Storage<MemDb>>,
) -> std::thread::JoinHandle<Result<(), Error>> {
    s.push(&CancelToken::new(), item(0)).expect("push item 0");
    let flush = {
        let s = s.clone();
        std::thread::spawn(move || s.flush(&CancelToken::new()))
    };
    while s.stats().in_flight_items == 0 {
        std::thread::sleep(Duration::from_micros(100)); // waiting for the other thread's state
    }
    flush
}

/// The id an [`item`] carries.
pub fn id_of(item: &[u8]) -> u64 {
    u64::from_le_bytes(item.try_into().expect("8-byte test item"))
}

/// Waits until a call is blocked on `token` (it registered on the token, which a call does
/// only right before it sleeps); panics after 5 s. Short sleeps between looks: this waits for
/// another thread to reach a state, there is no event to wait on.
pub fn wait_until_blocked(token: &CancelToken) {
    assert!(
        blocked_within(token, Duration::from_secs(5)),
        "the call never blocked"
    );
}

/// Runs `f` on its own thread and fails the test if it does not finish within `limit`: a hang
/// fails the test instead of blocking CI.
pub fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("hung for more than {limit:?}"))
}

/// Waits until `n` calls are blocked on `token` (see [`wait_until_blocked`]); panics after 5 s.
pub fn wait_until_blocked_n(token: &CancelToken, n: usize) {
    let until = Instant::now() + Duration::from_secs(5);
    while lifostore::testing::registrations(token) < n {
        assert!(Instant::now() < until, "{n} calls never blocked");
        std::thread::sleep(Duration::from_micros(50));
    }
}

/// Like [`wait_until_blocked`], but returns false if `limit` passes first.
pub fn blocked_within(token: &CancelToken, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    while lifostore::testing::registrations(token) == 0 {
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_micros(50));
    }
    true
}

/// An error and all its causes, one per line, as an error-chain printer shows them.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        text.push_str("\ncaused by: ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("lifostore-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// xorshift64: a small deterministic generator for randomized tests (seed printed by callers).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Re-runs this test binary's `child_test` once per spec, in parallel, with `env_var` set to the
/// spec; waits for all, asserts they succeeded, and returns every id they printed as
/// `POPPED <id>`.
pub fn run_children(child_test: &str, env_var: &str, specs: &[String]) -> Vec<u64> {
    let exe = std::env::current_exe().expect("test binary");
    let children: Vec<_> = specs
        .iter()
        .map(|spec| {
            Command::new(&exe)
                .args(["--exact", child_test, "--nocapture", "--test-threads=1"])
                .env(env_var, spec)
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn child")
        })
        .collect();
    let mut popped = Vec::new();
    for child in children {
        let out = child.wait_with_output().expect("child output");
        assert!(out.status.success(), "a child process failed");
        popped.extend(popped_ids(&String::from_utf8_lossy(&out.stdout)));
    }
    popped
}

/// The ids printed as `POPPED <id>`. libtest may print "test name ... " before a child's first
/// line, so the marker is searched for, not expected at the line start.
pub fn popped_ids(stdout: &str) -> Vec<u64> {
    stdout
        .lines()
        .filter_map(|line| line.find("POPPED ").map(|pos| &line[pos + 7..]))
        .map(|id| id.trim().parse().expect("POPPED id"))
        .collect()
}

/// Pushes then pops `rounds` batches of `batch` 100-byte items through `db`; returns
/// (push, pop) items per second. A figure, not an assertion.
pub fn batch_rates(db: &dyn lifostore::Db, batch: usize, rounds: usize) -> (f64, f64) {
    let item = [0x42u8; 100];
    let items: Vec<&[u8]> = (0..batch).map(|_| &item[..]).collect();
    let t = std::time::Instant::now();
    for _ in 0..rounds {
        db.push_batch(&items).expect("push batch");
    }
    let push = (rounds * batch) as f64 / t.elapsed().as_secs_f64();
    let t = std::time::Instant::now();
    for _ in 0..rounds {
        assert_eq!(db.pop_batch(batch).expect("pop batch").len(), batch);
    }
    let pop = (rounds * batch) as f64 / t.elapsed().as_secs_f64();
    (push, pop)
}

/// The 8-byte little-endian ids stored in a MemDb, sorted.
pub fn sorted_ids(db: &lifostore::MemDb) -> Vec<u64> {
    let mut ids: Vec<u64> = db
        .snapshot()
        .into_iter()
        .map(|x| u64::from_le_bytes(x.as_slice().try_into().expect("8-byte item")))
        .collect();
    ids.sort();
    ids
}
