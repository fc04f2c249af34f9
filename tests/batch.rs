//! The batch and durable forms: `pop_batch`, `try_pop_batch`, `push_batch`,
//! `try_push`, `push_durable` (group commit), `iter`, `try_iter` and the sizes. Their
//! exactly-once and LIFO rules under concurrency are also checked by the history checker
//! (`reliability_history.rs`) and the loom models.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use lifostore::testing::FaultyDb;
use lifostore::{CancelToken, Db, Error, FileDb, MemDb, Storage, TryPushError, Unconfirmed};

mod common;
use common::{TempDir, id_of, item, wait_until_blocked, within};

fn ids(items: &[Vec<u8>]) -> Vec<u64> {
    items.iter().map(|x| id_of(x)).collect()
}

/// A storage whose flusher never writes on its own during a test (long window, big buffer).
fn quiet(db: MemDb) -> Storage<MemDb> {
    Storage::builder()
        .max_unflushed_age(Duration::from_secs(600))
        .build(db)
        .unwrap()
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

#[test]
fn draining_2000_flushed_items_in_batches_of_1024_takes_at_most_3_db_calls() {
    let s = quiet(MemDb::new());
    let t = CancelToken::new();
    s.push_batch(&t, (0..2000).map(item)).unwrap();
    s.flush(&t).unwrap();
    assert_eq!(s.db().len(), 2000);
    let (calls_before, stats_before) = (s.db().calls().pop_calls, s.stats().db_pop_calls);
    let mut got = Vec::new();
    loop {
        let batch = s.try_pop_batch(1024).unwrap();
        if batch.is_empty() {
            break;
        }
        got.extend(ids(&batch));
    }
    assert_eq!(
        got,
        (0..2000).rev().collect::<Vec<_>>(),
        "newest first, each once"
    );
    let db_calls = s.db().calls().pop_calls - calls_before;
    assert!(db_calls <= 3, "{db_calls} Db calls to drain 2000 items");
    assert_eq!(s.stats().db_pop_calls - stats_before, db_calls);
    println!("drained 2000 flushed items with {db_calls} Db calls");
}

#[test]
fn pop_batch_of_zero_returns_at_once_and_takes_nothing() {
    let s = quiet(MemDb::new());
    let t = CancelToken::new();
    s.push(&t, item(1)).unwrap();
    let ended = CancelToken::new();
    ended.cancel();
    assert!(s.pop_batch(&ended, 0).unwrap().is_empty());
    assert!(s.try_pop_batch(0).unwrap().is_empty());
    assert_eq!(s.len_in_memory(), 1);
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
fn concurrent_batch_pushers_and_poppers_see_every_item_once() {
    let s = Arc::new(
        Storage::builder()
            .max_unflushed_age(Duration::from_millis(20))
            .max_buffered_items(64)
            .build(MemDb::with_latency(Duration::from_micros(200)))
            .unwrap(),
    );
    let t = CancelToken::new();
    let got = std::thread::scope(|sc| {
        for p in 0..4u64 {
            let (s, t) = (&s, &t);
            sc.spawn(move || {
                for b in 0..50u64 {
                    let base = p * 10_000 + b * 10;
                    s.push_batch(t, (base..base + 10).map(item)).unwrap();
                }
            });
        }
        let poppers: Vec<_> = (0..3)
            .map(|_| {
                let (s, t) = (&s, &t);
                sc.spawn(move || {
                    let mut mine = Vec::new();
                    let quiet = t.with_timeout(Duration::from_millis(300));
                    while let Ok(batch) = s.pop_batch(&quiet, 7) {
                        assert!(!batch.is_empty() && batch.len() <= 7);
                        mine.extend(ids(&batch));
                    }
                    mine
                })
            })
            .collect();
        poppers
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    s.close().unwrap();
    let mut all = got.clone();
    all.extend(ids(&s.db().snapshot()));
    let unique: HashSet<u64> = all.iter().copied().collect();
    assert_eq!(unique.len(), all.len(), "an item came out twice");
    assert_eq!(unique.len(), 4 * 500, "an item was lost");
    assert!(s.stats().pops_from_db > 0 || s.db().is_empty());
}

// ---- push_batch and try_push ----------------------------------------------------------------

#[test]
fn push_batch_keeps_order_and_refuses_what_could_never_fit() {
    let s = Storage::builder()
        .max_buffered_items(4)
        .max_buffered_bytes(64)
        .max_item_len(16)
        .build(MemDb::new())
        .unwrap();
    let t = CancelToken::new();
    s.push_batch(&t, [item(1), item(2), item(3)]).unwrap();
    assert_eq!(ids(&s.try_pop_batch(10).unwrap()), vec![3, 2, 1]);
    let too_many = s.push_batch(&t, (0..5).map(item)).unwrap_err();
    assert!(
        matches!(
            too_many,
            Error::BatchTooLarge {
                items: 5,
                max_items: 4,
                ..
            }
        ),
        "{too_many:?}"
    );
    let too_big = s.push_batch(&t, [vec![0; 16], vec![0; 16], vec![0; 16], vec![0; 17]]);
    assert!(
        matches!(
            too_big,
            Err(Error::BatchItemTooLarge {
                index: 3,
                len: 17,
                max: 16
            })
        ),
        "{too_big:?}"
    );
    let too_many_bytes = s.push_batch(
        &t,
        vec![vec![0; 16], vec![0; 16], vec![0; 16], vec![0; 16], vec![1]],
    );
    assert!(matches!(too_many_bytes, Err(Error::BatchTooLarge { .. })));
    assert_eq!(s.len_in_memory(), 0, "a refused batch stored something");
    s.push_batch(&t, Vec::<Vec<u8>>::new()).unwrap();
    assert!(too_many.to_string().contains("split"), "{too_many}");
}

#[test]
fn push_batch_waits_for_room_for_the_whole_batch_or_stores_nothing() {
    // The Db is down, so the flusher frees no room: only pops do.
    let s = Arc::new(
        Storage::builder()
            .max_unflushed_age(Duration::from_secs(600))
            .max_buffered_items(4)
            .build(FaultyDb::new(MemDb::new(), 1))
            .unwrap(),
    );
    s.db().set_down(true);
    let t = CancelToken::new();
    s.push_batch(&t, (1..=3).map(item)).unwrap();
    // Room for 1 more, not 2: the batch waits until its deadline and stores nothing.
    let quick = t.with_timeout(Duration::from_millis(50));
    let r = s.push_batch(&quick, [item(4), item(5)]);
    assert!(matches!(r, Err(Error::DeadlineExceeded)), "{r:?}");
    assert_eq!(s.len_in_memory(), 3, "a timed-out batch stored a part");
    // A blocked batch goes in whole once a pop makes room for all of it.
    let waiting = t.child();
    let pusher = {
        let (s, c) = (s.clone(), waiting.clone());
        std::thread::spawn(move || s.push_batch(&c, [item(6), item(7)]))
    };
    wait_until_blocked(&waiting);
    assert_eq!(s.len_in_memory(), 3);
    assert_eq!(ids(&s.try_pop_batch(1).unwrap()), vec![3]);
    within(Duration::from_secs(5), move || pusher.join().unwrap()).unwrap();
    assert_eq!(ids(&s.try_pop_batch(10).unwrap()), vec![7, 6, 2, 1]);
    s.db().set_down(false);
}

#[test]
fn try_push_hands_the_item_back_when_full_or_failed() {
    // The Db is down, so the flusher's early write frees no room.
    let s = Storage::builder()
        .max_unflushed_age(Duration::from_secs(600))
        .max_buffered_items(1)
        .max_item_len(8)
        .build(FaultyDb::new(MemDb::new(), 1))
        .unwrap();
    s.db().set_down(true);
    s.try_push(item(1)).unwrap();
    match s.try_push(item(2)) {
        Err(TryPushError::Full(back)) => assert_eq!(back, item(2)),
        other => panic!("expected Full: {other:?}"),
    }
    let err = s.try_push(vec![0; 9]).unwrap_err();
    assert!(!err.is_full());
    assert!(matches!(
        &err,
        TryPushError::Failed {
            error: Error::ItemTooLarge { .. },
            ..
        }
    ));
    assert_eq!(err.into_inner(), vec![0; 9]);
    s.db().set_down(false);
    s.close().unwrap();
    match s.try_push(item(3)) {
        Err(TryPushError::Failed {
            item: back,
            error: Error::Closed,
        }) => assert_eq!(back, item(3)),
        other => panic!("expected Closed: {other:?}"),
    }
    assert_eq!(s.db().inner().snapshot(), vec![item(1)]);
}

// ---- push_durable ---------------------------------------------------------------------------

#[test]
fn push_durable_returns_once_the_item_is_in_the_db_with_older_items_before_it() {
    let s = quiet(MemDb::new());
    let t = CancelToken::new();
    s.push_batch(&t, [item(1), item(2)]).unwrap();
    s.push_durable(&t, item(3)).unwrap();
    assert_eq!(
        ids(&s.db().snapshot()),
        vec![1, 2, 3],
        "push order kept in the Db"
    );
    s.push(&t, item(4)).unwrap();
    assert_eq!(ids(&s.pop_batch(&t, 10).unwrap()), vec![4]);
    assert_eq!(ids(&s.pop_batch(&t, 10).unwrap()), vec![3, 2, 1]);
}

#[test]
fn concurrent_durable_pushes_share_db_writes() {
    let s = Arc::new(quiet(MemDb::with_latency(Duration::from_millis(5))));
    std::thread::scope(|sc| {
        for i in 0..64 {
            let s = &s;
            sc.spawn(move || s.push_durable(&CancelToken::new(), item(i)).unwrap());
        }
    });
    let calls = s.db().calls().push_calls;
    assert_eq!(s.db().len(), 64, "every durable Ok is in the Db");
    println!("64 durable pushes, {calls} Db writes");
    assert!(
        calls <= 32,
        "{calls} Db writes for 64 durable pushes: no grouping"
    );
}

/// Callers released by a write push again at once and ride in a later write: the next write
/// starts as soon as the last one landed, so a steady crowd splits into two groups that
/// write in turn, each write carrying about half of it (~9 writes here for 256 pushes over a
/// 20 ms Db; 256, one per push, when a durable writer takes only the oldest buffered item:
/// checked by hand).
#[test]
fn durable_callers_pushing_again_keep_sharing_writes() {
    let s = Arc::new(quiet(MemDb::with_latency(Duration::from_millis(20))));
    std::thread::scope(|sc| {
        for i in 0..64 {
            let s = &s;
            sc.spawn(move || {
                for k in 0..4 {
                    s.push_durable(&CancelToken::new(), item(i * 4 + k))
                        .unwrap();
                }
            });
        }
    });
    let calls = s.db().calls().push_calls;
    assert_eq!(s.db().len(), 256);
    println!("64 callers x 4 durable pushes: {calls} Db writes");
    assert!(
        calls <= 24,
        "{calls} Db writes for 64 callers x 4 durable pushes: the crowd is not sharing writes"
    );
}

#[test]
fn an_ended_token_before_hand_off_stores_nothing() {
    let s = quiet(MemDb::new());
    let t = CancelToken::new();
    t.cancel();
    assert!(matches!(s.push_durable(&t, item(1)), Err(Error::Cancelled)));
    assert_eq!(s.len().unwrap(), Some(0));
}

/// Pushes `item(0)` and starts a `flush` of it on another thread; returns once that write is
/// in flight (the Db's latency keeps it there).
fn write_in_flight(s: &Arc<Storage<MemDb>>) -> std::thread::JoinHandle<Result<(), Error>> {
    s.push(&CancelToken::new(), item(0)).unwrap();
    let flush = {
        let s = s.clone();
        std::thread::spawn(move || s.flush(&CancelToken::new()))
    };
    while s.stats().in_flight_items == 0 {
        std::thread::sleep(Duration::from_micros(100)); // waiting for the other thread's state
    }
    flush
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

#[test]
fn a_durable_item_the_db_refuses_for_good_is_dead_lettered() {
    let db = FaultyDb::new(MemDb::new(), 1).reject_items(|x| x == item(9), false);
    let s = Storage::builder().build(db).unwrap();
    let t = CancelToken::new();
    s.push(&t, item(1)).unwrap();
    assert!(matches!(
        s.push_durable(&t, item(9)),
        Err(Error::DeadLettered(_))
    ));
    s.push_durable(&t, item(2)).unwrap();
    assert_eq!(s.db().inner().snapshot(), vec![item(1), item(2)]);
    let letters = s.take_dead_letters();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].item, item(9));
}

#[test]
fn close_during_durable_pushes_keeps_every_accepted_item() {
    let s = Arc::new(quiet(MemDb::with_latency(Duration::from_millis(2))));
    let results: Vec<_> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let s = &s;
                sc.spawn(move || (i, s.push_durable(&CancelToken::new(), item(i))))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(3));
        s.close().unwrap();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let in_db: HashSet<u64> = ids(&s.db().snapshot()).into_iter().collect();
    assert_eq!(in_db.len(), s.db().len(), "an item twice in the Db");
    for (i, r) in results {
        match r {
            Ok(())
            | Err(Error::NotYetDurable {
                why: Unconfirmed::Closed,
                ..
            }) => {
                assert!(in_db.contains(&i), "accepted item {i} lost: {r:?}")
            }
            Err(Error::Closed) => assert!(!in_db.contains(&i), "refused item {i} stored"),
            other => panic!("{other:?}"),
        }
    }
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

#[test]
fn try_iter_drains_memory_and_db_without_waiting() {
    let s = quiet(MemDb::new());
    let t = CancelToken::new();
    s.push_batch(&t, (1..=2).map(item)).unwrap();
    s.flush(&t).unwrap();
    s.push(&t, item(3)).unwrap();
    let got: Vec<u64> = s.try_iter().map(|x| id_of(&x.unwrap())).collect();
    assert_eq!(got, vec![3, 2, 1]);
    assert_eq!(s.try_iter().count(), 0);
}

// ---- sizes ----------------------------------------------------------------------------------

#[test]
fn sizes_count_memory_and_db() {
    let s = quiet(MemDb::new());
    let t = CancelToken::new();
    assert_eq!(s.is_empty().unwrap(), Some(true));
    s.push_batch(&t, (1..=3).map(item)).unwrap();
    s.flush(&t).unwrap();
    s.push(&t, item(4)).unwrap();
    assert_eq!(s.len_in_memory(), 1);
    assert_eq!(s.len().unwrap(), Some(4));
    assert_eq!(s.stats().db_len, Some(3), "a quiet count is kept");
    s.pop_batch(&t, 2).unwrap(); // 4, from memory
    s.pop_batch(&t, 2).unwrap(); // 3, 2 from the Db
    assert_eq!(s.len().unwrap(), Some(1));
    assert_eq!(s.stats().db_len, Some(1));
}

#[test]
fn sizes_over_a_file_db_and_an_uncountable_db() {
    let dir = TempDir::new("batch-sizes");
    let path = dir.file("q.lifo");
    {
        let s = Storage::open(&path).unwrap();
        s.push_batch(&CancelToken::new(), (0..5).map(item)).unwrap();
        s.close().unwrap();
    }
    let s = Storage::builder()
        .build(FileDb::open(&path).unwrap())
        .unwrap();
    assert_eq!(s.stats().db_len, None, "not known before it is asked");
    assert_eq!(s.len().unwrap(), Some(5));
    assert_eq!(s.is_empty().unwrap(), Some(false));

    /// A Db that cannot count (the trait's default).
    struct Uncountable(MemDb);
    impl Db for Uncountable {
        fn push(&self, data: &[u8]) -> Result<(), lifostore::DbError> {
            self.0.push(data)
        }
        fn pop(&self) -> Result<Option<Vec<u8>>, lifostore::DbError> {
            self.0.pop()
        }
    }
    let s = Storage::new(Uncountable(MemDb::new())).unwrap();
    assert_eq!(s.len().unwrap(), None);
    assert_eq!(s.is_empty().unwrap(), None);
    s.push(&CancelToken::new(), item(1)).unwrap();
    assert_eq!(s.is_empty().unwrap(), Some(false));
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
