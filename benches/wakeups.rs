//! Cross-process hand-off and idle cost over a shared Db, with wake-ups (`Db::watch`) against
//! the polling they replace, in the same run.
//!
//! * **Hand-off latency**: a producer process calls `push_durable` every 37 ms and prints the
//!   wall-clock instant each call returned; a consumer (this process) blocks in `pop` and
//!   stamps each item when `pop` returns it. The latency is the difference (one machine, one
//!   clock). Rounds alternate: a consumer with wake-ups ("after"), then one that polls every
//!   100 ms, the old default ("before": the same Db behind a wrapper that forwards everything
//!   but `watch`). p50, p99 and the worst of each are printed.
//! * **Idle Db calls**: two consumers, one of each kind, block in `pop` on the same empty Db at
//!   the same time for `--idle-secs`; each one's Db pop calls, per minute.
//!
//! Not criterion: the figures are a latency distribution across processes and a count per
//! minute, not the time of a repeated in-process operation.
//!
//! ```text
//! bash .ci/with-servers cargo bench -p lifostore-benches --bench wakeups   # + Redis, PostgreSQL
//! cargo bench -p lifostore-benches --bench wakeups                   # FileDb, 300 items/mode, 60 s idle
//! cargo bench -p lifostore-benches --bench wakeups -- --test         # CI: 6 items/mode, 1 s idle
//! cargo bench -p lifostore-benches --bench wakeups -- --items 100 --idle-secs 20
//! ```

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lifostore::{
    CancelToken, Capabilities, Db, DbError, DbWatch, FileDb, PostgresDb, PushBatchError, RedisDb,
    Storage, StorageBuilder,
};

const CHILD_ENV: &str = "LIFOSTORE_WAKEUPS_BENCH_CHILD";
const PRODUCER_GAP: Duration = Duration::from_millis(37);
const ROUND: usize = 50;

/// A shared Db without its wake-ups: the storage over it polls, as before `Db::watch`.
struct Polling(Arc<dyn Db>);

impl Db for Polling {
    fn push(&self, data: &[u8]) -> Result<(), DbError> {
        self.0.push(data)
    }
    fn pop(&self) -> Result<Option<Vec<u8>>, DbError> {
        self.0.pop()
    }
    fn push_batch(&self, items: &[&[u8]]) -> Result<(), PushBatchError> {
        self.0.push_batch(items)
    }
    fn pop_batch(&self, max: usize) -> Result<Vec<Vec<u8>>, DbError> {
        self.0.pop_batch(max)
    }
    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }
}

/// The consumer's Db, timing each pop call that returned an item: the part of a hand-off
/// that is the Db's own work (FileDb: lock, read, write the slot, `fdatasync`), the floor
/// under any wake-up. Forwards the wake-ups.
struct Timed {
    inner: Arc<dyn Db>,
    pops: Mutex<Vec<Duration>>,
}

impl Timed {
    fn time<T>(
        &self,
        f: impl FnOnce() -> Result<T, DbError>,
        got: impl Fn(&T) -> bool,
    ) -> Result<T, DbError> {
        let start = Instant::now();
        let out = f()?;
        if got(&out) {
            self.pops.lock().expect("times").push(start.elapsed());
        }
        Ok(out)
    }
}

impl Db for Timed {
    fn push(&self, data: &[u8]) -> Result<(), DbError> {
        self.inner.push(data)
    }
    fn pop(&self) -> Result<Option<Vec<u8>>, DbError> {
        self.time(|| self.inner.pop(), Option::is_some)
    }
    fn push_batch(&self, items: &[&[u8]]) -> Result<(), PushBatchError> {
        self.inner.push_batch(items)
    }
    fn pop_batch(&self, max: usize) -> Result<Vec<Vec<u8>>, DbError> {
        self.time(|| self.inner.pop_batch(max), |v| !v.is_empty())
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn watch(&self) -> Result<Option<Box<dyn DbWatch>>, DbError> {
        self.inner.watch()
    }
}

/// Which Db, named on the command line and handed to the producer.
#[derive(Clone)]
struct Backend {
    name: String,
    target: String,
}

impl Backend {
    fn open(&self) -> Arc<dyn Db> {
        match self.name.as_str() {
            "file" => Arc::new(FileDb::open(&self.target).expect("open FileDb")),
            "redis" => {
                let (url, key) = self.target.split_once(' ').expect("url key");
                Arc::new(RedisDb::open(url).expect("open RedisDb").with_key(key))
            }
            "postgres" => {
                let (url, table) = self.target.split_once(' ').expect("url table");
                let db = PostgresDb::open(url).expect("open PostgresDb");
                Arc::new(db.with_table(table).expect("table"))
            }
            other => panic!("unknown backend {other}"),
        }
    }
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
}

/// The producer process: `n` durable pushes, one every 37 ms; prints `SENT id ns` after each.
fn producer(spec: &str) {
    let mut parts = spec.splitn(3, '|');
    let (name, n, target) = (parts.next(), parts.next(), parts.next());
    let backend = Backend {
        name: name.expect("backend").into(),
        target: target.expect("target").into(),
    };
    let n: u64 = n.expect("n").parse().expect("n");
    let storage = StorageBuilder::default()
        .build(backend.open())
        .expect("producer storage");
    let token = CancelToken::new();
    for id in 0..n {
        std::thread::sleep(PRODUCER_GAP);
        storage
            .push_durable(&token, id.to_le_bytes())
            .expect("push_durable");
        println!("SENT {id} {}", now_ns());
    }
    storage.close().expect("close");
}

/// One round: a consumer (`watched` or polling) takes `n` items a producer process sends;
/// returns each item's latency.
fn round(backend: &Backend, watched: bool, n: usize) -> (Vec<Duration>, Vec<Duration>) {
    let timed = Arc::new(Timed {
        inner: backend.open(),
        pops: Mutex::new(Vec::new()),
    });
    let consumer = consumer(Arc::clone(&timed) as Arc<dyn Db>, watched);
    let spec = format!("{}|{n}|{}", backend.name, backend.target);
    let mut child = Command::new(std::env::current_exe().expect("bench binary"))
        .env(CHILD_ENV, spec)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the producer");
    let mut got = Vec::with_capacity(n);
    for _ in 0..n {
        // Each pop its own deadline: a round of any length fails only on a stuck hand-off.
        let token = CancelToken::new().with_timeout(Duration::from_secs(60));
        let item = consumer.pop(&token).expect("pop");
        got.push((
            u64::from_le_bytes(item.try_into().expect("8 bytes")),
            now_ns(),
        ));
    }
    let sent = sent_times(&mut child);
    consumer.close().expect("close");
    let latencies = got
        .iter()
        .map(|&(id, at)| Duration::from_nanos(at.saturating_sub(sent[id as usize]) as u64))
        .collect();
    let pops = std::mem::take(&mut *timed.pops.lock().expect("times"));
    (latencies, pops)
}

fn sent_times(child: &mut std::process::Child) -> Vec<u128> {
    let out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut sent = Vec::new();
    for line in out.lines().map_while(Result::ok) {
        if let Some(rest) = line.strip_prefix("SENT ") {
            let (_, ns) = rest.split_once(' ').expect("id ns");
            sent.push(ns.parse().expect("ns"));
        }
    }
    assert!(child.wait().expect("producer").success(), "producer failed");
    sent
}

/// A consumer storage: with the Db's wake-ups (default re-check), or polling every 100 ms.
fn consumer(db: Arc<dyn Db>, watched: bool) -> Storage<Arc<dyn Db>> {
    let db: Arc<dyn Db> = if watched { db } else { Arc::new(Polling(db)) };
    StorageBuilder::default().build(db).expect("consumer")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn report(backend: &Backend, label: &str, mut lat: Vec<Duration>) {
    if lat.is_empty() {
        return;
    }
    lat.sort();
    println!(
        "{:<8} {:<34} n={:<4} p50 {:>8.3} ms  p99 {:>8.3} ms  max {:>8.3} ms",
        backend.name,
        label,
        lat.len(),
        percentile(&lat, 0.50).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
}

/// An idle consumer: its backend, its kind, its storage.
type Consumer<'a> = (&'a Backend, &'static str, Storage<Arc<dyn Db>>);

/// Both kinds of consumer, over each backend's empty Db, all blocked at once for `secs`:
/// each one's Db pop calls per minute.
fn idle(backends: &[Backend], secs: u64) {
    let consumers: Vec<Consumer> = backends
        .iter()
        .flat_map(|b| {
            [
                (b, "wake-ups (after)", consumer(b.open(), true)),
                (b, "polling 100 ms (before)", consumer(b.open(), false)),
            ]
        })
        .collect();
    std::thread::scope(|scope| {
        for (_, _, storage) in &consumers {
            scope.spawn(move || {
                let token = CancelToken::new().with_timeout(Duration::from_secs(secs));
                assert!(storage.pop(&token).is_err(), "the Db must stay empty");
            });
        }
    });
    for (backend, label, storage) in &consumers {
        let calls = storage.stats().db_pop_calls;
        println!(
            "{:<8} idle, {:<28} {calls} Db calls in {secs} s = {:.1} per minute",
            backend.name,
            label,
            calls as f64 * 60.0 / secs as f64
        );
    }
}

fn arg(args: &[String], name: &str) -> Option<String> {
    let at = args.iter().position(|a| a == name)?;
    args.get(at + 1).cloned()
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        return producer(&spec);
    }
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--test");
    let items: usize = arg(&args, "--items").map_or(if quick { 6 } else { 300 }, |s| {
        s.parse().expect("--items N")
    });
    let idle_secs: u64 = arg(&args, "--idle-secs").map_or(if quick { 1 } else { 60 }, |s| {
        s.parse().expect("--idle-secs S")
    });
    let dir = std::env::temp_dir().join(format!("lifostore-wakeups-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut backends = vec![Backend {
        name: "file".into(),
        target: dir.join("handoff.lifo").display().to_string(),
    }];
    let table = format!("wakeups_bench_{}", std::process::id());
    for (name, var) in [
        ("redis", "LIFOSTORE_REDIS_URL"),
        ("postgres", "LIFOSTORE_POSTGRES_URL"),
    ] {
        match std::env::var(var) {
            Ok(url) => backends.push(Backend {
                name: name.into(),
                target: format!("{url} {table}"),
            }),
            Err(_) => println!("{name}: skipped, {var} not set (see .ci/with-servers)"),
        }
    }
    for backend in &backends {
        handoff(backend, items);
    }
    for backend in &mut backends[1..] {
        backend.target.push_str("_idle"); // a fresh, empty key or table
    }
    backends[0].target = dir.join("idle.lifo").display().to_string();
    idle(&backends, idle_secs);
    std::fs::remove_dir_all(&dir).ok();
}

/// Hand-off rounds of [`ROUND`] items, alternating wake-ups and polling, `items` of each.
fn handoff(backend: &Backend, items: usize) {
    let (mut after, mut before) = (Vec::new(), Vec::new());
    let (mut after_pops, mut before_pops) = (Vec::new(), Vec::new());
    while after.len() < items {
        let n = ROUND.min(items - after.len());
        let (lat, pops) = round(backend, true, n);
        after.extend(lat);
        after_pops.extend(pops);
        let (lat, pops) = round(backend, false, n);
        before.extend(lat);
        before_pops.extend(pops);
    }
    report(backend, "hand-off, wake-ups (after)", after);
    report(backend, "  its Db pop calls", after_pops);
    report(backend, "hand-off, polling 100 ms (before)", before);
    report(backend, "  its Db pop calls", before_pops);
}
