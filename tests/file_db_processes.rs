//! Several processes share one FileDb: each pops distinct items, none twice, none lost; and a
//! Storage blocked on an empty storage sees items another handle wrote to the file.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lifostore::{CancelToken, Db, FileDb, Storage};

mod common;
use common::{TempDir, run_children};

const CHILD_ENV: &str = "LIFOSTORE_PROCESS_CHILD";
const PER_CHILD: u64 = 300;

/// Child mode: pushes its own ids, popping after about half of them; prints what it popped.
#[test]
fn process_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (path, who) = spec.split_once('|').expect("path|who");
    let who: u64 = who.parse().expect("who");
    let db = FileDb::open(path).expect("open in child");
    for i in 0..PER_CHILD {
        let id = who * 1_000_000 + i;
        if i % 10 == 9 {
            let batch: Vec<Vec<u8>> = (0..3)
                .map(|k| (id * 10 + k).to_le_bytes().to_vec())
                .collect();
            let refs: Vec<&[u8]> = batch.iter().map(|b| b.as_slice()).collect();
            db.push_batch(&refs).expect("push batch");
        } else {
            db.push(&(id * 10).to_le_bytes()).expect("push");
        }
        if i % 2 == 1 {
            for item in db.pop_batch(1 + (i % 3) as usize).expect("pop") {
                println!(
                    "\nPOPPED {}",
                    u64::from_le_bytes(item.try_into().expect("8 bytes"))
                );
            }
        }
    }
}

fn pushed_by(who: u64) -> impl Iterator<Item = u64> {
    (0..PER_CHILD).flat_map(move |i| {
        let id = who * 1_000_000 + i;
        let n = if i % 10 == 9 { 3 } else { 1 };
        (0..n).map(move |k| id * 10 + k)
    })
}

#[test]
fn four_processes_pop_distinct_items_and_lose_none() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = TempDir::new("procs");
    let path = dir.file("shared.lifo");
    drop(FileDb::open(&path).unwrap());
    let specs: Vec<String> = (1..=4u64)
        .map(|who| format!("{}|{who}", path.display()))
        .collect();
    let popped = run_children("process_child", CHILD_ENV, &specs);
    assert!(!popped.is_empty());
    let db = FileDb::open(&path).unwrap();
    let left: Vec<u64> = db
        .pop_batch(usize::MAX)
        .unwrap()
        .into_iter()
        .map(|x| u64::from_le_bytes(x.try_into().unwrap()))
        .collect();
    let mut all = popped.clone();
    all.extend(&left);
    let unique: HashSet<u64> = all.iter().copied().collect();
    assert_eq!(unique.len(), all.len(), "an item was popped twice");
    let pushed: HashSet<u64> = (1..=4).flat_map(pushed_by).collect();
    let lost: Vec<_> = pushed.difference(&unique).collect();
    let invented: Vec<_> = unique.difference(&pushed).collect();
    assert!(
        lost.is_empty() && invented.is_empty(),
        "lost {lost:?}, invented {invented:?}"
    );
    println!(
        "{} popped across 4 processes, {} left",
        popped.len(),
        left.len()
    );
}

#[test]
fn blocked_pop_sees_items_another_handle_flushed() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = TempDir::new("shared-pop");
    let path = dir.file("shared.lifo");
    let storage = Arc::new(
        Storage::builder()
            .shared_poll_interval(Duration::from_millis(20))
            .build(FileDb::open(&path).unwrap())
            .unwrap(),
    );
    let other = FileDb::open(&path).unwrap(); // a second handle, as another process would have
    let waiter = {
        let s = storage.clone();
        std::thread::spawn(move || {
            let t = CancelToken::new().with_timeout(Duration::from_secs(10));
            (s.pop(&t), Instant::now())
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    other.push(b"from elsewhere").unwrap();
    let pushed_at = Instant::now();
    let (got, at) = waiter.join().unwrap();
    assert_eq!(got.unwrap(), b"from elsewhere");
    assert!(at.duration_since(pushed_at) < Duration::from_secs(2));
}
