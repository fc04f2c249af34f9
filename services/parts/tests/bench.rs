//! Heavy experiments, behind `--ignored` (too long for CI); `bash services/parts/bench` runs
//! them against real processes and prints the figures the README quotes:
//! * `throughput_1gib`: a 1 GiB PUT and GET through the gateway against writing (with fsync)
//!   and reading the same bytes as 6 local files, interleaved in the same run, plus the
//!   gateway's peak RSS during each;
//! * `rss_16_concurrent_100mib_uploads`: the gateway's peak RSS with 16 uploads at once;
//! * `rebalance_full_size`: 2 000 files of log-normal sizes (1 KiB to 64 MiB) on 6 nodes,
//!   2 nodes added, 2 000 more, then the rebalancer: the spread with and without it, and the
//!   bytes moved against the minimum.
//!
//! Sizes can be scaled down for a quick look: `PARTS_BENCH_SIZE` (bytes, default 1 GiB),
//! `PARTS_BENCH_FILES` (default 2000 per phase).

mod common;

use std::io::{Read, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::Cluster;

const MIB: u64 = 1 << 20;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Deterministic bytes, generated as they are read (so no file is ever held whole), with
/// their CRC-32. Byte `p` depends only on the seed and `p`, whatever the read sizes.
struct Gen {
    seed: u64,
    pos: u64,
    len: u64,
    crc: crc32fast::Hasher,
}

impl Gen {
    fn new(len: u64, seed: u64) -> Gen {
        Gen {
            seed: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            pos: 0,
            len,
            crc: crc32fast::Hasher::new(),
        }
    }

    /// splitmix64 of the 8-byte word `k`.
    fn word(&self, k: u64) -> [u8; 8] {
        let mut z = self.seed ^ k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)).to_le_bytes()
    }
}

impl Read for Gen {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = out.len().min((self.len - self.pos) as usize);
        let mut i = 0;
        while i < n {
            let (k, off) = (
                (self.pos + i as u64) / 8,
                ((self.pos + i as u64) % 8) as usize,
            );
            let take = (8 - off).min(n - i);
            out[i..i + take].copy_from_slice(&self.word(k)[off..off + take]);
            i += take;
        }
        self.crc.update(&out[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

/// The peak RSS of `pid` since the last reset, in bytes (VmHWM).
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0);
    kib * 1024
}

/// CPU seconds (user + system) a `stat` file of /proc reports (fields 14 and 15, in ticks of
/// 1/100 s).
fn stat_cpu(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds used so far by [the gateway, all nodes, this thread (the client)].
fn cluster_cpu_split(c: &Cluster) -> [f64; 3] {
    let gw = c.gateway.as_ref().map_or(0, |g| g.id());
    let nodes = c.nodes.iter().filter_map(|n| n.child.as_ref());
    let nodes: f64 = nodes
        .map(|n| stat_cpu(&format!("/proc/{}/stat", n.id())))
        .sum();
    [
        stat_cpu(&format!("/proc/{gw}/stat")),
        nodes,
        stat_cpu("/proc/thread-self/stat"),
    ]
}

/// CPU seconds used so far by the gateway and all nodes, plus this thread (the client).
fn cluster_cpu(c: &Cluster) -> f64 {
    cluster_cpu_split(c).iter().sum()
}

/// Resets the peak RSS of `pid` (writing 5 to clear_refs).
fn reset_peak(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

fn mb_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / MIB as f64 / d.as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Drops the page cache of every file under `dir` (posix_fadvise DONTNEED, this file only).
fn evict(dir: &std::path::Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            evict(&path);
        } else if let Ok(file) = std::fs::File::open(&path) {
            let _ = file.sync_all();
            let _ = rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed);
        }
    }
}

/// The baseline: the same bytes as 6 local files, each fsynced.
fn baseline_write(dir: &std::path::Path, size: u64, seed: u64) -> Duration {
    let start = Instant::now();
    let mut source = Gen::new(size, seed);
    let mut buf = vec![0u8; 256 << 10];
    for (i, len) in parts::split::part_lengths(size).into_iter().enumerate() {
        let mut file = std::fs::File::create(dir.join(format!("part{i}"))).unwrap();
        let mut left = len;
        while left > 0 {
            let want = buf.len().min(left as usize);
            let n = source.read(&mut buf[..want]).unwrap();
            file.write_all(&buf[..n]).unwrap();
            left -= n as u64;
        }
        file.sync_all().unwrap();
    }
    std::fs::File::open(dir).unwrap().sync_all().unwrap();
    start.elapsed()
}

fn baseline_read(dir: &std::path::Path) -> (Duration, u32) {
    let start = Instant::now();
    let mut crc = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 256 << 10];
    for i in 0..6 {
        let mut file = std::fs::File::open(dir.join(format!("part{i}"))).unwrap();
        loop {
            let n = file.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            crc.update(&buf[..n]);
        }
    }
    (start.elapsed(), crc.finalize())
}

/// PUTs `size` generated bytes on a plain connection, written 1 MiB at a time (as curl can;
/// `ureq` writes request bodies 8 KiB at a time, which would make the client the bottleneck).
fn put_gen(c: &Cluster, name: &str, size: u64, seed: u64) -> (Duration, String) {
    let start = Instant::now();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", c.port)).unwrap();
    let head = format!(
        "PUT /files/{name} HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    let (mut source, mut buf) = (Gen::new(size, seed), vec![0u8; 1 << 20]);
    loop {
        let n = source.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        stream.write_all(&buf[..n]).unwrap();
    }
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 201"), "{reply}");
    let body: serde_json::Value =
        serde_json::from_str(reply.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    (
        start.elapsed(),
        body["checksum"].as_str().unwrap().to_string(),
    )
}

fn get_crc(c: &Cluster, name: &str) -> (Duration, u32, u64) {
    let start = Instant::now();
    let mut reader = c
        .agent
        .get(&c.url(&format!("/files/{name}")))
        .call()
        .expect("GET")
        .into_reader();
    let (mut crc, mut total, mut buf) = (crc32fast::Hasher::new(), 0u64, vec![0u8; 256 << 10]);
    loop {
        let n = reader.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        crc.update(&buf[..n]);
        total += n as u64;
    }
    (start.elapsed(), crc.finalize(), total)
}

/// The CRC-32 of the `size` bytes of seed `seed`.
fn gen_crc(size: u64, seed: u64) -> u32 {
    let mut g = Gen::new(size, seed);
    std::io::copy(&mut g, &mut std::io::sink()).unwrap();
    g.crc.finalize()
}

/// One round's figures: MiB/s of [local write, PUT, local read, GET, local read evicted, GET
/// evicted]; CPU seconds of [local write, PUT, local read, GET] (for parts: the gateway, the
/// nodes and the client thread); the gateway's peak RSS during the PUT and the GET.
struct Round {
    speed: [f64; 6],
    cpu: [f64; 4],
    /// CPU seconds of the PUT: [gateway, nodes, client].
    put_split: [f64; 3],
    put_rss: u64,
    get_rss: u64,
}

/// Runs `f`, returning its result and the CPU seconds `cpu` counted meanwhile.
fn with_cpu<T>(cpu: impl Fn() -> f64, f: impl FnOnce() -> T) -> (T, f64) {
    let before = cpu();
    let out = f();
    (out, cpu() - before)
}

/// One round; odd rounds run parts first.
fn one_round(c: &Cluster, base: &std::path::Path, size: u64, round: u64) -> Round {
    let gw = c.gateway.as_ref().unwrap().id();
    let own = || stat_cpu("/proc/thread-self/stat");
    let local_write = || with_cpu(own, || baseline_write(base, size, round));
    let ((bw, bw_cpu), ours_first) = if round.is_multiple_of(2) {
        (local_write(), false)
    } else {
        ((Duration::ZERO, 0.0), true)
    };
    reset_peak(gw);
    let split = cluster_cpu_split(c);
    let ((pw, sum), pw_cpu) = with_cpu(|| cluster_cpu(c), || put_gen(c, "big", size, round));
    let after = cluster_cpu_split(c);
    let put_split = [0, 1, 2].map(|i| after[i] - split[i]);
    let put_rss = peak_rss(gw);
    let (bw, bw_cpu) = if ours_first {
        local_write()
    } else {
        (bw, bw_cpu)
    };
    assert_eq!(sum, format!("{:08x}", gen_crc(size, round)));
    reset_peak(gw);
    let ((pr, pcrc, n), pr_cpu) = with_cpu(|| cluster_cpu(c), || get_crc(c, "big"));
    let get_rss = peak_rss(gw);
    let ((br, bcrc), br_cpu) = with_cpu(own, || baseline_read(base));
    assert_eq!((pcrc, bcrc, n), (gen_crc(size, round), pcrc, size));
    evict(base);
    for node in &c.nodes {
        evict(&node.dir.join("parts"));
    }
    let (prc, _, _) = get_crc(c, "big");
    let (brc, _) = baseline_read(base);
    let speed = [bw, pw, br, pr, brc, prc].map(|d| mb_s(size, d));
    assert_eq!(
        c.call("DELETE", "/files/big", None, None).unwrap().status,
        204
    );
    c.wait_clean(Duration::from_secs(120));
    Round {
        speed,
        cpu: [bw_cpu, pw_cpu, br_cpu, pr_cpu],
        put_split,
        put_rss,
        get_rss,
    }
}

#[test]
#[ignore]
fn throughput_1gib() {
    let size = env_u64("PARTS_BENCH_SIZE", 1 << 30);
    let rounds = env_u64("PARTS_BENCH_ROUNDS", 5);
    let c = Cluster::start("bench_tp", 6, &["--part-timeout-ms", "60000"]);
    let base = c.dir.join("baseline");
    std::fs::create_dir_all(&base).unwrap();
    let rows: Vec<Round> = (0..rounds)
        .map(|round| {
            let r = one_round(&c, &base, size, round);
            eprintln!(
                "round {round}: MiB/s {:?}, CPU s {:?}",
                r.speed.map(|v| v.round()),
                r.cpu
            );
            r
        })
        .collect();
    let col = |i: usize| median(rows.iter().map(|r| r.speed[i]).collect());
    let cpu = |i: usize| median(rows.iter().map(|r| r.cpu[i]).collect());
    let line = |what: &str, a: usize, b: usize| {
        eprintln!(
            "  {what}: 6 local files {:.0}, parts {:.0} ({:.2}x)",
            col(a),
            col(b),
            col(b) / col(a)
        );
    };
    eprintln!(
        "throughput, {} MiB, medians of {rounds} interleaved rounds (MiB/s):",
        size / MIB
    );
    line("write + fsync / PUT", 0, 1);
    line("read, page cache / GET", 2, 3);
    line("read, evicted / GET", 4, 5);
    eprintln!(
        "  CPU seconds: local write {:.2}, PUT {:.2} (gateway + nodes + client); local read {:.2}, GET {:.2}",
        cpu(0),
        cpu(1),
        cpu(2),
        cpu(3)
    );
    let split = |i: usize| median(rows.iter().map(|r| r.put_split[i]).collect());
    eprintln!(
        "  PUT CPU seconds: gateway {:.2}, nodes {:.2}, client {:.2}",
        split(0),
        split(1),
        split(2)
    );
    let put_rss = rows.iter().map(|r| r.put_rss).max().unwrap_or(0);
    let get_rss = rows.iter().map(|r| r.get_rss).max().unwrap_or(0);
    let mib = |b: u64| b as f64 / MIB as f64;
    eprintln!(
        "  gateway peak RSS: PUT {:.1} MiB, GET {:.1} MiB",
        mib(put_rss),
        mib(get_rss)
    );
}

#[test]
#[ignore]
fn rss_16_concurrent_100mib_uploads() {
    let size = env_u64("PARTS_BENCH_SIZE", 1 << 30) / 1024 * 100;
    let c = Cluster::start("bench_rss", 8, &["--part-timeout-ms", "60000"]);
    let gw = c.gateway.as_ref().unwrap().id();
    reset_peak(gw);
    let start = Instant::now();
    let uploads: Vec<_> = (0..16u64)
        .map(|i| {
            let (agent, url) = (c.agent.clone(), c.url(&format!("/files/c{i}")));
            std::thread::spawn(move || {
                let r = agent
                    .put(&url)
                    .set("Content-Length", &size.to_string())
                    .send(Gen::new(size, i));
                r.map(|r| r.status()).unwrap_or(0)
            })
        })
        .collect();
    let statuses: Vec<u16> = uploads.into_iter().map(|u| u.join().unwrap()).collect();
    let took = start.elapsed();
    let peak = peak_rss(gw);
    assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");
    eprintln!(
        "16 concurrent uploads of {} MiB: {:.1} s, {:.0} MiB/s in all; gateway peak RSS {:.1} MiB",
        size / MIB,
        took.as_secs_f64(),
        mb_s(16 * size, took),
        peak as f64 / MIB as f64
    );
}

/// A log-normal size spanning 1 KiB to 64 MiB at +-3 sigma (median 256 KiB), clamped.
fn file_size(rng: &mut fastrand::Rng) -> u64 {
    let (lo, hi) = ((1024f64).ln(), ((64 * MIB) as f64).ln());
    common::lognormal(
        rng,
        ((lo + hi) / 2.0).exp(),
        (hi - lo) / 6.0,
        1024,
        64 * MIB,
    )
}

/// Uploads `files` (name, size, seed) with `threads` threads.
fn upload_all(c: &Cluster, files: &[(String, u64, u64)], threads: usize) {
    let queue = Mutex::new(files.to_vec());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                while let Some((name, size, seed)) = queue.lock().unwrap().pop() {
                    put_gen(c, &name, size, seed);
                }
            });
        }
    });
}

/// Uploads the first half of `files` on 6 nodes, adds 2 nodes, uploads the rest; returns
/// the spread on 6 nodes and the time taken.
fn two_phases(c: &mut Cluster, files: &[(String, u64, u64)]) -> (f64, Duration) {
    let (t, half) = (Instant::now(), files.len() / 2);
    upload_all(c, &files[..half], 8);
    let (spread6, _, _) = c.fill_figures();
    c.add_node();
    c.add_node();
    c.wait_live(8);
    upload_all(c, &files[half..], 8);
    (spread6, t.elapsed())
}

fn percents(fills: &[f64]) -> String {
    fills
        .iter()
        .map(|f| format!("{:.3}%", 100.0 * f))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
#[ignore]
fn rebalance_full_size() {
    let n = env_u64("PARTS_BENCH_FILES", 2000) as usize;
    let flags = [
        "--part-timeout-ms",
        "60000",
        "--rebalance-min-bytes",
        "0",
        "--rebalance-trigger",
        "0.01",
        "--rebalance-concurrency",
        "4",
    ];
    let mut c = Cluster::start("bench_rebal", 6, &flags);
    let mut rng = fastrand::Rng::with_seed(2000);
    let files: Vec<(String, u64, u64)> = (0..2 * n)
        .map(|i| (format!("f{i:05}"), file_size(&mut rng), i as u64))
        .collect();
    let total: u64 = files.iter().map(|f| f.1).sum();
    let (spread6, uploaded) = two_phases(&mut c, &files);
    let (spread_before, minimum, fills_before) = c.fill_figures();
    let t = Instant::now();
    let status = c.rebalance_until_done(Duration::from_secs(3600));
    let took = t.elapsed();
    c.wait_clean(Duration::from_secs(600));
    let (spread_after, _, fills_after) = c.fill_figures();
    let moved = status["bytes_moved"].as_u64().unwrap();
    let gib = total as f64 / (1u64 << 30) as f64;
    eprintln!(
        "rebalance, {n} + {n} files, {gib:.2} GiB, uploaded in {:.0} s",
        uploaded.as_secs_f64()
    );
    eprintln!(
        "  6 nodes after phase 1: spread {:.2}% of the mean fill",
        100.0 * spread6
    );
    eprintln!(
        "  8 nodes after phase 2, placement only: spread {:.1}% (fills {})",
        100.0 * spread_before,
        percents(&fills_before)
    );
    eprintln!(
        "  after the rebalancer: spread {:.2}% (fills {})",
        100.0 * spread_after,
        percents(&fills_after)
    );
    let ratio = moved as f64 / minimum as f64;
    eprintln!(
        "  moved {moved} bytes in {} moves, {ratio:.3}x the minimum {minimum}, in {:.0} s",
        status["moves"],
        took.as_secs_f64()
    );
    for (name, size, seed) in &files {
        let (_, crc, len) = get_crc(&c, name);
        assert_eq!((crc, len), (gen_crc(*size, *seed), *size), "{name}");
    }
    c.check_consistent();
    assert!(spread_after <= 0.05 && ratio <= 1.2);
}
