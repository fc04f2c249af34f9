//! The gateway SIGKILLed during uploads and during rebalancing moves: after a restart no
//! half-written file is visible, no acknowledged file is lost, and the metadata matches the
//! nodes' directories once the cleanup jobs ran.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Cluster, data, wait_for};

const MIB: usize = 1 << 20;

/// What happened to one upload.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    Acked,
    Refused,
    Unknown,
}

fn size_of(seed: u64) -> usize {
    MIB + (seed as usize * 777_767) % (5 * MIB)
}

type Log = Arc<Mutex<Vec<(String, u64, Outcome)>>>;

/// 12 threads uploading files of 1 to 6 MiB until `stop`, logging each outcome.
fn upload_streams(
    c: &Cluster,
    stop: &Arc<AtomicBool>,
    acked: &Arc<AtomicUsize>,
    log: &Log,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..12u64)
        .map(|t| {
            let (agent, base) = (c.agent.clone(), c.url("/files/"));
            let (stop, acked, log) = (Arc::clone(stop), Arc::clone(acked), Arc::clone(log));
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let (name, seed) = (format!("t{t}-{i}"), t * 1000 + i);
                    let outcome = match agent
                        .put(&format!("{base}{name}"))
                        .send_bytes(&data(size_of(seed), seed))
                    {
                        Ok(r) if r.status() == 201 => Outcome::Acked,
                        Ok(_) | Err(ureq::Error::Status(..)) => Outcome::Refused,
                        Err(ureq::Error::Transport(_)) => Outcome::Unknown,
                    };
                    if outcome == Outcome::Acked {
                        acked.fetch_add(1, Ordering::SeqCst);
                    }
                    log.lock().unwrap().push((name, seed, outcome));
                    i += 1;
                }
            })
        })
        .collect()
}

/// Acknowledged files read back identical, refused ones are absent, unknown ones are whole
/// or absent, and nothing else is listed.
fn check_outcomes(c: &Cluster, log: &[(String, u64, Outcome)]) {
    for (name, seed, outcome) in log {
        let got = c.get(name);
        let same = got.status == 200 && got.body == data(size_of(*seed), *seed);
        match outcome {
            Outcome::Acked => assert!(same, "acknowledged {name} reads back identical"),
            Outcome::Refused => assert_eq!(got.status, 404, "{name}"),
            Outcome::Unknown => assert!(
                same || got.status == 404,
                "{name}: whole or absent, got {}",
                got.status
            ),
        }
    }
    let listed = c
        .call("GET", "/files?limit=10000", None, None)
        .unwrap()
        .json();
    for f in listed["files"].as_array().unwrap() {
        let name = f["name"].as_str().unwrap();
        assert!(
            log.iter()
                .any(|(n, _, o)| n == name && *o != Outcome::Refused),
            "{name} listed"
        );
    }
}

#[test]
fn a_gateway_killed_during_uploads_loses_nothing_acknowledged_and_shows_nothing_half_written() {
    let mut c = Cluster::start("gwkill", 7, &[]);
    let (stop, acked, log) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
        Log::default(),
    );
    let workers = upload_streams(&c, &stop, &acked, &log);
    wait_for(Duration::from_secs(120), "15 acknowledged uploads", || {
        (acked.load(Ordering::SeqCst) >= 15).then_some(())
    });
    c.kill_gateway();
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().unwrap();
    }
    c.start_gateway();
    c.wait_live(7);
    let log = log.lock().unwrap().clone();
    let unknown = log
        .iter()
        .filter(|(_, _, o)| *o == Outcome::Unknown)
        .count();
    assert!(
        unknown >= 1,
        "some uploads were in flight when the gateway died"
    );
    check_outcomes(&c, &log);
    c.wait_clean(Duration::from_secs(60));
    c.check_consistent();
}

/// Waits (spinning on PostgreSQL, this is a test probe) until a move is in flight.
fn wait_for_a_move(c: &Cluster, limit: Duration) -> bool {
    let mut pg = c.pg();
    let until = Instant::now() + limit;
    while Instant::now() < until {
        let n: i64 = pg
            .query_one("SELECT count(*) FROM moves", &[])
            .unwrap()
            .get(0);
        if n > 0 {
            return true;
        }
    }
    false
}

#[test]
fn a_gateway_killed_during_moves_leaves_every_file_whole_and_the_nodes_even() {
    let mut c = Cluster::start("movekill", 6, common::EAGER_REBALANCER);
    let files: Vec<Vec<u8>> = (0..24).map(|i| data(12 * MIB, 100 + i)).collect();
    for (i, content) in files.iter().enumerate() {
        assert_eq!(c.put(&format!("m{i}"), content).status, 201);
    }
    c.add_node();
    c.add_node();
    c.wait_live(8);
    c.gateway_args
        .extend(["--rebalance".to_string(), "on".to_string()]);
    assert_eq!(
        c.call("PUT", "/rebalancer", Some(br#"{"enabled":true}"#), None)
            .unwrap()
            .status,
        200
    );
    let mut caught = 0;
    for _ in 0..3 {
        if !wait_for_a_move(&c, Duration::from_secs(60)) {
            break;
        }
        c.kill_gateway();
        let left: i64 = c
            .pg()
            .query_one("SELECT count(*) FROM moves", &[])
            .unwrap()
            .get(0);
        caught += usize::from(left > 0);
        c.start_gateway();
        c.wait_live(8);
    }
    assert!(
        caught >= 1,
        "at least one kill landed in the middle of a move"
    );
    wait_for(Duration::from_secs(120), "the rebalancer to finish", || {
        let r = c.call("GET", "/rebalancer", None, None).ok()?.json();
        let n = c.nodes_json();
        (r["active"] == false && n["live_spread"].as_f64()? <= 0.05).then_some(())
    });
    for (i, content) in files.iter().enumerate() {
        assert!(
            c.get(&format!("m{i}")).body == *content,
            "m{i} whole after the kills"
        );
    }
    c.wait_clean(Duration::from_secs(60));
    c.check_consistent();
}
