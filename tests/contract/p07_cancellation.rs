//! Promise 7, cancellation: every blocking call takes a token; an ended token makes the call
//! return at once with its reason and no side effect; a blocked call wakes promptly when its
//! token is cancelled or its deadline passes.
//!
//! Here: ended tokens on every call, wake-up latency of blocked pops and pushes (p50/p99 over
//! 1000 trials), parent tokens, batch and durable forms, iterators ending with their reason.
//! Deeper: `CancelToken` itself (`tests/token.rs`) and the loom models
//! `blocked_pop_wakes_on_cancel`, `cancel_racing_a_deadline_keeps_one_reason`,
//! `close_wakes_a_blocked_pop`.

use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use lifostore::testing::FaultyDb;
use lifostore::{CancelReason, CancelToken, Error, MemDb, Storage, Unconfirmed};

use crate::common::lateness::Lateness;
use crate::common::{
    blocked_within, id_of, ids, item, quiet, wait_until_blocked, wait_until_blocked_n, within,
    write_in_flight,
};

const TRIALS: usize = 1000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn summary(name: &str, lat: &mut [Duration]) -> (Duration, Duration) {
    lat.sort();
    let (p50, p99) = (percentile(lat, 0.5), percentile(lat, 0.99));
    println!(
        "{name}: {} trials, wake latency p50 {p50:?} p99 {p99:?} max {:?}",
        lat.len(),
        lat[lat.len() - 1]
    );
    (p50, p99)
}

/// Both p99 wake latencies under 50 ms, plus the scheduler's worst lateness meanwhile (a
/// waiter that the scheduler runs late wakes late, whatever the engine does; a lost wake-up
/// or a polling interval still shows: it adds to every trial, not only to unlucky ones).
fn prompt(cancel_p99: Duration, deadline_p99: Duration, late: Duration) {
    let bound = Duration::from_millis(50) + late;
    println!("bound: 50 ms + scheduler lateness {late:?}");
    assert!(cancel_p99 < bound, "cancel p99 {cancel_p99:?} >= {bound:?}");
    assert!(
        deadline_p99 < bound,
        "deadline p99 {deadline_p99:?} >= {bound:?}"
    );
}

/// Runs `trials` of: hand a token to a waiter blocked in `call`, end it, measure the wake-up.
/// `by_deadline` trials use a token with a deadline `lead` from now and measure from it;
/// the others cancel (the token itself or, every other trial, its parent) once the waiter is
/// blocked and measure from the cancel.
fn measure<F>(trials: usize, by_deadline: bool, call: F) -> Vec<Duration>
where
    F: Fn(&CancelToken) -> Result<(), Error> + Send + Sync,
{
    let lead = Duration::from_millis(2);
    let (to_waiter, tokens) = mpsc::channel::<CancelToken>();
    let (to_main, results) = mpsc::channel::<(Result<(), Error>, Instant)>();
    let mut lat = Vec::with_capacity(trials);
    std::thread::scope(|s| {
        let call = &call;
        s.spawn(move || {
            for token in tokens {
                let r = call(&token);
                to_main.send((r, Instant::now())).unwrap();
            }
        });
        let mut skipped = 0;
        for trial in 0..trials {
            let parent = CancelToken::new();
            if by_deadline {
                let token = parent.with_timeout(lead);
                to_waiter.send(token.clone()).unwrap();
                let (r, woke) = results.recv().unwrap();
                assert!(matches!(r, Err(Error::DeadlineExceeded)), "{r:?}");
                lat.push(woke.saturating_duration_since(token.deadline().unwrap()));
            } else {
                let token = parent.child();
                to_waiter.send(token.clone()).unwrap();
                if !blocked_within(&token, Duration::from_secs(5)) {
                    skipped += 1;
                }
                let at = Instant::now();
                if trial % 2 == 0 {
                    token.cancel();
                } else {
                    parent.cancel();
                }
                let (r, woke) = results.recv().unwrap();
                assert!(matches!(r, Err(Error::Cancelled)), "{r:?}");
                lat.push(woke.saturating_duration_since(at));
                assert_eq!(
                    lifostore::testing::registrations(&token),
                    0,
                    "registration leaked"
                );
            }
        }
        assert_eq!(skipped, 0, "the waiter never blocked");
        drop(to_waiter);
    });
    lat
}

// ---- 7. Cancellation ----------------------------------------------------------------------

#[test]
fn ended_tokens_have_no_side_effect() {
    let s = Storage::new(MemDb::new()).unwrap();
    let live = CancelToken::new();
    s.push(&live, item(1)).unwrap();
    let cancelled = CancelToken::new();
    cancelled.cancel();
    let expired = CancelToken::new().with_deadline(Instant::now());
    assert!(matches!(s.push(&cancelled, item(2)), Err(Error::Cancelled)));
    assert!(matches!(
        s.push(&expired, item(3)),
        Err(Error::DeadlineExceeded)
    ));
    assert!(matches!(s.pop(&cancelled), Err(Error::Cancelled)));
    assert!(matches!(s.pop(&expired), Err(Error::DeadlineExceeded)));
    assert!(matches!(s.flush(&cancelled), Err(Error::Cancelled)));
    assert_eq!(s.stats().pushes, 1);
    assert_eq!(id_of(&s.pop(&live).unwrap()), 1);
    assert_eq!(s.try_pop().unwrap(), None);
}

#[test]
fn blocked_pop_wakes_promptly_on_cancel_and_on_deadline() {
    let s = Arc::new(Storage::new(MemDb::new()).unwrap());
    let t = CancelToken::new();
    let waiter = {
        let (s, t) = (s.clone(), t.clone());
        std::thread::spawn(move || {
            let r = s.pop(&t);
            (r, Instant::now())
        })
    };
    wait_until_blocked(&t);
    let cancelled_at = Instant::now();
    t.cancel();
    let (r, woke_at) = waiter.join().unwrap();
    assert!(matches!(r, Err(Error::Cancelled)), "{r:?}");
    let latency = woke_at.duration_since(cancelled_at);
    assert!(
        latency < Duration::from_millis(250),
        "woke after {latency:?}"
    );

    let d = CancelToken::new().with_timeout(Duration::from_millis(30));
    let started = Instant::now();
    assert!(matches!(s.pop(&d), Err(Error::DeadlineExceeded)));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(29) && waited < Duration::from_millis(300),
        "{waited:?}"
    );
}

#[test]
fn parent_cancel_wakes_a_pop_blocked_on_a_child_token() {
    let s = Arc::new(Storage::new(MemDb::new()).unwrap());
    let root = CancelToken::new();
    let child = root.child().with_timeout(Duration::from_secs(60));
    let waiter = {
        let s = s.clone();
        std::thread::spawn(move || s.pop(&child))
    };
    wait_until_blocked(&root); // a blocked call registers on its token's ancestors too
    root.cancel();
    assert!(matches!(waiter.join().unwrap(), Err(Error::Cancelled)));
    assert_eq!(
        lifostore::testing::registrations(&root),
        0,
        "the blocked pop left a registration behind"
    );
}

#[test]
fn blocked_pop_takes_a_push_and_close_wakes_the_rest() {
    let s = Arc::new(Storage::new(MemDb::new()).unwrap());
    let t = CancelToken::new();
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let (s, t) = (s.clone(), t.clone());
            std::thread::spawn(move || s.pop(&t))
        })
        .collect();
    wait_until_blocked_n(&t, 3);
    s.push(&t, item(7)).unwrap();
    // One of them takes it (a state to reach, not an event anyone signals).
    while s.stats().pops == 0 {
        std::thread::yield_now();
    }
    s.close().unwrap();
    let results: Vec<_> = waiters.into_iter().map(|w| w.join().unwrap()).collect();
    let got: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(got, vec![&item(7)]);
    assert_eq!(
        results
            .iter()
            .filter(|r| matches!(r, Err(Error::Closed)))
            .count(),
        2
    );
}

#[test]
fn cancel_and_deadline_wake_a_blocked_pop_promptly() {
    let storage = Storage::new(MemDb::new()).unwrap();
    let pop = |t: &CancelToken| storage.pop(t).map(|_| ());
    let lateness = Lateness::start(Duration::from_millis(50));
    let (_, cancel_p99) = summary("pop, cancel", &mut measure(TRIALS, false, pop));
    let (_, deadline_p99) = summary("pop, deadline", &mut measure(TRIALS, true, pop));
    prompt(cancel_p99, deadline_p99, lateness.stop());
    // Nothing was taken or stored by the ended calls.
    let stats = storage.stats();
    assert_eq!((stats.pops, stats.pushes), (0, 0), "{stats:?}");
}

#[test]
fn cancel_and_deadline_wake_a_blocked_push_promptly() {
    // Full buffer over a Db that is down: every push blocks.
    let storage = Storage::builder()
        .max_buffered_items(1)
        .close_timeout(Duration::from_secs(5))
        .build(FaultyDb::new(MemDb::new(), 1))
        .unwrap();
    storage.db().set_down(true);
    storage.push(&CancelToken::new(), vec![0]).unwrap();
    let push = |t: &CancelToken| storage.push(t, vec![1]);
    let lateness = Lateness::start(Duration::from_millis(50));
    let (_, cancel_p99) = summary("push, cancel", &mut measure(200, false, push));
    let (_, deadline_p99) = summary("push, deadline", &mut measure(200, true, push));
    prompt(cancel_p99, deadline_p99, lateness.stop());
    assert_eq!(storage.stats().pushes, 1, "an ended push stored its item");
    storage.db().set_down(false);
    storage.close().unwrap();
    assert_eq!(storage.db().inner().snapshot(), vec![vec![0]]);
}

#[test]
fn a_cancelled_pop_leaves_the_next_push_for_the_next_pop() {
    // Wake-ups are not lost to cancelled waiters: a push after many cancelled pops still wakes
    // the live popper that is blocked alongside them.
    let storage = Storage::new(MemDb::new()).unwrap();
    let live = CancelToken::new().with_timeout(Duration::from_secs(10));
    let doomed: Vec<CancelToken> = (0..8).map(|_| CancelToken::new()).collect();
    std::thread::scope(|s| {
        let popper = s.spawn(|| storage.pop(&live));
        let waiters: Vec<_> = doomed.iter().map(|t| s.spawn(|| storage.pop(t))).collect();
        for t in &doomed {
            assert!(blocked_within(t, Duration::from_secs(5)));
        }
        assert!(blocked_within(&live, Duration::from_secs(5)));
        for t in &doomed {
            t.cancel();
        }
        storage.push(&CancelToken::new(), b"x".to_vec()).unwrap();
        for w in waiters {
            assert!(matches!(w.join().unwrap(), Err(Error::Cancelled)));
        }
        let started = Instant::now();
        assert_eq!(popper.join().unwrap().unwrap(), b"x");
        assert!(started.elapsed() < Duration::from_secs(5));
    });
}

#[test]
fn ended_tokens_return_their_reason_with_no_side_effect() {
    let storage = Storage::new(MemDb::new()).unwrap();
    let live = CancelToken::new();
    let cancelled = CancelToken::new();
    cancelled.cancel();
    let parent = CancelToken::new();
    let child_of_cancelled = parent.child().with_timeout(Duration::from_secs(60));
    parent.cancel();
    let expired = CancelToken::new().with_deadline(Instant::now() - Duration::from_millis(1));
    let zero = CancelToken::new().with_timeout(Duration::ZERO);
    // A token whose deadline passed and that was cancelled afterwards keeps the first reason.
    let expired_then_cancelled = CancelToken::new().with_timeout(Duration::from_millis(1));
    std::thread::sleep(Duration::from_millis(5));
    expired_then_cancelled.cancel();
    let ended = [
        (&cancelled, CancelReason::Cancelled),
        (&child_of_cancelled, CancelReason::Cancelled),
        (&expired, CancelReason::DeadlineExceeded),
        (&zero, CancelReason::DeadlineExceeded),
        (&expired_then_cancelled, CancelReason::DeadlineExceeded),
    ];
    storage.push(&live, item(1)).unwrap();
    for (token, reason) in ended {
        assert_eq!(token.reason(), Some(reason));
        let want = |r: &Error| match reason {
            CancelReason::Cancelled => matches!(r, Error::Cancelled),
            CancelReason::DeadlineExceeded => matches!(r, Error::DeadlineExceeded),
        };
        let e = storage.push(token, item(2)).unwrap_err();
        assert!(want(&e), "push: {e:?}");
        let e = storage.pop(token).unwrap_err();
        assert!(want(&e), "pop: {e:?}");
        let e = storage.flush(token).unwrap_err();
        assert!(want(&e), "flush: {e:?}");
    }
    let stats = storage.stats();
    assert_eq!(
        (stats.pushes, stats.pops, stats.items_flushed),
        (1, 0, 0),
        "an ended call had a side effect: {stats:?}"
    );
    assert!(storage.db().is_empty(), "an ended flush wrote");
    assert_eq!(
        storage.pop(&live).unwrap(),
        item(1),
        "an ended pop took the item"
    );
    // An ended pop also takes nothing from the Db.
    storage.push(&live, item(3)).unwrap();
    storage.flush(&live).unwrap();
    assert!(matches!(storage.pop(&cancelled), Err(Error::Cancelled)));
    assert_eq!(storage.db().len(), 1);
    assert_eq!(storage.db().calls().pop_calls, 0);
    storage.close().unwrap();
}

#[test]
fn pop_batch_blocks_for_a_push_and_wakes_on_cancel() {
    let s = Arc::new(quiet(MemDb::new()));
    let t = CancelToken::new();
    let popper = {
        let (s, t) = (s.clone(), t.clone());
        std::thread::spawn(move || s.pop_batch(&t, 10))
    };
    wait_until_blocked(&t);
    s.push_batch(&t, [item(1), item(2)]).unwrap();
    let got = popper.join().unwrap().unwrap();
    assert!(
        !got.is_empty() && got[0] == item(2),
        "newest first: {:?}",
        ids(&got)
    );
    let rest = s.try_pop_batch(10).unwrap();
    assert_eq!(got.len() + rest.len(), 2);

    let child = t.child();
    let popper = {
        let (s, c) = (s.clone(), child.clone());
        std::thread::spawn(move || s.pop_batch(&c, 10))
    };
    wait_until_blocked(&child);
    child.cancel();
    assert!(matches!(popper.join().unwrap(), Err(Error::Cancelled)));
    assert!(s.try_pop_batch(10).unwrap().is_empty());
}

#[test]
fn an_ended_token_before_hand_off_stores_nothing() {
    let s = quiet(MemDb::new());
    let t = CancelToken::new();
    t.cancel();
    assert!(matches!(s.push_durable(&t, item(1)), Err(Error::Cancelled)));
    assert_eq!(s.len().unwrap(), Some(0));
}

#[test]
fn a_durable_push_that_stops_waiting_after_hand_off_says_the_item_is_kept() {
    let s = Arc::new(quiet(MemDb::with_latency(Duration::from_millis(300))));
    // Another write is in flight, so the durable push waits for it (and does not write itself).
    let flush = write_in_flight(&s);
    let t = CancelToken::new().with_timeout(Duration::from_millis(50));
    let err = s.push_durable(&t, item(1)).unwrap_err();
    flush.join().unwrap().unwrap();
    assert!(
        matches!(
            err,
            Error::NotYetDurable {
                why: Unconfirmed::DeadlineExceeded,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("kept"), "{err}");
    s.close().unwrap();
    assert_eq!(
        s.db().snapshot(),
        vec![item(0), item(1)],
        "the accepted item was kept"
    );
}

// ---- iterators ------------------------------------------------------------------------------

#[test]
fn iter_yields_newest_first_then_the_reason_once_then_ends() {
    let s = quiet(MemDb::new());
    let t = CancelToken::new();
    s.push_batch(&t, (1..=3).map(item)).unwrap();
    let quick = t.with_timeout(Duration::from_millis(30));
    let mut it = s.iter(&quick);
    let got: Vec<u64> = it.by_ref().take(3).map(|x| id_of(&x.unwrap())).collect();
    assert_eq!(got, vec![3, 2, 1]);
    assert!(matches!(it.next(), Some(Err(Error::DeadlineExceeded))));
    assert!(it.next().is_none());
    assert!(it.next().is_none());
}

#[test]
fn iter_ends_with_closed_when_the_storage_closes() {
    let s = Arc::new(quiet(MemDb::new()));
    let t = CancelToken::new();
    s.push(&t, item(1)).unwrap();
    let reader = {
        let (s, t) = (s.clone(), t.clone());
        std::thread::spawn(move || s.iter(&t).collect::<Vec<_>>())
    };
    while s.len_in_memory() > 0 {
        std::thread::sleep(Duration::from_micros(100)); // the reader takes item 1
    }
    wait_until_blocked(&t); // then blocks for the next
    s.close().unwrap();
    let seen = within(Duration::from_secs(5), move || reader.join().unwrap());
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].as_deref().unwrap(), item(1));
    assert!(matches!(seen[1], Err(Error::Closed)));
}
