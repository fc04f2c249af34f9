//! Promise 1, newest first: `pop` returns the newest item the storage holds, across buffer,
//! in-flight batch and Db; with concurrent pushers, newest means latest in linearization
//! order.
//!
//! Here: the order across memory and Db, with a batch in flight, and for batch pops. Deeper:
//! the history checker (`tests/reliability_history.rs`: random concurrent histories over
//! MemDb, a faulty Db and FileDb, checked for linearizability) and the loom models
//! `pops_racing_a_flush_are_lifo_and_exactly_once`, `pop_batch_racing_a_flush_is_lifo_and_exactly_once`.

use std::sync::Arc;
use std::time::Duration;

use lifostore::{CancelToken, Db, MemDb, Storage};

use crate::common::{id_of, ids, item, quiet};

fn drain(storage: &Storage<impl Db>) -> Vec<u64> {
    let mut out = Vec::new();
    while let Some(x) = storage.try_pop().unwrap() {
        out.push(id_of(&x));
    }
    out
}

// ---- 1. Newest first ----------------------------------------------------------------------

#[test]
fn newest_first_across_buffer_and_db() {
    let s = Storage::new(MemDb::new()).unwrap();
    let t = CancelToken::new();
    for i in 0..5 {
        s.push(&t, item(i)).unwrap();
    }
    s.flush(&t).unwrap(); // 0..5 in the Db
    for i in 5..10 {
        s.push(&t, item(i)).unwrap();
    }
    assert_eq!(s.db().len(), 5);
    assert_eq!(drain(&s), (0..10).rev().collect::<Vec<_>>());
}

#[test]
fn newest_first_with_a_batch_in_flight() {
    // A slow Db keeps a batch in flight while we pop: the pop must return the newest in-flight
    // item (after it lands), never an older Db item and never a copy the Db also keeps.
    let s = Arc::new(Storage::new(MemDb::with_latency(Duration::from_millis(100))).unwrap());
    let t = CancelToken::new();
    s.db().push(&item(100)).unwrap(); // an older item already in the Db
    for i in 0..3 {
        s.push(&t, item(i)).unwrap();
    }
    let flusher = {
        let (s, t) = (s.clone(), t.clone());
        std::thread::spawn(move || s.flush(&t))
    };
    while s.stats().in_flight_items == 0 {
        std::thread::yield_now();
    }
    assert_eq!(id_of(&s.pop(&t).unwrap()), 2);
    flusher.join().unwrap().unwrap();
    s.push(&t, item(3)).unwrap();
    assert_eq!(drain(&s), vec![3, 1, 0, 100]);
}

// ---- pop_batch ------------------------------------------------------------------------------

#[test]
fn pop_batch_takes_memory_newest_first_then_the_db_in_one_call_when_memory_is_empty() {
    let s = quiet(MemDb::new());
    let t = CancelToken::new();
    s.push_batch(&t, (1..=3).map(item)).unwrap();
    s.flush(&t).unwrap(); // 1, 2, 3 in the Db
    s.push_batch(&t, (4..=5).map(item)).unwrap(); // 4, 5 in memory
    let before = s.db().calls().pop_calls;
    assert_eq!(ids(&s.pop_batch(&t, 4).unwrap()), vec![5, 4]);
    assert_eq!(s.db().calls().pop_calls, before, "memory first, no Db call");
    assert_eq!(ids(&s.pop_batch(&t, 4).unwrap()), vec![3, 2, 1]);
    assert_eq!(
        s.db().calls().pop_calls - before,
        1,
        "one Db call for the rest"
    );
    let stats = s.stats();
    assert_eq!((stats.pops_from_memory, stats.pops_from_db), (2, 3));
}
