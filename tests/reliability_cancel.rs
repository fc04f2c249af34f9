//! Cancellation latency (promise 7): 1000 trials of an explicit cancel and 1000 of a deadline
//! expiry against a `pop` blocked on an empty storage; p50/p99 wake latency is printed. The
//! bound asserted is generous (p99 < 50 ms): the machine is shared and noisy, the printed
//! figures are what matter. A blocked `push` (full buffer) is measured the same way.
//!
//! Each trial hands a fresh token to a long-lived waiter thread and only ends the token once the
//! waiter is certainly blocked (its wake-up registration is on the token), so the latency is
//! that of waking a sleeping call, not of a call that saw an ended token on entry.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use lifostore::testing::FaultyDb;
use lifostore::{CancelToken, Error, MemDb, Storage};

mod common;
use common::blocked_within;

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

#[test]
fn cancel_and_deadline_wake_a_blocked_pop_promptly() {
    let storage = Storage::new(MemDb::new()).unwrap();
    let pop = |t: &CancelToken| storage.pop(t).map(|_| ());
    let (_, cancel_p99) = summary("pop, cancel", &mut measure(TRIALS, false, pop));
    let (_, deadline_p99) = summary("pop, deadline", &mut measure(TRIALS, true, pop));
    assert!(cancel_p99 < Duration::from_millis(50), "{cancel_p99:?}");
    assert!(deadline_p99 < Duration::from_millis(50), "{deadline_p99:?}");
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
    let (_, cancel_p99) = summary("push, cancel", &mut measure(200, false, push));
    let (_, deadline_p99) = summary("push, deadline", &mut measure(200, true, push));
    assert!(cancel_p99 < Duration::from_millis(50), "{cancel_p99:?}");
    assert!(deadline_p99 < Duration::from_millis(50), "{deadline_p99:?}");
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
