//! loom models: lifostore's engine state, flusher hand-off and tokens under every interleaving
//! loom explores. Run with:
//!
//! ```text
//! RUSTFLAGS="--cfg lifostore_loom" LOOM_MAX_PREEMPTIONS=3 cargo test -p loom-tests --release
//! ```
//!
//! Under `--cfg lifostore_loom` lifostore's `sync` shim swaps in loom's mutex, condvar, atomics
//! and threads, so the code checked here is the code that ships (MemDb included: its lock is
//! the shim's too). loom has no clock: timed waits are plain waits, so the background flusher
//! only acts when notified (close), and models drive writes explicitly with `flush` - the
//! flusher hand-off is the writer role that `flush` and the flusher share. Each model uses at
//! most 4 threads (including the flusher). loom-tests/README.md lists the mutants each model
//! kills.
#![cfg(lifostore_loom)]

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use lifostore::testing::{FaultyDb, registrations};
use lifostore::{CancelReason, CancelToken, Db, Error, Lease, MemDb, Storage, Unconfirmed};

fn storage() -> Arc<Storage<MemDb>> {
    storage_over(MemDb::new())
}

fn storage_over(db: MemDb) -> Arc<Storage<MemDb>> {
    Arc::new(Storage::new(db).unwrap())
}

/// A model thread blocked in `pop` on `s` with `token`.
fn spawn_pop(
    s: &Arc<Storage<MemDb>>,
    token: &CancelToken,
) -> loom::thread::JoinHandle<Result<Vec<u8>, Error>> {
    let (s, token) = (s.clone(), token.clone());
    loom::thread::spawn(move || s.pop(&token))
}

/// A model thread running `flush` on `s`.
fn spawn_flush(s: &Arc<Storage<MemDb>>) -> loom::thread::JoinHandle<()> {
    let s = s.clone();
    loom::thread::spawn(move || s.flush(&CancelToken::new()).unwrap())
}

/// A model thread that pushes `item` into `s` and then flushes it to the Db.
fn spawn_push_then_flush(s: &Arc<Storage<MemDb>>, item: u8) -> loom::thread::JoinHandle<()> {
    let s = s.clone();
    loom::thread::spawn(move || {
        s.push(&CancelToken::new(), vec![item]).unwrap();
        s.flush(&CancelToken::new()).unwrap();
    })
}

/// Closes `s`, then checks that the popped item `first` and what the Db holds are exactly
/// `expected`, each once: nothing lost, nothing twice.
fn assert_items_once_after_close<const N: usize>(
    s: &Arc<Storage<MemDb>>,
    first: u8,
    expected: [u8; N],
) {
    s.close().unwrap();
    let mut all = vec![first];
    all.extend(s.db().snapshot().into_iter().map(|x| x[0]));
    let unique: HashSet<u8> = all.iter().copied().collect();
    assert_eq!(unique.len(), all.len(), "an item came out twice: {all:?}");
    assert_eq!(unique, HashSet::from(expected), "an item was lost: {all:?}");
}

/// Items already pushed are popped newest first while a flush races the pops, over a Db that
/// already holds an older item: the pops must wait for the in-flight batch (never take the
/// older Db item first), never skip it, never take an item the Db keeps.
#[test]
fn pops_racing_a_flush_are_lifo_and_exactly_once() {
    loom::model(|| {
        let db = MemDb::new();
        db.push(&[0]).unwrap(); // older than anything pushed below
        let s = storage_over(db);
        let t = CancelToken::new();
        for i in 1..=3u8 {
            s.push(&t, vec![i]).unwrap();
        }
        let flusher = spawn_flush(&s);
        let got: Vec<u8> = (0..4).map(|_| s.pop(&t).unwrap()[0]).collect();
        flusher.join().unwrap();
        assert_eq!(got, vec![3, 2, 1, 0]);
        assert!(s.db().is_empty(), "a popped item stayed in the Db");
        s.close().unwrap();
    });
}

/// A `try_pop` whose Db call finds the Db empty races a push and a flush that land an item:
/// the storage must not conclude "the Db is empty" from the stale answer, so the item can
/// still be popped afterwards.
#[test]
fn a_db_pop_racing_a_landing_batch_never_hides_it() {
    loom::model(|| {
        let s = storage();
        let writer = spawn_push_then_flush(&s, 1);
        let first = s.try_pop().unwrap();
        writer.join().unwrap();
        let second = s.try_pop().unwrap();
        let got: Vec<Vec<u8>> = first.into_iter().chain(second).collect();
        assert_eq!(
            got,
            vec![vec![1]],
            "the flushed item was hidden or duplicated"
        );
        s.close().unwrap();
    });
}

/// `Storage::len` races a push and a flush: its Db count may be taken before the batch lands
/// and answered after. The storage must not then keep that stale count (0) as the Db's exact
/// count, or a later pop would believe the Db empty and hide the landed item. A landing bumps
/// the Db view's epoch, so the probe sees that something moved and trusts nothing (M4).
#[test]
fn a_len_racing_a_landing_batch_never_hides_it() {
    loom::model(|| {
        let s = storage();
        let writer = spawn_push_then_flush(&s, 1);
        // Its answer is not judged here (a batch landing during the call may be counted in
        // memory and in the Db alike); only what it leaves the storage believing.
        s.len().unwrap();
        writer.join().unwrap();
        let got: Vec<Vec<u8>> = std::iter::from_fn(|| s.try_pop().unwrap()).collect();
        assert_eq!(
            got,
            vec![vec![1]],
            "the flushed item was hidden or duplicated"
        );
        s.close().unwrap();
    });
}

/// Two flushes at once: each returns only when the items pushed before it are in the Db, even
/// when the other one is writing them.
#[test]
fn flush_returns_only_once_its_items_are_in_the_db() {
    loom::model(|| {
        let s = storage();
        let t = CancelToken::new();
        s.push(&t, vec![1]).unwrap();
        s.push(&t, vec![2]).unwrap();
        let other = spawn_flush(&s);
        s.flush(&t).unwrap();
        assert_eq!(
            s.db().len(),
            2,
            "flush returned before its items were in the Db"
        );
        other.join().unwrap();
        s.close().unwrap();
    });
}

/// `close` while a flush is writing: close returns only once that batch has landed.
#[test]
fn close_waits_for_a_batch_in_flight() {
    loom::model(|| {
        let s = storage();
        s.push(&CancelToken::new(), vec![1]).unwrap();
        let flusher = {
            let s = s.clone();
            loom::thread::spawn(move || s.flush(&CancelToken::new()))
        };
        s.close().unwrap();
        assert_eq!(
            s.db().len(),
            1,
            "close returned before the batch in flight landed"
        );
        // The flush ran first (Ok) or found the storage closed (close wrote the item).
        assert!(matches!(
            flusher.join().unwrap(),
            Ok(()) | Err(Error::Closed)
        ));
    });
}

/// A pusher, a popper and a flush run at once: every item comes out exactly once (popped or
/// left in the Db after close).
#[test]
fn concurrent_push_pop_flush_keeps_every_item_once() {
    loom::model(|| {
        let s = storage();
        let t = CancelToken::new();
        s.push(&t, vec![1]).unwrap();
        let pusher = {
            let (s, t) = (s.clone(), t.clone());
            loom::thread::spawn(move || s.push(&t, vec![2]).unwrap())
        };
        let flusher = spawn_flush(&s);
        let first = s.pop(&t).unwrap()[0];
        pusher.join().unwrap();
        flusher.join().unwrap();
        assert_items_once_after_close(&s, first, [1, 2]);
    });
}

/// A push that finds the buffer full (capacity 1) while no batch is in flight takes the writer
/// role itself, racing the flusher thread (woken by the first push) and a pop: the push
/// returns, and every item comes out exactly once (popped or in the Db after close).
#[test]
fn a_push_finding_the_buffer_full_writes_and_keeps_every_item_once() {
    loom::model(|| {
        let s = Arc::new(
            Storage::builder()
                .max_buffered_items(1)
                .build(MemDb::new())
                .unwrap(),
        );
        let t = CancelToken::new();
        s.push(&t, vec![1]).unwrap();
        let pusher = {
            let (s, t) = (s.clone(), t.clone());
            loom::thread::spawn(move || s.push(&t, vec![2]).unwrap())
        };
        let first = s.pop(&t).unwrap()[0];
        pusher.join().unwrap();
        assert_items_once_after_close(&s, first, [1, 2]);
    });
}

/// A flush whose batch holds an item the Db refuses for good races a pop: the writer isolates
/// the poison item (several Db calls inside the writer role) while the pop waits for the batch
/// in flight. Every item comes out exactly once: popped, in the Db, or kept aside as a dead
/// letter; the poison item never reaches the Db; the pop takes the newest item.
#[test]
fn poison_isolation_racing_a_pop_keeps_every_item_once() {
    loom::model(|| {
        let db = FaultyDb::new(MemDb::new(), 1).reject_items(|item| item == [9], false);
        let s = Arc::new(Storage::new(db).unwrap());
        let t = CancelToken::new();
        for i in [1u8, 9, 2, 3] {
            s.push(&t, vec![i]).unwrap();
        }
        let flusher = {
            let s = s.clone();
            loom::thread::spawn(move || s.flush(&CancelToken::new()).unwrap())
        };
        let popped = s.pop(&t).unwrap()[0];
        flusher.join().unwrap();
        assert_eq!(popped, 3, "the pop took an older item than the newest");
        let in_db: Vec<u8> = s
            .db()
            .inner()
            .snapshot()
            .into_iter()
            .map(|x| x[0])
            .collect();
        let letters: Vec<u8> = s
            .take_dead_letters()
            .into_iter()
            .map(|l| l.item[0])
            .collect();
        assert!(
            !in_db.contains(&9),
            "the poison item reached the Db: {in_db:?}"
        );
        let mut all = vec![popped];
        all.extend(&in_db);
        all.extend(&letters);
        all.sort();
        assert_eq!(
            all,
            vec![1, 2, 3, 9],
            "lost or twice: db {in_db:?}, letters {letters:?}"
        );
        assert_eq!(letters, vec![9]);
        s.close().unwrap();
    });
}

/// A pop blocked on an empty storage wakes when an item is pushed.
#[test]
fn blocked_pop_wakes_on_push() {
    loom::model(|| {
        let s = storage();
        let t = CancelToken::new();
        let popper = spawn_pop(&s, &t);
        s.push(&t, vec![7]).unwrap();
        assert_eq!(popper.join().unwrap().unwrap(), vec![7]);
        assert_eq!(registrations(&t), 0);
        s.close().unwrap();
    });
}

/// A pop blocked on an empty shared Db wakes when another process pushes to the Db and the
/// Db's watch says so (`db_changed_now`, what the watch thread runs), with no re-check due
/// (timed waits are plain waits under loom, and the interval is a year besides). The popper's
/// Db call may find the Db empty before the push, after it, or while the wake-up lands: the
/// epoch the wake-up moves keeps an "empty" answer from holding the popper back, and the
/// wake-up under the lock reaches a popper already asleep.
#[test]
fn blocked_pop_wakes_on_a_db_wake_up() {
    loom::model(|| {
        let db = MemDb::new().shared(true);
        let year = std::time::Duration::from_secs(365 * 24 * 3600);
        let built = Storage::builder().shared_poll_interval(year).build(db);
        let s = Arc::new(built.unwrap());
        let t = CancelToken::new();
        let popper = spawn_pop(&s, &t);
        let other_process = {
            let s = s.clone();
            loom::thread::spawn(move || {
                s.db().push(&[9]).unwrap();
                s.db_changed_now();
            })
        };
        assert_eq!(popper.join().unwrap().unwrap(), vec![9]);
        other_process.join().unwrap();
        assert_eq!(registrations(&t), 0);
        s.close().unwrap();
    });
}

/// Explored executions of `blocked_pop_wakes_on_cancel` whose cancel found the pop registered
/// on the root (a plain std atomic: it counts across loom's iterations and is not modelled).
static CANCELS_OF_A_REGISTERED_POP: AtomicUsize = AtomicUsize::new(0);

/// A pop blocked on an empty storage wakes when its token is cancelled: no lost wakeup between
/// the token check and the wait, and the registration is gone afterwards.
///
/// The cancel runs on a thread of its own, not on the model's main thread. The popper's spin
/// round before it parks is a loom `yield_now` (`SPIN_ROUNDS` is 1 under loom), and loom never
/// schedules a thread at the branch right after its yield: the other runnable thread must take
/// its pending step first. Had the main thread cancelled, that pending step (right after the
/// spawn) would be the cancel's first lock of the root, so every explored execution started the
/// cancel before the pop registered: the pop never blocked and a lost wakeup in `Core::wake`
/// (mutant M2) went unseen. A fresh thread's pending step is only its start. The count after the
/// model checks that some execution did cancel a registered pop.
#[test]
fn blocked_pop_wakes_on_cancel() {
    CANCELS_OF_A_REGISTERED_POP.store(0, Ordering::Relaxed);
    loom::model(|| {
        let s = storage();
        let root = CancelToken::new();
        let child = root.child();
        let popper = spawn_pop(&s, &child);
        let canceller = {
            let root = root.clone();
            loom::thread::spawn(move || {
                if registrations(&root) > 0 {
                    CANCELS_OF_A_REGISTERED_POP.fetch_add(1, Ordering::Relaxed);
                }
                root.cancel();
            })
        };
        assert!(matches!(popper.join().unwrap(), Err(Error::Cancelled)));
        canceller.join().unwrap();
        assert_eq!(registrations(&root), 0);
        assert_eq!(registrations(&child), 0);
        s.close().unwrap();
    });
    assert!(
        CANCELS_OF_A_REGISTERED_POP.load(Ordering::Relaxed) > 0,
        "no explored execution cancelled a registered pop: the model no longer reaches the race"
    );
}

/// `close` while a pop is blocked: the pop returns `Closed` and leaves no registration.
#[test]
fn close_wakes_a_blocked_pop() {
    loom::model(|| {
        let s = storage();
        let t = CancelToken::new();
        let popper = spawn_pop(&s, &t);
        s.close().unwrap();
        assert!(matches!(popper.join().unwrap(), Err(Error::Closed)));
        assert_eq!(registrations(&t), 0);
    });
}

/// A push that takes the last item racing a pop and a cancel: whatever happens, the item is
/// either popped once or still there, and no registration outlives the calls.
#[test]
fn cancel_racing_push_and_pop_loses_nothing() {
    loom::model(|| {
        let s = storage();
        let t = CancelToken::new();
        let popper = spawn_pop(&s, &t);
        let pushed = s.push(&t, vec![9]).is_ok();
        t.cancel();
        let popped = popper.join().unwrap();
        let left = s.try_pop().unwrap();
        match (pushed, popped, left) {
            (true, Ok(x), None) => assert_eq!(x, vec![9]),
            (true, Err(Error::Cancelled), Some(x)) => assert_eq!(x, vec![9]),
            (false, Err(Error::Cancelled), None) => {}
            other => panic!("item lost or duplicated: {other:?}"),
        }
        assert_eq!(registrations(&t), 0);
        s.close().unwrap();
    });
}

/// Two cancels racing an already-passed deadline: every observer sees the same single reason,
/// and it never changes.
#[test]
fn cancel_racing_a_deadline_keeps_one_reason() {
    loom::model(|| {
        let root = CancelToken::new();
        let token = root.with_deadline(std::time::Instant::now());
        let a = {
            let token = token.clone();
            loom::thread::spawn(move || {
                token.cancel();
                token.reason()
            })
        };
        let b = {
            let root = root.clone();
            let token = token.clone();
            loom::thread::spawn(move || {
                root.cancel();
                token.reason()
            })
        };
        let here = token.reason();
        let ra = a.join().unwrap();
        let rb = b.join().unwrap();
        // The deadline passed before either cancel: it is the first end, for everyone.
        for r in [here, ra, rb, token.reason()] {
            assert_eq!(r, Some(CancelReason::DeadlineExceeded));
        }
        assert_eq!(root.reason(), Some(CancelReason::Cancelled));
    });
}

/// `pop_batch` racing a flush, over a Db that already holds an older item, with a push landing
/// in memory while the flush may be writing: the batches, concatenated, are newest first and
/// hold every item once; nothing popped stays in the Db. A batch that found memory empty must
/// wait for the write to land (the Db's older item is not the newest).
#[test]
fn pop_batch_racing_a_flush_is_lifo_and_exactly_once() {
    loom::model(|| {
        let db = MemDb::new();
        db.push(&[0]).unwrap(); // older than anything pushed below
        let s = storage_over(db);
        let t = CancelToken::new();
        s.push(&t, vec![1]).unwrap();
        s.push(&t, vec![2]).unwrap();
        let flusher = spawn_flush(&s);
        s.push(&t, vec![3]).unwrap();
        let mut got = Vec::new();
        while got.len() < 4 {
            let batch = s.pop_batch(&t, 4).unwrap();
            assert!(!batch.is_empty());
            got.extend(batch.into_iter().map(|x| x[0]));
        }
        flusher.join().unwrap();
        assert_eq!(got, vec![3, 2, 1, 0]);
        assert!(s.db().is_empty(), "a popped item stayed in the Db");
        s.close().unwrap();
    });
}

/// Two durable pushes arrive while a `flush` writes an older plain item: whichever of them
/// writes next (woken by the flush's landing, or arriving after it) carries both items in one
/// write when both are buffered, and the other caller, parked on its own slot, must be woken
/// by that write. Both return `Ok` with their items in the Db, after the older one, once each.
#[test]
fn durable_pushes_sharing_a_write_are_each_woken() {
    loom::model(|| {
        let s = storage();
        s.push(&CancelToken::new(), vec![0]).unwrap();
        let flusher = spawn_flush(&s);
        let pushers: Vec<_> = [1u8, 2]
            .into_iter()
            .map(|i| {
                let s = s.clone();
                loom::thread::spawn(move || s.push_durable(&CancelToken::new(), vec![i]))
            })
            .collect();
        for p in pushers {
            p.join().unwrap().unwrap();
        }
        flusher.join().unwrap();
        let in_db: Vec<u8> = s.db().snapshot().into_iter().map(|x| x[0]).collect();
        assert_eq!(in_db.len(), 3, "{in_db:?}");
        assert_eq!(in_db[0], 0, "the older plain item must be below: {in_db:?}");
        assert!(in_db.contains(&1) && in_db.contains(&2), "{in_db:?}");
        s.close().unwrap();
    });
}

/// Two durable pushes racing `close`: a durable push that returned `Ok` finds its item in the
/// Db at that moment; one that stopped with `NotYetDurable { why: Closed }` had its item
/// accepted, and close wrote it; one refused with `Closed` stored nothing. Nothing twice.
#[test]
fn durable_pushes_racing_a_close_keep_every_accepted_item() {
    loom::model(|| {
        let s = storage();
        let pushers: Vec<_> = [1u8, 2]
            .into_iter()
            .map(|i| {
                let s = s.clone();
                loom::thread::spawn(move || {
                    let r = s.push_durable(&CancelToken::new(), vec![i]);
                    if r.is_ok() {
                        assert!(
                            s.db().snapshot().contains(&vec![i]),
                            "push_durable returned Ok before its item was in the Db"
                        );
                    }
                    (i, r)
                })
            })
            .collect();
        s.close().unwrap();
        let in_db: Vec<u8> = s.db().snapshot().into_iter().map(|x| x[0]).collect();
        for p in pushers {
            let (i, r) = p.join().unwrap();
            let stored = in_db.iter().filter(|x| **x == i).count();
            match r {
                Ok(())
                | Err(Error::NotYetDurable {
                    why: Unconfirmed::Closed,
                    ..
                }) => assert_eq!(stored, 1, "accepted item {i}: {in_db:?}"),
                Err(Error::Closed) => assert_eq!(stored, 0, "refused item {i} stored"),
                Err(e) => panic!("{e:?}"),
            }
        }
    });
}

/// A lease races a push, a flush and another pop, over a Db holding an older item: the lease
/// and the pop take distinct items, each the newest there was (nothing left behind is newer
/// than the leased item but the item pushed meanwhile); the released item comes back on top
/// and everything is still there once, newest first.
#[test]
fn a_lease_racing_a_push_a_flush_and_a_pop_is_lifo_and_exactly_once() {
    loom::model(|| {
        let db = MemDb::new();
        db.push(&[0]).unwrap();
        let s = storage_over(db);
        let t = CancelToken::new();
        s.push(&t, vec![1]).unwrap();
        s.push(&t, vec![2]).unwrap();
        let flusher = spawn_flush(&s);
        let popper = {
            let (s, t) = (s.clone(), t.clone());
            loom::thread::spawn(move || {
                s.push(&t, vec![3]).unwrap();
                s.pop(&t).unwrap()[0]
            })
        };
        let lease = s.pop_lease(&t).unwrap();
        let leased = lease[0];
        let popped = popper.join().unwrap();
        flusher.join().unwrap();
        assert_ne!(leased, popped);
        let rest: Vec<u8> = s.try_iter().map(|r| r.unwrap()[0]).collect();
        assert!(
            rest.iter().all(|&x| x < leased || x == 3),
            "leased {leased} while a newer item stayed: {rest:?}"
        );
        lease.release();
        let after: Vec<u8> = s.try_iter().map(|r| r.unwrap()[0]).collect();
        assert_eq!(after, vec![leased], "released: back on top, once");
        let mut all: Vec<u8> = rest.into_iter().chain([leased, popped]).collect();
        all.sort_unstable();
        assert_eq!(all, vec![0, 1, 2, 3]);
        s.close().unwrap();
    });
}

/// A release races a push and a flush: the released item goes back on top (above the pushed
/// item if that came first, below it if it came after), whether the flush wrote it or not.
#[test]
fn release_puts_the_item_back_on_top() {
    // 2 is leased from the Db (MemDb's native lease: the item stays in the Db,
    // hidden); 3 is pushed while it is leased (in memory, above the Db); the release must
    // put 2 above 3, though a plain Db release puts it on top of the Db, under memory. A
    // pusher and a flush race the release.
    loom::model(|| {
        let s = storage();
        let t = CancelToken::new();
        s.push(&t, vec![1]).unwrap();
        s.push(&t, vec![2]).unwrap();
        s.flush(&t).unwrap();
        let lease = s.pop_lease(&t).unwrap();
        assert_eq!(lease[0], 2);
        s.push(&t, vec![3]).unwrap(); // between the lease and the release
        let pusher = {
            let (s, t) = (s.clone(), t.clone());
            loom::thread::spawn(move || s.push(&t, vec![4]).unwrap())
        };
        let flusher = spawn_flush(&s);
        lease.release();
        pusher.join().unwrap();
        flusher.join().unwrap();
        let got: Vec<u8> = s.try_iter().map(|r| r.unwrap()[0]).collect();
        assert!(
            got == vec![2, 4, 3, 1] || got == vec![4, 2, 3, 1],
            "release not on top: {got:?}"
        );
        s.close().unwrap();
    });
}

/// The same for a memory lease: 2 is leased from memory, 3 pushed meanwhile, a pusher and a
/// flush race the release; the drain is 2, 4, 3, 1 or 4, 2, 3, 1 (the released 2 on top of
/// what was there at its release), whether the flush wrote it or not.
#[test]
fn release_of_a_memory_lease_puts_it_back_on_top() {
    loom::model(|| {
        let s = storage();
        let t = CancelToken::new();
        s.push(&t, vec![1]).unwrap();
        s.push(&t, vec![2]).unwrap();
        let lease = s.pop_lease(&t).unwrap();
        assert_eq!(lease[0], 2);
        s.push(&t, vec![3]).unwrap();
        let pusher = {
            let (s, t) = (s.clone(), t.clone());
            loom::thread::spawn(move || s.push(&t, vec![4]).unwrap())
        };
        let flusher = spawn_flush(&s);
        lease.release();
        pusher.join().unwrap();
        flusher.join().unwrap();
        let got: Vec<u8> = s.try_iter().map(|r| r.unwrap()[0]).collect();
        assert!(
            got == vec![2, 4, 3, 1] || got == vec![4, 2, 3, 1],
            "release not on top: {got:?}"
        );
        s.close().unwrap();
    });
}

/// A pop that found memory empty asks the Db while a push_batch of 1, 2 (2 on top) is written
/// by a Db whose `push_batch` is one `push` per item (not atomic). The pop may take the Db's
/// older 0 (before the batch) or 2 (after it), never 1 from under 2: the write waits for the
/// Db pop under way (the history checker found a pop returning the bottom item of a batch
/// whose write had stored only its first half).
#[test]
fn a_db_pop_never_takes_from_under_a_write_in_flight() {
    loom::model(|| {
        let db = MemDb::new().single_item_only();
        db.push(&[0]).unwrap();
        let s = storage_over(db);
        let t = CancelToken::new();
        let popper = spawn_pop(&s, &t);
        let writer = {
            let (s, t) = (s.clone(), t.clone());
            loom::thread::spawn(move || {
                s.push_batch(&t, [vec![1], vec![2]]).unwrap();
                s.flush(&t).unwrap();
            })
        };
        let got = popper.join().unwrap().unwrap()[0];
        writer.join().unwrap();
        let rest: Vec<u8> = s.try_iter().map(|r| r.unwrap()[0]).collect();
        let all = match got {
            0 => vec![0, 2, 1],
            2 => vec![2, 1, 0],
            _ => panic!("popped {got} from under 2 (then {rest:?})"),
        };
        let mut seen = vec![got];
        seen.extend(&rest);
        assert_eq!(seen, all);
        s.close().unwrap();
    });
}

/// An ack racing the expiry of a lease the Db holds (natively), whose return fails (the Db
/// panics on that call): either the ack comes first (it fails, the expiry then returns the
/// item) or the expiry does and fails (the lease is still held: the ack succeeds). An ack
/// must not answer `LeaseExpired` while the item is not back.
#[test]
fn expiry_of_a_db_lease_racing_an_ack_never_reports_an_item_not_back() {
    loom::model(|| {
        lifostore::testing::quiet_injected_panics();
        // Calls: 1 the flush's write, 2 the lease; the 3rd (the return's release, or the
        // ack) panics.
        let db = FaultyDb::new(MemDb::new(), 1).panic_on_call(3);
        let s = Arc::new(Storage::new(db).unwrap());
        let t = CancelToken::new();
        s.push(&t, vec![7]).unwrap();
        s.flush(&t).unwrap();
        let lease = s.pop_lease(&t).unwrap();
        let acker = loom::thread::spawn(move || lease.ack());
        let expirer = {
            let s = s.clone();
            loom::thread::spawn(move || s.expire_leases_now())
        };
        let acked = acker.join().unwrap();
        expirer.join().unwrap();
        let left = s.try_pop().unwrap();
        match (acked, left) {
            (Ok(()), None) => {}
            (Err(Error::LeaseExpired | Error::Db(_)), Some(x)) => assert_eq!(x, vec![7]),
            other => panic!("acked and returned, expired and not back, or lost: {other:?}"),
        }
        s.close().unwrap();
    });
}

/// Expiry races an ack: either the ack wins (the item is gone for good) or the expiry does
/// (the ack fails with `LeaseExpired` and the item is back), never both, never neither.
#[test]
fn expiry_racing_an_ack_removes_or_returns_the_item_once() {
    loom::model(|| {
        let s = storage();
        let t = CancelToken::new();
        s.push(&t, vec![7]).unwrap();
        let lease = s.pop_lease(&t).unwrap();
        let acker = loom::thread::spawn(move || lease.ack());
        let expirer = {
            let s = s.clone();
            loom::thread::spawn(move || s.expire_leases_now())
        };
        let acked = acker.join().unwrap();
        expirer.join().unwrap();
        let left = s.try_pop().unwrap();
        match (acked, left) {
            (Ok(()), None) => {}
            (Err(Error::LeaseExpired), Some(x)) => assert_eq!(x, vec![7]),
            other => panic!("acked and returned, or lost: {other:?}"),
        }
        assert_eq!(s.stats().leases_held, 0);
        s.close().unwrap();
    });
}

/// A storage with a `lease_ttl` far longer than the window, over MemDb's native leases: an
/// item leased from memory goes to the Db still leased when its window comes due
/// (`write_leased_items_now` does what the flusher does then: loom has no clock).
fn storage_with_a_long_ttl() -> Arc<Storage<MemDb>> {
    let builder = Storage::builder().lease_ttl(std::time::Duration::from_secs(3600));
    Arc::new(builder.build(MemDb::new()).unwrap())
}

/// A storage with a long ttl whose only item, 7, is leased from memory: the start of the
/// models of a leased item's write to the Db.
fn a_long_ttl_lease_of_seven() -> (Arc<Storage<MemDb>>, CancelToken, Lease) {
    let s = storage_with_a_long_ttl();
    let t = CancelToken::new();
    s.push(&t, vec![7]).unwrap();
    let lease = s.pop_lease(&t).unwrap();
    (s, t, lease)
}

/// A model thread writing `s`'s memory-leased items to the Db, still leased (the flusher's
/// duty when they come due; loom has no clock).
fn spawn_write_leased(s: &Arc<Storage<MemDb>>) -> loom::thread::JoinHandle<()> {
    let s = s.clone();
    loom::thread::spawn(move || s.write_leased_items_now())
}

/// `close` writes a memory-leased item whose lease outlasts the window to the Db, still leased,
/// as its guard acks it: the ack is `Ok` whether it comes before the write (never written),
/// during it (it waits for the landing, then acks the Db's lease) or after it (it acks in the
/// Db, the storage closed); nothing is left.
#[test]
fn close_racing_an_ack_writes_the_leased_item_at_most_once_and_the_ack_removes_it() {
    loom::model(|| {
        let (s, _, lease) = a_long_ttl_lease_of_seven();
        let acker = loom::thread::spawn(move || lease.ack());
        s.close().unwrap();
        let acked = acker.join().unwrap();
        assert!(acked.is_ok(), "the ack within the ttl failed: {acked:?}");
        assert_eq!(s.db().leased(), 0, "a lease left behind in the Db");
        assert!(s.db().is_empty(), "the acked item is in the Db");
    });
}

/// A lease held across `close` that outlasts the window: its item is in the Db after `close`,
/// still leased (no flusher runs any more to write it when it comes due), and a push racing
/// the close is written as well, or refused.
#[test]
fn close_writes_a_held_lease_that_outlasts_the_window_to_the_db_still_leased() {
    loom::model(|| {
        let (s, t, lease) = a_long_ttl_lease_of_seven();
        let pusher = {
            let (s, t) = (s.clone(), t.clone());
            loom::thread::spawn(move || s.push(&t, vec![8]))
        };
        s.close().unwrap();
        let pushed = pusher.join().unwrap();
        assert_eq!(s.db().leased(), 1, "the leased item is not in the Db");
        assert_eq!(
            s.db().len(),
            usize::from(pushed.is_ok()),
            "a push lost or invented"
        );
        lease.ack().unwrap();
        assert_eq!(s.db().leased(), 0);
    });
}

/// An ack races the write of its memory-leased item to the Db, still leased: the ack is `Ok`
/// whether it comes before the write (the item is never written), during it (it waits for
/// the landing, then acks the Db's lease) or after it; nothing is left, in memory or in the
/// Db, leased or not.
#[test]
fn an_ack_racing_the_write_of_its_leased_item_to_the_db_removes_it_once() {
    loom::model(|| {
        let (s, _, lease) = a_long_ttl_lease_of_seven();
        let acker = loom::thread::spawn(move || lease.ack());
        s.write_leased_items_now();
        let acked = acker.join().unwrap();
        assert!(acked.is_ok(), "the ack within the ttl failed: {acked:?}");
        assert_eq!(s.db().leased(), 0, "a lease left behind in the Db");
        assert_eq!(s.try_pop().unwrap(), None, "the acked item came back");
        assert_eq!(s.stats().leases_held, 0);
        s.close().unwrap();
        assert!(s.db().is_empty());
    });
}

/// A release races the write of its memory-leased item (2, above a buffered 1) to the Db,
/// still leased: the item comes back once, on top, whether the release puts it back in memory
/// (before the write) or the Db's release does (during or after it: the buffered 1 is written
/// first); no lease is left in the Db.
#[test]
fn a_release_racing_the_write_of_its_leased_item_to_the_db_puts_it_back_once_on_top() {
    loom::model(|| {
        let s = storage_with_a_long_ttl();
        let t = CancelToken::new();
        s.push(&t, vec![1]).unwrap();
        s.push(&t, vec![2]).unwrap();
        let lease = s.pop_lease(&t).unwrap();
        let releaser = loom::thread::spawn(move || lease.release());
        s.write_leased_items_now();
        releaser.join().unwrap();
        assert_eq!(s.db().leased(), 0, "a lease left behind in the Db");
        let got: Vec<u8> = s.try_iter().map(|r| r.unwrap()[0]).collect();
        assert_eq!(got, vec![2, 1], "released once, on top");
        s.close().unwrap();
        assert!(s.db().is_empty());
    });
}

/// The expiry of a memory lease (`expire_leases_now`: loom has no clock) races the write of its
/// item to the Db, still leased: expired first, the item is back in memory and never written;
/// written first, or in flight (its deadline passes, but only the landing says where it is),
/// the lease is the Db's, and the flusher or a second expiry returns it from there. Either way the item is back once,
/// no lease is left in the Db, and the late ack says `LeaseExpired` and removes nothing.
#[test]
fn expiry_racing_the_write_of_a_leased_item_to_the_db_returns_it_once() {
    loom::model(|| {
        let (s, _, lease) = a_long_ttl_lease_of_seven();
        let writer = spawn_write_leased(&s);
        s.expire_leases_now();
        writer.join().unwrap();
        s.expire_leases_now();
        assert!(matches!(lease.ack(), Err(Error::LeaseExpired)));
        // The flusher may be returning the lease from the Db (its deadline passed while the
        // write was in flight): a taking call waits for that return to land.
        let got: Vec<u8> = s.try_iter().map(|r| r.unwrap()[0]).collect();
        assert_eq!(got, vec![7], "back once");
        assert_eq!(s.db().leased(), 0, "a lease left behind in the Db");
        assert_eq!(s.stats().leases_held, 0);
        s.close().unwrap();
    });
}

/// A lease's deadline passes (`expire_leases_now`: loom has no clock) before, during or after
/// the write of its memory-leased item to the Db, still leased, while a newer item is
/// buffered: a pop that begins after the deadline takes the leased item first, since a lease
/// past its deadline is back on top. While the write is in flight only its landing says where
/// the item is, so the pop waits for it (M73: a pop that does not wait takes the newer item
/// from memory, from under the item due on top).
#[test]
fn a_pop_after_the_deadline_of_a_lease_being_written_to_the_db_takes_it_first() {
    loom::model(|| {
        let (s, t, lease) = a_long_ttl_lease_of_seven();
        s.push(&t, vec![8]).unwrap();
        let writer = spawn_write_leased(&s);
        s.expire_leases_now();
        let first = s.try_pop().unwrap();
        writer.join().unwrap();
        let second = s.try_pop().unwrap();
        let third = s.try_pop().unwrap();
        assert_eq!(
            (first, second, third, s.db().leased(), s.stats().leases_held),
            (Some(vec![7]), Some(vec![8]), None, 0, 0),
            "(pops in order, leases left in the Db, leases held): the item past its deadline \
             comes back on top, once"
        );
        assert!(matches!(lease.ack(), Err(Error::LeaseExpired)));
        s.close().unwrap();
    });
}
