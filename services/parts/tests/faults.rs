//! Faults against real processes: corrupt, truncated and missing parts; fewer than 6 live
//! nodes; a node SIGKILLed during 100 concurrent uploads; a node that is up but stalled
//! (SIGSTOP); cleanup jobs for a node that is down, and a job that keeps failing.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Cluster, data, wait_for};

const MIB: usize = 1 << 20;

fn flip(path: &std::path::Path, at: u64) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, at).unwrap();
    file.write_all_at(&[byte[0] ^ 0x40], at).unwrap();
}

const FOUR: usize = 4 * MIB;

/// Damages four copies of a 24 MiB file: a flipped byte in the first block of part 0, one in
/// the third block of part 3, part 2 cut to 1 MiB, part 5 deleted.
fn damage(c: &Cluster) {
    let path = |name: &str, idx: usize| {
        let p = c.parts_of(name)[idx].clone();
        c.copy_path(&p.node, p.copy)
    };
    flip(&path("flip-first", 0), 10);
    flip(&path("flip-later", 3), 5 * MIB as u64 / 2);
    let short = std::fs::OpenOptions::new()
        .write(true)
        .open(path("short", 2))
        .unwrap();
    short.set_len(MIB as u64).unwrap();
    std::fs::remove_file(path("missing", 5)).unwrap();
}

/// A GET with a range; its status and JSON reason.
fn ranged(c: &Cluster, name: &str, range: &str) -> (u16, String, Vec<u8>) {
    let a = c
        .call("GET", &format!("/files/{name}"), None, Some(range))
        .unwrap();
    let reason = a.json()["reason"].as_str().unwrap_or("").to_string();
    (a.status, reason, a.body)
}

#[test]
fn corrupt_short_and_missing_parts_never_pass_for_the_file() {
    let c = Cluster::start("corrupt", 7, &[]);
    let content = data(24 * MIB, 3); // parts of 4 MiB: 4 checked blocks each
    for name in ["flip-first", "flip-later", "short", "missing"] {
        assert_eq!(c.put(name, &content).status, 201);
    }
    let node_of = |name: &str, idx: usize| c.parts_of(name)[idx].node.clone();
    damage(&c);
    // Found before the head: 502 with the node and the part named.
    let first = c.get("flip-first");
    let reason = first.json()["reason"].as_str().unwrap().to_string();
    assert_eq!(first.status, 502);
    assert!(
        reason.contains("checksum mismatch") && reason.contains(&node_of("flip-first", 0)),
        "{reason}"
    );
    // Found after the head: the connection is aborted, never a complete 200.
    for name in ["flip-later", "short", "missing"] {
        let whole = c.call("GET", &format!("/files/{name}"), None, None);
        assert!(
            whole.is_err(),
            "{name}: a damaged file must not arrive whole: {:?}",
            whole.map(|a| a.status)
        );
    }
    // Ranges that start in a damaged part fail before the head; others still work.
    for (name, idx) in [("short", 2), ("missing", 5)] {
        let (status, reason, _) = ranged(
            &c,
            name,
            &format!("bytes={}-{}", idx * FOUR, idx * FOUR + 10),
        );
        assert_eq!(status, 502, "{name}");
        assert!(reason.contains(&node_of(name, idx)), "{reason}");
    }
    let (status, _, body) = ranged(&c, "flip-later", "bytes=4194304-8388607");
    assert_eq!(status, 206);
    assert!(body == content[FOUR..2 * FOUR]);
    // The corrupt block itself is refused even inside a range.
    let at = 3 * FOUR + 5 * MIB / 2;
    assert_eq!(ranged(&c, "flip-later", &format!("bytes={at}-{at}")).0, 502);
    assert!(c.stat("checksum_mismatches") >= 3, "{}", c.stats());
    assert!(c.stat("missing_parts") >= 4, "{}", c.stats());
    let log = std::fs::read_to_string(c.gateway_log()).unwrap();
    let later = node_of("flip-later", 3);
    let named =
        |l: &str| l.contains("checksum mismatch") && l.contains("part 3") && l.contains(&later);
    assert!(
        log.lines().any(named),
        "the log names the node and part of the mismatch"
    );
}

#[test]
fn fewer_than_six_live_nodes_refuse_puts_and_spare_gets() {
    let mut c = Cluster::start("fewer", 7, &[]);
    let files: Vec<(String, Vec<u8>)> = (0..14)
        .map(|i| (format!("f{i}"), data(100_000, i)))
        .collect();
    for (name, content) in &files {
        assert_eq!(c.put(name, content).status, 201);
    }
    let dead = c.kill_node_seen_down(0);
    let mut spared = 0;
    for (name, content) in &files {
        let touches = c.parts_of(name).iter().any(|p| p.node == dead);
        let got = c.get(name);
        if touches {
            assert_eq!(got.status, 503, "{name}");
            let reason = got.json()["reason"].as_str().unwrap().to_string();
            assert!(
                reason.contains(&dead),
                "{name}: the reason names the node: {reason}"
            );
        } else {
            assert_eq!((got.status, got.body == *content), (200, true), "{name}");
            spared += 1;
        }
    }
    assert!(
        spared > 0,
        "some file avoids node 0 (each misses one of 7 nodes)"
    );
    assert_eq!(
        c.put("six-left", b"still fine").status,
        201,
        "6 live nodes take a PUT"
    );
    let second = c.kill_node_seen_down(1);
    let refused = c.put("five-left", b"no room");
    assert_eq!(refused.status, 503);
    let reason = refused.json()["reason"].as_str().unwrap().to_string();
    let named = reason.contains(&dead) && reason.contains(&second);
    assert!(
        reason.contains("5 usable nodes for 6 parts") && named,
        "{reason}"
    );
    assert_eq!(
        c.get("five-left").status,
        404,
        "a refused upload is not visible"
    );
    c.restart_node(0);
    c.restart_node(1);
    for (name, content) in &files {
        assert!(
            c.get(name).body == *content,
            "{name} after the nodes came back"
        );
    }
    c.wait_clean(Duration::from_secs(30));
    c.check_consistent();
}

fn upload_body(i: u64) -> Vec<u8> {
    data(64 * 1024 + (i as usize * 20_011) % (2 * MIB), i)
}

/// Kills node `i` while it is writing a part (a temp file in its directory), so the kill
/// lands in the middle of a transfer whatever the machine's speed: spins until a temp file
/// shows, freezes the node, and checks the write is still unfinished (else lets it go and
/// tries again).
fn kill_mid_write(c: &mut Cluster, i: usize) {
    let tmp = c.nodes[i].dir.join("tmp");
    let writing = || std::fs::read_dir(&tmp).map_or(0, |d| d.count()) > 0;
    let until = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        while !writing() {
            assert!(
                std::time::Instant::now() < until,
                "node {i} never wrote a part"
            );
        }
        c.signal_node(i, "STOP");
        if writing() {
            break;
        }
        c.signal_node(i, "CONT");
    }
    c.kill_node(i);
}

#[test]
fn a_node_killed_during_100_concurrent_uploads_loses_no_acknowledged_file() {
    let mut c = Cluster::start("nodekill", 7, &[]);
    let uploads: Vec<_> = (0..100u64)
        .map(|i| {
            let (agent, url) = (c.agent.clone(), c.url(&format!("/files/u{i}")));
            std::thread::spawn(move || match agent.put(&url).send_bytes(&upload_body(i)) {
                Ok(r) => r.status(),
                Err(ureq::Error::Status(s, _)) => s,
                Err(e) => panic!("upload {i}: no HTTP answer: {e}"),
            })
        })
        .collect();
    kill_mid_write(&mut c, 3);
    let statuses: Vec<u16> = uploads.into_iter().map(|u| u.join().unwrap()).collect();
    for (i, s) in statuses.iter().enumerate() {
        assert!(
            *s == 201 || (500..600).contains(s),
            "upload {i} answered {s}"
        );
    }
    c.restart_node(3);
    for (i, s) in statuses.iter().enumerate() {
        let got = c.get(&format!("u{i}"));
        if *s == 201 {
            assert!(
                got.status == 200 && got.body == upload_body(i as u64),
                "acknowledged upload {i} reads back identical"
            );
        } else {
            assert_eq!(got.status, 404, "failed upload {i} is not visible");
        }
    }
    let ok = statuses.iter().filter(|s| **s == 201).count();
    let retries = c.stat("part_retries") as usize;
    eprintln!("node kill: {ok} of 100 uploads acknowledged, {retries} part retries");
    assert!(
        retries + (100 - ok) >= 1,
        "the part node 3 was writing was resent, or its upload failed"
    );
    c.wait_clean(Duration::from_secs(60));
    c.check_consistent();
}

#[test]
fn a_stalled_node_is_cut_off_by_the_part_deadline() {
    let mut c = Cluster::start(
        "slow",
        7,
        &["--part-timeout-ms", "1000", "--slow-penalty-ms", "3000"],
    );
    let stalled = c.nodes[6].id.clone();
    c.signal_node(6, "STOP");
    let files: Vec<Vec<u8>> = (0..6).map(|i| data(300_000, i)).collect();
    for (i, content) in files.iter().enumerate() {
        let a = c.put(&format!("s{i}"), content);
        assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
        assert!(
            c.parts_of(&format!("s{i}"))
                .iter()
                .all(|p| p.node != stalled)
        );
    }
    assert!(
        c.stat("part_retries") >= 1,
        "a part went to the stalled node and was moved: {}",
        c.stats()
    );
    let log = std::fs::read_to_string(c.gateway_log()).unwrap();
    assert!(log.contains("missed its deadline"), "the cut is logged");
    c.signal_node(6, "CONT");
    for (i, content) in files.iter().enumerate() {
        assert!(c.get(&format!("s{i}")).body == *content);
    }
    // The stalled node finishes reading the body it was sent, sees the gateway gone and
    // drops the copy; the cleanup job (once the node is back) finds nothing to remove.
    c.wait_clean(Duration::from_secs(30));
    c.check_consistent();
    let _ = &mut c;
}

/// A delete while one of the file's nodes is down: its copy waits for the node, then goes.
fn delete_while_a_node_is_down(c: &mut Cluster) {
    let gone = c.parts_of("gone");
    let down = c.node_index(&gone[0].node);
    c.kill_node_seen_down(down);
    assert_eq!(
        c.call("DELETE", "/files/gone", None, None).unwrap().status,
        204
    );
    let waiting = |c: &Cluster| -> i64 {
        c.pg()
            .query_one("SELECT count(*) FROM garbage", &[])
            .unwrap()
            .get(0)
    };
    wait_for(
        Duration::from_secs(30),
        "the live nodes' copies to go",
        || (waiting(c) == 1).then_some(()),
    );
    assert!(
        c.copy_path(&gone[0].node, gone[0].copy).exists(),
        "the down node's copy waits"
    );
    c.restart_node(down);
    c.wait_clean(Duration::from_secs(30));
    assert!(!c.copy_path(&gone[0].node, gone[0].copy).exists());
}

/// A copy that cannot be removed (a directory stands in its place): 3 attempts, then the
/// dead letter, visible in `GET /jobs`; repaired, the node's return revives it.
fn dead_letter_then_revive(c: &mut Cluster) {
    let stuck = c.parts_of("stuck")[2].clone();
    let path = c.copy_path(&stuck.node, stuck.copy);
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir_all(path.join("blocker")).unwrap();
    assert_eq!(
        c.call("DELETE", "/files/stuck", None, None).unwrap().status,
        204
    );
    let dead = wait_for(Duration::from_secs(30), "the dead letter", || {
        let jobs = c.call("GET", "/jobs", None, None).ok()?.json();
        Some(jobs["dead"].as_array()?.first()?.clone())
    });
    assert_eq!(
        (dead["copy"].as_i64(), dead["attempts"].as_i64()),
        (Some(stuck.copy), Some(3))
    );
    assert!(
        dead["last_error"].as_str().unwrap().contains(&stuck.node),
        "{dead}"
    );
    assert!(c.stat("jobs_dead") >= 1);
    std::fs::remove_dir_all(&path).unwrap();
    let i = c.node_index(&stuck.node);
    c.kill_node_seen_down(i);
    c.restart_node(i);
    c.wait_clean(Duration::from_secs(30));
}

#[test]
fn cleanup_jobs_wait_for_down_nodes_and_dead_letter_what_keeps_failing() {
    let mut c = Cluster::start("jobs", 7, &["--job-max-attempts", "3"]);
    for name in ["keep", "gone", "stuck"] {
        assert_eq!(c.put(name, &data(600_000, 9)).status, 201);
    }
    delete_while_a_node_is_down(&mut c);
    dead_letter_then_revive(&mut c);
    assert_eq!(c.get("keep").status, 200);
    c.check_consistent();
    let on_disk: BTreeSet<i64> = c
        .nodes
        .iter()
        .flat_map(|n| common::inventory(&n.dir).into_keys())
        .collect();
    assert_eq!(on_disk.len(), 6, "only the 6 parts of the kept file remain");
}
