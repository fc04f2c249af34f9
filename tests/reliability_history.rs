//! History checker: randomized multi-thread runs log every operation with its start and end;
//! the checker verifies exactly-once, no loss after close, and LIFO wherever operations did
//! not overlap in time. Runs over MemDb, FaultyDb (with faults) and FileDb.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lifostore::testing::{Faults, FaultyDb};
use lifostore::{CancelToken, Db, Error, FileDb, MemDb, Storage};

mod common;
use common::{Rng, TempDir};

#[derive(Debug, Clone)]
enum Op {
    Push { id: u64, ok: bool },
    Pop { got: Option<u64> },
    Flush,
}

#[derive(Debug, Clone)]
struct Event {
    op: Op,
    start: Instant,
    end: Instant,
}

fn id_of(item: &[u8]) -> u64 {
    u64::from_le_bytes(item.try_into().expect("8-byte item"))
}

/// Runs `threads` workers doing `ops` random operations each; returns the log.
fn run<D: Db + 'static>(
    storage: &Arc<Storage<D>>,
    threads: u64,
    ops: u64,
    seed: u64,
) -> Vec<Event> {
    let log = Arc::new(Mutex::new(Vec::new()));
    std::thread::scope(|s| {
        for t in 0..threads {
            let (storage, log) = (storage.clone(), log.clone());
            s.spawn(move || {
                let mut rng = Rng((seed ^ (t + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1);
                let root = CancelToken::new();
                let mut mine = Vec::new();
                for n in 0..ops {
                    let start = Instant::now();
                    let op = match rng.next() % 10 {
                        0..=3 => {
                            let id = (t << 32) | n;
                            // Some pushes use tokens that may end before or while they run.
                            let token = match rng.next() % 8 {
                                0 => {
                                    let c = root.child();
                                    c.cancel();
                                    c
                                }
                                1 => root.with_timeout(Duration::from_micros(rng.next() % 500)),
                                _ => root.clone(),
                            };
                            let r = storage.push(&token, id.to_le_bytes().to_vec());
                            match &r {
                                Ok(()) | Err(Error::Cancelled | Error::DeadlineExceeded) => {}
                                Err(Error::Db(_)) => {} // a long outage: refused, not stored
                                Err(e) => panic!("push: {e}"),
                            }
                            Op::Push { id, ok: r.is_ok() }
                        }
                        4..=6 => {
                            let token = root.with_timeout(Duration::from_millis(rng.next() % 5));
                            match storage.pop(&token) {
                                Ok(x) => Op::Pop {
                                    got: Some(id_of(&x)),
                                },
                                Err(Error::Cancelled | Error::DeadlineExceeded | Error::Db(_)) => {
                                    Op::Pop { got: None }
                                }
                                Err(e) => panic!("pop: {e}"),
                            }
                        }
                        7 | 8 => match storage.try_pop() {
                            Ok(x) => Op::Pop {
                                got: x.map(|x| id_of(&x)),
                            },
                            Err(Error::Db(_)) => Op::Pop { got: None },
                            Err(e) => panic!("try_pop: {e}"),
                        },
                        _ => {
                            let _ = storage.flush(&root); // Db errors allowed; items stay
                            Op::Flush
                        }
                    };
                    mine.push(Event {
                        op,
                        start,
                        end: Instant::now(),
                    });
                }
                log.lock().unwrap().extend(mine);
            });
        }
    });
    Arc::try_unwrap(log).unwrap().into_inner().unwrap()
}

/// Checks the log against what is left in the Db after close.
fn check(log: &[Event], left_after_close: &[u64], seed: u64) {
    let mut pushed_ok = HashMap::new();
    let mut refused = HashSet::new();
    for e in log {
        if let Op::Push { id, ok } = e.op {
            if ok {
                pushed_ok.insert(id, e);
            } else {
                refused.insert(id);
            }
        }
    }
    let mut popped: HashMap<u64, &Event> = HashMap::new();
    for e in log {
        if let Op::Pop { got: Some(id) } = e.op {
            assert!(
                pushed_ok.contains_key(&id),
                "seed {seed}: popped {id:#x}, never pushed with Ok"
            );
            assert!(
                popped.insert(id, e).is_none(),
                "seed {seed}: {id:#x} popped twice"
            );
        }
    }
    for id in left_after_close {
        assert!(
            !refused.contains(id),
            "seed {seed}: refused push {id:#x} was stored"
        );
        assert!(
            !popped.contains_key(id),
            "seed {seed}: {id:#x} popped and still in the Db"
        );
    }
    let mut all: HashSet<u64> = popped.keys().copied().collect();
    all.extend(left_after_close.iter().copied());
    assert_eq!(
        all.len(),
        popped.len() + left_after_close.len(),
        "seed {seed}: duplicate in the Db"
    );
    let lost: Vec<_> = pushed_ok.keys().filter(|id| !all.contains(id)).collect();
    assert!(lost.is_empty(), "seed {seed}: lost {lost:x?}");

    // LIFO: a pop P returning x is wrong if some y was pushed strictly after x (push(x) ended
    // before push(y) began) and y was certainly in the storage for all of P: push(y) ended
    // before P began, and y was never popped or its pop began after P ended.
    for (&x, p) in &popped {
        let push_x = pushed_ok[&x];
        for (&y, push_y) in &pushed_ok {
            if y == x || push_x.end >= push_y.start || push_y.end >= p.start {
                continue;
            }
            let y_present_throughout = match popped.get(&y) {
                None => true,
                Some(pop_y) => pop_y.start > p.end,
            };
            assert!(
                !y_present_throughout,
                "seed {seed}: pop returned {x:#x} while newer {y:#x} was certainly present"
            );
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

fn ids(items: Vec<Vec<u8>>) -> Vec<u64> {
    items.iter().map(|x| id_of(x)).collect()
}

#[test]
fn history_over_mem_db() {
    for threads in [2, 4, 8] {
        let seed = seed();
        let storage = Arc::new(
            Storage::builder()
                .max_unflushed_age(Duration::from_millis(20))
                .max_buffered_items(64)
                .build(MemDb::new()),
        );
        let log = run(&storage, threads, 400, seed);
        storage.close().unwrap();
        check(&log, &ids(storage.db().snapshot()), seed);
    }
}

#[test]
fn history_over_faulty_db() {
    for threads in [2, 6] {
        let seed = seed();
        let faults = Faults {
            fail_rate: 0.2,
            half_batch_rate: 0.2,
            spike_rate: 0.02,
            spike: Duration::from_millis(3),
            panic_rate: 0.01,
        };
        let db = FaultyDb::new(MemDb::new(), seed).with_faults(faults);
        let storage = Arc::new(
            Storage::builder()
                .max_unflushed_age(Duration::from_millis(30))
                .max_buffered_items(128)
                .close_timeout(Duration::from_secs(10))
                .build(db),
        );
        let log = run(&storage, threads, 300, seed);
        storage.close().unwrap();
        let counts = storage.db().counts();
        assert!(counts.total() > 0, "no fault was injected");
        check(&log, &ids(storage.db().inner().snapshot()), seed);
    }
}

#[test]
fn history_over_file_db() {
    let seed = seed();
    let dir = TempDir::new("history");
    let path = dir.file("history.lifo");
    let storage = Arc::new(
        Storage::builder()
            .max_unflushed_age(Duration::from_millis(50))
            .build(FileDb::open(&path).unwrap()),
    );
    let log = run(&storage, 4, 200, seed);
    storage.close().unwrap();
    drop(storage);
    let db = FileDb::open(&path).unwrap();
    let left = ids(db.pop_batch(usize::MAX).unwrap());
    check(&log, &left, seed);
}
