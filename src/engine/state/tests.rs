//! Unit tests of the state's transitions that cross parts.

use std::time::{Duration, Instant};

use super::*;
use crate::engine::lease_table::LeaseEnd;

fn cfg() -> Config {
    Config {
        max_unflushed_age: Duration::from_millis(100),
        max_items: 1000,
        max_bytes: 1 << 20,
        max_item_len: 1 << 10,
        max_batch: 4,
        shared_poll: Duration::from_millis(100),
        shared_recheck: Duration::from_secs(5),
        close_timeout: Duration::from_millis(100),
        max_dead_letters: 16,
    }
}

/// Writes the oldest 4 items as one batch that took `took` and landed at `at`.
fn write(state: &mut State, cfg: &Config, took: Duration, at: Instant) {
    let batch = state.begin_write(4);
    let written = Written {
        settled: 4,
        poisoned: Vec::new(),
        error: None,
        calls: 1,
    };
    let (outcome, _, whom) = state.land(batch, written, took, cfg, at);
    assert!(outcome.is_ok());
    assert_eq!(whom, Wakeups::EVERYONE, "a landing wakes everyone");
}

fn push(state: &mut State, cfg: &Config, byte: u8) -> Wakeups {
    state.push(cfg, vec![byte], false).1
}

/// A write that begins late while writes were overdue (a writer starved of CPU or of the
/// lock) cost the backlog its duration plus that gap: the model must see it, or the
/// capacity admits what such a writer cannot drain in time.
#[test]
fn the_gap_before_an_overdue_write_counts_as_write_cost() {
    let (c, t0) = (cfg(), Instant::now());
    let ms = Duration::from_millis;
    let mut state = State::new(&c);
    for i in 0..200u8 {
        let _ = push(&mut state, &c, i); // over half the slow-start capacity: pressure
    }
    write(&mut state, &c, ms(1), t0);
    // Still under pressure: the next write was due at t0 but began 10 ms later.
    write(&mut state, &c, ms(1), t0 + ms(11));
    assert_eq!(
        state.flow.predict(4),
        ms(11),
        "1 ms of writing + 10 ms of gap"
    );

    // Without pressure the flusher waits on purpose: no gap is counted.
    let mut calm = State::new(&c);
    for i in 0..8u8 {
        let _ = push(&mut calm, &c, i);
    }
    write(&mut calm, &c, ms(1), t0);
    write(&mut calm, &c, ms(1), t0 + ms(11));
    assert_eq!(calm.flow.predict(4), ms(1));
}

/// Each transition names whom it wakes: a push a popper (and the flusher, the first time, to
/// tick the idle clock), a pop a pusher, a batch pop every pusher, a close everyone.
#[test]
fn transitions_say_whom_they_wake() {
    let c = cfg();
    let mut state = State::new(&c);
    let first = push(&mut state, &c, 1);
    assert_eq!((first.poppers, first.flusher), (Notify::One, true));
    let second = push(&mut state, &c, 2);
    assert_eq!((second.poppers, second.flusher), (Notify::One, false));
    let (_, batch) = state.push_all(&c, vec![vec![3], vec![4]], false);
    assert_eq!(batch.poppers, Notify::All);
    let (item, popped) = state.take_newest().expect("an item");
    assert_eq!((item, popped.pushers), (vec![4], Notify::One));
    let (items, many) = state.take_newest_batch(2).expect("items");
    assert_eq!((items, many.pushers), (vec![vec![3], vec![2]], Notify::All));
    assert!(state.full().flusher, "full, nobody writing: write early");
    let closed = state.close();
    assert_eq!((closed.landed, closed.durable), (true, Durable::All));
}

/// A released memory lease goes back on top with its stamp, and a late ack counts as expired
/// and puts the item back; a lease that is gone cannot be acked.
#[test]
fn a_memory_lease_goes_back_on_top_or_is_gone() {
    let (c, now) = (cfg(), Instant::now());
    let mut state = State::new(&c);
    let _ = push(&mut state, &c, 1);
    let _ = push(&mut state, &c, 2);
    let (key, data, _) = state.lease_newest(&c, None, false, now).expect("a lease");
    assert_eq!(*data, vec![2]);
    drop(data);
    let _ = push(&mut state, &c, 3);
    let (end, whom) = state.end_held_lease(key, false, now);
    assert_eq!((end, whom.poppers), (LeaseEnd::Released, Notify::One));
    assert_eq!(
        state.take_newest().map(|(d, _)| d),
        Some(vec![2]),
        "back on top"
    );
    let (key, data, _) = state
        .lease_newest(&c, Some(Duration::ZERO), false, now)
        .expect("lease");
    drop(data);
    let (late, _) = state.end_held_lease(key, true, now);
    assert_eq!(late, LeaseEnd::Late);
    assert_eq!(state.end_held_lease(key, true, now).0, LeaseEnd::Gone);
    assert_eq!(state.stats(now).leases_expired, 1);
}
