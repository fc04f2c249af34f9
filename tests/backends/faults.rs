//! Redis and PostgreSQL under the worst connection fault: the server executed a push or a pop,
//! and its reply never reached the client (a proxy drops it and closes both sides). What
//! becomes of a push that is retried, of a `push_leased` that is retried, and of the items a
//! lost pop took?
//!
//! A module of tests/backends.rs: same servers, same skipping rules, same lock against the
//! restart tests.

use std::collections::BTreeMap;
use std::time::Duration;

use lifostore::{CancelToken, Storage};

use super::{SERVER, drain, id, open, server, unique};
use crate::common::proxy::{Protocol, Proxy};

/// The `127.0.0.1:port` in `url`.
fn host_port(url: &str) -> &str {
    let start = url.find("127.0.0.1:").expect("a loopback URL");
    let rest = &url[start..];
    let end = rest[10..]
        .find(|c: char| !c.is_ascii_digit())
        .map_or(rest.len(), |i| i + 10);
    &rest[..end]
}

/// A proxy in front of the server of `url`, and the URL that goes through it.
fn proxied(kind: &str, url: &str) -> (Proxy, String) {
    let protocol = if kind == "redis" {
        Protocol::Redis
    } else {
        Protocol::Postgres
    };
    let upstream = host_port(url);
    let proxy = Proxy::start(upstream, protocol);
    let via = url.replace(upstream, &proxy.addr().to_string());
    (proxy, via)
}

fn item(id: u64) -> [u8; 8] {
    id.to_le_bytes()
}

/// How many items, of those expected once each, came back twice or never.
fn tally(expected: impl IntoIterator<Item = u64>, got: &[u64]) -> (usize, usize) {
    let mut counts: BTreeMap<u64, usize> = expected.into_iter().map(|i| (i, 0)).collect();
    let mut foreign = 0;
    for g in got {
        match counts.get_mut(g) {
            Some(n) => *n += 1,
            None => foreign += 1,
        }
    }
    assert_eq!(foreign, 0, "items nobody pushed came back: {got:?}");
    let twice = counts.values().map(|&n| n.saturating_sub(1)).sum();
    let lost = counts.values().filter(|&&n| n == 0).count();
    (twice, lost)
}

/// A push whose reply is lost, retried as the storage does (the same items first, then the
/// same items with newer ones behind): every item is stored once.
fn push_reply_lost(kind: &str, url: &str) {
    let name = unique("push_lost");
    let (proxy, via) = proxied(kind, url);
    let db = open(kind, &via, &name);
    let direct = open(kind, url, &name);
    db.push_batch(&[&item(1), &item(2)])
        .expect("push before the fault");

    proxy.cut_next_reply();
    let err = db.push_batch(&[&item(3), &item(4), &item(5)]).unwrap_err();
    assert_eq!(proxy.cuts(), 1, "the reply was not cut");
    assert_eq!(err.stored, 0, "a lost reply reports nothing stored: {err}");
    assert!(!err.source.is_permanent(), "a lost connection is transient");
    db.push_batch(&[&item(3), &item(4), &item(5)])
        .expect("retry");

    proxy.cut_next_reply();
    assert!(db.push_batch(&[&item(6), &item(7)]).is_err());
    assert_eq!(proxy.cuts(), 2);
    db.push_batch(&[&item(6), &item(7), &item(8)])
        .expect("retry with a newer item");

    let got = drain(&*direct);
    let (twice, lost) = tally(1..=8, &got);
    println!("{kind}: 2 push replies lost and retried: {twice} stored twice, {lost} lost");
    assert_eq!(got, vec![8, 7, 6, 5, 4, 3, 2, 1]);
}

/// A push whose request never reached the server fails like one whose reply was lost; the
/// retry must then store every item (the mitigation skips only what the server recorded).
fn push_request_lost(kind: &str, url: &str) {
    let name = unique("request_lost");
    let (proxy, via) = proxied(kind, url);
    let db = open(kind, &via, &name);
    let direct = open(kind, url, &name);
    db.push_batch(&[&item(1)]).expect("push before the fault");

    proxy.cut_next_request();
    assert!(db.push_batch(&[&item(2), &item(3)]).is_err());
    assert_eq!(proxy.cuts(), 1, "the request was not cut");
    assert_eq!(
        direct.pop_batch(10).unwrap().len(),
        1,
        "the server saw the cut push"
    );
    db.push_batch(&[&item(2), &item(3), &item(4)])
        .expect("retry");

    proxy.cut_next_request();
    assert!(db.pop_batch(10).is_err());
    assert_eq!(proxy.cuts(), 2);
    let got: Vec<u64> = db.pop_batch(10).unwrap().iter().map(|x| id(x)).collect();
    let (twice, lost) = tally(2..=4, &got);
    println!("{kind}: push and pop requests lost: {twice} stored twice, {lost} lost");
    assert_eq!(got, vec![4, 3, 2]);
    assert_eq!(drain(&*direct), Vec::<u64>::new());
}

/// A pop whose reply is lost: the server took the items; the client's next pop gets them.
fn pop_reply_lost(kind: &str, url: &str) {
    let name = unique("pop_lost");
    let (proxy, via) = proxied(kind, url);
    let db = open(kind, &via, &name);
    let direct = open(kind, url, &name);
    direct
        .push_batch(&[&item(1), &item(2), &item(3), &item(4)])
        .unwrap();

    proxy.cut_next_reply();
    assert!(db.pop_batch(2).is_err(), "the pop's reply was cut");
    assert_eq!(proxy.cuts(), 1);
    // The server executed the pop: another client sees only the two older items.
    assert_eq!(direct.pop().unwrap().map(|x| id(&x)), Some(2));

    let mut got = vec![2];
    got.extend(db.pop_batch(10).unwrap().iter().map(|x| id(x)));
    got.extend(drain(&*direct));
    let (twice, lost) = tally(1..=4, &got);
    println!("{kind}: 1 pop reply lost: {twice} popped twice, {lost} lost");
    assert_eq!(
        got,
        vec![2, 4, 3, 1],
        "the lost pop's items come back on top"
    );

    // A client dropped after a lost pop reply gives the items back at once.
    direct.push_batch(&[&item(5), &item(6)]).unwrap();
    proxy.cut_next_reply();
    assert!(db.pop_batch(1).is_err());
    assert_eq!(proxy.cuts(), 2);
    drop(db);
    assert_eq!(
        drain(&*direct),
        vec![6, 5],
        "the dropped client gave item 6 back"
    );
}

/// A storage over `kind` at `url` through a cutting proxy, holding items `0..n` (window 30 s),
/// whose first flush lost its reply: the flush failed, the batch is buffered again.
fn storage_after_a_lost_flush(
    kind: &str,
    url: &str,
    name: &str,
    n: u64,
) -> (Proxy, Storage<Box<dyn lifostore::Db>>, CancelToken) {
    let (proxy, via) = proxied(kind, url);
    let storage = Storage::builder()
        .max_unflushed_age(Duration::from_secs(30))
        .build(open(kind, &via, name))
        .expect("build the storage");
    let t = CancelToken::new();
    for i in 0..n {
        storage.push(&t, item(i).to_vec()).unwrap();
    }
    proxy.cut_next_reply();
    assert!(storage.flush(&t).is_err(), "the flush's reply was cut");
    assert_eq!(proxy.cuts(), 1);
    (proxy, storage, t)
}

/// Through a Storage: a flush whose reply is lost is retried by the storage; a pop whose reply
/// is lost fails and the next pop returns its items. Everything comes out exactly once.
fn storage_reply_lost(kind: &str, url: &str) {
    let name = unique("storage_lost");
    let (proxy, storage, t) = storage_after_a_lost_flush(kind, url, &name, 100);
    storage.flush(&t).expect("the retried flush");

    proxy.cut_next_reply();
    assert!(storage.try_pop().is_err(), "the pop's reply was cut");
    assert_eq!(proxy.cuts(), 2);
    let mut got = Vec::new();
    while let Some(x) = storage.try_pop().unwrap() {
        got.push(id(&x));
    }
    let stats = storage.stats();
    storage.close().unwrap();
    got.extend(drain(&*open(kind, url, &name)));
    let (twice, lost) = tally(0..100, &got);
    println!(
        "{kind}: storage, 1 flush and 1 pop reply lost: {twice} twice, {lost} lost, {} Db failures",
        stats.db_failures
    );
    assert_eq!((twice, lost), (0, 0));
    assert_eq!(got, (0..100).rev().collect::<Vec<_>>(), "newest first");
}

/// What stays: a pop takes, from memory, an item of a batch whose push reply was lost; the
/// storage's retry no longer contains it, but the lost attempt stored it. That item is in the
/// Db and in the caller's hands: delivered twice, exactly that one.
fn popped_from_memory_after_lost_push(kind: &str, url: &str) {
    let name = unique("residual");
    let (_proxy, storage, t) = storage_after_a_lost_flush(kind, url, &name, 10);
    // The failed batch is buffered again; the newest item comes from memory.
    let mut got = vec![id(&storage.try_pop().unwrap().expect("item 9"))];
    storage.flush(&t).expect("the retry, without item 9");
    while let Some(x) = storage.try_pop().unwrap() {
        got.push(id(&x));
    }
    storage.close().unwrap();
    got.extend(drain(&*open(kind, url, &name)));
    let (twice, lost) = tally(0..10, &got);
    println!("{kind}: item popped from memory after a lost push reply: {twice} twice, {lost} lost");
    assert_eq!(got, vec![9, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0]);
}

/// How many leases `db` holds (deadlines in the server), through its own client.
fn held(db: &dyn lifostore::Db) -> usize {
    let leases = db.leases().expect("native leases");
    leases.held_deadlines().expect("held deadlines").len()
}

/// A `push_leased` whose reply is lost answers `Err`; the storage's retry of the same items
/// gets ids instead of storing them again, so each item is held once, and after the acks
/// nothing is left: no orphan lease comes back at its deadline. A call whose request was lost
/// is stored by its retry; another call of equal items, while the first is in doubt or after it
/// was answered, stores them anew.
fn push_leased_reply_lost(kind: &str, url: &str) {
    let name = unique("leased_lost");
    let (proxy, via) = proxied(kind, url);
    let db = open(kind, &via, &name);
    let direct = open(kind, url, &name);
    let leases = db.leases().expect("native leases");
    let ttl = Duration::from_millis(1500);
    let (one, two, three) = (item(1), item(2), item(3));
    let items: [&[u8]; 2] = [&one, &two];

    proxy.cut_next_reply();
    let err = leases.push_leased(&items, ttl, 1).unwrap_err();
    assert_eq!(proxy.cuts(), 1, "the reply was not cut");
    assert!(!err.is_permanent(), "a lost connection is transient: {err}");
    assert_eq!(held(&*direct), 2, "the server stored the cut call");
    // Another call of equal bytes while the first is in doubt: two more leased items.
    let twin = leases
        .push_leased(&items, ttl, 2)
        .expect("another call, equal bytes");
    assert_eq!(
        held(&*direct),
        4,
        "a call of equal bytes was taken for the call in doubt"
    );
    let ids = leases.push_leased(&items, ttl, 1).expect("retry");
    assert_eq!(ids.len(), 2);
    assert_eq!(
        held(&*direct),
        4,
        "the retry stored the items a second time"
    );
    assert!(
        twin.iter().all(|id| !ids.contains(id)),
        "two calls, one set of ids"
    );

    proxy.cut_next_request();
    assert!(leases.push_leased(&[&three], ttl, 3).is_err());
    assert_eq!(proxy.cuts(), 2, "the request was not cut");
    assert_eq!(held(&*direct), 4, "the server saw the cut request");
    let third = leases
        .push_leased(&[&three], ttl, 3)
        .expect("retry of the lost request");
    assert_eq!(
        held(&*direct),
        5,
        "the retry of a lost request stores its item"
    );

    leases
        .ack(&ids)
        .expect("the retry's ids are the leases held");
    leases.ack(&third).expect("ack the third");
    leases.ack(&twin).expect("ack the twin call's leases");
    let again = leases
        .push_leased(&items, ttl, 4)
        .expect("equal items, a new call");
    assert!(
        again.iter().all(|id| !ids.contains(id)),
        "a new call gets new ids"
    );
    leases.ack(&again).expect("ack the new call's leases");

    // Past the ttl, an orphan lease would be back on top: nothing may be left.
    std::thread::sleep(ttl + Duration::from_millis(300));
    let other = direct.leases().expect("native leases");
    let orphans: Vec<u64> = other
        .pop_lease(10, ttl)
        .expect("pop_lease")
        .iter()
        .map(|l| id(&l.item))
        .collect();
    assert_eq!(orphans, Vec::<u64>::new(), "an acked item came back");
    assert_eq!(
        drain(&*direct),
        Vec::<u64>::new(),
        "an acked item came back"
    );
    println!("{kind}: push_leased reply lost and retried: each item stored once");
}

/// Through a Storage: a lease from memory outlasting the window is written to the server still
/// leased; that write's reply is lost, the flusher retries it, and the server holds the item
/// once. Acked, the item is gone for good: nothing comes back at the lost call's deadline.
fn storage_push_leased_reply_lost(kind: &str, url: &str) {
    let name = unique("leased_storage");
    let (proxy, via) = proxied(kind, url);
    let direct = open(kind, url, &name);
    let ttl = Duration::from_secs(2);
    let s = Storage::builder()
        .max_unflushed_age(Duration::from_millis(300))
        .lease_ttl(ttl)
        .build(open(kind, &via, &name))
        .expect("build the storage");
    let t = CancelToken::new();
    s.push(&t, item(1).to_vec()).expect("push");
    let lease = s.pop_lease(&t).expect("lease from memory");
    proxy.cut_next_reply();
    let until = std::time::Instant::now() + Duration::from_secs(10);
    // Waiting for the flusher's write, whose reply is cut (it landed): another thread.
    while proxy.cuts() == 0 || held(&*direct) == 0 {
        assert!(
            std::time::Instant::now() < until,
            "the write never came: cuts {}, held {}",
            proxy.cuts(),
            held(&*direct)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // The retry comes a thirty-second of the window after the failure: let it land.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(held(&*direct), 1, "the retry stored the item a second time");
    lease.ack().expect("an ack within the ttl");
    assert_eq!(held(&*direct), 0, "acked: no lease left");
    std::thread::sleep(ttl + Duration::from_secs(2));
    let other = direct.leases().expect("native leases");
    assert!(
        other.pop_lease(10, ttl).expect("pop_lease").is_empty(),
        "the item came back"
    );
    assert_eq!(drain(&*direct), Vec::<u64>::new(), "the item came back");
    s.close().expect("close");
}

/// The marks `push_leased` leaves for its retries do not pile up: Redis's expire a minute past
/// the ttl by themselves; PostgreSQL's past their time are deleted by the next call.
fn leased_marks_expire(kind: &str, url: &str) {
    let name = unique("lmarks");
    let db = open(kind, url, &name);
    let leases = db.leases().expect("native leases");
    // Long enough that the final ack finds its lease held however slowly the steps between run
    // (a reopen, a table dropped): the test is about the marks, not the deadline.
    let ttl = Duration::from_secs(10);
    let ids = leases
        .push_leased(&[&item(1)], ttl, 1)
        .expect("push_leased");
    // A mark lives a minute past its leases' ttl.
    let mark_life_ms = 60_000 + ttl.as_millis() as i64;
    match kind {
        #[cfg(feature = "redis")]
        "redis" => {
            let mut raw = ::redis::Client::open(url)
                .and_then(|c| c.get_connection())
                .expect("a raw connection");
            let marks: Vec<String> = ::redis::cmd("KEYS")
                .arg(format!("{name}:lmark:*"))
                .query(&mut raw)
                .expect("KEYS");
            assert_eq!(marks.len(), 1, "one mark per call: {marks:?}");
            let pttl: i64 = ::redis::cmd("PTTL")
                .arg(&marks[0])
                .query(&mut raw)
                .expect("PTTL");
            assert!(
                pttl > 0 && pttl <= mark_life_ms,
                "the mark expires by itself: {pttl} ms"
            );
        }
        #[cfg(feature = "postgres")]
        "postgres" => {
            let mut raw =
                ::postgres::Client::connect(url, ::postgres::NoTls).expect("a raw connection");
            let marks = format!("SELECT count(*) FROM {name}_lmarks");
            let count = |raw: &mut ::postgres::Client| -> i64 {
                raw.query_one(&marks, &[]).expect("count").get(0)
            };
            assert_eq!(count(&mut raw), 1, "one mark per call");
            let late = format!(
                "SELECT count(*) FROM {name}_lmarks \
                 WHERE expires_at > now() + interval '{mark_life_ms} milliseconds'"
            );
            let late: i64 = raw.query_one(&late, &[]).expect("late").get(0);
            assert_eq!(late, 0, "the mark expires a minute past the ttl");
            let past = format!("UPDATE {name}_lmarks SET expires_at = now() - interval '1 s'");
            raw.execute(&past, &[]).expect("age the mark");
            let more = leases
                .push_leased(&[&item(2)], ttl, 2)
                .expect("push_leased");
            assert_eq!(count(&mut raw), 1, "the next call deleted the expired mark");
            leases.ack(&more).expect("ack");
            // A table made by a build without marks: `open` adds the marks table.
            let drop_marks = format!("DROP TABLE {name}_lmarks");
            raw.batch_execute(&drop_marks)
                .expect("drop the marks table");
            let reopened = open(kind, url, &name);
            let leases = reopened.leases().expect("native leases");
            let more = leases
                .push_leased(&[&item(3)], ttl, 3)
                .expect("push_leased");
            assert_eq!(count(&mut raw), 1, "the reopened table has its marks");
            leases.ack(&more).expect("ack");
        }
        _ => unreachable!("a server backend"),
    }
    leases.ack(&ids).expect("ack");
}

macro_rules! fault_tests {
    ($feature:literal, $module:ident, $kind:literal, $url_var:literal) => {
        #[cfg(feature = $feature)]
        mod $module {
            use super::*;

            #[test]
            fn push_reply_lost_then_retried_is_stored_once() {
                let _shared = SERVER.read().unwrap_or_else(|e| e.into_inner());
                if let Some(url) = server($url_var) {
                    push_reply_lost($kind, &url);
                }
            }

            #[test]
            fn request_lost_before_the_server_then_retried_is_stored_once() {
                let _shared = SERVER.read().unwrap_or_else(|e| e.into_inner());
                if let Some(url) = server($url_var) {
                    push_request_lost($kind, &url);
                }
            }

            #[test]
            fn pop_reply_lost_items_come_back() {
                let _shared = SERVER.read().unwrap_or_else(|e| e.into_inner());
                if let Some(url) = server($url_var) {
                    pop_reply_lost($kind, &url);
                }
            }

            #[test]
            fn item_popped_from_memory_after_a_lost_push_is_delivered_twice() {
                let _shared = SERVER.read().unwrap_or_else(|e| e.into_inner());
                if let Some(url) = server($url_var) {
                    popped_from_memory_after_lost_push($kind, &url);
                }
            }

            #[test]
            fn push_leased_reply_lost_then_retried_is_stored_once() {
                let _shared = SERVER.read().unwrap_or_else(|e| e.into_inner());
                if let Some(url) = server($url_var) {
                    push_leased_reply_lost($kind, &url);
                }
            }

            #[test]
            fn storage_push_leased_reply_lost_then_retried_is_stored_once() {
                let _shared = SERVER.read().unwrap_or_else(|e| e.into_inner());
                if let Some(url) = server($url_var) {
                    storage_push_leased_reply_lost($kind, &url);
                }
            }

            #[test]
            fn push_leased_marks_expire() {
                let _shared = SERVER.read().unwrap_or_else(|e| e.into_inner());
                if let Some(url) = server($url_var) {
                    leased_marks_expire($kind, &url);
                }
            }

            #[test]
            fn storage_with_lost_replies_keeps_every_item_once() {
                let _shared = SERVER.read().unwrap_or_else(|e| e.into_inner());
                if let Some(url) = server($url_var) {
                    storage_reply_lost($kind, &url);
                }
            }
        }
    };
}

fault_tests!("redis", redis, "redis", "LIFOSTORE_REDIS_URL");
fault_tests!("postgres", postgres, "postgres", "LIFOSTORE_POSTGRES_URL");
