//! History checker (promises 1 and 2): randomized runs with 2-8 threads mix push and
//! push_batch, pop and pop_batch (with tokens that get cancelled or have short deadlines),
//! try_pop and try_pop_batch, pop_lease and try_pop_lease (then ack, release, drop, or an ack
//! after the lease expired), and flush; every operation is logged with its start and end
//! `Instant` and its result. The checker then verifies:
//!
//! * every popped or leased item was pushed with `Ok`; an item is removed (popped, or its
//!   lease acked with `Ok`) at most once, and delivered again (popped or leased) only after a
//!   lease on it was released (never before that release began) or expired;
//! * nothing was lost: after `close`, removed + left in the Db = pushed with `Ok`, and no item
//!   whose push failed is in the Db;
//! * LIFO wherever operations did not overlap in time (see [`check`]), and within each batch a
//!   pop returned;
//! * a `try_pop` never answers "empty" while an item was certainly in the storage.
//!
//! Runs over MemDb, FaultyDb (failures, half batches, spikes, panics) and FileDb, with small
//! windows (20-50 ms) so that items really move through the Db mid-run. The seed is printed in
//! every failure message; `LIFOSTORE_SEED=<n>` replays one.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lifostore::testing::{FaultyDb, quiet_injected_panics};
use lifostore::{CancelToken, Db, Error, FileDb, MemDb, Storage};

mod common;
use common::{Rng, TempDir, id_of};

#[derive(Debug, Clone)]
enum Op {
    /// A push (one id) or push_batch (several, oldest first). `ok`: it returned `Ok`;
    /// `refused`: it returned `Error::Db` (an outage).
    Push {
        ids: Vec<u64>,
        ok: bool,
        refused: bool,
    },
    /// A pop or pop_batch: `got`: the items returned, newest first; `empty`: a `try_pop` or
    /// `try_pop_batch` that returned nothing.
    Pop {
        got: Vec<u64>,
        empty: bool,
    },
    /// A pop_lease or try_pop_lease that leased `id` (the event's end is when the lease came
    /// back, `taken`), then ended it as `outcome` says, starting at `settled`.
    Lease {
        id: u64,
        outcome: Outcome,
        taken: Instant,
        settled: Instant,
    },
    Flush,
}

/// How a lease ended.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    /// `ack` returned `Ok`: the item is gone for good.
    Acked,
    /// `release` or a drop: the item is back.
    Released,
    /// `ack` failed (the lease had expired, or the Db's ack failed): the item is back, or
    /// comes back at the deadline.
    Expired,
}

#[derive(Debug, Clone)]
struct Event {
    op: Op,
    start: Instant,
    end: Instant,
}

/// Runs `threads` workers doing `ops` random operations each; returns the log.
/// `push_pct`: the percentage of pushes; the rest is split 3:2:1 between pops (one in three a
/// lease), try_pops (one in three a lease), flush.
fn run<D: Db + 'static>(
    storage: &Storage<D>,
    threads: u64,
    ops: u64,
    seed: u64,
    push_pct: u64,
) -> Vec<Event> {
    let log = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for t in 0..threads {
            let log = &log;
            s.spawn(move || {
                let mut rng = Rng((seed ^ (t + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1);
                let root = CancelToken::new();
                let mut mine = Vec::new();
                for n in 0..ops {
                    // Tokens that end before or while the call runs, from any of these sources.
                    let token = match rng.next() % 8 {
                        0 => {
                            let c = root.child();
                            c.cancel();
                            c
                        }
                        1 => root.with_timeout(Duration::from_micros(rng.next() % 500)),
                        2 => root.with_timeout(Duration::from_millis(rng.next() % 5)),
                        _ => root.clone(),
                    };
                    let start = Instant::now();
                    let roll = rng.next() % 100;
                    let rest = 100 - push_pct;
                    let kind = if roll < push_pct {
                        0
                    } else if roll < push_pct + rest / 2 {
                        1
                    } else if roll < push_pct + rest * 5 / 6 {
                        2
                    } else {
                        3
                    };
                    let op = match kind {
                        0 => push_op(storage, &token, &mut rng, (t << 32) | (n << 3), seed),
                        1 | 2 if rng.next().is_multiple_of(3) => {
                            let token = token.with_timeout(Duration::from_millis(rng.next() % 5));
                            lease_op(storage, &token, kind == 1, &mut rng, seed)
                        }
                        1 => {
                            // Pops never wait forever: the plain root token gets a deadline too.
                            let token = token.with_timeout(Duration::from_millis(rng.next() % 5));
                            pop_op(storage, &token, &mut rng, seed)
                        }
                        2 => try_pop_op(storage, &mut rng, seed),
                        _ => {
                            match storage.flush(&token) {
                                Ok(()) | Err(Error::Db(_)) => {} // a failed write stays buffered
                                Err(Error::Cancelled | Error::DeadlineExceeded) => {}
                                Err(e) => panic!("seed {seed}: flush: {e}"),
                            }
                            Op::Flush
                        }
                    };
                    let end = match &op {
                        Op::Lease { taken, .. } => *taken,
                        _ => Instant::now(),
                    };
                    mine.push(Event { op, start, end });
                }
                log.lock().unwrap().extend(mine);
            });
        }
    });
    log.into_inner().unwrap()
}

/// A push of one item, or (one time in four) a push_batch of 2-4 items, with ids from `base`.
fn push_op<D>(
    storage: &Storage<D>,
    token: &CancelToken,
    rng: &mut Rng,
    base: u64,
    seed: u64,
) -> Op {
    let n = if rng.next().is_multiple_of(4) {
        2 + rng.next() % 3
    } else {
        1
    };
    let ids: Vec<u64> = (base..base + n).collect();
    let r = if n == 1 {
        storage.push(token, ids[0].to_le_bytes().to_vec())
    } else {
        storage.push_batch(token, ids.iter().map(|id| id.to_le_bytes().to_vec()))
    };
    match &r {
        Ok(()) | Err(Error::Cancelled | Error::DeadlineExceeded) => {}
        Err(Error::Db(_)) => {} // a long outage: refused, not stored
        Err(e) => panic!("seed {seed}: push: {e}"),
    }
    Op::Push {
        ids,
        ok: r.is_ok(),
        refused: matches!(r, Err(Error::Db(_))),
    }
}

/// A pop, or (one time in two) a pop_batch of up to 1-8 items.
fn pop_op<D>(storage: &Storage<D>, token: &CancelToken, rng: &mut Rng, seed: u64) -> Op {
    let r = if rng.next().is_multiple_of(2) {
        storage.pop(token).map(|x| vec![x])
    } else {
        storage.pop_batch(token, 1 + (rng.next() % 8) as usize)
    };
    match r {
        Ok(items) => Op::Pop {
            got: ids(items),
            empty: false,
        },
        Err(Error::Cancelled | Error::DeadlineExceeded | Error::Db(_)) => Op::Pop {
            got: Vec::new(),
            empty: false,
        },
        Err(e) => panic!("seed {seed}: pop: {e}"),
    }
}

/// A pop_lease (`wait`) or try_pop_lease, then, by the dice: ack, release, drop, or an ack
/// after sitting on the lease past [`LEASE_TTL`]. The event ends when the lease was taken; the
/// op records when its ending began.
fn lease_op<D>(
    storage: &Storage<D>,
    token: &CancelToken,
    wait: bool,
    rng: &mut Rng,
    seed: u64,
) -> Op {
    let r = if wait {
        storage.pop_lease(token).map(Some)
    } else {
        storage.try_pop_lease()
    };
    let lease = match r {
        Ok(Some(lease)) => lease,
        Ok(None) => {
            return Op::Pop {
                got: Vec::new(),
                empty: true,
            };
        }
        Err(Error::Cancelled | Error::DeadlineExceeded | Error::Db(_)) => {
            return Op::Pop {
                got: Vec::new(),
                empty: false,
            };
        }
        Err(e) => panic!("seed {seed}: pop_lease: {e}"),
    };
    let taken = Instant::now();
    let id = id_of(&lease);
    let roll = rng.next() % 10;
    if roll == 9 {
        std::thread::sleep(LEASE_TTL + Duration::from_millis(3));
    }
    let settled = Instant::now();
    let outcome = match roll {
        0 | 1 => {
            lease.release();
            Outcome::Released
        }
        2 => {
            drop(lease);
            Outcome::Released
        }
        _ => match lease.ack() {
            Ok(()) => Outcome::Acked,
            Err(Error::LeaseExpired | Error::Db(_)) => Outcome::Expired,
            Err(e) => panic!("seed {seed}: ack: {e}"),
        },
    };
    Op::Lease {
        id,
        outcome,
        taken,
        settled,
    }
}

/// The lease ttl of the history runs: short, so leases expire mid-run.
const LEASE_TTL: Duration = Duration::from_millis(5);

/// A try_pop, or (one time in two) a try_pop_batch of up to 1-8 items.
fn try_pop_op<D>(storage: &Storage<D>, rng: &mut Rng, seed: u64) -> Op {
    let r = if rng.next().is_multiple_of(2) {
        storage.try_pop().map(|x| x.into_iter().collect())
    } else {
        storage.try_pop_batch(1 + (rng.next() % 8) as usize)
    };
    match r {
        Ok(items) => Op::Pop {
            empty: items.is_empty(),
            got: ids(items),
        },
        Err(Error::Db(_)) => Op::Pop {
            got: Vec::new(),
            empty: false,
        },
        Err(e) => panic!("seed {seed}: try_pop: {e}"),
    }
}

/// Checks the log against what is left in the Db after close.
///
/// LIFO, soundly for non-overlapping operations: say `y` was *certainly present* during an
/// interval `[a, b]` when push(y) returned `Ok` before `a` and `y` was never popped, or its
/// pop began after `b`. Then
/// * a pop P that returned `x` is wrong if some `y` was pushed strictly after `x` (push(x)
///   ended before push(y) began, so `y` is newer in every linearization) and `y` was certainly
///   present during all of P: P had the newer `y` available throughout and skipped it;
/// * a `try_pop` that answered "empty" is wrong if any `y` was certainly present during it.
///
/// Within one batch a pop returned (newest first), a later item must not be certainly newer than
/// an earlier one (pushed strictly after it). Items of one push_batch are not judged against
/// each other (one event).
///
/// Overlapping operations are never judged: any order among them is a valid linearization.
fn check(log: &[Event], left_after_close: &[u64], seed: u64) {
    let (pushed_ok, refused) = pushes(log);
    let takes = takes(log, &pushed_ok, seed);
    let mut removed = HashSet::new();
    for (&id, list) in &takes {
        if deliveries_ok(id, list, seed) {
            removed.insert(id);
        }
    }
    check_batches(log, &pushed_ok, &takes, seed);
    let mut left = HashSet::new();
    for id in left_after_close {
        assert!(
            !refused.contains(id),
            "seed {seed}: {id:#x} is in the Db but its push failed"
        );
        assert!(
            !removed.contains(id),
            "seed {seed}: {id:#x} popped and still in the Db"
        );
        assert!(left.insert(*id), "seed {seed}: {id:#x} twice in the Db");
    }
    let mut lost: Vec<_> = pushed_ok
        .keys()
        .filter(|id| !removed.contains(id) && !left.contains(id))
        .collect();
    lost.sort();
    assert!(lost.is_empty(), "seed {seed}: lost {lost:x?}");
    check_lifo(log, &pushed_ok, &takes, seed);
}

/// The pushes that returned `Ok` (by id), and the ids whose push failed.
fn pushes(log: &[Event]) -> (HashMap<u64, &Event>, HashSet<u64>) {
    let mut pushed_ok = HashMap::new();
    let mut refused = HashSet::new();
    for e in log {
        if let Op::Push { ids, ok, .. } = &e.op {
            for &id in ids {
                if *ok {
                    pushed_ok.insert(id, e);
                } else {
                    refused.insert(id);
                }
            }
        }
    }
    (pushed_ok, refused)
}

/// One delivery of an item: a pop, or a lease and how it ended.
struct Take<'a> {
    event: &'a Event,
    lease: Option<(Outcome, Instant)>,
}

/// Every delivery of each item, in the order they got it (event end); each item was pushed.
fn takes<'a>(
    log: &'a [Event],
    pushed_ok: &HashMap<u64, &Event>,
    seed: u64,
) -> HashMap<u64, Vec<Take<'a>>> {
    let mut takes: HashMap<u64, Vec<Take>> = HashMap::new();
    for event in log {
        let got: Vec<(u64, Option<(Outcome, Instant)>)> = match &event.op {
            Op::Pop { got, .. } => got.iter().map(|&id| (id, None)).collect(),
            Op::Lease {
                id,
                outcome,
                settled,
                ..
            } => vec![(*id, Some((*outcome, *settled)))],
            _ => continue,
        };
        for (id, lease) in got {
            assert!(
                pushed_ok.contains_key(&id),
                "seed {seed}: popped {id:#x}, never pushed with Ok"
            );
            takes.entry(id).or_default().push(Take { event, lease });
        }
    }
    for list in takes.values_mut() {
        list.sort_by_key(|t| t.event.end);
    }
    takes
}

/// Checks the deliveries of `id`: each but the last was a lease released or expired (the item
/// came back), and a delivery after a release got the item only once that release began.
/// Returns whether the last delivery removed the item (a pop, or an ack that returned `Ok`).
fn deliveries_ok(id: u64, list: &[Take], seed: u64) -> bool {
    for pair in list.windows(2) {
        match pair[0].lease {
            None | Some((Outcome::Acked, _)) => {
                panic!("seed {seed}: {id:#x} popped twice (delivered again after its removal)")
            }
            Some((Outcome::Released, released_at)) => assert!(
                pair[1].event.end >= released_at,
                "seed {seed}: {id:#x} delivered again while its lease was held"
            ),
            Some((Outcome::Expired, _)) => {}
        }
    }
    list.last()
        .is_some_and(|t| matches!(t.lease, None | Some((Outcome::Acked, _))))
}

/// Within one batch a pop returned, newest first; an item delivered before (a lease on it was
/// released: it went on top) is not ranked by its push.
fn check_batches(
    log: &[Event],
    pushed_ok: &HashMap<u64, &Event>,
    takes: &HashMap<u64, Vec<Take>>,
    seed: u64,
) {
    for e in log {
        let Op::Pop { got, .. } = &e.op else {
            continue;
        };
        for (i, &x) in got.iter().enumerate() {
            if !std::ptr::eq(takes[&x][0].event, e) {
                continue;
            }
            for &y in &got[i + 1..] {
                assert!(
                    pushed_ok[&x].end >= pushed_ok[&y].start,
                    "seed {seed}: a batch returned {x:#x} before the newer {y:#x}"
                );
            }
        }
    }
}

/// LIFO for each item's first delivery (a later one follows a release, which put the item on
/// top, so push order no longer ranks it), and no empty answer while an item was certainly
/// present. An item is certainly present from its push's end until its first delivery began.
fn check_lifo(
    log: &[Event],
    pushed_ok: &HashMap<u64, &Event>,
    takes: &HashMap<u64, Vec<Take>>,
    seed: u64,
) {
    let first = |id: u64| {
        takes
            .get(&id)
            .and_then(|l| l.iter().map(|t| t.event).min_by_key(|e| e.start))
    };
    let present_throughout = |y: u64, push_y: &Event, a: Instant, b: Instant| {
        push_y.end < a && first(y).is_none_or(|take_y| take_y.start > b)
    };
    for &x in takes.keys() {
        let (push_x, p) = (pushed_ok[&x], takes[&x][0].event);
        for (&y, push_y) in pushed_ok {
            if y != x && push_x.end < push_y.start && present_throughout(y, push_y, p.start, p.end)
            {
                panic!(
                    "seed {seed}: a pop returned {x:#x} while the newer {y:#x} was certainly present"
                );
            }
        }
    }
    for e in log {
        if let Op::Pop { empty: true, .. } = e.op {
            for (&y, push_y) in pushed_ok {
                assert!(
                    !present_throughout(y, push_y, e.start, e.end),
                    "seed {seed}: try_pop answered empty while {y:#x} was certainly present"
                );
            }
        }
    }
}

fn seed() -> u64 {
    std::env::var("LIFOSTORE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}

/// What a Db holds after the run, leased items included: a lease whose ack or release failed
/// (an injected fault) is still held by the Db; once its ttl has passed, the Db returns it.
fn left_in(db: &dyn Db) -> Vec<u64> {
    std::thread::sleep(LEASE_TTL * 2);
    ids(db.pop_batch(usize::MAX).unwrap())
}

fn ids(items: Vec<Vec<u8>>) -> Vec<u64> {
    items.iter().map(|x| id_of(x)).collect()
}

/// Thread counts 2..=8 from the seed, plus the extremes.
fn thread_counts(seed: u64) -> [u64; 3] {
    [2, 2 + seed % 7, 8]
}

#[test]
fn history_over_mem_db() {
    let seed = seed();
    for (round, threads) in thread_counts(seed).into_iter().enumerate() {
        let seed = seed.wrapping_add(round as u64);
        let storage = Storage::builder()
            .max_unflushed_age(Duration::from_millis(20))
            .max_buffered_items(64)
            .lease_ttl(LEASE_TTL)
            .build(MemDb::with_latency(Duration::from_micros(200)))
            .unwrap();
        let log = run(&storage, threads, 600, seed, 40);
        storage.close().unwrap();
        let stats = storage.stats();
        assert!(
            stats.items_flushed > 0 && stats.pops_from_db > 0 && stats.leases_expired > 0,
            "seed {seed}: items never moved through the Db: {stats:?}"
        );
        check(&log, &left_in(storage.db()), seed);
    }
}

#[test]
fn history_over_faulty_db() {
    quiet_injected_panics();
    let seed = seed();
    for (round, threads) in thread_counts(seed).into_iter().enumerate() {
        let seed = seed.wrapping_add(round as u64);
        let db = FaultyDb::new(MemDb::new(), seed)
            .fail_rate(0.2)
            .half_batch_rate(0.2)
            .latency_spikes(0.02, Duration::from_millis(3))
            .panic_rate(0.01);
        let storage = Storage::builder()
            .max_unflushed_age(Duration::from_millis(30))
            .max_buffered_items(128)
            .lease_ttl(LEASE_TTL)
            .close_timeout(Duration::from_secs(10))
            .build(db)
            .unwrap();
        let log = run(&storage, threads, 400, seed, 40);
        storage.close().unwrap();
        let counts = storage.db().counts();
        assert!(counts.total() > 0, "seed {seed}: no fault was injected");
        check(&log, &left_in(storage.db().inner()), seed);
    }
}

#[test]
fn history_over_file_db() {
    let seed = seed();
    let dir = TempDir::new(&format!("history-{seed}"));
    for (round, threads) in [2, 4].into_iter().enumerate() {
        let seed = seed.wrapping_add(round as u64);
        let path = dir.file(&format!("history-{round}.lifo"));
        let storage = Storage::builder()
            .max_unflushed_age(Duration::from_millis(50))
            .max_buffered_items(64)
            .lease_ttl(LEASE_TTL)
            .build(FileDb::open(&path).unwrap())
            .unwrap();
        let log = run(&storage, threads, 300, seed, 40);
        storage.close().unwrap();
        let stats = storage.stats();
        drop(storage);
        assert!(stats.items_flushed > 0, "seed {seed}: {stats:?}");
        let left = left_in(&FileDb::open(&path).unwrap());
        check(&log, &left, seed);
    }
}

/// The checker itself: each synthetic history breaks one rule and must be rejected; the valid
/// one must pass.
#[test]
fn the_checker_rejects_bad_histories() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let ev = |op: Op, start: u64, end: u64| Event {
        op,
        start: at(start),
        end: at(end),
    };
    let push = |id, s, e| {
        ev(
            Op::Push {
                ids: vec![id],
                ok: true,
                refused: false,
            },
            s,
            e,
        )
    };
    let pop = |got, s, e| {
        ev(
            Op::Pop {
                got: vec![got],
                empty: false,
            },
            s,
            e,
        )
    };
    let empty = |s, e| {
        ev(
            Op::Pop {
                got: Vec::new(),
                empty: true,
            },
            s,
            e,
        )
    };
    let rejects = |log: Vec<Event>, left: Vec<u64>| {
        std::panic::catch_unwind(|| check(&log, &left, 0)).is_err()
    };
    // Valid: push 1, push 2, pop 2, pop 1; concurrent pops may return either order.
    check(
        &[push(1, 0, 1), push(2, 2, 3), pop(2, 4, 5), pop(1, 6, 7)],
        &[],
        0,
    );
    check(
        &[push(1, 0, 1), push(2, 2, 3), pop(1, 4, 9), pop(2, 5, 8)],
        &[],
        0,
    );
    check(&[push(1, 0, 5), push(2, 1, 6), pop(1, 7, 8)], &[2], 0);
    // LIFO violation: 2 certainly present while a pop returned the older 1.
    assert!(rejects(
        vec![push(1, 0, 1), push(2, 2, 3), pop(1, 4, 5)],
        vec![2]
    ));
    assert!(rejects(
        vec![push(1, 0, 1), push(2, 2, 3), pop(1, 4, 5), pop(2, 6, 7)],
        vec![]
    ));
    // Duplicate, lost, never pushed, popped and left, refused but stored.
    assert!(rejects(
        vec![push(1, 0, 1), pop(1, 2, 3), pop(1, 4, 5)],
        vec![]
    ));
    assert!(rejects(vec![push(1, 0, 1)], vec![]));
    assert!(rejects(vec![pop(9, 0, 1)], vec![]));
    assert!(rejects(vec![push(1, 0, 1), pop(1, 2, 3)], vec![1]));
    assert!(rejects(
        vec![ev(
            Op::Push {
                ids: vec![1],
                ok: false,
                refused: true
            },
            0,
            1
        )],
        vec![1]
    ));
    // Empty answer while an item was certainly present.
    assert!(rejects(vec![push(1, 0, 1), empty(2, 3)], vec![1]));
    check(&[push(1, 0, 3), empty(2, 4)], &[1], 0); // overlapping: fine
    // Batches: newest first is fine, a newer item after an older one is not; a batch that
    // skipped a newer item certainly present is a LIFO violation like a single pop.
    let batch = |got: Vec<u64>, s, e| ev(Op::Pop { got, empty: false }, s, e);
    check(
        &[push(1, 0, 1), push(2, 2, 3), batch(vec![2, 1], 4, 5)],
        &[],
        0,
    );
    assert!(rejects(
        vec![push(1, 0, 1), push(2, 2, 3), batch(vec![1, 2], 4, 5)],
        vec![]
    ));
    assert!(rejects(
        vec![
            push(1, 0, 1),
            push(2, 2, 3),
            push(3, 4, 5),
            batch(vec![3, 1], 6, 7)
        ],
        vec![2]
    ));
}

/// The checker's lease rules: each synthetic history breaks one and must be rejected; the
/// valid ones must pass.
#[test]
fn the_checker_rejects_bad_lease_histories() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let push = |id, s, e| Event {
        op: Op::Push {
            ids: vec![id],
            ok: true,
            refused: false,
        },
        start: at(s),
        end: at(e),
    };
    let pop = |id, s, e| Event {
        op: Op::Pop {
            got: vec![id],
            empty: false,
        },
        start: at(s),
        end: at(e),
    };
    let lease = |id, s, e, outcome, settled| Event {
        op: Op::Lease {
            id,
            outcome,
            taken: at(e),
            settled: at(settled),
        },
        start: at(s),
        end: at(e),
    };
    let rejects = |log: Vec<Event>, left: Vec<u64>| {
        std::panic::catch_unwind(|| check(&log, &left, 0)).is_err()
    };
    use Outcome::{Acked, Expired, Released};
    // Valid: leased and released, then popped; leased, expired, leased again and acked;
    // released and left in the Db; a release on top, then popped before an older item.
    check(
        &[push(1, 0, 1), lease(1, 2, 3, Released, 4), pop(1, 5, 6)],
        &[],
        0,
    );
    check(
        &[
            push(1, 0, 1),
            lease(1, 2, 3, Expired, 9),
            lease(1, 5, 6, Acked, 7),
        ],
        &[],
        0,
    );
    check(&[push(1, 0, 1), lease(1, 2, 3, Released, 4)], &[1], 0);
    check(
        &[
            push(1, 0, 1),
            push(2, 2, 3),
            lease(2, 4, 5, Released, 6),
            pop(2, 7, 8),
            pop(1, 9, 10),
        ],
        &[],
        0,
    );
    // Acked, then delivered again; acked and still in the Db; released and lost.
    assert!(rejects(
        vec![push(1, 0, 1), lease(1, 2, 3, Acked, 4), pop(1, 5, 6)],
        vec![]
    ));
    assert!(rejects(
        vec![push(1, 0, 1), lease(1, 2, 3, Acked, 4)],
        vec![1]
    ));
    assert!(rejects(
        vec![push(1, 0, 1), lease(1, 2, 3, Released, 4)],
        vec![]
    ));
    // Delivered again before the release began (without expiry).
    assert!(rejects(
        vec![push(1, 0, 1), lease(1, 2, 3, Released, 8), pop(1, 4, 5)],
        vec![]
    ));
    // A first lease that skipped a newer item certainly present.
    assert!(rejects(
        vec![push(1, 0, 1), push(2, 2, 3), lease(1, 4, 5, Acked, 6)],
        vec![2]
    ));
}

#[test]
fn history_through_outages_longer_than_the_window() {
    let seed = seed();
    let window = Duration::from_millis(30);
    let db = FaultyDb::new(MemDb::new(), seed).fail_rate(0.05);
    let storage = Storage::builder()
        .max_unflushed_age(window)
        .max_buffered_items(128)
        .lease_ttl(LEASE_TTL)
        .close_timeout(Duration::from_secs(10))
        .build(db)
        .unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    let log = std::thread::scope(|s| {
        let (storage, done) = (&storage, &done);
        s.spawn(move || {
            // Outages of 80 ms (longer than the window) every 140 ms.
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                storage.db().set_down(true);
                std::thread::sleep(Duration::from_millis(80));
                storage.db().set_down(false);
                std::thread::sleep(Duration::from_millis(60));
            }
        });
        let log = run(storage, 4, 400, seed, 70);
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        log
    });
    storage.db().set_down(false);
    storage.close().unwrap();
    let refused = log
        .iter()
        .filter(|e| matches!(e.op, Op::Push { refused: true, .. }))
        .count();
    println!(
        "seed {seed}: {} operations, {refused} pushes refused for the outage, {} failed Db calls",
        log.len(),
        storage.db().counts().failures
    );
    assert!(storage.db().counts().failures > 0, "seed {seed}");
    assert!(
        refused > 0,
        "seed {seed}: no push was refused: no outage outlived the window"
    );
    check(&log, &left_in(storage.db().inner()), seed);
}
