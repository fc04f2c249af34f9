//! The real-time linearizability checker (`tests/common/linearizability.rs`) on histories
//! written by hand and generated: valid histories with heavy overlap pass (including the one
//! the old checker rejected), and each broken rule is rejected.

use std::time::{Duration, Instant};

mod common;
use common::Rng;
use common::linearizability::{AckOutcome, Call, Event, Model, check};

/// Builds events on a timeline in milliseconds from one origin.
struct H {
    t0: Instant,
    events: Vec<Event>,
}

impl H {
    fn new() -> Self {
        H {
            t0: Instant::now(),
            events: Vec::new(),
        }
    }

    fn at(&self, ms: f64) -> Instant {
        self.t0 + Duration::from_micros((ms * 1000.0) as u64)
    }

    /// A call on `thread` from `s` to `e` ms.
    fn call(mut self, thread: u64, s: f64, e: f64, call: Call) -> Self {
        let (start, end) = (self.at(s), self.at(e));
        self.events.push(Event {
            call,
            start,
            end,
            thread,
        });
        self
    }

    fn push(self, th: u64, s: f64, e: f64, ids: &[u64]) -> Self {
        self.call(th, s, e, Call::Push(ids.to_vec()))
    }

    fn pop(self, th: u64, s: f64, e: f64, ids: &[u64]) -> Self {
        self.call(th, s, e, Call::Pop(ids.to_vec()))
    }

    fn lease(self, th: u64, s: f64, e: f64, id: u64, lease: u64) -> Self {
        self.call(th, s, e, Call::Lease { id, lease })
    }

    fn ack(self, th: u64, s: f64, e: f64, lease: u64, outcome: AckOutcome) -> Self {
        self.call(th, s, e, Call::Ack { lease, outcome })
    }

    fn release(self, th: u64, s: f64, e: f64, lease: u64) -> Self {
        self.call(th, s, e, Call::Release { lease })
    }

    fn drain(self, s: f64, items: &[u64], leased: &[u64]) -> Self {
        let call = Call::Drain {
            items: items.to_vec(),
            leased: leased.to_vec(),
        };
        self.call(99, s, s + 0.5, call)
    }

    fn check(&self, ttl_ms: u64) -> Result<(), String> {
        check(&self.events, &Model::new(Duration::from_millis(ttl_ms))).map(|_| ())
    }
}

fn accepted(h: H, ttl_ms: u64) {
    if let Err(e) = h.check(ttl_ms) {
        panic!("a valid history was rejected: {e}");
    }
}

/// Rejected, with a message containing `why`.
fn rejected(h: H, ttl_ms: u64, why: &str) {
    match h.check(ttl_ms) {
        Ok(()) => panic!("an invalid history was accepted (expected: {why})"),
        Err(e) => assert!(
            e.contains(why),
            "rejected for another reason: {e}\n(expected: {why})"
        ),
    }
}

use AckOutcome::{Expired, Failed, Ok as Acked};

#[test]
fn sequential_lifo_passes() {
    let h = H::new()
        .push(0, 0.0, 1.0, &[1])
        .push(0, 2.0, 3.0, &[2, 3])
        .pop(0, 4.0, 5.0, &[3, 2])
        .pop(0, 6.0, 7.0, &[1])
        .call(0, 8.0, 9.0, Call::Empty)
        .drain(10.0, &[], &[]);
    accepted(h, 5);
}

#[test]
fn overlapping_calls_may_take_effect_in_either_order() {
    // Two pushes overlap: the drain may show them either way.
    for drained in [[1, 2], [2, 1]] {
        let h = H::new()
            .push(0, 0.0, 5.0, &[1])
            .push(1, 1.0, 4.0, &[2])
            .drain(10.0, &drained, &[]);
        accepted(h, 5);
    }
    // Two pops overlap both pushes' order: either pop may take either item.
    let h = H::new()
        .push(0, 0.0, 1.0, &[1])
        .push(0, 2.0, 3.0, &[2])
        .pop(1, 4.0, 9.0, &[1])
        .pop(2, 5.0, 8.0, &[2])
        .drain(10.0, &[], &[]);
    accepted(h, 5);
    // A pop overlapping a push may return the pushed item or the one below.
    for got in [2, 1] {
        let left = if got == 2 { 1 } else { 2 };
        let h = H::new()
            .push(0, 0.0, 1.0, &[1])
            .push(0, 2.0, 6.0, &[2])
            .pop(1, 3.0, 5.0, &[got])
            .drain(10.0, &[left], &[]);
        accepted(h, 5);
    }
    // An empty answer overlapping a push is fine.
    let h = H::new()
        .push(0, 0.0, 4.0, &[1])
        .call(1, 1.0, 2.0, Call::Empty)
        .drain(10.0, &[1], &[]);
    accepted(h, 5);
}

/// The history the old checker rejected ("popped twice"): a lease whose call
/// began before another thread's pop of the same item ended, and which expired in between
/// (the thread was descheduled inside `pop_lease` for longer than the ttl).
#[test]
fn a_lease_that_expired_inside_its_own_call_before_a_pop_passes() {
    let h = H::new()
        .push(0, 0.0, 1.0, &[7])
        // The lease took 7 at about 2 ms, returned only at 20 ms; the pop took 7 at 12 ms.
        .lease(1, 2.0, 20.0, 7, 1)
        .pop(2, 11.0, 13.0, &[7])
        .ack(1, 21.0, 22.0, 1, Expired)
        .drain(30.0, &[], &[]);
    accepted(h, 5);
    // The same order with the pop first by return time: the pop returned before the lease
    // call did, yet the lease took the item first.
    let h = H::new()
        .push(0, 0.0, 1.0, &[7])
        .lease(1, 2.0, 30.0, 7, 1)
        .pop(2, 10.0, 12.0, &[7])
        .release(1, 31.0, 32.0, 1)
        .drain(40.0, &[], &[]);
    accepted(h, 5);
}

#[test]
fn released_and_expired_items_come_back_on_top() {
    // Lease A, push B, release A: A is the next item a pop returns.
    let h = H::new()
        .push(0, 0.0, 1.0, &[0xA])
        .lease(0, 2.0, 3.0, 0xA, 1)
        .push(0, 4.0, 5.0, &[0xB])
        .release(0, 6.0, 7.0, 1)
        .pop(0, 8.0, 9.0, &[0xA])
        .pop(0, 10.0, 11.0, &[0xB])
        .drain(12.0, &[], &[]);
    accepted(h, 5);
    // The same with expiry: after the ttl A is back above B.
    let h = H::new()
        .push(0, 0.0, 1.0, &[0xA])
        .lease(0, 2.0, 3.0, 0xA, 1)
        .push(0, 4.0, 5.0, &[0xB])
        .pop(1, 20.0, 21.0, &[0xA, 0xB])
        .ack(0, 22.0, 23.0, 1, Expired)
        .drain(30.0, &[], &[]);
    accepted(h, 5);
    // Two leases expiring together may come back in either order, each on top.
    for order in [[1, 2], [2, 1]] {
        let h = H::new()
            .push(0, 0.0, 1.0, &[1, 2])
            .lease(0, 2.0, 3.0, 2, 10)
            .lease(0, 3.5, 4.0, 1, 11)
            .drain(30.0, &order, &[]);
        accepted(h, 5);
    }
    // A lease the Db still holds at the end (its release failed) is reported, not drained.
    let h = H::new()
        .push(0, 0.0, 1.0, &[1])
        .lease(0, 2.0, 3.0, 1, 10)
        .ack(0, 4.0, 5.0, 10, Failed)
        .drain(6.0, &[], &[1]);
    accepted(h, 1000);
}

#[test]
fn each_broken_rule_is_rejected() {
    rejected(H::new().pop(0, 0.0, 1.0, &[9]), 5, "never pushed with Ok");
    rejected(
        H::new()
            .call(0, 0.0, 1.0, Call::Refused(vec![1]))
            .drain(2.0, &[1], &[]),
        5,
        "push returned an error",
    );
    rejected(
        H::new()
            .push(0, 0.0, 1.0, &[1])
            .pop(0, 2.0, 3.0, &[1])
            .pop(1, 4.0, 5.0, &[1]),
        5,
        "popped twice",
    );
    rejected(
        H::new().push(0, 0.0, 1.0, &[1]).drain(2.0, &[], &[]),
        5,
        "lost",
    );
    rejected(
        H::new()
            .push(0, 0.0, 1.0, &[1])
            .pop(0, 2.0, 3.0, &[1])
            .drain(4.0, &[1], &[]),
        5,
        "still in the Db",
    );
    rejected(
        H::new().pop(1, 0.0, 1.0, &[1]).push(0, 2.0, 3.0, &[1]),
        5,
        "before its push began",
    );
    // LIFO: the newer item 2 was certainly there when the pop took 1.
    rejected(
        H::new()
            .push(0, 0.0, 1.0, &[1])
            .push(0, 2.0, 3.0, &[2])
            .pop(1, 4.0, 5.0, &[1])
            .drain(6.0, &[2], &[]),
        5,
        "not linearizable",
    );
    // A batch out of order.
    rejected(
        H::new()
            .push(0, 0.0, 1.0, &[1])
            .push(0, 2.0, 3.0, &[2])
            .pop(1, 4.0, 5.0, &[1, 2]),
        5,
        "not linearizable",
    );
    // Empty while an item was certainly there.
    rejected(
        H::new()
            .push(0, 0.0, 1.0, &[1])
            .call(1, 2.0, 3.0, Call::Empty)
            .drain(4.0, &[1], &[]),
        5,
        "not linearizable",
    );
    // The final drain out of push order.
    rejected(
        H::new()
            .push(0, 0.0, 1.0, &[1])
            .push(0, 2.0, 3.0, &[2])
            .drain(4.0, &[1, 2], &[]),
        5,
        "not linearizable",
    );
}

#[test]
fn each_broken_lease_rule_is_rejected() {
    // A released item that did not come back on top.
    rejected(
        H::new()
            .push(0, 0.0, 1.0, &[0xA])
            .lease(0, 2.0, 3.0, 0xA, 1)
            .push(0, 4.0, 5.0, &[0xB])
            .release(0, 6.0, 7.0, 1)
            .pop(0, 8.0, 9.0, &[0xB])
            .drain(10.0, &[0xA], &[]),
        1000,
        "not linearizable",
    );
    // An expired item that did not come back on top before a later pop.
    rejected(
        H::new()
            .push(0, 0.0, 1.0, &[0xA])
            .lease(0, 2.0, 3.0, 0xA, 1)
            .push(0, 4.0, 5.0, &[0xB])
            .ack(0, 20.0, 21.0, 1, Expired)
            .pop(0, 22.0, 23.0, &[0xB])
            .drain(24.0, &[0xA], &[]),
        5,
        "not linearizable",
    );
    // Delivered again while its lease was held (no expiry can be placed: ttl 1 s).
    rejected(
        H::new()
            .push(0, 0.0, 1.0, &[1])
            .lease(0, 2.0, 3.0, 1, 10)
            .pop(1, 4.0, 5.0, &[1])
            .ack(0, 6.0, 7.0, 10, Expired),
        1000,
        "not linearizable",
    );
    // An expiry before the ttl: the redelivery at 10 ms is too early for a 50 ms lease.
    rejected(
        H::new()
            .push(0, 0.0, 1.0, &[1])
            .lease(0, 2.0, 3.0, 1, 10)
            .lease(1, 10.0, 11.0, 1, 11)
            .ack(1, 12.0, 13.0, 11, Acked)
            .ack(0, 60.0, 61.0, 10, Expired),
        50,
        "not linearizable",
    );
    // An ack Ok after the item was delivered again (so after its lease expired).
    rejected(
        H::new()
            .push(0, 0.0, 1.0, &[1])
            .lease(0, 2.0, 3.0, 1, 10)
            .lease(1, 20.0, 21.0, 1, 11)
            .ack(1, 22.0, 23.0, 11, Acked)
            .ack(0, 30.0, 31.0, 10, Acked),
        5,
        "popped twice",
    );
    rejected(
        H::new()
            .push(0, 0.0, 1.0, &[1])
            .lease(0, 2.0, 3.0, 1, 10)
            .lease(1, 20.0, 21.0, 1, 11)
            .release(1, 22.0, 23.0, 11)
            .ack(0, 30.0, 31.0, 10, Acked)
            .drain(40.0, &[1], &[]),
        5,
        "still in the Db",
    );
    // An acked item back in the Db; an ack Ok then a pop of the same item.
    rejected(
        H::new()
            .push(0, 0.0, 1.0, &[1])
            .lease(0, 2.0, 3.0, 1, 10)
            .ack(0, 4.0, 5.0, 10, Acked)
            .drain(6.0, &[1], &[]),
        5,
        "still in the Db",
    );
    // A release that put the item back twice: popped twice.
    rejected(
        H::new()
            .push(0, 0.0, 1.0, &[1])
            .lease(0, 2.0, 3.0, 1, 10)
            .release(0, 4.0, 5.0, 10)
            .pop(0, 6.0, 7.0, &[1])
            .pop(0, 8.0, 9.0, &[1]),
        1000,
        "popped twice",
    );
    // An expired lease whose item never came back: lost.
    rejected(
        H::new()
            .push(0, 0.0, 1.0, &[1])
            .lease(0, 2.0, 3.0, 1, 10)
            .ack(0, 20.0, 21.0, 10, Expired)
            .drain(30.0, &[], &[]),
        5,
        "lost",
    );
    // An ack that says expired while no expiry could have happened yet (ttl 1 s).
    rejected(
        H::new()
            .push(0, 0.0, 1.0, &[1])
            .lease(0, 2.0, 3.0, 1, 10)
            .ack(0, 4.0, 5.0, 10, Expired)
            .drain(6.0, &[1], &[]),
        1000,
        "not linearizable",
    );
    // A lease still held at the end that the Db does not report, or one it reports that
    // was acked.
    rejected(
        H::new()
            .push(0, 0.0, 1.0, &[1])
            .lease(0, 2.0, 3.0, 1, 10)
            .ack(0, 4.0, 5.0, 10, Failed)
            .drain(6.0, &[], &[]),
        1000,
        "lost",
    );
    rejected(
        H::new()
            .push(0, 0.0, 1.0, &[1, 2])
            .lease(0, 2.0, 3.0, 2, 10)
            .ack(0, 4.0, 5.0, 10, Failed)
            .drain(6.0, &[2], &[1]),
        1000,
        "not linearizable",
    );
}

#[test]
fn a_search_over_its_budget_rejects_as_undecided() {
    // Valid, but needs backtracking: the search gets a budget of one step.
    let h = H::new()
        .push(0, 0.0, 5.0, &[1])
        .push(1, 1.0, 4.0, &[2])
        .pop(0, 6.0, 7.0, &[1])
        .pop(0, 8.0, 9.0, &[2]);
    let mut model = Model::new(Duration::from_millis(5));
    model.max_steps = 1;
    let verdict = check(&h.events, &model);
    assert!(
        matches!(&verdict, Err(e) if e.contains("undecided")),
        "{verdict:?}"
    );
}

// ---- generated valid histories ---------------------------------------------------------

/// A random sequential execution of the model with leases, turned into a concurrent-looking
/// history: every operation gets an interval around its linearization point, as wide as the
/// calls of the other threads allow, so calls overlap heavily. The checker must accept it.
fn generated(seed: u64, threads: u64, ops: usize, ttl: u64) -> Vec<Event> {
    let mut rng = Rng(seed | 1);
    let mut stack: Vec<u64> = Vec::new();
    // Held leases: (lease, item, thread, point); leases expire only `ttl` after their point.
    let mut held: Vec<(u64, u64, u64, u64)> = Vec::new();
    let mut expired: Vec<(u64, u64)> = Vec::new(); // (lease, thread) waiting for a late ack
    let mut next_id = 1u64;
    // (thread, point, call), points strictly increasing, in microseconds.
    let mut seq: Vec<(u64, u64, Call)> = Vec::new();
    let mut point = 0u64;
    // A lease whose call ended more than `ttl` before a pop began is back for that pop: a
    // lease expires before any step more than `ttl` after its point (its call ends at or
    // after its point, a pop begins at or before its own).
    let bound = ttl * 1000;
    for _ in 0..ops {
        point += 1 + rng.next() % 40;
        let th = rng.next() % threads;
        while let Some(k) = held.iter().position(|h| h.3 + bound < point) {
            let (lease, id, th, _) = held.remove(k);
            stack.push(id);
            expired.push((lease, th));
        }
        match rng.next() % 10 {
            0..=3 => {
                let n = 1 + rng.next() % 3;
                let ids: Vec<u64> = (next_id..next_id + n).collect();
                next_id += n;
                stack.extend(&ids);
                seq.push((th, point, Call::Push(ids)));
            }
            4 | 5 => {
                if stack.is_empty() {
                    seq.push((th, point, Call::Empty));
                } else {
                    let k = 1 + (rng.next() % 3).min(stack.len() as u64 - 1) as usize;
                    let got: Vec<u64> = (0..k).map(|_| stack.pop().expect("item")).collect();
                    seq.push((th, point, Call::Pop(got)));
                }
            }
            6 if !stack.is_empty() => {
                let id = stack.pop().expect("item");
                let lease = next_id;
                next_id += 1;
                held.push((lease, id, th, point));
                seq.push((th, point, Call::Lease { id, lease }));
            }
            7 if !held.is_empty() => {
                let (lease, id, th, _) = held.remove((rng.next() % held.len() as u64) as usize);
                if rng.next().is_multiple_of(2) {
                    stack.push(id);
                    seq.push((th, point, Call::Release { lease }));
                } else {
                    let outcome = Acked;
                    seq.push((th, point, Call::Ack { lease, outcome }));
                }
            }
            8 => {
                // An expiry (no call), then maybe its late ack.
                let due: Vec<usize> = (0..held.len())
                    .filter(|&k| held[k].3 + ttl * 1000 <= point)
                    .collect();
                if let Some(&k) = due.first() {
                    let (lease, id, th, _) = held.remove(k);
                    stack.push(id);
                    expired.push((lease, th));
                }
            }
            _ => {
                if let Some((lease, th)) = expired.pop() {
                    seq.push((
                        th,
                        point,
                        Call::Ack {
                            lease,
                            outcome: Expired,
                        },
                    ));
                }
            }
        }
    }
    // Held leases end: acked, or expired before the drain.
    for (lease, id, th, at) in held.drain(..) {
        point += 1 + rng.next() % 40;
        if at + bound < point + 1000 {
            stack.push(id);
        } else {
            let outcome = Acked;
            seq.push((th, point, Call::Ack { lease, outcome }));
        }
    }
    let items: Vec<u64> = stack.iter().rev().copied().collect();
    point += 1000;
    let leased = Vec::new();
    seq.push((threads, point, Call::Drain { items, leased }));
    widen(seq, &mut rng)
}

/// Gives each call an interval around its point: up to 300 us either side, but never
/// overlapping the neighbouring calls of its own thread.
fn widen(seq: Vec<(u64, u64, Call)>, rng: &mut Rng) -> Vec<Event> {
    let t0 = Instant::now();
    let us = |x: u64| t0 + Duration::from_micros(x);
    let mut last_end: std::collections::HashMap<u64, u64> = Default::default();
    let mut next_point: Vec<u64> = vec![u64::MAX; seq.len()];
    let mut later: std::collections::HashMap<u64, u64> = Default::default();
    for (k, (th, p, _)) in seq.iter().enumerate().rev() {
        next_point[k] = later.get(th).copied().unwrap_or(u64::MAX);
        later.insert(*th, *p);
    }
    let mut out = Vec::new();
    for (k, (th, p, call)) in seq.into_iter().enumerate() {
        let floor = last_end.get(&th).map_or(0, |e| e + 1);
        let start = p.saturating_sub(rng.next() % 300).max(floor).min(p);
        let room = next_point[k].saturating_sub(p + 2);
        let end = p + (rng.next() % 300).min(room / 2);
        last_end.insert(th, end);
        out.push(Event {
            call,
            start: us(start),
            end: us(end),
            thread: th,
        });
    }
    out
}

#[test]
fn generated_valid_histories_with_heavy_overlap_pass_quickly() {
    let (mut ops, mut steps) = (0, 0);
    for seed in 1..=60u64 {
        let threads = 2 + seed % 7;
        let ttl = [1, 5, 1000][(seed % 3) as usize];
        let events = generated(seed, threads, 800, ttl);
        let model = Model::new(Duration::from_millis(ttl));
        match check(&events, &model) {
            Ok(r) => {
                ops += r.ops;
                steps += r.steps;
            }
            Err(e) => panic!("seed {seed}: a valid generated history was rejected: {e}"),
        }
    }
    println!("{ops} operations, {steps} search steps");
    assert!(
        steps < ops as u64 * 10,
        "the search needed {steps} steps for {ops} operations"
    );
}
