//! Crash loop: a child process pushes and pops through `Storage` over `FileDb` and is killed
//! with SIGKILL at random moments. After every kill the file must open, keep every item the
//! child knew was flushed and did not pop, return no item twice, and hold no garbage.
//!
//! `cargo test --test file_db_crash` runs 50 kills; `-- --ignored` runs the 1000-kill loop.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lifostore::{CancelToken, Db, FileDb, Storage};

mod common;
use common::{Rng, TempDir};

const CHILD_ENV: &str = "LIFOSTORE_CRASH_CHILD";
const ITEM_LEN: usize = 40;
/// The child's durability window.
const WINDOW: Duration = Duration::from_millis(40);
/// Scheduling slack on a loaded 2-core machine for the window check.
const SLACK: Duration = Duration::from_millis(150);

fn encode(id: u64) -> Vec<u8> {
    let mut v = id.to_le_bytes().to_vec();
    v.extend((0..ITEM_LEN - 8).map(|i| (id as usize * 31 + i) as u8));
    v
}

fn decode(item: &[u8]) -> Option<u64> {
    let id = u64::from_le_bytes(item.get(..8)?.try_into().ok()?);
    (item == encode(id).as_slice()).then_some(id)
}

/// Child mode: runs until killed. Prints `F id` once everything up to `id` is flushed, `p`
/// before a pop and `P id` after it returned.
#[test]
fn crash_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return; // not a child: nothing to do
    };
    let (path, base) = spec.split_once('|').expect("path|base");
    let base: u64 = base.parse().expect("base");
    let storage = Storage::builder()
        .max_unflushed_age(WINDOW)
        .build(FileDb::open(path).expect("open in child"));
    let token = CancelToken::new();
    let mut rng = Rng(base | 1);
    println!(); // end libtest's "test crash_child ... " line before our events
    for id in base.. {
        storage.push(&token, encode(id)).expect("push");
        println!("A {id}");
        match rng.next() % 10 {
            0 | 1 => {
                println!("p");
                let item = storage.pop(&token).expect("pop");
                println!("P {}", decode(&item).expect("child popped garbage"));
            }
            2 => {
                storage.flush(&token).expect("flush");
                println!("F {id}");
            }
            _ => {}
        }
    }
}

/// Reads every item in the file (newest first) and puts them back unchanged.
fn contents(path: &Path) -> Vec<Vec<u8>> {
    let db = FileDb::open(path).unwrap_or_else(|e| panic!("open after kill: {e}"));
    let items = db.pop_batch(usize::MAX).expect("read items");
    let oldest_first: Vec<&[u8]> = items.iter().rev().map(|x| x.as_slice()).collect();
    db.push_batch(&oldest_first).expect("put items back");
    items
}

fn crash_loop(kills: u64) {
    let dir = TempDir::new("crash");
    let path = dir.file("crash.lifo");
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("crash loop seed {seed}");
    let mut rng = Rng(seed);
    let exe = std::env::current_exe().unwrap();
    let mut present: HashSet<u64> = HashSet::new();
    let mut total_flushed = 0usize;
    let mut total_window_checked = 0usize;
    for round in 0..kills {
        if round % 50 == 0 {
            // A fresh file every 50 kills keeps the long run's per-kill check (which reads the
            // whole file) from growing with it.
            let _ = std::fs::remove_file(&path);
            present.clear();
        }
        let base = (round + 1) * 1_000_000_000;
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, format!("{}|{base}", path.display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // Each line is stamped when the parent reads it: never earlier than the child wrote it.
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .map(|line| (line, Instant::now()))
                .collect::<Vec<_>>()
        });
        std::thread::sleep(Duration::from_millis(100 + rng.next() % 200));
        let killed_at = Instant::now();
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let lines = reader.join().unwrap();

        let mut popped = HashSet::new();
        let mut flushed_through = None;
        let mut pop_in_progress = false;
        // Promise 3: a push acknowledged more than the window (plus scheduling slack) before
        // the kill must have reached the file, unless it was popped.
        let mut older_than_window = Vec::new();
        for (line, seen_at) in &lines {
            match line.split_once(' ') {
                Some(("A", id)) if *seen_at + WINDOW + SLACK < killed_at => {
                    older_than_window.push(id.parse::<u64>().unwrap());
                }
                Some(("F", id)) => flushed_through = Some(id.parse::<u64>().unwrap()),
                Some(("P", id)) => {
                    assert!(
                        popped.insert(id.parse::<u64>().unwrap()),
                        "child popped twice"
                    );
                    pop_in_progress = false;
                }
                None if line.as_str() == "p" => pop_in_progress = true,
                _ => {} // test harness chatter
            }
        }
        let mut must: HashSet<u64> = present.clone();
        if let Some(f) = flushed_through {
            must.extend(base..=f);
        }
        let window_checked = older_than_window.len();
        must.extend(older_than_window);
        must.retain(|id| !popped.contains(id));

        let items = contents(&path);
        let mut in_file = HashSet::new();
        for item in &items {
            let id = decode(item)
                .unwrap_or_else(|| panic!("round {round} (seed {seed}): garbage item {item:?}"));
            assert!(
                in_file.insert(id),
                "round {round} (seed {seed}): item {id} twice in the file"
            );
            assert!(
                !popped.contains(&id),
                "round {round} (seed {seed}): popped item {id} came back"
            );
        }
        let missing: Vec<_> = must.difference(&in_file).collect();
        // A pop that was under way when the child died may have taken one item from the file.
        let allowed = usize::from(pop_in_progress);
        assert!(
            missing.len() <= allowed,
            "round {round} (seed {seed}): acknowledged items lost: {missing:?}"
        );
        total_flushed += flushed_through.map_or(0, |f| (f - base + 1) as usize);
        total_window_checked += window_checked;
        present = in_file;
    }
    println!(
        "{kills} kills: {total_flushed} flushed-acknowledged and {total_window_checked} \
         older-than-window items checked, {} left",
        present.len()
    );
}

#[test]
fn fifty_kills_lose_nothing_acknowledged() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    crash_loop(50);
}

#[test]
#[ignore = "long: 1000 kills (run with --ignored)"]
fn thousand_kills_lose_nothing_acknowledged() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    crash_loop(1000);
}
