//! The consumer kill loop for leases: a child process leases items through a `Storage`
//! (`Storage::pop_lease`), acks most and releases some, and is killed with SIGKILL at a random
//! moment, round after round. After the last kill (and once its leases have expired) every
//! item must have been acked exactly once or still be in the store, once; redeliveries are
//! counted.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use lifostore::{CancelToken, Db, Storage};

use super::{Rng, id_of, item};

/// The environment variable that turns a test binary's consumer test into the child.
pub const CHILD_ENV: &str = "LIFOSTORE_LEASE_CHILD";
/// The lease deadline the child uses: what a killed child's leases wait before coming back.
pub const TTL: Duration = Duration::from_millis(300);
/// How long the Db holds the child's leases: a storage asks a native Db for its `lease_ttl`
/// plus a quarter of it, at least 1 s (it returns the item itself at `lease_ttl`, while it
/// lives).
pub const DB_HOLD: Duration = Duration::from_millis(300 + 1000);

/// Child mode: runs until killed. Leases through a storage over `db` (a Db shared with the
/// parent, so a pop on an empty storage re-asks it every 10 ms: a killed child's leases come
/// back by themselves at their deadline). Prints `READY`, `L id` after a lease returned,
/// `a id` before an ack call and `A id` after it returned `Ok`, `r id` before a release.
pub fn consumer_main(db: Box<dyn Db>, seed: u64) {
    assert!(db.capabilities().shared && db.leases().is_some());
    let storage = Storage::builder()
        .lease_ttl(TTL)
        .shared_poll_interval(Duration::from_millis(10))
        .build(db)
        .expect("storage in child");
    let token = CancelToken::new();
    let mut rng = Rng(seed | 1);
    println!("\nREADY");
    loop {
        let lease = storage.pop_lease(&token).expect("lease in child");
        let id = id_of(&lease);
        println!("L {id}");
        if rng.next().is_multiple_of(5) {
            println!("r {id}");
            lease.release(); // an expired one is back already
        } else {
            println!("a {id}");
            if lease.ack().is_ok() {
                println!("A {id}");
            }
        }
    }
}

/// Child mode, chosen by the last field of the child's spec: `hold` runs [`holder_main`],
/// anything else is the seed of [`consumer_main`].
pub fn child_main(db: Box<dyn Db>, mode: &str) {
    match mode {
        "hold" => holder_main(db),
        seed => consumer_main(db, seed.parse().expect("seed")),
    }
}

/// Child mode of [`back_on_top_after_the_holder_died`]: leases one item through a storage
/// over `db` (the storage's memory is empty, so a native Db lease), prints `L <item>` and
/// parks until it is killed.
fn holder_main(db: Box<dyn Db>) {
    let storage = Storage::builder()
        .lease_ttl(TTL)
        .build(db)
        .expect("storage in child");
    let lease = storage
        .pop_lease(&CancelToken::new())
        .expect("lease in child");
    println!("\nL {}", String::from_utf8_lossy(&lease));
    loop {
        std::thread::park(); // until SIGKILL; the lease is never acked or released
    }
}

/// Lease A in another process, SIGKILL it, push B: once the Db's deadline has passed, A is
/// back on top (the next pop returns A, then B), for any client of the shared Db. `spec`
/// tells the child (this test binary again) how to open the same Db.
pub fn back_on_top_after_the_holder_died(db: &dyn Db, spec: &str) {
    db.push(b"A").expect("push A");
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "lease_consumer_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, format!("{spec}|hold"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the holder child");
    let lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let leased = lines
        .map_while(Result::ok)
        .find(|l| l.starts_with("L "))
        .expect("the child leased an item before it ended");
    child.kill().expect("SIGKILL the child");
    child.wait().expect("reap the child");
    assert_eq!(leased, "L A", "the child leased A");
    db.push(b"B").expect("push B");
    assert_eq!(
        db.pop().expect("pop"),
        Some(b"B".to_vec()),
        "A is leased: B only"
    );
    db.push(b"B").expect("push B again");
    // Nothing wakes a Db for a deadline: wait it out (the Db holds a storage's lease for
    // `lease_ttl` plus at least 1 s).
    std::thread::sleep(DB_HOLD + Duration::from_millis(100));
    assert_eq!(
        db.pop().expect("pop"),
        Some(b"A".to_vec()),
        "A is back on top"
    );
    assert_eq!(db.pop().expect("pop"), Some(b"B".to_vec()));
    assert_eq!(db.pop().expect("pop"), None);
}

/// What the loop saw.
#[derive(Debug, Default)]
pub struct Report {
    /// Items acked (confirmed, or committed by a call the kill cut short).
    pub acked: usize,
    /// Items left in the store after the last kill.
    pub left: usize,
    /// Leases beyond the first per item: deliveries again after a kill, release or expiry.
    pub redelivered: usize,
    /// Of those, the ones that followed a release the child asked for; the rest followed a
    /// kill (a lease that came back at its deadline) or a lease that expired while held.
    pub after_release: usize,
}

/// Runs one child (its env var set to `spec`) until killed after a random delay; returns
/// its stdout lines.
fn run_child(spec: &str, rng: &mut Rng) -> Vec<String> {
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "lease_consumer_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, spec)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the consumer child");
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let mut out = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("child stdout");
        if line.contains("READY") {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(20 + rng.next() % 120));
    child.kill().expect("SIGKILL the child");
    child.wait().expect("reap the child");
    out.extend(lines.map_while(Result::ok));
    out
}

/// Fills `db` with `items` items, runs `kills` children on it (each sees `spec`), waits out
/// the last leases, drains `db` and checks every item was acked once or is still there.
pub fn consumer_kill_loop(db: &dyn Db, spec: &str, items: u64, kills: u64, seed: u64) -> Report {
    let all: Vec<Vec<u8>> = (0..items).map(item).collect();
    let refs: Vec<&[u8]> = all.iter().map(|i| i.as_slice()).collect();
    db.push_batch(&refs).expect("preload");
    let mut rng = Rng(seed | 1);
    let mut lines = Vec::new();
    for round in 0..kills {
        lines.extend(run_child(&format!("{spec}|{}", seed ^ round), &mut rng));
    }
    // The last child's leases come back at the Db's deadline, which a storage sets later than
    // its own (`lease_ttl` plus a quarter of it, at least 1 s: see `Lease`): nothing to be
    // woken by, so wait it out.
    std::thread::sleep(DB_HOLD + Duration::from_millis(100));
    let mut left = Vec::new();
    loop {
        let batch = db.pop_batch(1000).expect("drain");
        if batch.is_empty() {
            break;
        }
        left.extend(batch.iter().map(|i| id_of(i)));
    }
    check(&lines, &left, items)
}

fn check(lines: &[String], left: &[u64], items: u64) -> Report {
    let (mut leased, mut acked, mut maybe) = (HashMap::new(), HashSet::new(), HashSet::new());
    let (mut released, mut after_release) = (HashSet::new(), 0);
    for line in lines {
        let Some((what, id)) = line.split_once(' ') else {
            continue;
        };
        let Ok(id) = id.trim().parse::<u64>() else {
            continue;
        };
        match what {
            "L" => {
                assert!(
                    !acked.contains(&id),
                    "item {id} leased again after its ack returned"
                );
                *leased.entry(id).or_insert(0usize) += 1;
                after_release += usize::from(released.remove(&id));
            }
            "a" => {
                maybe.insert(id);
            }
            "A" => {
                assert!(acked.insert(id), "item {id} acked twice");
                maybe.remove(&id);
            }
            "r" => {
                released.insert(id);
            }
            _ => {}
        }
    }
    let left_set: HashSet<u64> = left.iter().copied().collect();
    assert_eq!(left_set.len(), left.len(), "an item is in the store twice");
    let mut report = Report {
        left: left.len(),
        redelivered: leased.values().map(|n| n - 1).sum(),
        after_release,
        ..Report::default()
    };
    for id in 0..items {
        let (there, done) = (left_set.contains(&id), acked.contains(&id));
        assert!(
            !(there && done),
            "item {id} was acked and is still in the store"
        );
        assert!(there || done || maybe.contains(&id), "item {id} was lost");
        report.acked += usize::from(!there);
    }
    report
}
