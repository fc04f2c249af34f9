//! Promise 6, Db failures lose nothing: a failed Db call leaves items buffered and the flusher
//! retries with backoff; `push` never returns `Ok` for an item it already knows it cannot keep
//! within the window: the caller is told the Db is the reason.
//!
//! Here: a Db failing half its calls, outages longer than the window, failing flushes, a
//! panicking Db, failed durable writes. Deeper: the history checker through outages
//! (`tests/reliability_history.rs`), Redis and PostgreSQL behind a proxy that loses replies
//! (`tests/backends/faults.rs`), and a server restart (`tests/backends.rs`).

use std::time::{Duration, Instant};

use lifostore::testing::{
    FaultyDb, INJECTED_FAILURE, INJECTED_PANIC, StampedDb, quiet_injected_panics,
};
use lifostore::{CancelToken, DbError, Error, MemDb, Storage, Unconfirmed};

use crate::common::{id_of, ids, item, sorted_ids};

/// Waits up to `limit` for `cond`, checking every few milliseconds (a test-side observer; the
/// library itself never polls).
fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    cond()
}

// ---- 6. Db failures lose nothing ----------------------------------------------------------

#[test]
fn a_db_failing_half_its_calls_loses_nothing() {
    let s = Storage::builder()
        .max_unflushed_age(Duration::from_millis(50))
        .max_batch(64)
        // A third of the calls fail; half the batch writes store their first half, then fail:
        // the storage must keep exactly the rest.
        .build(
            FaultyDb::new(MemDb::new(), 6)
                .fail_rate(0.3)
                .half_batch_rate(0.5),
        )
        .unwrap();
    let t = CancelToken::new();
    let mut failures = 0;
    for i in 0..2000 {
        // Promise 6: once the Db has failed for a window (50 ms here: a loaded CI machine can
        // get there), a push is refused and stores nothing. Write on this thread, then push the
        // same item again: the checks below would see it twice if the refused push had stored it.
        while let Err(e) = s.push(&t, item(i)) {
            assert!(matches!(e, Error::Db(_)), "{e}");
            failures += 1; // the refusal reports the Db's failure
            let _ = s.flush(&t); // may fail again: the loop pushes again either way
        }
    }
    while let Err(e) = s.flush(&t) {
        assert!(matches!(e, Error::Db(_)), "{e}");
        failures += 1;
    }
    assert!(failures > 0, "the flaky Db never failed");
    assert!(s.stats().db_failures > 0);
    let mut popped = Vec::new();
    loop {
        match s.try_pop() {
            Ok(Some(x)) => popped.push(id_of(&x)),
            Ok(None) => break,
            Err(Error::Db(_)) => continue, // a failed pop takes nothing; try again
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(popped, (0..2000).rev().collect::<Vec<_>>());
}

#[test]
fn push_is_refused_once_the_db_has_failed_for_a_window() {
    let window = Duration::from_millis(100);
    let s = Storage::builder()
        .max_unflushed_age(window)
        .close_timeout(Duration::from_secs(5))
        .build(FaultyDb::new(MemDb::new(), 1))
        .unwrap();
    s.db().set_down(true);
    let t = CancelToken::new();
    s.push(&t, item(1)).unwrap();
    std::thread::sleep(window + Duration::from_millis(50));
    match s.push(&t, item(2)) {
        Err(Error::Db(e)) => assert!(
            crate::common::error_chain(&e).contains(INJECTED_FAILURE),
            "{e}"
        ),
        other => panic!("expected a Db error, got {other:?}"),
    }
    s.db().set_down(false);
    s.close().unwrap();
    let left: Vec<u64> = s.db().inner().snapshot().iter().map(|x| id_of(x)).collect();
    assert_eq!(left, vec![1], "item 1 kept, item 2 never stored");
}

#[test]
fn an_outage_longer_than_the_window_refuses_pushes_then_recovers_losing_nothing() {
    let window = Duration::from_millis(100);
    let storage = Storage::builder()
        .max_unflushed_age(window)
        .close_timeout(Duration::from_secs(5))
        .build(StampedDb::new(FaultyDb::new(MemDb::new(), 1)))
        .unwrap();
    let faulty = storage.db().inner();
    let t = CancelToken::new();
    faulty.set_down(true);
    let outage_began = Instant::now();
    for i in 0..10 {
        storage.push(&t, item(i)).unwrap(); // the outage is younger than the window: accepted
    }
    // Until a write has failed nothing says the Db is down (a flusher run late fails later):
    // wait for that state, then for the window to pass.
    assert!(
        eventually(Duration::from_secs(10), || storage.stats().db_failures > 0),
        "no write ever failed"
    );
    std::thread::sleep((window + Duration::from_millis(30)).saturating_sub(outage_began.elapsed()));
    match storage.push(&t, item(99)) {
        Err(Error::Db(e)) => assert!(
            crate::common::error_chain(&e).contains(INJECTED_FAILURE),
            "{e}"
        ),
        other => panic!("a push during a long outage must be refused, got {other:?}"),
    }
    let stats = storage.stats();
    assert!(stats.db_failing_for.is_some(), "{stats:?}");
    assert!(stats.db_failures > 0, "{stats:?}");
    assert_eq!(stats.buffered_items, 10, "the backlog stays buffered");

    // Recovery: the flusher's next retry (backoff <= window / 8) writes the whole backlog.
    faulty.set_down(false);
    let recovered_at = Instant::now();
    // The stamps are taken once the wrapped write returned: wait for them, not the items.
    assert!(
        eventually(Duration::from_secs(2), || storage.db().arrivals().len()
            == 10),
        "backlog not written after recovery: {:?}",
        storage.stats()
    );
    let caught_up = storage
        .db()
        .arrivals()
        .iter()
        .map(|(_, at)| *at)
        .max()
        .unwrap();
    println!(
        "outage of {:?}: backlog of 10 written {:?} after recovery",
        recovered_at - outage_began,
        caught_up.saturating_duration_since(recovered_at)
    );
    assert!(storage.stats().db_failing_for.is_none());
    storage.push(&t, item(100)).unwrap(); // accepted again
    storage.close().unwrap();
    let mut expected: Vec<u64> = (0..10).collect();
    expected.push(100);
    assert_eq!(
        sorted_ids(faulty.inner()),
        expected,
        "refused item stored, or an item lost"
    );
}

#[test]
fn a_push_blocked_on_a_full_buffer_during_an_outage_is_refused_once_the_window_passes() {
    let window = Duration::from_millis(100);
    let db = FaultyDb::new(MemDb::new(), 2);
    db.set_down(true);
    let storage = Storage::builder()
        .max_unflushed_age(window)
        .max_buffered_items(4)
        .close_timeout(Duration::from_secs(5))
        .build(db)
        .unwrap();
    let t = CancelToken::new();
    let first_push = Instant::now();
    for i in 0..4 {
        storage.push(&t, item(i)).unwrap();
    }
    // Full, and the Db cannot take anything: this push blocks, then must be refused when the
    // oldest item outlives the window (not hang, not accept).
    let r = storage.push(&t, item(4));
    let waited = first_push.elapsed();
    assert!(matches!(r, Err(Error::Db(_))), "{r:?}");
    assert!(
        waited >= window && waited < window * 10,
        "refused after {waited:?}"
    );
    storage.db().set_down(false);
    storage.close().unwrap();
    assert_eq!(sorted_ids(storage.db().inner()), vec![0, 1, 2, 3]);
}

#[test]
fn a_failing_flush_keeps_its_items_and_a_later_one_writes_them_once() {
    let db = FaultyDb::new(MemDb::new(), 3);
    let storage = Storage::new(db).unwrap();
    let t = CancelToken::new();
    for i in 0..5 {
        storage.push(&t, item(i)).unwrap();
    }
    storage.db().set_down(true);
    assert!(matches!(storage.flush(&t), Err(Error::Db(_))));
    assert_eq!(storage.stats().buffered_items, 5);
    storage.db().set_down(false);
    storage.flush(&t).unwrap();
    assert_eq!(sorted_ids(storage.db().inner()), vec![0, 1, 2, 3, 4]);
    assert_eq!(storage.stats().buffered_items, 0);
    // Newest first, from the Db.
    assert_eq!(storage.pop(&t).unwrap(), item(4));
    storage.close().unwrap();
}

/// While a write is in flight the oldest held items are in the in-flight batch, not in the
/// buffer: the refusal looks at them too. So during a long outage whose failing calls take a
/// while (a timeout, here 60 ms), a held item that outlived the window is not hidden while a
/// retry is in flight, and every push is refused.
#[test]
fn an_outage_with_slow_failing_calls_still_refuses_pushes_while_a_retry_is_in_flight() {
    let window = Duration::from_millis(100);
    let db = FaultyDb::new(MemDb::new(), 1).latency_spikes(1.0, Duration::from_millis(60));
    db.set_down(true);
    let storage = Storage::builder()
        .max_unflushed_age(window)
        .close_timeout(Duration::from_secs(5))
        .build(db)
        .unwrap();
    let t = CancelToken::new();
    let start = Instant::now();
    storage.push(&t, item(0)).unwrap();
    // The first write starts at 0.75 window and fails 60 ms later; from then on the Db has
    // been failing and item 0 is older than the window: every push must be refused. Waits
    // for that state rather than for its usual time (a flusher run late fails later).
    assert!(
        eventually(Duration::from_secs(10), || storage.stats().db_failures > 0),
        "the first write never failed"
    );
    std::thread::sleep(window.saturating_sub(start.elapsed()));
    let (mut accepted, mut refused) = (Vec::new(), 0);
    for i in 1..=25 {
        let tok = t.with_timeout(Duration::from_millis(5));
        match storage.push(&tok, item(i)) {
            Ok(()) => accepted.push((i, start.elapsed(), storage.stats().in_flight_items)),
            Err(Error::Db(_)) => refused += 1,
            // A push descheduled past its 5 ms ends on its token, storing nothing: not an Ok.
            Err(Error::DeadlineExceeded) => {}
            Err(e) => panic!("{e}"),
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    println!("refused {refused}, accepted (id, at, in flight) {accepted:?}");
    storage.db().set_down(false);
    storage.close().unwrap();
    assert!(
        accepted.is_empty(),
        "{} pushes returned Ok during an outage longer than the window: {accepted:?}",
        accepted.len()
    );
}

#[test]
fn a_panicking_db_is_reported_on_the_call_and_loses_nothing() {
    quiet_injected_panics();
    // Call 1 is the first flush's write, call 3 the Db call of the first pop; both panic.
    let storage = Storage::new(
        FaultyDb::new(MemDb::new(), 1)
            .panic_on_call(1)
            .panic_on_call(3),
    )
    .unwrap();
    let t = CancelToken::new();
    storage.push(&t, item(1)).unwrap();
    storage.push(&t, item(2)).unwrap();
    match storage.flush(&t) {
        Err(Error::Db(DbError::Panicked(msg))) => assert!(msg.contains(INJECTED_PANIC), "{msg}"),
        other => panic!("expected Db(Panicked) from the flush, got {other:?}"),
    }
    assert_eq!(
        storage.stats().buffered_items,
        2,
        "a panicked write lost items"
    );
    storage.flush(&t).unwrap(); // call 2: the retry stores both
    assert_eq!(sorted_ids(storage.db().inner()), vec![1, 2]);
    match storage.pop(&t) {
        Err(Error::Db(DbError::Panicked(msg))) => assert!(msg.contains(INJECTED_PANIC), "{msg}"),
        other => panic!("expected Db(Panicked) from the pop, got {other:?}"),
    }
    assert_eq!(storage.db().inner().len(), 2, "a panicked pop took an item");
    assert_eq!(storage.pop(&t).unwrap(), item(2));
    storage.close().unwrap();
    assert_eq!(sorted_ids(storage.db().inner()), vec![1]);
}

#[test]
fn the_flusher_survives_a_panicking_db_and_nothing_is_lost_or_doubled() {
    quiet_injected_panics();
    // Long enough that a flusher the scheduler runs late is not taken for a Db that failed
    // for a whole window (which refuses pushes, promise 6).
    let window = Duration::from_millis(200);
    // The flusher's first write panics; it must retry on its own (no flush, no close).
    let storage = Storage::builder()
        .max_unflushed_age(window)
        .build(FaultyDb::new(MemDb::new(), 1).panic_on_call(1))
        .unwrap();
    let t = CancelToken::new();
    storage.push(&t, item(1)).unwrap();
    let until = Instant::now() + Duration::from_secs(5);
    while storage.db().inner().is_empty() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(storage.db().counts().panics, 1);
    assert_eq!(sorted_ids(storage.db().inner()), vec![1], "flusher died");
    assert!(storage.stats().db_failures >= 1);
    drop(storage);

    // Random panics on a third of all calls, flusher and callers alike.
    let storage = Storage::builder()
        .max_unflushed_age(window)
        .max_buffered_items(32)
        .close_timeout(Duration::from_secs(10))
        .build(FaultyDb::new(MemDb::new(), 3).panic_rate(0.3))
        .unwrap();
    let mut popped = Vec::new();
    let mut panicked_calls = 0;
    for i in 0..300 {
        storage.push(&t, item(i)).unwrap();
        if i % 3 == 0 {
            match storage.try_pop() {
                Ok(Some(x)) => popped.push(u64::from_le_bytes(x.try_into().unwrap())),
                Ok(None) => {}
                Err(Error::Db(DbError::Panicked(_))) => panicked_calls += 1,
                Err(e) => panic!("{e}"),
            }
        }
        if i % 50 == 0 {
            match storage.flush(&t) {
                Ok(()) => {}
                Err(Error::Db(DbError::Panicked(_))) => panicked_calls += 1,
                Err(e) => panic!("{e}"),
            }
        }
    }
    storage.close().unwrap();
    let counts = storage.db().counts();
    println!(
        "{} injected panics, {panicked_calls} reported to callers",
        counts.panics
    );
    assert!(counts.panics > 0);
    // FaultyDb panics before storing: nothing may be missing, nothing doubled.
    let mut all = sorted_ids(storage.db().inner());
    all.extend(popped);
    all.sort();
    assert_eq!(all, (0..300).collect::<Vec<_>>());
}

#[test]
fn pop_batch_from_memory_needs_no_db_and_a_db_failure_takes_nothing() {
    let db = FaultyDb::new(MemDb::new(), 1);
    let s = Storage::builder()
        .max_unflushed_age(Duration::from_secs(600))
        .build(db)
        .unwrap();
    let t = CancelToken::new();
    s.push_batch(&t, [item(1), item(2)]).unwrap();
    s.db().set_down(true);
    assert_eq!(ids(&s.try_pop_batch(10).unwrap()), vec![2, 1]);
    assert!(matches!(s.try_pop_batch(10), Err(Error::Db(_))));
    s.db().set_down(false);
}

#[test]
fn a_failed_write_makes_push_durable_say_the_item_is_kept_and_retried() {
    let s = Storage::builder()
        .max_unflushed_age(Duration::from_secs(600))
        .build(FaultyDb::new(MemDb::new(), 1))
        .unwrap();
    s.db().set_down(true);
    let err = s.push_durable(&CancelToken::new(), item(1)).unwrap_err();
    match &err {
        Error::NotYetDurable {
            why: Unconfirmed::DbFailed,
            source: Some(_),
        } => {}
        other => panic!("expected NotYetDurable(DbFailed): {other:?}"),
    }
    assert_eq!(s.len_in_memory(), 1);
    s.db().set_down(false);
    s.close().unwrap();
    assert_eq!(s.db().inner().snapshot(), vec![item(1)]);
}
