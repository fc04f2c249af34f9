//! Promise 4, little I/O: items pushed and popped within the window never touch the Db;
//! flushes are batched; a `pop` calls the Db only when memory holds nothing newer.
//!
//! Here: Db call counts for pops from memory, batched flushes, a crowd of poppers, draining a
//! backlog in batches, and durable pushes sharing writes (group commit). Deeper: the write
//! policy's unit tests (`src/engine/policy.rs`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use lifostore::{CancelToken, Db, MemDb, Storage};

use crate::common::{id_of, ids, item, quiet};

// ---- 4. Little I/O ------------------------------------------------------------------------

#[test]
fn items_popped_within_the_window_never_touch_the_db() {
    let s = Storage::new(MemDb::new()).unwrap();
    let t = CancelToken::new();
    for round in 0..100 {
        for i in 0..10 {
            s.push(&t, item(round * 10 + i)).unwrap();
        }
        for _ in 0..10 {
            s.pop(&t).unwrap();
        }
    }
    let stats = s.stats();
    assert_eq!(stats.db_calls(), 0, "{stats:?}");
    assert_eq!(s.db().calls().total(), 0);
}

#[test]
fn flushes_are_batched() {
    let s = Storage::builder()
        .max_batch(1024)
        .build(MemDb::new())
        .unwrap();
    let t = CancelToken::new();
    for i in 0..5000 {
        s.push(&t, item(i)).unwrap();
    }
    s.flush(&t).unwrap();
    assert_eq!(s.db().len(), 5000);
    // At most one slow-start write of 16 items (the buffer passed half the initial capacity of
    // 256 before the Db's speed was known), then the flush: the rest in batches of 1024.
    let calls = s.db().calls().push_calls;
    assert!((5..=6).contains(&calls), "{calls} writes: {:?}", s.stats());
}

#[test]
fn pop_calls_the_db_only_when_memory_holds_nothing_newer() {
    let s = Storage::new(MemDb::new()).unwrap();
    let t = CancelToken::new();
    s.push(&t, item(1)).unwrap();
    s.flush(&t).unwrap();
    s.push(&t, item(2)).unwrap();
    assert_eq!(id_of(&s.pop(&t).unwrap()), 2);
    assert_eq!(s.db().calls().pop_calls, 0);
    assert_eq!(id_of(&s.pop(&t).unwrap()), 1);
    assert_eq!(s.db().calls().pop_calls, 1);
    // Once the Db said "empty", pops on an empty storage stop asking it.
    assert_eq!(s.try_pop().unwrap(), None);
    assert_eq!(s.try_pop().unwrap(), None);
    assert_eq!(s.db().calls().pop_calls, 2);
}

#[test]
fn a_crowd_of_poppers_makes_about_one_db_call_per_item() {
    // 20 items in the Db (count unknown to the storage), 200 poppers finding memory empty:
    // they must not make 200 Db calls to share 20 items.
    let s = Arc::new(Storage::new(MemDb::with_latency(Duration::from_millis(2))).unwrap());
    let t = CancelToken::new();
    for i in 0..20 {
        s.db().push(&item(i)).unwrap();
    }
    let calls_before = s.db().calls().pop_calls;
    let got: Vec<Option<u64>> = std::thread::scope(|scope| {
        let hs: Vec<_> = (0..200)
            .map(|_| {
                let (s, t) = (&s, &t);
                scope.spawn(move || {
                    let short = t.with_timeout(Duration::from_millis(300));
                    s.pop(&short).ok().map(|x| id_of(&x))
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let popped: HashSet<u64> = got.iter().flatten().copied().collect();
    assert_eq!(popped, (0..20).collect::<HashSet<_>>());
    let calls = s.db().calls().pop_calls - calls_before;
    assert!(calls <= 2 * 20 + 2, "{calls} Db pop calls for 20 items");
}

#[test]
fn draining_2000_flushed_items_in_batches_of_1024_takes_at_most_3_db_calls() {
    let s = quiet(MemDb::new());
    let t = CancelToken::new();
    s.push_batch(&t, (0..2000).map(item)).unwrap();
    s.flush(&t).unwrap();
    assert_eq!(s.db().len(), 2000);
    let (calls_before, stats_before) = (s.db().calls().pop_calls, s.stats().db_pop_calls);
    let mut got = Vec::new();
    loop {
        let batch = s.try_pop_batch(1024).unwrap();
        if batch.is_empty() {
            break;
        }
        got.extend(ids(&batch));
    }
    assert_eq!(
        got,
        (0..2000).rev().collect::<Vec<_>>(),
        "newest first, each once"
    );
    let db_calls = s.db().calls().pop_calls - calls_before;
    assert!(db_calls <= 3, "{db_calls} Db calls to drain 2000 items");
    assert_eq!(s.stats().db_pop_calls - stats_before, db_calls);
    println!("drained 2000 flushed items with {db_calls} Db calls");
}

#[test]
fn concurrent_durable_pushes_share_db_writes() {
    let s = Arc::new(quiet(MemDb::with_latency(Duration::from_millis(5))));
    std::thread::scope(|sc| {
        for i in 0..64 {
            let s = &s;
            sc.spawn(move || s.push_durable(&CancelToken::new(), item(i)).unwrap());
        }
    });
    let calls = s.db().calls().push_calls;
    assert_eq!(s.db().len(), 64, "every durable Ok is in the Db");
    println!("64 durable pushes, {calls} Db writes");
    assert!(
        calls <= 32,
        "{calls} Db writes for 64 durable pushes: no grouping"
    );
}

/// Callers released by a write push again at once and ride in a later write: the next write
/// starts as soon as the last one landed, so a steady crowd splits into two groups that
/// write in turn, each write carrying about half of it (~9 writes here for 256 pushes over a
/// 20 ms Db; 256, one per push, when a durable writer takes only the oldest buffered item:
/// checked by hand).
#[test]
fn durable_callers_pushing_again_keep_sharing_writes() {
    let s = Arc::new(quiet(MemDb::with_latency(Duration::from_millis(20))));
    std::thread::scope(|sc| {
        for i in 0..64 {
            let s = &s;
            sc.spawn(move || {
                for k in 0..4 {
                    s.push_durable(&CancelToken::new(), item(i * 4 + k))
                        .unwrap();
                }
            });
        }
    });
    let calls = s.db().calls().push_calls;
    assert_eq!(s.db().len(), 256);
    println!("64 callers x 4 durable pushes: {calls} Db writes");
    assert!(
        calls <= 24,
        "{calls} Db writes for 64 callers x 4 durable pushes: the crowd is not sharing writes"
    );
}
