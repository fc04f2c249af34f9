//! Wake-ups across processes over a shared FileDb: a pop blocked on an empty storage is woken
//! by another handle's (another process's) push, release or lease deadline, not by polling;
//! a wake-up that never comes (its notifier killed) is covered by the slow re-check.
//!
//! The tests that must not be served by the re-check set it to an hour: the item can then only
//! arrive through the wake-up.
#![cfg(target_os = "linux")]

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lifostore::{CancelToken, Db, FileDb, FileDbOptions, Storage};

mod common;
use common::{TempDir, id_of, item};

const CHILD_ENV: &str = "LIFOSTORE_WAKEUPS_CHILD";
const HOUR: Duration = Duration::from_secs(3600);

fn watching(path: &std::path::Path, recheck: Duration) -> Arc<Storage<FileDb>> {
    let storage = Storage::builder()
        .shared_recheck_interval(recheck)
        .open(path)
        .expect("open");
    Arc::new(storage)
}

fn patient() -> CancelToken {
    CancelToken::new().with_timeout(Duration::from_secs(30))
}

/// A pop started on another thread, blocked on the empty storage before this returns.
fn blocked_pop(storage: &Arc<Storage<FileDb>>) -> std::thread::JoinHandle<Vec<u8>> {
    let token = patient();
    let s = Arc::clone(storage);
    let t = token.clone();
    let popper = std::thread::spawn(move || s.pop(&t).expect("pop"));
    common::wait_until_blocked(&token);
    popper
}

#[test]
fn a_blocked_pop_wakes_on_another_handles_push_with_no_recheck() {
    let dir = TempDir::new("wake-push");
    let path = dir.file("q.lifo");
    let storage = watching(&path, HOUR);
    let popper = blocked_pop(&storage);
    FileDb::open(&path)
        .unwrap()
        .push(b"from elsewhere")
        .unwrap();
    assert_eq!(popper.join().unwrap(), b"from elsewhere");
    let stats = storage.stats();
    assert!(stats.db_pop_calls <= 3, "woken, not polling: {stats:?}");
}

#[test]
fn a_lease_another_handle_lets_expire_wakes_a_blocked_pop_at_its_deadline() {
    let dir = TempDir::new("wake-lease");
    let path = dir.file("q.lifo");
    let storage = watching(&path, HOUR);
    let other = FileDb::open(&path).unwrap();
    other.push(b"leased elsewhere").unwrap();
    let ttl = Duration::from_millis(300);
    let at = Instant::now();
    let leased = other.leases().unwrap().pop_lease(1, ttl).unwrap();
    assert_eq!(leased.len(), 1, "the other handle took the item first");
    let popper = blocked_pop(&storage);
    assert_eq!(popper.join().unwrap(), b"leased elsewhere");
    assert!(
        at.elapsed() >= ttl - Duration::from_millis(5),
        "not before the deadline"
    );
}

#[test]
fn an_item_whose_wake_up_never_came_is_found_by_the_recheck() {
    let dir = TempDir::new("wake-lost");
    let path = dir.file("q.lifo");
    let storage = watching(&path, Duration::from_millis(200));
    let popper = blocked_pop(&storage);
    // A handle that says it is alone sends no wake-ups: as a notifier killed between its
    // commit and its notification.
    let silent = FileDb::open_with(&path, FileDbOptions::default().shared(false)).unwrap();
    silent.push(b"silent").unwrap();
    assert_eq!(popper.join().unwrap(), b"silent");
}

#[test]
fn an_idle_blocked_pop_asks_the_db_only_at_the_recheck_interval() {
    let dir = TempDir::new("wake-idle");
    let storage = watching(&dir.file("q.lifo"), Duration::from_millis(250));
    let token = CancelToken::new().with_timeout(Duration::from_millis(1100));
    assert!(storage.pop(&token).is_err(), "nothing was pushed");
    // One call at the start, then at most one per 250 ms (fewer if descheduled).
    let calls = storage.stats().db_pop_calls;
    assert!((1..=6).contains(&calls), "{calls} Db calls in 1.1 s");
}

/// Child mode: pushes durably, forever, printing each id once its push returned `Ok`.
#[test]
fn notifier_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let storage = Storage::open(&path).expect("open in child");
    let token = CancelToken::new();
    for id in 0.. {
        storage
            .push_durable(&token, item(id))
            .expect("push_durable");
        println!("\nDURABLE {id}");
        std::thread::sleep(Duration::from_millis(3));
    }
}

#[test]
fn a_notifier_killed_mid_run_loses_no_item_for_the_consumer() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = TempDir::new("wake-kill");
    let path = dir.file("q.lifo");
    let storage = watching(&path, Duration::from_millis(300));
    let got = Arc::new(Mutex::new(Vec::new()));
    let stop = CancelToken::new();
    let consumer = {
        let (s, got, stop) = (Arc::clone(&storage), Arc::clone(&got), stop.clone());
        std::thread::spawn(move || {
            while let Ok(x) = s.pop(&stop) {
                got.lock().unwrap().push(id_of(&x));
            }
        })
    };
    let durable = run_and_kill_notifier(&path, 60);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !durable.iter().all(|id| got.lock().unwrap().contains(id)) {
        assert!(
            Instant::now() < deadline,
            "durable items never reached the consumer"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.cancel();
    consumer.join().unwrap();
    storage.close().unwrap();
    let mut all = got.lock().unwrap().clone();
    let db = FileDb::open(&path).unwrap();
    all.extend(db.pop_batch(usize::MAX).unwrap().iter().map(|x| id_of(x)));
    let unique: HashSet<u64> = all.iter().copied().collect();
    assert_eq!(unique.len(), all.len(), "an item came twice");
    let max = durable.iter().max().copied().unwrap_or(0);
    assert!(
        unique.iter().all(|&id| id <= max + 1),
        "at most one push was cut"
    );
    let wake_dir = dir.file("q.lifo.wake");
    db.push(b"after").unwrap(); // the killed child's registration is found dead and removed
    assert_eq!(std::fs::read_dir(&wake_dir).unwrap().count(), 0);
}

/// Starts the notifier child, SIGKILLs it once it reported `n` durable pushes (mid-run: it
/// pushes every few milliseconds), and returns every id it reported.
fn run_and_kill_notifier(path: &std::path::Path, n: usize) -> Vec<u64> {
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "notifier_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, path)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the notifier");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut durable = Vec::new();
    while durable.len() < n {
        let line = lines.next().expect("the child ended early").expect("read");
        if let Some(pos) = line.find("DURABLE ") {
            durable.push(line[pos + 8..].trim().parse().expect("id"));
        }
    }
    child.kill().expect("SIGKILL"); // std's kill is SIGKILL on Unix
    for line in lines.map_while(Result::ok) {
        if let Some(pos) = line.find("DURABLE ") {
            durable.push(line[pos + 8..].trim().parse().expect("id"));
        }
    }
    child.wait().expect("reaped");
    durable
}
