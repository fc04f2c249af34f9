//! End-to-end tests against real nats-server and PostgreSQL (started by `.ci/with-servers`,
//! which exports LIFOSTORE_NATS_URL and LIFOSTORE_POSTGRES_URL). They share the servers'
//! single `LOGS` consumer, so run them one at a time: `--test-threads=1`.
//!
//! Without the URLs a test prints SKIP, except under CI=true, where it fails.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use objlog::client::Client;
use objlog::wire::{APPEND_SUBJECT, QUERY_SUBJECT};

struct Urls {
    nats: String,
    pg: String,
}

fn urls(test: &str) -> Option<Urls> {
    let nats = std::env::var("LIFOSTORE_NATS_URL").ok();
    let pg = std::env::var("LIFOSTORE_POSTGRES_URL").ok();
    match (nats, pg) {
        (Some(nats), Some(pg)) => Some(Urls { nats, pg }),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!(
                "{test}: LIFOSTORE_NATS_URL / LIFOSTORE_POSTGRES_URL missing under CI; run via .ci/with-servers"
            )
        }
        _ => {
            eprintln!(
                "SKIP {test}: run under .ci/with-servers to get LIFOSTORE_NATS_URL and LIFOSTORE_POSTGRES_URL"
            );
            None
        }
    }
}

/// Worker processes of one test; SIGTERMed (then reaped) on drop.
struct Workers {
    urls: (String, String),
    test: String,
    extra: Vec<String>,
    procs: Vec<(String, Child)>,
}

impl Workers {
    fn start(u: &Urls, test: &str, n: usize, extra: &[&str]) -> Workers {
        let mut w = Workers {
            urls: (u.nats.clone(), u.pg.clone()),
            test: test.to_string(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            procs: Vec::new(),
        };
        for i in 0..n {
            // A fresh log per test run; restarts (kill_and_restart) append to it.
            let _ = std::fs::remove_file(w.log_path(&format!("w{i}")));
            let p = w.spawn(&format!("w{i}"));
            w.procs.push(p);
        }
        w
    }

    fn log_path(&self, name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("objlog-{}-{}.log", self.test, name))
    }

    fn spawn(&self, name: &str) -> (String, Child) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(name))
            .expect("worker log file");
        let child = Command::new(env!("CARGO_BIN_EXE_worker"))
            .args([
                "--nats",
                &self.urls.0,
                "--pg",
                &self.urls.1,
                "--name",
                name,
                "--stats-every-ms",
                "2000",
            ])
            .args(&self.extra)
            .stderr(log)
            .spawn()
            .expect("start worker");
        (name.to_string(), child)
    }

    /// SIGKILLs worker `i` and starts a fresh process under the same name.
    fn kill_and_restart(&mut self, i: usize) {
        let (name, mut child) = self.procs.remove(i);
        child.kill().expect("SIGKILL worker");
        child.wait().expect("reap worker");
        eprintln!("  killed {name} (SIGKILL) and restarted it");
        let p = self.spawn(&name);
        self.procs.insert(i, p);
    }

    /// SIGTERMs every worker, waits for them, and sums two counters over their final stats lines.
    fn stop_and_sum(&mut self, counters: &[&str; 2]) -> (u64, u64) {
        for (_, c) in &self.procs {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
        }
        for (_, c) in &mut self.procs {
            let _ = c.wait();
        }
        let names: Vec<String> = self.procs.drain(..).map(|(n, _)| n).collect();
        let sum = |c: &str| {
            names
                .iter()
                .map(|n| last_counter(&self.log_path(n), c))
                .sum()
        };
        (sum(counters[0]), sum(counters[1]))
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for (_, c) in &mut self.procs {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The counter's value in the last stats line of a worker's log, summed over its lifetimes
/// (a log appended by several processes: each process's last line before a restart counts).
fn last_counter(path: &PathBuf, counter: &str) -> u64 {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let key = format!("\"{counter}\":");
    let mut total = 0;
    let mut current = 0;
    for line in text.lines() {
        if line.contains(": running (") {
            total += current;
            current = 0;
        }
        if let Some(rest) = line.split(&key).nth(1) {
            current = rest
                .split([',', '}'])
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(current);
        }
    }
    total + current
}

/// Runs `load`, calling `on_progress` for each `progress N` line; returns (success, lines).
fn run_load(u: &Urls, args: &[&str], mut on_progress: impl FnMut(u64)) -> (bool, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_load"))
        .args(["--nats", &u.nats, "--pg", &u.pg, "--check", "1"])
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start load");
    let stdout = child.stdout.take().expect("load stdout");
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        match line.strip_prefix("progress ").and_then(|n| n.parse().ok()) {
            Some(n) => on_progress(n),
            None => eprintln!("  load: {line}"),
        }
        lines.push(line);
    }
    (child.wait().expect("wait load").success(), lines)
}

/// Fields of the check line that must be 0 for a clean run.
const CLEAN: [&str; 10] = [
    "unsettled",
    "missing responses",
    "duplicate responses",
    "error responses",
    "lost",
    "duplicated",
    "mismatched",
    "bad",
    "unsorted",
    "query mismatches",
];

fn field(lines: &[String], name: &str) -> u64 {
    let line = lines
        .iter()
        .find(|l| l.starts_with("objlog check:"))
        .expect("a check line");
    let rest = line
        .split(&format!(" {name} "))
        .nth(1)
        .unwrap_or_else(|| panic!("no {name} in {line}"));
    rest.split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("bad {name} in {line}"))
}

#[test]
fn crash_test_100k_appends_4_workers_2_sigkilled() {
    let Some(u) = urls("crash_test") else { return };
    let mut workers = Workers::start(&u, "crash", 4, &["--ack-wait-ms", "5000"]);
    let mut killed = false;
    let started = Instant::now();
    let (ok, lines) = run_load(
        &u,
        &[
            "--total",
            "100000",
            "--objects",
            "100",
            "--threads",
            "8",
            "--progress-every",
            "5000",
        ],
        |n| {
            if n >= 25_000 && !killed {
                workers.kill_and_restart(0);
                workers.kill_and_restart(1);
                killed = true;
            }
        },
    );
    let (redelivered, already) = workers.stop_and_sum(&["redelivered", "already_stored"]);
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "  crash test: {secs:.1} s, {redelivered} redeliveries, {already} of them already stored"
    );
    assert!(killed, "the load finished before the kill point");
    assert!(ok, "load check failed: {lines:?}");
    for f in CLEAN {
        assert_eq!(field(&lines, f), 0, "{f} must be 0");
    }
    assert_eq!(field(&lines, "rows"), 100_000);
    assert!(
        redelivered > 0,
        "the SIGKILLs hit no request in flight, so nothing was tested"
    );
}

#[test]
fn pages_through_a_50k_entry_log() {
    let Some(u) = urls("paging") else { return };
    let _workers = Workers::start(&u, "paging", 2, &[]);
    let args = [
        "--total",
        "50000",
        "--objects",
        "1",
        "--log-bytes",
        "200",
        "--query-limit",
        "10000",
    ];
    let (ok, lines) = run_load(&u, &args, |_| {});
    assert!(ok, "load check failed: {lines:?}");
    assert_eq!(field(&lines, "rows"), 50_000);
    assert_eq!(field(&lines, "unsorted"), 0);
    assert_eq!(field(&lines, "mismatches"), 0);
    // 10 000 entries of ~250 bytes do not fit 1 MiB: every full page was cut by size.
    assert!(
        field(&lines, "capped") >= 5,
        "pages were not cut to the payload limit"
    );
    assert!(field(&lines, "largest") <= 1 << 20);
}

#[test]
fn malformed_requests_get_an_error_response_and_are_acked() {
    let Some(u) = urls("malformed") else { return };
    let _workers = Workers::start(&u, "malformed", 1, &[]);
    let client = Client::connect(&u.nats).expect("connect");
    let long = format!(r#"{{"id":1,"log":"{}"}}"#, "a".repeat(200_000));
    let cases: [(&str, Vec<u8>, &str); 7] = [
        (
            APPEND_SUBJECT,
            b"not json".to_vec(),
            "not a valid logs.append request",
        ),
        (
            APPEND_SUBJECT,
            br#"{"id":"x","log":"a"}"#.to_vec(),
            "not a valid logs.append request",
        ),
        (
            APPEND_SUBJECT,
            br#"{"id":18446744073709551615,"log":"a"}"#.to_vec(),
            "use a smaller id",
        ),
        (APPEND_SUBJECT, long.into_bytes(), "exceeds the limit"),
        (
            APPEND_SUBJECT,
            br#"{"id":1,"log":"a\u0000b"}"#.to_vec(),
            "NUL character",
        ),
        (
            QUERY_SUBJECT,
            br#"{"id":1,"after":"zz"}"#.to_vec(),
            "is not \"ts:seq\"",
        ),
        (
            QUERY_SUBJECT,
            br#"{"id":1,"limit":0}"#.to_vec(),
            "limit must be at least 1",
        ),
    ];
    let run = objlog::log_row::now_micros();
    for (i, (subject, body, says)) in cases.into_iter().enumerate() {
        let a = client
            .request(
                subject,
                body,
                &format!("bad-{run}-{i}"),
                Duration::from_secs(20),
            )
            .expect("an answer");
        let err = a.response.error.clone().unwrap_or_default();
        eprintln!("  {subject} case {i}: {err}");
        assert!(
            !a.response.ok && err.contains(says),
            "case {i}: {:?}",
            a.response
        );
    }
    // Acked, not left for redelivery: the consumer's backlog drains to nothing.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (pending, unacked) = client.backlog().expect("consumer info");
        if pending == 0 && unacked == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {pending} pending / {unacked} unacked"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_query_after_an_append_through_one_worker_reads_it() {
    let Some(u) = urls("read_your_write") else {
        return;
    };
    // One handler and a 60 s window: the append reaches PostgreSQL only through a flush of
    // the handler (its own batch's, or the query's flush of the buffer), never by age.
    let _workers = Workers::start(&u, "ryw", 1, &["--handlers", "1", "--window-ms", "60000"]);
    let client = Client::connect(&u.nats).expect("connect");
    let run = objlog::log_row::now_micros();
    let object = run as u64;
    for i in 0..20 {
        let body = format!(r#"{{"id":{object},"log":"m{i}"}}"#).into_bytes();
        client
            .publish(APPEND_SUBJECT, body, &format!("ryw-{run}-a{i}"), None)
            .expect("publish");
        let q = client
            .query(
                object,
                None,
                1000,
                &format!("ryw-{run}-q{i}"),
                Duration::from_secs(20),
            )
            .expect("query");
        let logs: Vec<String> = q
            .response
            .entries
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.log)
            .collect();
        let want: Vec<String> = (0..=i).map(|j| format!("m{j}")).collect();
        assert_eq!(logs, want, "query {i} did not read the appends before it");
    }
}

#[test]
fn a_postgres_outage_mid_run_loses_and_duplicates_nothing() {
    let Some(u) = urls("pg_outage") else { return };
    let (Ok(stop), Ok(start)) = (
        std::env::var("LIFOSTORE_POSTGRES_STOP"),
        std::env::var("LIFOSTORE_POSTGRES_START"),
    ) else {
        panic!("pg_outage: LIFOSTORE_POSTGRES_STOP / _START missing; run via .ci/with-servers");
    };
    let mut workers = Workers::start(&u, "pg_outage", 2, &["--ack-wait-ms", "4000"]);
    let mut down = false;
    let args = [
        "--total",
        "20000",
        "--objects",
        "20",
        "--rate",
        "4000",
        "--progress-every",
        "2000",
    ];
    let (ok, lines) = run_load(&u, &args, |n| {
        if n >= 4000 && !down {
            down = true;
            assert!(
                Command::new("sh")
                    .args(["-c", &stop])
                    .status()
                    .expect("stop pg")
                    .success()
            );
            eprintln!("  PostgreSQL stopped for 3 s");
            std::thread::sleep(Duration::from_secs(3)); // the outage itself
            assert!(
                Command::new("sh")
                    .args(["-c", &start])
                    .status()
                    .expect("start pg")
                    .success()
            );
            eprintln!("  PostgreSQL started again");
        }
    });
    let (redelivered, _) = workers.stop_and_sum(&["redelivered", "already_stored"]);
    eprintln!("  pg outage: {redelivered} redeliveries");
    assert!(down, "the load finished before the outage");
    assert!(ok, "load check failed: {lines:?}");
    for f in CLEAN {
        assert_eq!(field(&lines, f), 0, "{f} must be 0");
    }
}

/// Creates database `name` on the server of `url` (if missing); returns its URL.
fn database(url: &str, name: &str) -> String {
    let mut pg = postgres::Client::connect(url, postgres::NoTls).expect("connect to PostgreSQL");
    let exists = pg
        .query("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .expect("list databases");
    if exists.is_empty() {
        pg.batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create database");
    }
    let (server, _) = url.rsplit_once('/').expect("a URL ending in /database");
    format!("{server}/{name}")
}

#[test]
fn three_shards_keep_each_object_on_its_ring_shard() {
    let Some(u) = urls("shards") else { return };
    let shards: Vec<String> = (0..3)
        .map(|i| database(&u.pg, &format!("objlog_shard_{i}")))
        .collect();
    let list = shards.join(",");
    let sharded = Urls {
        nats: u.nats.clone(),
        pg: list.clone(),
    };
    let _workers = Workers::start(&sharded, "shards", 3, &[]);
    let (ok, lines) = run_load(&sharded, &["--total", "20000", "--objects", "60"], |_| {});
    assert!(ok, "load check failed: {lines:?}");
    for f in CLEAN {
        assert_eq!(
            field(&lines, f),
            0,
            "{f} must be 0 (mismatched counts rows off their ring shard)"
        );
    }
    let check = lines
        .iter()
        .find(|l| l.starts_with("objlog check:"))
        .expect("check line");
    let per_shard = check
        .split("per shard [")
        .nth(1)
        .and_then(|r| r.split(']').next())
        .expect("per-shard counts");
    let counts: Vec<u64> = per_shard
        .split(", ")
        .map(|n| n.parse().expect("a count"))
        .collect();
    assert_eq!(counts.len(), 3);
    assert!(
        counts.iter().all(|n| *n > 0),
        "a shard got no objects: {counts:?}"
    );
}

#[test]
fn a_crash_between_responding_and_acking_still_gives_one_response_per_append() {
    let Some(u) = urls("respond_then_crash") else {
        return;
    };
    // This worker exits as soon as its first answers are stored in RESPONSES, before acking.
    let mut faulty = Workers::start(
        &u,
        "respond_then_crash_faulty",
        1,
        &["--fault", "exit-before-ack"],
    );
    let load_urls = Urls {
        nats: u.nats.clone(),
        pg: u.pg.clone(),
    };
    let load = std::thread::spawn(move || {
        run_load(
            &load_urls,
            &[
                "--total",
                "2000",
                "--objects",
                "10",
                "--progress-every",
                "500",
            ],
            |_| {},
        )
    });
    let exit = faulty.procs[0].1.wait().expect("reap the faulty worker");
    faulty.procs.clear();
    assert_eq!(
        exit.code(),
        Some(3),
        "the faulty worker did not crash where asked"
    );
    let mut healthy = Workers::start(&u, "respond_then_crash", 1, &[]);
    let (ok, lines) = load.join().expect("load thread");
    let (redelivered, already) = healthy.stop_and_sum(&["redelivered", "already_stored"]);
    eprintln!("  healthy worker: {redelivered} redelivered, {already} of them already stored");
    assert!(
        already > 0,
        "no answered-but-unacked append was redelivered, so nothing was tested"
    );
    assert!(ok, "load check failed: {lines:?}");
    for f in CLEAN {
        assert_eq!(field(&lines, f), 0, "{f} must be 0");
    }
}

/// A free loopback port for a `--metrics` listener.
fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    format!("127.0.0.1:{}", l.local_addr().expect("addr").port())
}

/// GET http://addr/metrics (a minimal HTTP/1.1 client), waiting up to 30 s for the listener.
fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(addr) {
            let req = b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
            s.write_all(req).expect("send");
            let mut text = String::new();
            s.read_to_string(&mut text).expect("read");
            assert!(text.starts_with("HTTP/1.1 200"), "{text}");
            return text;
        }
        assert!(Instant::now() < until, "no /metrics listener on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Issue 24: with a short AckWait, one worker gets a request again while an earlier delivery
/// is still in hand, or still in its buffer (a batch whose flush timed out leaves its rows
/// there), so several copies of one append, each stamped with its own `ts`, reach one INSERT
/// or follow each other. Every answer must carry the timestamp in the table. One worker, 4
/// handlers, AckWait 300 ms, and PostgreSQL stopped for 1 s mid-run. The check compares every
/// stored response's `ts` with its row's; the worker must have answered some appends with
/// another delivery's timestamp (else the case was not exercised).
#[test]
fn a_short_ack_wait_still_answers_every_append_with_its_stored_ts() {
    let Some(u) = urls("short_ack") else { return };
    let (Ok(stop), Ok(start)) = (
        std::env::var("LIFOSTORE_POSTGRES_STOP"),
        std::env::var("LIFOSTORE_POSTGRES_START"),
    ) else {
        panic!("short_ack: LIFOSTORE_POSTGRES_STOP / _START missing; run via .ci/with-servers");
    };
    let metrics = free_addr();
    let extra = [
        "--ack-wait-ms",
        "300",
        "--handlers",
        "4",
        "--batch",
        "200",
        "--metrics",
        &metrics,
    ];
    let mut workers = Workers::start(&u, "short_ack", 1, &extra);
    let sh = |cmd: &str| {
        let ok = Command::new("sh").args(["-c", cmd]).status().expect("sh");
        assert!(ok.success(), "{cmd} failed");
    };
    let mut paused = false;
    let args = [
        "--total",
        "20000",
        "--objects",
        "20",
        "--progress-every",
        "2000",
    ];
    let (ok, lines) = run_load(&u, &args, |n| {
        if n >= 4000 && !paused {
            paused = true;
            sh(&stop);
            std::thread::sleep(Duration::from_secs(1)); // the outage itself
            sh(&start);
        }
    });
    let text = scrape(&metrics);
    for series in [
        "objlog_requests_received_total",
        "objlog_requests_invalid_total",
        "objlog_appends_stored_total",
        "objlog_requests_redelivered_total",
        "objlog_lifostore_buffered_items",
        "objlog_lifostore_oldest_unflushed_age_seconds",
        "objlog_lifostore_db_write_rate_items_per_second",
        "objlog_lifostore_dead_letters_total",
        "objlog_request_duration_seconds_count{op=\"append\"}",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{series} "))),
            "/metrics lacks {series}:\n{text}"
        );
    }
    let (other_ts, redelivered) = workers.stop_and_sum(&["answered_with_other_ts", "redelivered"]);
    eprintln!(
        "  short AckWait: {redelivered} redeliveries, {other_ts} answered with another \
         delivery's stored ts"
    );
    assert!(paused, "the load finished before the pause");
    assert!(ok, "load check failed: {lines:?}");
    for f in CLEAN {
        assert_eq!(field(&lines, f), 0, "{f} must be 0");
    }
    assert!(
        other_ts > 0,
        "no append was answered with another delivery's timestamp: the case was not exercised"
    );
}

/// `query --id N` pages one object's log to stdout, oldest first, every entry once.
#[test]
fn the_query_command_prints_one_objects_log() {
    let Some(u) = urls("query_cmd") else { return };
    let _workers = Workers::start(&u, "query_cmd", 1, &[]);
    let client = Client::connect(&u.nats).expect("connect");
    let run = objlog::log_row::now_micros();
    let object = run as u64;
    for i in 0..=250 {
        let req = format!("qc-{run}-{i}");
        let answer = client
            .append(object, &format!("entry {i}"), &req, Duration::from_secs(30))
            .expect("append");
        assert!(
            answer.response.ok,
            "append {i}: {:?}",
            answer.response.error
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_query"))
        .args([
            "--nats",
            &u.nats,
            "--id",
            &object.to_string(),
            "--page",
            "40",
        ])
        .output()
        .expect("run query");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let entries: Vec<(i64, i64, &str)> = text
        .lines()
        .map(|l| {
            let mut parts = l.splitn(3, ' ');
            let ts = parts.next().and_then(|t| t.parse().ok()).expect("ts");
            let seq = parts.next().and_then(|s| s.parse().ok()).expect("seq");
            (ts, seq, parts.next().expect("log"))
        })
        .collect();
    assert_eq!(entries.len(), 251, "every entry once");
    assert!(
        entries
            .windows(2)
            .all(|w| (w[0].0, w[0].1) < (w[1].0, w[1].1)),
        "in (ts, seq) order"
    );
    let mut logs: Vec<&str> = entries.iter().map(|e| e.2).collect();
    logs.sort_unstable();
    let mut want: Vec<String> = (0..=250).map(|i| format!("entry {i}")).collect();
    want.sort_unstable();
    assert_eq!(logs, want);
    let help = Command::new(env!("CARGO_BIN_EXE_query"))
        .arg("--help")
        .output()
        .expect("help");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("--page")
            && help.contains("[default: 1000]")
            && help.contains("OBJLOG_NATS_URL"),
        "{help}"
    );
}
