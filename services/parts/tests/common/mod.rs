//! The end-to-end tests' cluster: a database of its own on the PostgreSQL that
//! `.ci/with-servers` started, a gateway and nodes as real child processes on free loopback
//! ports, an HTTP client, and the consistency checks (metadata against node inventories).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// PostgreSQL's admin URL; a missing one fails the test (never a silent skip).
pub fn admin_url() -> String {
    match std::env::var("LIFOSTORE_POSTGRES_URL") {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "LIFOSTORE_POSTGRES_URL is not set: these tests need a real PostgreSQL; run them \
             with `bash services/parts/ci` (it starts one)"
        ),
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Polls `probe` every 20 ms until it returns `Some`, failing after `limit` with `what`.
/// (Tests watch real processes from outside; the service itself never polls.)
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

/// Deterministic pseudo-random bytes.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = vec![0u8; len];
    rng.fill(&mut out);
    out
}

/// Gateway flags that let the rebalancer act on any imbalance at test sizes.
pub const EAGER_REBALANCER: &[&str] = &[
    "--rebalance-min-bytes",
    "0",
    "--rebalance-trigger",
    "0.01",
    "--rebalance-interval-ms",
    "200",
];

/// A log-normal size: median `median`, shape `sigma`, clamped to `min..=max`.
pub fn lognormal(rng: &mut fastrand::Rng, median: f64, sigma: f64, min: u64, max: u64) -> u64 {
    let (u1, u2) = (rng.f64().max(1e-12), rng.f64());
    let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
    ((median * (sigma * z).exp()) as u64).clamp(min, max)
}

/// A storage node process.
pub struct NodeProc {
    pub child: Option<Child>,
    pub dir: PathBuf,
    pub id: String,
}

/// A test cluster; everything is killed when it drops.
pub struct Cluster {
    pub name: String,
    pub pg_url: String,
    pub dir: PathBuf,
    pub port: u16,
    pub s3_port: u16,
    pub gateway: Option<Child>,
    pub gateway_args: Vec<String>,
    pub nodes: Vec<NodeProc>,
    pub agent: ureq::Agent,
    pub capacity: String,
}

/// Gateway flags that keep tests quick.
pub const FAST: &[&str] = &[
    "--heartbeat-timeout-ms",
    "1500",
    "--part-timeout-ms",
    "3000",
    "--garbage-grace-ms",
    "300",
    "--job-retry-ms",
    "500",
    "--rebalance",
    "off",
    "--slow-penalty-ms",
    "60000",
];

impl Cluster {
    /// A fresh database `parts_test_{name}` and a gateway with `FAST` flags plus `extra`,
    /// then `nodes` nodes, all live.
    pub fn start(name: &str, nodes: usize, extra: &[&str]) -> Cluster {
        let admin = admin_url();
        let db = format!("parts_test_{name}");
        let mut client =
            postgres::Client::connect(&admin, postgres::NoTls).expect("connect to PostgreSQL");
        for sql in [
            format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
            format!("CREATE DATABASE {db}"),
        ] {
            client
                .batch_execute(&sql)
                .expect("create the test database");
        }
        let base = admin.rsplit_once('/').expect("URL has a database").0;
        let dir = std::env::temp_dir().join(format!("parts-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut gateway_args: Vec<String> = FAST.iter().map(|s| s.to_string()).collect();
        gateway_args.extend(extra.iter().map(|s| s.to_string()));
        let mut cluster = Cluster {
            name: name.to_string(),
            pg_url: format!("{base}/{db}"),
            port: free_port(),
            s3_port: free_port(),
            gateway: None,
            gateway_args,
            nodes: Vec::new(),
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(120))
                .build(),
            capacity: "10G".into(),
            dir,
        };
        cluster.start_gateway();
        for _ in 0..nodes {
            cluster.add_node();
        }
        cluster.wait_live(nodes);
        cluster
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn gateway_log(&self) -> PathBuf {
        self.dir.join("gateway.log")
    }

    /// Starts (or restarts) the gateway on its port and waits until it answers.
    pub fn start_gateway(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.gateway_log())
            .expect("gateway log");
        let spool = self.dir.join("spool");
        std::fs::create_dir_all(&spool).expect("spool dir");
        let child = Command::new(env!("CARGO_BIN_EXE_parts-gateway"))
            .args([
                "--postgres",
                &self.pg_url,
                "--listen",
                &format!("127.0.0.1:{}", self.port),
            ])
            .args([
                "--s3",
                &format!("127.0.0.1:{}", self.s3_port),
                "--name",
                "gw1",
            ])
            .arg("--spool-dir")
            .arg(&spool)
            .args(&self.gateway_args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn parts-gateway");
        self.gateway = Some(child);
        let agent = self.agent.clone();
        let url = self.url("/stats");
        wait_for(Duration::from_secs(30), "the gateway to answer", || {
            agent.get(&url).call().ok()
        });
    }

    /// SIGKILLs the gateway.
    pub fn kill_gateway(&mut self) {
        if let Some(mut child) = self.gateway.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a new node; returns its index.
    pub fn add_node(&mut self) -> usize {
        let i = self.nodes.len();
        let dir = self.dir.join(format!("node{i}"));
        self.nodes.push(NodeProc {
            child: None,
            dir,
            id: String::new(),
        });
        self.start_node(i);
        i
    }

    /// Starts (or restarts) node `i` on its directory.
    pub fn start_node(&mut self, i: usize) {
        let node = &self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("node{i}.log")))
            .expect("node log");
        let child = Command::new(env!("CARGO_BIN_EXE_parts-node"))
            .arg("--dir")
            .arg(&node.dir)
            .args([
                "--gateway",
                &self.url(""),
                "--capacity",
                &self.capacity,
                "--heartbeat-ms",
                "200",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn parts-node");
        let id_file = node.dir.join("node-id");
        let id = wait_for(Duration::from_secs(10), "the node's id file", || {
            std::fs::read_to_string(&id_file)
                .ok()
                .filter(|s| !s.is_empty())
        });
        self.nodes[i].child = Some(child);
        self.nodes[i].id = id.trim().to_string();
    }

    /// Restarts node `i` (which must be stopped) and waits until the gateway has its new
    /// address and sees it live.
    pub fn restart_node(&mut self, i: usize) {
        let id = self.nodes[i].id.clone();
        let addr_of = |c: &Cluster| -> Option<String> {
            let nodes = c.nodes_json();
            let node = nodes["nodes"]
                .as_array()?
                .iter()
                .find(|n| n["id"] == id.as_str())?
                .clone();
            Some(node["addr"].as_str()?.to_string())
        };
        let old = addr_of(self);
        self.start_node(i);
        wait_for(
            Duration::from_secs(30),
            "the restarted node at its new address",
            || (addr_of(self) != old && self.is_live(&id)).then_some(()),
        );
    }

    /// Switches the rebalancer on and waits (up to `limit`) until it has moved parts and
    /// stopped; returns its state.
    pub fn rebalance_until_done(&self, limit: Duration) -> Value {
        let on = self
            .call("PUT", "/rebalancer", Some(br#"{"enabled":true}"#), None)
            .unwrap();
        assert_eq!(on.status, 200);
        wait_for(limit, "the rebalancer to finish", || {
            let r = self.call("GET", "/rebalancer", None, None).ok()?.json();
            (r["active"] == false && r["moves"].as_u64()? > 0).then_some(r)
        })
    }

    /// SIGKILLs node `i` and waits until the gateway sees it down; returns its id.
    pub fn kill_node_seen_down(&mut self, i: usize) -> String {
        let id = self.nodes[i].id.clone();
        self.kill_node(i);
        wait_for(Duration::from_secs(10), "the node to be seen down", || {
            (!self.is_live(&id)).then_some(())
        });
        id
    }

    /// SIGKILLs node `i`.
    pub fn kill_node(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` (e.g. "STOP", "CONT") to node `i`.
    pub fn signal_node(&self, i: usize, signal: &str) {
        let pid = self.nodes[i].child.as_ref().expect("node running").id();
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status();
        assert!(ok.is_ok_and(|s| s.success()), "kill -{signal} {pid}");
    }

    /// `GET /nodes` as JSON.
    pub fn nodes_json(&self) -> Value {
        self.agent
            .get(&self.url("/nodes"))
            .call()
            .expect("GET /nodes")
            .into_json()
            .expect("json")
    }

    /// Waits until at least `n` nodes are live.
    pub fn wait_live(&self, n: usize) {
        wait_for(Duration::from_secs(30), &format!("{n} live nodes"), || {
            (self.nodes_json()["live"].as_u64()? as usize >= n).then_some(())
        });
    }

    /// Over the live nodes: the spread of relative fills over their mean, the fewest bytes
    /// any plan must move to even them out exactly, and each fill.
    pub fn fill_figures(&self) -> (f64, u64, Vec<f64>) {
        let nodes = self.nodes_json();
        let live: Vec<(f64, f64)> = nodes["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["live"] == true)
            .map(|n| {
                (
                    n["stored"].as_f64().unwrap(),
                    n["capacity"].as_f64().unwrap(),
                )
            })
            .collect();
        let (bytes, cap) = live
            .iter()
            .fold((0.0, 0.0), |(b, c), (nb, nc)| (b + nb, c + nc));
        let fills: Vec<f64> = live.iter().map(|(b, c)| b / c).collect();
        let mean = fills.iter().sum::<f64>() / fills.len() as f64;
        let (lo, hi) = fills
            .iter()
            .fold((f64::MAX, f64::MIN), |(l, h), f| (l.min(*f), h.max(*f)));
        let minimum: f64 = live
            .iter()
            .map(|(b, c)| (b - bytes * c / cap).max(0.0))
            .sum();
        ((hi - lo) / mean, minimum.round() as u64, fills)
    }

    /// Whether node `id` is live for the gateway.
    pub fn is_live(&self, id: &str) -> bool {
        let nodes = self.nodes_json();
        nodes["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|n| n["id"] == id && n["live"] == true)
    }

    pub fn stats(&self) -> Value {
        self.agent
            .get(&self.url("/stats"))
            .call()
            .expect("GET /stats")
            .into_json()
            .expect("json")
    }

    pub fn stat(&self, name: &str) -> u64 {
        self.stats()[name].as_u64().unwrap_or(0)
    }

    pub fn pg(&self) -> postgres::Client {
        postgres::Client::connect(&self.pg_url, postgres::NoTls).expect("connect to the test db")
    }
}

/// An HTTP answer: status, headers we look at, body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    pub content_range: Option<String>,
    pub content_length: Option<u64>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

impl Cluster {
    /// A request; transport errors (including an aborted body) are `Err`.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        range: Option<&str>,
    ) -> Result<Answer, String> {
        let mut req = self.agent.request(method, &self.url(path));
        if let Some(range) = range {
            req = req.set("Range", range);
        }
        let result = match body {
            Some(body) => req.send_bytes(body),
            None => req.call(),
        };
        let response = match result {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(e) => return Err(e.to_string()),
        };
        let status = response.status();
        let content_range = response.header("Content-Range").map(str::to_string);
        let content_length = response
            .header("Content-Length")
            .and_then(|v| v.parse().ok());
        let mut body = Vec::new();
        response
            .into_reader()
            .read_to_end(&mut body)
            .map_err(|e| format!("reading the body: {e}"))?;
        Ok(Answer {
            status,
            body,
            content_range,
            content_length,
        })
    }

    pub fn put(&self, name: &str, data: &[u8]) -> Answer {
        self.call("PUT", &format!("/files/{name}"), Some(data), None)
            .expect("PUT answered")
    }

    pub fn get(&self, name: &str) -> Answer {
        self.call("GET", &format!("/files/{name}"), None, None)
            .expect("GET answered")
    }
}

/// A committed part as the metadata has it.
#[derive(Debug, Clone)]
pub struct Part {
    pub idx: i16,
    pub node: String,
    pub copy: i64,
    pub len: i64,
}

impl Cluster {
    /// The parts of committed file `name`.
    pub fn parts_of(&self, name: &str) -> Vec<Part> {
        self.pg()
            .query(
                "SELECT p.idx, p.node, p.copy, p.len FROM parts p JOIN files f ON f.id = p.file_id
                 WHERE f.name = $1 AND f.state = 'committed' ORDER BY p.idx",
                &[&name],
            )
            .expect("parts")
            .iter()
            .map(|r| Part {
                idx: r.get(0),
                node: r.get(1),
                copy: r.get(2),
                len: r.get(3),
            })
            .collect()
    }

    /// Index of the node with id `id`.
    pub fn node_index(&self, id: &str) -> usize {
        self.nodes
            .iter()
            .position(|n| n.id == id)
            .expect("known node")
    }

    /// Path of a copy on node `id`.
    pub fn copy_path(&self, id: &str, copy: i64) -> PathBuf {
        self.nodes[self.node_index(id)]
            .dir
            .join("parts")
            .join(copy.to_string())
    }

    /// Waits until no garbage and no unfinished upload or move is left.
    pub fn wait_clean(&self, limit: Duration) {
        wait_for(limit, "cleanup jobs to finish", || {
            let row = self
                .pg()
                .query_one(
                    "SELECT (SELECT count(*) FROM garbage) + (SELECT count(*) FROM moves)
                          + (SELECT count(*) FROM files WHERE state = 'writing')",
                    &[],
                )
                .ok()?;
            (row.get::<_, i64>(0) == 0).then_some(())
        });
    }

    /// Checks the metadata against the nodes' directories: every committed part is on its
    /// node with its recorded length, every copy on a disk is referenced (by a part, a
    /// garbage row or a move), and the node counters equal the sums of their rows. After
    /// [`wait_clean`](Self::wait_clean) this means disks and metadata hold the same copies.
    pub fn check_consistent(&self) {
        let mut pg = self.pg();
        let mut committed: BTreeMap<String, BTreeMap<i64, i64>> = BTreeMap::new();
        let mut known: BTreeSet<i64> = BTreeSet::new();
        let rows = pg
            .query(
                "SELECT p.node, p.copy, p.len, f.state = 'committed' FROM parts p JOIN files f ON f.id = p.file_id
                 UNION ALL SELECT node, copy, len, false FROM garbage
                 UNION ALL SELECT dst_node, copy, len, false FROM moves",
                &[],
            )
            .expect("copies");
        for row in rows {
            known.insert(row.get(1));
            if row.get::<_, bool>(3) {
                committed
                    .entry(row.get(0))
                    .or_default()
                    .insert(row.get(1), row.get(2));
            }
        }
        for node in &self.nodes {
            let on_disk = inventory(&node.dir);
            for (copy, len) in committed.remove(&node.id).unwrap_or_default() {
                assert_eq!(
                    on_disk.get(&copy),
                    Some(&len),
                    "committed copy {copy} on node {}",
                    node.id
                );
            }
            let strays: Vec<&i64> = on_disk.keys().filter(|c| !known.contains(c)).collect();
            assert!(
                strays.is_empty(),
                "node {} holds copies no row references: {strays:?}",
                node.id
            );
        }
        assert!(
            committed.is_empty(),
            "parts on unknown nodes: {committed:?}"
        );
        let bad: i64 = pg
            .query_one(
                "SELECT count(*) FROM nodes n WHERE n.stored <> coalesce((SELECT sum(p.len) FROM parts p JOIN files f ON f.id = p.file_id WHERE p.node = n.id AND f.state = 'committed'), 0)
                    OR n.garbage <> coalesce((SELECT sum(len) FROM garbage g WHERE g.node = n.id), 0)
                    OR n.reserved <> coalesce((SELECT sum(p.len) FROM parts p JOIN files f ON f.id = p.file_id WHERE p.node = n.id AND f.state = 'writing'), 0)
                                   + coalesce((SELECT sum(len) FROM moves m WHERE m.dst_node = n.id), 0)",
                &[],
            )
            .expect("counters")
            .get(0);
        assert_eq!(bad, 0, "node counters disagree with the rows");
    }
}

/// A node directory's copies and their lengths (read from disk, so it works for dead nodes).
pub fn inventory(dir: &Path) -> BTreeMap<i64, i64> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir.join("parts")) else {
        return out;
    };
    for entry in entries.flatten() {
        if let Some(copy) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
            out.insert(copy, entry.metadata().map(|m| m.len() as i64).unwrap_or(-1));
        }
    }
    out
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].child.is_some() {
                // A stopped node must be continued before it can die of SIGKILL cleanly.
                let pid = self.nodes[i].child.as_ref().map(|c| c.id()).unwrap_or(0);
                let _ = Command::new("kill")
                    .arg("-CONT")
                    .arg(pid.to_string())
                    .status();
            }
            self.kill_node(i);
        }
        self.kill_gateway();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("test cluster kept for inspection: {}", self.dir.display());
        }
    }
}
