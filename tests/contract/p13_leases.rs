//! Promise 13, leases: `pop_lease` takes the item `pop` would take, hidden from every other pop
//! until its lease is acked, released or dropped, or past its deadline; an item is removed at
//! most once and delivered again only after its lease was released or expired; LIFO holds
//! among the items not leased.
//!
//! Here: memory, native Db and fallback leases through the storage; ack, release, drop,
//! expiry, late acks; close with leases held; many threads acking every item exactly once.
//! Deeper: the Db-level lease contract and consumers SIGKILLed in a loop (`tests/leases.rs`,
//! `tests/backends.rs`), leases in the history checker (`tests/reliability_history.rs`), and
//! the loom models `a_lease_racing_a_push_a_flush_and_a_pop_is_lifo_and_exactly_once`,
//! `release_puts_the_item_back_on_top`, `expiry_racing_an_ack_removes_or_returns_the_item_once`.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lifostore::testing::StampedDb;
use lifostore::{CancelToken, Db, DbError, Error, FileDb, MemDb, Storage};

use crate::common::lateness::Lateness;
use crate::common::{id_of, item, quiet, within, write_in_flight};

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("lifostore-sl-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A Db with only push and pop: it gets the fallback (no native leases).
struct Plain(Arc<MemDb>);

impl Db for Plain {
    fn push(&self, data: &[u8]) -> Result<(), DbError> {
        self.0.push(data)
    }
    fn pop(&self) -> Result<Option<Vec<u8>>, DbError> {
        self.0.pop()
    }
}

fn token_for(limit: Duration) -> CancelToken {
    CancelToken::new().with_timeout(limit)
}

/// Waits (short sleeps, bounded) until `cond` holds: the flusher is another thread, there is
/// no event of ours to wait on.
fn eventually(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < until, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A lease can be handed to another thread (a worker pool) and shared by reference.
#[test]
fn a_lease_is_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<lifostore::Lease>();
}

#[test]
fn a_memory_lease_hides_its_item_until_acked() {
    let s = Storage::new(MemDb::new()).expect("build");
    let t = CancelToken::new();
    s.push(&t, "a").expect("push");
    s.push(&t, "b").expect("push");
    let lease = s.pop_lease(&t).expect("lease");
    assert_eq!(&*lease, b"b");
    assert_eq!(s.stats().leases_held, 1);
    assert_eq!(
        s.len().expect("len"),
        Some(1),
        "a leased item is not counted"
    );
    assert_eq!(s.try_pop().expect("pop"), Some(b"a".to_vec()));
    assert_eq!(s.try_pop().expect("pop"), None, "b is hidden");
    lease.ack().expect("ack in time");
    let stats = s.stats();
    assert_eq!((stats.leases, stats.leases_held), (1, 0));
    assert_eq!(stats.pushes, 2);
    s.close().expect("close");
    assert_eq!(s.db().len(), 0, "acked: gone for good");
}

#[test]
fn release_and_drop_put_the_item_back_on_top() {
    let s = Storage::new(MemDb::new()).expect("build");
    let t = CancelToken::new();
    for i in 1..=3 {
        s.push(&t, item(i)).expect("push");
    }
    let lease = s.pop_lease(&t).expect("lease");
    assert_eq!(id_of(&lease), 3);
    s.push(&t, item(4)).expect("push");
    lease.release();
    assert_eq!(id_of(&s.pop(&t).expect("pop")), 3, "released: on top");
    let lease = s.pop_lease(&t).expect("lease");
    assert_eq!(id_of(&lease), 4);
    drop(lease);
    let order: Vec<u64> = (0..3).map(|_| id_of(&s.pop(&t).expect("pop"))).collect();
    assert_eq!(order, vec![4, 2, 1], "dropped = released, then LIFO");
    assert_eq!(s.stats().pushes, 4, "returns are not pushes");
}

#[test]
fn leases_keep_lifo_among_the_unleased_items() {
    let s = Storage::new(MemDb::new()).expect("build");
    let t = CancelToken::new();
    for i in 1..=10 {
        s.push(&t, item(i)).expect("push");
    }
    let l10 = s.pop_lease(&t).expect("lease");
    let l9 = s.pop_lease(&t).expect("lease");
    assert_eq!((id_of(&l10), id_of(&l9)), (10, 9));
    s.flush(&t).expect("flush: 1..=8 go to the Db");
    let l8 = s.pop_lease(&t).expect("a Db lease");
    assert_eq!(id_of(&l8), 8);
    let popped: Vec<u64> = (0..3).map(|_| id_of(&s.pop(&t).expect("pop"))).collect();
    assert_eq!(popped, vec![7, 6, 5]);
    l9.release();
    l10.release();
    l8.release();
    let rest: Vec<u64> = s.try_iter().map(|r| id_of(&r.expect("pop"))).collect();
    // Each release puts its item on top (promise 13): 9, then 10 above it, then 8 above both,
    // though 8 was leased from the Db and 10 and 9 are in memory (the release writes them to
    // the Db first, then releases 8 on top of them).
    assert_eq!(rest, vec![8, 10, 9, 4, 3, 2, 1]);
}

#[test]
fn an_expired_memory_lease_comes_back_and_a_late_ack_says_so() {
    let s = Storage::builder()
        .lease_ttl(Duration::from_millis(50))
        .build(MemDb::new())
        .expect("build");
    let t = CancelToken::new();
    s.push(&t, "x").expect("push");
    let started = Instant::now();
    let lease = s.pop_lease(&t).expect("lease");
    // Blocks on an empty storage; the flusher returns the item at the deadline and wakes it.
    let again = s
        .pop(&token_for(Duration::from_secs(5)))
        .expect("back by itself");
    assert_eq!(again, b"x");
    assert!(
        started.elapsed() >= Duration::from_millis(50),
        "not before the deadline"
    );
    match lease.ack() {
        Err(e @ Error::LeaseExpired) => assert!(e.to_string().contains("lease_ttl")),
        other => panic!("late ack: {other:?}"),
    }
    assert_eq!(s.stats().leases_expired, 1);
}

#[test]
fn an_ack_past_the_deadline_fails_even_before_the_flusher_noticed() {
    let s = Storage::builder()
        .lease_ttl(Duration::from_millis(1))
        .build(MemDb::new())
        .expect("build");
    let t = CancelToken::new();
    s.push(&t, "x").expect("push");
    let lease = s.pop_lease(&t).expect("lease");
    std::thread::sleep(Duration::from_millis(5));
    assert!(matches!(lease.ack(), Err(Error::LeaseExpired)));
    assert_eq!(s.try_pop().expect("pop"), Some(b"x".to_vec()), "back, once");
    assert_eq!(s.try_pop().expect("pop"), None);
}

#[test]
fn a_held_memory_lease_by_default_ends_in_time_for_the_window() {
    let window = Duration::from_millis(400);
    let s = Storage::builder()
        .max_unflushed_age(window)
        .build(StampedDb::new(MemDb::new()))
        .expect("build");
    let t = CancelToken::new();
    let lateness = Lateness::start(window);
    let pushed = Instant::now();
    s.push(&t, "x").expect("push");
    let lease = s.pop_lease(&t).expect("lease");
    // The holder sits on it: the lease ends when the flusher would have written the item, so
    // it still reaches the Db within the window of its push (judged by its arrival stamp,
    // not by when this thread looks).
    eventually(window * 2, "the item reaches the Db", || {
        s.db().arrivals().len() == 1
    });
    let late = lateness.stop();
    let waited = s.db().arrivals()[0].1.duration_since(pushed);
    assert!(
        waited < window + late,
        "{waited:?}, scheduler lateness {late:?}"
    );
    assert!(matches!(lease.ack(), Err(Error::LeaseExpired)));
    assert_eq!(s.try_pop().expect("pop"), Some(b"x".to_vec()));
}

/// The Db lease contract through the storage, on a Db with native leases: release and ack
/// with a ttl no stall outlasts, then expiry with a short one (a second storage over the
/// same Db).
fn native_db_leases<D: Db + 'static>(db: D) {
    let db = Arc::new(db);
    let s = Storage::builder()
        .lease_ttl(Duration::from_secs(60))
        .build(Arc::clone(&db))
        .expect("build");
    let t = CancelToken::new();
    s.push(&t, item(1)).expect("push");
    s.push(&t, item(2)).expect("push");
    s.flush(&t).expect("flush");
    let lease = s.pop_lease(&t).expect("Db lease");
    assert_eq!(id_of(&lease), 2);
    assert_eq!(id_of(&s.try_pop().expect("pop").expect("1")), 1);
    assert_eq!(s.try_pop().expect("pop"), None, "2 is hidden in the Db");
    lease.release();
    let lease = s.pop_lease(&t).expect("released: back");
    assert_eq!(id_of(&lease), 2);
    lease.ack().expect("ack");
    assert_eq!(s.try_pop().expect("pop"), None, "acked: gone");
    s.close().expect("close");
    // Expiry: a blocked pop is woken when the Db may hold the item again.
    let s = Storage::builder()
        .lease_ttl(Duration::from_millis(80))
        .build(db)
        .expect("build");
    s.push(&t, item(3)).expect("push");
    s.flush(&t).expect("flush");
    let lease = s.pop_lease(&t).expect("Db lease");
    let again = s
        .pop(&token_for(Duration::from_secs(5)))
        .expect("expired: back");
    assert_eq!(id_of(&again), 3);
    assert!(matches!(lease.ack(), Err(Error::LeaseExpired)));
    assert_eq!(s.try_pop().expect("pop"), None);
    assert_eq!(s.stats().leases_held, 0);
}

#[test]
fn memdb_leases_through_the_storage() {
    native_db_leases(MemDb::new());
}

/// Lease A, push B, then release, drop or expiry: the next pop returns A.
#[test]
fn memdb_released_dropped_and_expired_items_are_back_on_top() {
    crate::common::leases::back_on_top_through_a_storage(MemDb::new());
}

#[test]
fn filedb_released_dropped_and_expired_items_are_back_on_top() {
    let dir = temp_dir("ontop");
    crate::common::leases::back_on_top_through_a_storage(
        FileDb::open(dir.join("s.lifo")).expect("open"),
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_fallback_dbs_released_dropped_and_expired_items_are_back_on_top() {
    crate::common::leases::back_on_top_through_a_storage(Plain(Arc::new(MemDb::new())));
}

#[test]
fn filedb_leases_through_the_storage() {
    let dir = temp_dir("native");
    native_db_leases(FileDb::open(dir.join("s.lifo")).expect("open"));
    std::fs::remove_dir_all(&dir).ok();
}

/// A process that dies holding a lease from a FileDb: the lease survives in the file, whose
/// own deadline a storage sets a margin after the lease's (`lease_ttl` plus a quarter, at least
/// 1 s: while the process lives, the storage returns the item itself at the lease's deadline,
/// on top of what it buffers). Reopened, the item stays hidden until that deadline, or comes
/// back at once with `return_leases_on_open`.
#[test]
fn filedb_lease_held_by_a_closed_storage_comes_back_after_reopen() {
    let dir = temp_dir("reopen");
    let path = dir.join("s.lifo");
    let ttl = Duration::from_secs(60);
    {
        let s = Storage::builder().lease_ttl(ttl).open(&path).expect("open");
        let t = CancelToken::new();
        s.push(&t, "kept").expect("push");
        s.flush(&t).expect("flush");
        let lease = s.pop_lease(&t).expect("lease");
        let leases = s.db().leases().expect("FileDb has leases");
        let deadlines = leases.held_deadlines().expect("deadlines");
        let ahead = deadlines[0].duration_since(std::time::SystemTime::now());
        assert!(
            ahead.expect("ahead") > ttl + Duration::from_secs(10),
            "the file's deadline is the storage's own plus the margin (15 s here)"
        );
        s.close().expect("close");
        std::mem::forget(lease); // as if the process died holding it
    }
    let s = Storage::open(&path).expect("reopen");
    assert_eq!(s.try_pop().expect("pop"), None, "still leased in the file");
    drop(s);
    let options = lifostore::FileDbOptions::default().return_leases_on_open(true);
    let s = Storage::builder()
        .open_with(&path, options)
        .expect("reopen");
    assert_eq!(s.try_pop().expect("pop"), Some(b"kept".to_vec()));
    drop(s);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_fallback_db_lease_is_held_by_the_storage() {
    let db = Arc::new(MemDb::new());
    let s = Storage::builder()
        .max_unflushed_age(Duration::from_secs(60))
        .build(Plain(Arc::clone(&db)))
        .expect("build");
    assert!(s.db().leases().is_none());
    let t = CancelToken::new();
    s.push(&t, item(1)).expect("push");
    s.push(&t, item(2)).expect("push");
    s.flush(&t).expect("flush");
    let lease = s.pop_lease(&t).expect("lease");
    assert_eq!(id_of(&lease), 2);
    assert_eq!(db.len(), 1, "the fallback took it out of the Db");
    lease.release();
    // Back on top of memory, due at once: the flusher writes it back without waiting for the
    // (60 s) window.
    eventually(Duration::from_secs(5), "written back", || db.len() == 2);
    let lease = s.pop_lease(&t).expect("lease");
    assert_eq!(id_of(&lease), 2, "still on top");
    s.expire_leases_now();
    assert!(matches!(lease.ack(), Err(Error::LeaseExpired)));
    let lease = s.pop_lease(&t).expect("back after expiry");
    assert_eq!(id_of(&lease), 2);
    lease.ack().expect("ack");
    s.close().expect("close");
    assert_eq!(db.snapshot(), vec![item(1)]);
}

#[test]
fn close_with_leases_held_loses_nothing_and_delivers_nothing_twice() {
    let db = Arc::new(MemDb::new());
    let s = Storage::new(Arc::clone(&db)).expect("build");
    let t = CancelToken::new();
    for i in 1..=3 {
        s.push(&t, item(i)).expect("push");
    }
    let released = s.pop_lease(&t).expect("lease");
    let acked = s.pop_lease(&t).expect("lease");
    s.close().expect("close");
    assert_eq!(
        db.snapshot(),
        vec![item(1)],
        "leased items stay with their holders"
    );
    assert!(matches!(s.try_pop_lease(), Err(Error::Closed)));
    acked.ack().expect("an ack after close forgets the item");
    released.release(); // written to the Db on this thread
    assert_eq!(db.snapshot(), vec![item(1), item(3)]);
}

#[test]
fn a_blocked_pop_lease_wakes_for_a_push_and_for_close() {
    let s = Arc::new(Storage::new(MemDb::new()).expect("build"));
    let t = CancelToken::new();
    let s2 = Arc::clone(&s);
    let t2 = t.clone();
    let waiting = std::thread::spawn(move || {
        let lease = s2.pop_lease(&t2)?;
        let data = lease.to_vec();
        lease.ack().map(|()| data)
    });
    crate::common::wait_until_blocked(&t);
    s.push(&CancelToken::new(), "y").expect("push");
    assert_eq!(waiting.join().expect("join").expect("lease"), b"y");
    let s2 = Arc::clone(&s);
    let t2 = t.clone();
    let waiting = std::thread::spawn(move || s2.pop_lease(&t2).map(|l| l.to_vec()));
    crate::common::wait_until_blocked(&t);
    s.close().expect("close");
    assert!(matches!(waiting.join().expect("join"), Err(Error::Closed)));
}

/// N threads lease, ack, release, drop and push at once over `s`, some leases expiring:
/// at the end every item was acked exactly once (a late ack fails and does not count), none
/// lost.
fn acked_exactly_once<D: Db + 'static>(s: Storage<D>, items: u64) {
    let s = Arc::new(s);
    let acked = Arc::new(Mutex::new(Vec::new()));
    let threads = 4u64;
    let handles: Vec<_> = (0..threads)
        .map(|th| {
            let (s, acked) = (Arc::clone(&s), Arc::clone(&acked));
            std::thread::spawn(move || worker(&s, &acked, th, threads, items))
        })
        .collect();
    for h in handles {
        h.join().expect("worker");
    }
    // Drain what is left: late acks, released items, items still buffered or in the Db.
    while let Some(lease) = s.try_pop_lease().expect("drain") {
        let id = id_of(&lease);
        if lease.ack().is_ok() {
            acked.lock().expect("lock").push(id);
        }
    }
    let mut acked = acked.lock().expect("lock").clone();
    acked.sort_unstable();
    let unique: BTreeSet<u64> = acked.iter().copied().collect();
    assert_eq!(unique.len(), acked.len(), "an item acked twice");
    assert_eq!(unique, (0..items).collect(), "an item lost");
    let stats = s.stats();
    assert_eq!(stats.leases_held, 0);
    println!(
        "{items} items: {} leases, {} expired",
        stats.leases, stats.leases_expired
    );
}

/// One worker: pushes its share of ids, and between pushes leases one item and acks it,
/// releases it, drops it, or sits on it past the ttl, by a cheap hash of the round.
fn worker<D: Db>(s: &Storage<D>, acked: &Mutex<Vec<u64>>, th: u64, threads: u64, items: u64) {
    let t = CancelToken::new();
    let mut held = Vec::new();
    for i in (th..items).step_by(threads as usize) {
        s.push(&t, item(i)).expect("push");
        let Some(lease) = s.try_pop_lease().expect("lease") else {
            continue;
        };
        match i.wrapping_mul(0x9E37_79B9) % 7 {
            0 => lease.release(),
            1 => drop(lease),
            2 => held.push(lease), // acked later, maybe past the ttl
            _ => {
                let id = id_of(&lease);
                if lease.ack().is_ok() {
                    acked.lock().expect("lock").push(id);
                }
            }
        }
        if held.len() > 3 {
            std::thread::sleep(Duration::from_millis(5));
            for lease in held.drain(..) {
                let id = id_of(&lease);
                if lease.ack().is_ok() {
                    acked.lock().expect("lock").push(id);
                }
            }
        }
    }
}

#[test]
fn many_threads_over_memdb_ack_every_item_exactly_once() {
    within(Duration::from_secs(60), || {
        let s = Storage::builder()
            .max_unflushed_age(Duration::from_millis(40))
            .max_buffered_items(64)
            .lease_ttl(Duration::from_millis(4))
            .build(MemDb::new())
            .expect("build");
        acked_exactly_once(s, 4000);
    });
}

#[test]
fn many_threads_over_filedb_ack_every_item_exactly_once() {
    within(Duration::from_secs(120), || {
        let dir = temp_dir("threads");
        let s = Storage::builder()
            .max_unflushed_age(Duration::from_millis(40))
            .max_buffered_items(64)
            .lease_ttl(Duration::from_millis(4))
            .open(dir.join("s.lifo"))
            .expect("open");
        acked_exactly_once(s, 500);
        std::fs::remove_dir_all(&dir).ok();
    });
}

#[test]
fn many_threads_over_a_fallback_db_ack_every_item_exactly_once() {
    within(Duration::from_secs(60), || {
        let s = Storage::builder()
            .max_unflushed_age(Duration::from_millis(40))
            .max_buffered_items(64)
            .lease_ttl(Duration::from_millis(4))
            .build(Plain(Arc::new(MemDb::new())))
            .expect("build");
        acked_exactly_once(s, 4000);
    });
}

/// A FileDb only this process uses (`shared(false)`): leases a dead process held come back at
/// their deadline with nobody pushing; the storage must ask the Db again then, not conclude
/// from an empty answer that it stays empty.
#[test]
fn an_unshared_filedb_returns_a_dead_process_lease_to_a_blocked_pop() {
    let dir = temp_dir("adopt");
    let path = dir.join("s.lifo");
    {
        let db = FileDb::open(&path).expect("open");
        db.push_batch(&[b"1", b"2"]).expect("push");
        let leases = db.leases().expect("FileDb has leases");
        let held = leases
            .pop_lease(1, Duration::from_millis(150))
            .expect("lease");
        assert_eq!(held[0].item, b"2");
    } // the process "dies" holding the lease
    let options = lifostore::FileDbOptions::default().shared(false);
    let s = Storage::builder().open_with(&path, options).expect("open");
    let t = token_for(Duration::from_secs(5));
    assert_eq!(s.pop(&t).expect("pop"), b"1");
    assert_eq!(s.try_pop().expect("try_pop"), None, "2 is still leased");
    assert_eq!(s.pop(&t).expect("back at its deadline"), b"2");
    drop(s);
    std::fs::remove_dir_all(&dir).ok();
}

/// A released item keeps its push stamp: back on top, it is written when it comes due, with
/// the newer items below it, so it still reaches the Db within the window of its own push.
#[test]
fn a_released_item_reaches_the_db_within_the_window_of_its_push() {
    let window = Duration::from_secs(1);
    let s = Storage::builder()
        .max_unflushed_age(window)
        .lease_ttl(Duration::from_secs(60))
        .build(StampedDb::new(MemDb::new()))
        .expect("build");
    let t = CancelToken::new();
    let lateness = Lateness::start(window);
    let pushed = Instant::now();
    s.push(&t, "old").expect("push");
    let lease = s.pop_lease(&t).expect("lease");
    std::thread::sleep(window * 2 / 5);
    s.push(&t, "newer").expect("push"); // on its own, due only after the old item's window
    lease.release();
    eventually(window * 2, "both in the Db", || {
        s.db().arrivals().len() == 2
    });
    let late = lateness.stop();
    let arrivals = s.db().arrivals();
    let old = arrivals
        .iter()
        .find(|(data, _)| data == b"old")
        .expect("old arrived");
    let waited = old.1.duration_since(pushed);
    assert!(
        waited < window + late,
        "the released item reached the Db {waited:?} after its push (scheduler lateness {late:?})"
    );
    assert_eq!(
        s.try_pop().expect("pop"),
        Some(b"old".to_vec()),
        "still on top"
    );
}

/// A durable push whose item a lease takes from memory, while another write is in flight,
/// returns `Ok` at once (the item left memory, as with a pop): the lease settles the waiting
/// call's slot and wakes it, so it does not wait for the write in flight to land.
#[test]
fn a_durable_push_whose_item_is_leased_returns_ok_before_the_write_in_flight_lands() {
    let s = Arc::new(quiet(MemDb::with_latency(Duration::from_secs(2))));
    let flush = write_in_flight(&s);
    let durable = {
        let s = s.clone();
        std::thread::spawn(move || s.push_durable(&CancelToken::new(), item(1)))
    };
    while s.len_in_memory() < 2 {
        std::thread::sleep(Duration::from_micros(100)); // waiting for the other thread's state
    }
    let lease = s
        .try_pop_lease()
        .unwrap()
        .expect("the durable item, newest in memory");
    assert_eq!(lease.to_vec(), item(1));
    durable.join().unwrap().unwrap();
    assert_eq!(
        s.stats().in_flight_items,
        1,
        "push_durable returned only after the write in flight landed"
    );
    lease.ack().unwrap();
    flush.join().unwrap().unwrap();
    s.close().unwrap();
    assert_eq!(s.db().snapshot(), vec![item(0)]);
}

/// A MemDb whose batch writes wait at a gate the test opens: a write held in flight.
struct GatedDb {
    inner: MemDb,
    closed: Mutex<bool>,
    opened: std::sync::Condvar,
    waiting: std::sync::atomic::AtomicBool,
}

impl GatedDb {
    fn set_closed(&self, closed: bool) {
        *self.closed.lock().expect("gate") = closed;
        self.opened.notify_all();
    }
}

impl Db for GatedDb {
    fn push(&self, data: &[u8]) -> Result<(), DbError> {
        self.inner.push(data)
    }
    fn pop(&self) -> Result<Option<Vec<u8>>, DbError> {
        self.inner.pop()
    }
    fn push_batch(&self, items: &[&[u8]]) -> Result<(), lifostore::PushBatchError> {
        let mut closed = self.closed.lock().expect("gate");
        while *closed {
            self.waiting
                .store(true, std::sync::atomic::Ordering::SeqCst);
            closed = self.opened.wait(closed).expect("gate");
        }
        drop(closed);
        self.inner.push_batch(items)
    }
    fn capabilities(&self) -> lifostore::Capabilities {
        self.inner.capabilities()
    }
    fn leases(&self) -> Option<&dyn lifostore::DbLeases> {
        self.inner.leases()
    }
}

/// A late ack of a lease the Db holds fails with `LeaseExpired` even when the storage has not
/// returned the item yet: here a write in flight keeps every return waiting, and the Db itself
/// would still accept the ack (it holds the lease a margin longer). The item then comes back
/// on top once the write lands.
#[test]
fn a_late_ack_of_a_db_lease_fails_even_before_the_storage_returned_it() {
    let ttl = Duration::from_millis(100);
    let s = Storage::builder()
        .lease_ttl(ttl)
        .build(GatedDb {
            inner: MemDb::new(),
            closed: Mutex::new(false),
            opened: std::sync::Condvar::new(),
            waiting: std::sync::atomic::AtomicBool::new(false),
        })
        .expect("build");
    let t = CancelToken::new();
    s.push(&t, item(1)).expect("push");
    s.flush(&t).expect("flush 1 to the Db");
    let leased_at = Instant::now();
    let lease = s.pop_lease(&t).expect("lease 1 from the Db");
    assert_eq!(id_of(&lease), 1);
    s.db().set_closed(true);
    s.push(&t, item(2)).expect("push");
    std::thread::scope(|scope| {
        let flushing = scope.spawn(|| s.flush(&t));
        eventually(
            Duration::from_secs(10),
            "the write is held at the gate",
            || s.db().waiting.load(std::sync::atomic::Ordering::SeqCst),
        );
        std::thread::sleep((ttl + Duration::from_millis(20)).saturating_sub(leased_at.elapsed()));
        let acking = scope.spawn(|| lease.ack());
        // Give a wrong ack (straight to the Db) time to come back before the gate opens.
        std::thread::sleep(Duration::from_millis(50));
        s.db().set_closed(false);
        flushing.join().expect("flush thread").expect("flush 2");
        let acked = acking.join().expect("ack thread");
        assert!(
            matches!(acked, Err(Error::LeaseExpired)),
            "an ack past the deadline: {acked:?}"
        );
    });
    assert_eq!(id_of(&s.pop(&t).expect("pop")), 1, "back on top of 2");
    assert_eq!(id_of(&s.pop(&t).expect("pop")), 2);
    assert_eq!(s.try_pop().expect("pop"), None);
}

/// Pushes `n` items 100 ms apart (ids 0..n: the oldest is 0) and leases them all at once,
/// newest first, so they are of several ages when leased; returns the leases, and each item's
/// push instant (taken before its push call, so an arrival judged from it is never early).
fn lease_items_of_several_ages<D: Db + 'static>(
    s: &Storage<D>,
    n: u64,
) -> (Vec<lifostore::Lease>, Vec<Instant>) {
    let t = CancelToken::new();
    let mut pushed = Vec::new();
    for i in 0..n {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(100)); // the items' ages, not a wait
        }
        pushed.push(Instant::now());
        s.push(&t, item(i)).expect("push");
    }
    let leases = (0..n).map(|_| s.pop_lease(&t).expect("lease")).collect();
    (leases, pushed)
}

/// With a `lease_ttl` longer than an item's remaining window, over a Db with native leases, a
/// lease lasts its ttl whatever the item's age, and the window still holds: each item leased
/// from memory reaches the Db, still leased, within the window of its push (judged by its
/// arrival stamp), stays hidden, and its late ack (after its window, within its ttl) is `Ok`
/// and removes it from the Db for good.
fn fixed_ttl_keeps_the_window<D: Db + 'static>(db: D) {
    let (window, ttl, n) = (Duration::from_secs(1), Duration::from_secs(30), 4);
    let s = Storage::builder()
        .max_unflushed_age(window)
        .lease_ttl(ttl)
        .build(StampedDb::new(db))
        .expect("build");
    let lateness = Lateness::start(window);
    let (leases, pushed) = lease_items_of_several_ages(&s, n);
    eventually(window * 3, "every leased item reaches the Db", || {
        s.db().arrival_count() == n as usize
    });
    let late = lateness.stop();
    for (data, at) in s.db().arrivals() {
        let id = id_of(&data) as usize;
        let waited = at.duration_since(pushed[id]);
        assert!(
            waited < window + late,
            "item {id} reached the Db {waited:?} after its push (scheduler lateness {late:?})"
        );
    }
    assert_eq!(s.try_pop().expect("pop"), None, "every item still leased");
    // Late acks: after every item's window has passed (a wait for time itself).
    let newest_window_end = pushed[pushed.len() - 1] + window + Duration::from_millis(10);
    std::thread::sleep(newest_window_end.saturating_duration_since(Instant::now()));
    assert_eq!(
        s.try_pop().expect("pop"),
        None,
        "still leased after the window"
    );
    for lease in leases {
        let id = id_of(&lease);
        assert!(
            pushed[id as usize].elapsed() > window,
            "acked after its window"
        );
        assert!(lease.ack().is_ok(), "item {id}: acked within its ttl");
    }
    assert!(pushed[0].elapsed() < ttl, "the test outran the ttl");
    let stats = s.stats();
    assert_eq!((stats.leases_held, stats.leases_expired), (0, 0));
    assert_eq!(s.try_pop().expect("pop"), None, "acked: gone");
    let leases = s.db().leases().expect("native leases");
    assert_eq!(
        leases.held_deadlines().expect("deadlines"),
        vec![],
        "no lease left"
    );
    assert_eq!(s.db().pop().expect("pop"), None, "nothing left in the Db");
    s.close().expect("close");
}

#[test]
fn a_fixed_ttl_lease_outlasts_the_window_which_still_holds_over_memdb() {
    fixed_ttl_keeps_the_window(MemDb::new());
}

#[test]
fn a_fixed_ttl_lease_outlasts_the_window_which_still_holds_over_filedb() {
    let dir = temp_dir("fixed-ttl");
    fixed_ttl_keeps_the_window(FileDb::open(dir.join("s.stack")).expect("open"));
}

/// A lease written to the Db from memory is held there for the rest of its ttl plus a quarter
/// of the whole ttl, at least 1 s (the contract's margin), not a quarter of what was left.
#[test]
fn a_lease_written_from_memory_is_held_by_the_db_a_quarter_of_the_ttl_longer() {
    // The item comes due late in its lease (at most three quarters of the window after its
    // push): a quarter of what is left then (at least 2 s left: 1 s by the minimum) differs
    // from a quarter of the ttl (1.25 s).
    let (window, ttl) = (Duration::from_secs(4), Duration::from_secs(5));
    let s = Storage::builder()
        .max_unflushed_age(window)
        .lease_ttl(ttl)
        .build(MemDb::new())
        .expect("build");
    let t = CancelToken::new();
    s.push(&t, item(1)).expect("push");
    let leased_at = std::time::SystemTime::now();
    let lease = s.pop_lease(&t).expect("lease");
    let db = s.db().leases().expect("MemDb leases");
    eventually(window * 2, "the leased item reaches the Db", || {
        db.held_deadlines().expect("deadlines").len() == 1
    });
    let held = db.held_deadlines().expect("deadlines")[0];
    let margin = ttl / 4;
    let slack = Duration::from_millis(20); // the Db keeps milliseconds
    assert!(
        held + slack >= leased_at + ttl + margin,
        "held until {:?} after the lease began, not the ttl plus a quarter of it",
        held.duration_since(leased_at).unwrap_or_default()
    );
    lease.ack().expect("an ack within the ttl");
}

/// `close` writes an item leased from memory whose lease outlasts the window to the Db, still
/// leased (no flusher runs after it): the lease stays valid, its ack ends it in the Db; a
/// released one is back on top there.
#[test]
fn close_writes_a_lease_that_outlasts_the_window_to_the_db_still_leased() {
    let s = Storage::builder()
        .max_unflushed_age(Duration::from_secs(10))
        .lease_ttl(Duration::from_secs(60))
        .build(MemDb::new())
        .expect("build");
    let t = CancelToken::new();
    for i in 1..=3 {
        s.push(&t, item(i)).expect("push");
    }
    let three = s.pop_lease(&t).expect("lease 3");
    let two = s.pop_lease(&t).expect("lease 2");
    s.close().expect("close");
    assert_eq!(
        s.db().leased(),
        2,
        "both leased items in the Db, still leased"
    );
    assert_eq!(s.db().len(), 1, "the item not leased, written by the close");
    three.ack().expect("an ack after close, within the ttl");
    two.release();
    assert_eq!(s.db().leased(), 0);
    let left: Vec<u64> = std::iter::from_fn(|| s.db().pop().expect("pop"))
        .map(|x| id_of(&x))
        .collect();
    assert_eq!(
        left,
        vec![2, 1],
        "the released item back on top, the acked one gone"
    );
}

/// A memory lease written to the Db still leased ends there: released, its item is back on
/// top (above an item pushed meanwhile); past its deadline, back on top by itself, and the
/// late ack says so.
#[test]
fn a_lease_written_to_the_db_is_released_or_expires_there() {
    let (window, ttl) = (Duration::from_millis(300), Duration::from_millis(1500));
    let s = Storage::builder()
        .max_unflushed_age(window)
        .lease_ttl(ttl)
        .build(StampedDb::new(MemDb::new()))
        .expect("build");
    let t = CancelToken::new();
    s.push(&t, item(1)).expect("push");
    s.push(&t, item(2)).expect("push");
    let two = s.pop_lease(&t).expect("lease 2");
    let one = s.pop_lease(&t).expect("lease 1");
    eventually(window * 4, "both in the Db, leased", || {
        s.db().inner().leased() == 2
    });
    s.push(&t, item(3)).expect("push");
    two.release();
    assert_eq!(s.try_pop().expect("pop"), Some(item(2)), "released: on top");
    assert_eq!(s.try_pop().expect("pop"), Some(item(3)));
    // Waiting out the ttl of `one`: nothing to be woken by.
    eventually(ttl * 3, "1 back by itself", || s.db().inner().leased() == 0);
    assert!(matches!(one.ack(), Err(Error::LeaseExpired)));
    assert_eq!(s.try_pop().expect("pop"), Some(item(1)), "expired: back");
    assert_eq!(s.try_pop().expect("pop"), None);
}

/// Over a Db without native leases the ttl applies as before: a memory lease keeps its item
/// out of the Db until it ends (the window does not cover it, as `lease_ttl`'s docs say).
#[test]
fn over_a_db_without_leases_a_memory_lease_keeps_its_item_out_of_the_db() {
    let window = Duration::from_millis(200);
    let db = Arc::new(MemDb::new());
    let s = Storage::builder()
        .max_unflushed_age(window)
        .lease_ttl(Duration::from_secs(30))
        .build(Plain(Arc::clone(&db)))
        .expect("build");
    let t = CancelToken::new();
    s.push(&t, item(1)).expect("push");
    let lease = s.pop_lease(&t).expect("lease");
    std::thread::sleep(window * 3); // long enough for a write that must not happen
    assert!(db.is_empty(), "not written while leased");
    assert!(lease.ack().is_ok(), "the ttl holds");
    assert!(db.is_empty() && s.try_pop().expect("pop").is_none());
}

/// The write of a leased item to the Db that fails (the Db is down when the item comes due) is
/// retried: the item stays leased meanwhile (a failed write loses nothing and delivers
/// nothing), reaches the Db once the Db is back, and the ack within the ttl is `Ok`.
#[test]
fn a_failed_write_of_a_leased_item_is_retried_until_it_lands() {
    let window = Duration::from_millis(200);
    let db = lifostore::testing::FaultyDb::new(StampedDb::new(MemDb::new()), 1);
    let s = Storage::builder()
        .max_unflushed_age(window)
        .lease_ttl(Duration::from_secs(30))
        .build(db)
        .expect("build");
    let t = CancelToken::new();
    s.push(&t, item(1)).expect("push");
    let lease = s.pop_lease(&t).expect("lease");
    s.db().set_down(true);
    eventually(window * 10, "the write is tried and fails", || {
        s.db().counts().failures >= 2
    });
    assert_eq!(s.db().inner().arrival_count(), 0);
    assert_eq!(s.stats().leases_held, 1, "still leased");
    s.db().set_down(false);
    eventually(window * 10, "the retry lands", || {
        s.db().inner().arrival_count() == 1
    });
    assert_eq!(s.db().inner().inner().leased(), 1, "in the Db, leased");
    assert!(lease.ack().is_ok());
    assert_eq!(s.db().inner().inner().leased(), 0, "acked in the Db");
    assert_eq!(s.try_pop().expect("pop"), None);
    assert_eq!(s.db().inner().arrival_count(), 1, "written once");
}
