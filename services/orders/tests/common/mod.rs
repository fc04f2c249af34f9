//! Shared helpers of the end-to-end tests: servers from the environment, the service and the
//! publisher as child processes, a tiny HTTP client, PostgreSQL and JetStream checks.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A server URL the test needs; a missing one fails the test (never a silent skip).
pub fn env_url(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{name} is not set: these tests need the real servers; run them with \
             `bash services/orders/ci` (it starts PostgreSQL and nats-server)"
        ),
    }
}

/// One test's own corner of the servers: a fresh database, stream, subject and consumer.
pub struct Sandbox {
    pub name: String,
    pub pg_url: String,
    pub nats_url: String,
    pub dir: PathBuf,
}

impl Sandbox {
    pub fn new(name: &str) -> Sandbox {
        let admin_url = env_url("LIFOSTORE_POSTGRES_URL");
        let nats_url = env_url("LIFOSTORE_NATS_URL");
        let db = format!("orders_test_{name}");
        let mut admin =
            postgres::Client::connect(&admin_url, postgres::NoTls).expect("connect to PostgreSQL");
        for sql in [
            format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
            format!("CREATE DATABASE {db}"),
        ] {
            admin.batch_execute(&sql).expect("create the test database");
        }
        let base = admin_url.rsplit_once('/').expect("URL has a database").0;
        let dir = std::env::temp_dir().join(format!("orders-test-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Sandbox {
            name: name.to_string(),
            pg_url: format!("{base}/{db}"),
            nats_url,
            dir,
        }
    }

    pub fn stream(&self) -> String {
        format!("T_{}", self.name.to_uppercase())
    }

    pub fn subject(&self) -> String {
        format!("t.{}.orders", self.name)
    }

    pub fn pg(&self) -> postgres::Client {
        postgres::Client::connect(&self.pg_url, postgres::NoTls).expect("connect to the test db")
    }

    /// Rows in `orders`, and distinct ids among them.
    pub fn counts(&self) -> (i64, i64) {
        let row = self
            .pg()
            .query_one(
                "SELECT count(*), count(DISTINCT order_uid) FROM orders",
                &[],
            )
            .expect("count rows");
        (row.get(0), row.get(1))
    }

    /// Runs `f` against JetStream on a throwaway runtime (the tests' only async code).
    pub fn jetstream<T, F: std::future::Future<Output = T>>(
        &self,
        f: impl FnOnce(async_nats::jetstream::Context) -> F,
    ) -> T {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let client = async_nats::connect(&self.nats_url).await.expect("nats");
            f(async_nats::jetstream::new(client)).await
        })
    }

    /// Publishes `payloads` in this order (each publish awaited), returning their stream
    /// sequences.
    pub fn publish_raw(&self, payloads: &[Vec<u8>]) -> Vec<u64> {
        let (stream, subject) = (self.stream(), self.subject());
        let payloads = payloads.to_vec();
        self.jetstream(|js| async move {
            js.get_or_create_stream(async_nats::jetstream::stream::Config {
                name: stream,
                subjects: vec![subject.clone()],
                ..Default::default()
            })
            .await
            .expect("stream");
            let mut acks = Vec::new();
            for p in payloads {
                let ack = js
                    .publish(subject.clone(), p.into())
                    .await
                    .expect("publish");
                acks.push(ack);
            }
            let mut seqs = Vec::new();
            for ack in acks {
                seqs.push(ack.await.expect("publish ack").sequence);
            }
            seqs
        })
    }

    /// The stored body of `uid`, if PostgreSQL has a row for it.
    pub fn pg_body(&self, uid: &str) -> Option<serde_json::Value> {
        let row = self
            .pg()
            .query_opt(
                "SELECT body::text FROM orders WHERE order_uid = $1",
                &[&uid],
            )
            .expect("read one order")?;
        Some(serde_json::from_str(row.get::<_, &str>(0)).expect("jsonb"))
    }

    /// Messages held by the invalid-reasons stream (JetStream, durable across restarts).
    pub fn invalid_recorded(&self) -> u64 {
        let name = format!("{}_INVALID", self.stream());
        self.jetstream(|js| async move {
            let mut stream = js.get_stream(name).await.expect("invalid stream exists");
            stream.info().await.expect("stream info").state.messages
        })
    }

    /// Whether the service's durable consumer has nothing left: no message waiting, none
    /// delivered and unacked (JetStream's own bookkeeping, durable across restarts).
    pub fn consumer_drained(&self) -> bool {
        let (stream, consumer) = (self.stream(), format!("svc-{}", self.name));
        self.jetstream(|js| async move {
            let stream = js.get_stream(stream).await.expect("stream exists");
            let mut consumer: async_nats::jetstream::consumer::PullConsumer = stream
                .get_consumer(&consumer)
                .await
                .expect("consumer exists");
            let info = consumer.info().await.expect("consumer info");
            info.num_pending == 0 && info.num_ack_pending == 0
        })
    }

    /// Starts the service on a free port.
    pub fn start_service(&self, extra: &[&str]) -> Service {
        let port = free_port();
        let log = self.dir.join(format!("service-{port}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_orders"))
            .args(["--postgres", &self.pg_url, "--nats", &self.nats_url])
            .args(["--http", &format!("127.0.0.1:{port}")])
            .args(["--stream", &self.stream(), "--subject", &self.subject()])
            .args(["--consumer", &format!("svc-{}", self.name)])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn the orders service");
        Service { child, port, log }
    }

    /// Starts the publisher; the valid orders it sends land in `sent.jsonl`.
    pub fn publish(&self, count: u64, junk: u64, rate: Option<u32>, seed: u64) -> Child {
        self.publish_named("sent", count, junk, rate, seed)
    }

    /// Starts the publisher; the valid orders it sends land in `<name>.jsonl`.
    pub fn publish_named(
        &self,
        name: &str,
        count: u64,
        junk: u64,
        rate: Option<u32>,
        seed: u64,
    ) -> Child {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_orders-publish"));
        cmd.args(["--nats", &self.nats_url, "--stream", &self.stream()])
            .args(["--subject", &self.subject()])
            .args(["--count", &count.to_string(), "--junk", &junk.to_string()])
            .args(["--seed", &seed.to_string()])
            .arg("--out")
            .arg(self.dir.join(format!("{name}.jsonl")));
        if let Some(rate) = rate {
            cmd.args(["--rate", &rate.to_string()]);
        }
        cmd.stdout(Stdio::null())
            .spawn()
            .expect("spawn orders-publish")
    }

    /// Every valid order the publisher sent, as JSON values.
    pub fn sent(&self) -> Vec<serde_json::Value> {
        self.sent_named("sent")
    }

    /// Every valid order the publisher named `name` sent, as JSON values.
    pub fn sent_named(&self, name: &str) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.join(format!("{name}.jsonl")))
            .expect("sent.jsonl")
            .lines()
            .map(|l| serde_json::from_str(l).expect("sent line is JSON"))
            .collect()
    }

    /// Checks every sent order against PostgreSQL: one row each, the same JSON.
    pub fn assert_pg_holds(&self, sent: &[serde_json::Value]) {
        let rows = self
            .pg()
            .query("SELECT order_uid, body::text FROM orders", &[])
            .expect("read orders");
        let stored: std::collections::HashMap<String, serde_json::Value> = rows
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    serde_json::from_str(r.get::<_, &str>(1)).expect("jsonb"),
                )
            })
            .collect();
        assert_eq!(stored.len(), rows.len(), "an order_uid appears twice");
        for order in sent {
            let uid = order["order_uid"].as_str().expect("uid");
            assert_eq!(stored.get(uid), Some(order), "PostgreSQL row of {uid}");
        }
    }
}

/// Runs a shell command (the servers' stop and start commands); it must succeed.
pub fn sh(command: &str) {
    let ok = Command::new("sh")
        .args(["-c", command])
        .status()
        .expect("sh");
    assert!(ok.success(), "{command} failed");
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Polls `probe` every 20 ms until it returns `Some`, or fails after `limit` with `what`.
/// (Polling an external system's state from a test; the service itself never polls.)
pub fn wait_for<T>(limit: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + limit;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(
            Instant::now() < until,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running service process.
pub struct Service {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Service {
    /// GET `path`: status and body, or `None` if the server is not answering.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.port, path)
    }

    pub fn wait_ready(&self) {
        wait_for(Duration::from_secs(60), "the service to be ready", || {
            self.get("/health").filter(|(s, _)| *s == 200)
        });
    }

    pub fn stats(&self) -> serde_json::Value {
        let (status, body) = self.get("/stats").expect("stats answered");
        assert_eq!(status, 200, "/stats: {body}");
        serde_json::from_str(&body).expect("stats JSON")
    }

    pub fn stat(&self, name: &str) -> u64 {
        self.stats()[name].as_u64().unwrap_or(0)
    }

    /// SIGSTOP: the process holds what it has (batches, pull requests) but acts on nothing
    /// until killed; only `kill` is left to do with it.
    pub fn freeze(self) -> Service {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .expect("kill -STOP");
        assert!(ok.success(), "SIGSTOP {pid}");
        self
    }

    /// SIGKILL: no drain, no flush, no ack.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL the service");
        self.child.wait().expect("reap");
    }

    /// SIGTERM and wait for the clean exit.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        assert!(ok.success());
        let status = self.child.wait().expect("reap");
        assert!(
            status.success(),
            "service exited with {status}; log {:?}",
            self.log
        );
    }

    /// The order served under `uid`, or `None` (404).
    pub fn served(&self, uid: &str) -> Option<serde_json::Value> {
        let (status, body) = self.get(&format!("/orders/{uid}")).expect("answered");
        match status {
            200 => Some(serde_json::from_str(&body).expect("JSON")),
            404 => None,
            _ => panic!("GET /orders/{uid}: {status} {body}"),
        }
    }

    /// Every sent order is served by id with exactly the JSON that was sent. An order is
    /// served once PostgreSQL's notice of it has reached this process, so each is awaited
    /// (60 s at most); a different JSON fails at once.
    pub fn assert_serves(&self, sent: &[serde_json::Value]) {
        for order in sent {
            let uid = order["order_uid"].as_str().expect("uid");
            let served = wait_for(
                Duration::from_secs(60),
                &format!("order {uid} served"),
                || self.served(uid),
            );
            assert_eq!(
                &served, order,
                "served order {uid} differs from the sent one"
            );
        }
    }

    /// The `/metrics` text.
    pub fn metrics(&self) -> String {
        let (status, body) = self.get("/metrics").expect("metrics answered");
        assert_eq!(status, 200, "/metrics: {body}");
        body
    }

    /// The value of one series of `/metrics` (a line `name value` or `name{labels} value`).
    pub fn metric(&self, series: &str) -> f64 {
        let text = self.metrics();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("series {series} missing from /metrics:\n{text}"))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 GET with `Connection: close`.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}
