//! Redis and PostgreSQL backends against real servers (features `redis`, `postgres`).
//!
//! Servers come from LIFOSTORE_REDIS_URL / LIFOSTORE_POSTGRES_URL (`.ci/with-servers` starts
//! both on loopback and sets them). Without a URL a test says it was skipped, except under CI
//! (`CI` set), where a missing server is a failure.
#![cfg(any(feature = "redis", feature = "postgres"))]

use std::collections::HashSet;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lifostore::{CancelToken, Db, Storage};

mod common;
use common::{batch_rates, error_chain, run_children};

#[path = "backends/faults.rs"]
mod faults;

/// Restart tests take this for writing; every other test for reading, so no test runs while
/// its server is being restarted.
static SERVER: std::sync::RwLock<()> = std::sync::RwLock::new(());

const WORKER_ENV: &str = "LIFOSTORE_BACKEND_WORKER";
const PER_WORKER: u64 = 200;

/// The server URL for `var`, or `None` (with a message) when the test should be skipped.
fn server(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{var} is not set: CI must provide the server")
        }
        _ => {
            eprintln!("skipped: no server (set {var}, or run through .ci/with-servers)");
            None
        }
    }
}

/// A name no other test or run uses.
fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{prefix}_{}_{nanos}", std::process::id())
}

fn open(kind: &str, url: &str, name: &str) -> Box<dyn Db> {
    match kind {
        #[cfg(feature = "redis")]
        "redis" => Box::new(lifostore::RedisDb::open(url).expect("redis").with_key(name)),
        #[cfg(feature = "postgres")]
        "postgres" => Box::new(
            lifostore::PostgresDb::open(url)
                .expect("postgres")
                .with_table(name)
                .expect("table"),
        ),
        other => panic!("unknown backend {other}"),
    }
}

fn id(item: &[u8]) -> u64 {
    u64::from_le_bytes(item.try_into().expect("8-byte item"))
}

fn drain(db: &dyn Db) -> Vec<u64> {
    let mut out = Vec::new();
    loop {
        let batch = db.pop_batch(500).expect("drain");
        if batch.is_empty() {
            return out;
        }
        out.extend(batch.iter().map(|x| id(x)));
    }
}

fn lifo_semantics(kind: &str, url: &str) {
    let db = open(kind, url, &unique("lifo"));
    assert_eq!(db.pop().unwrap(), None);
    assert_eq!(db.pop_batch(3).unwrap(), Vec::<Vec<u8>>::new());
    db.push(b"a").unwrap();
    db.push_batch(&[b"b", b"", b"d"]).unwrap();
    assert_eq!(db.item_count().unwrap(), Some(4));
    assert_eq!(db.pop().unwrap(), Some(b"d".to_vec()));
    assert_eq!(db.pop_batch(2).unwrap(), vec![b"".to_vec(), b"b".to_vec()]);
    assert_eq!(db.pop_batch(10).unwrap(), vec![b"a".to_vec()]);
    assert_eq!(db.pop().unwrap(), None);
    assert_eq!(db.item_count().unwrap(), Some(0));
    assert!(db.capabilities().shared);
}

fn storage_end_to_end(kind: &str, url: &str) {
    let name = unique("e2e");
    let storage = Storage::builder()
        .max_unflushed_age(Duration::from_millis(100))
        .build(open(kind, url, &name))
        .unwrap();
    let t = CancelToken::new();
    for i in 0..500u64 {
        storage.push(&t, i.to_le_bytes().to_vec()).unwrap();
    }
    storage.flush(&t).unwrap();
    let got: Vec<u64> = (0..500).map(|_| id(&storage.pop(&t).unwrap())).collect();
    assert_eq!(got, (0..500).rev().collect::<Vec<_>>());
    storage.close().unwrap();
}

/// Worker mode (a child process): its own Storage over the shared Db; pushes its ids, pops
/// about half as many, then closes (its unpopped items go to the Db). Prints what it popped.
#[test]
fn backend_worker() {
    let Ok(spec) = std::env::var(WORKER_ENV) else {
        return;
    };
    let parts: Vec<&str> = spec.splitn(4, '|').collect();
    let (kind, url, name, who) = (
        parts[0],
        parts[1],
        parts[2],
        parts[3].parse::<u64>().unwrap(),
    );
    let storage = Storage::builder()
        .max_unflushed_age(Duration::from_millis(50))
        .shared_poll_interval(Duration::from_millis(10))
        .build(open(kind, url, name))
        .unwrap();
    let t = CancelToken::new();
    println!();
    for i in 0..PER_WORKER {
        storage
            .push(&t, (who * 1_000_000 + i).to_le_bytes().to_vec())
            .unwrap();
        if i % 2 == 1 {
            let x = storage.pop(&t).unwrap();
            println!("POPPED {}", id(&x));
        }
        if i % 40 == 0 {
            std::thread::sleep(Duration::from_millis(20)); // let items age into the Db
        }
    }
    storage.close().unwrap();
}

fn many_workers(kind: &str, url: &str) {
    let name = unique("workers");
    let specs: Vec<String> = (1..=4u64)
        .map(|who| format!("{kind}|{url}|{name}|{who}"))
        .collect();
    let popped = run_children("backend_worker", WORKER_ENV, &specs);
    let left = drain(&*open(kind, url, &name));
    let mut all = popped.clone();
    all.extend(&left);
    let unique_ids: HashSet<u64> = all.iter().copied().collect();
    assert_eq!(unique_ids.len(), all.len(), "an item was popped twice");
    let pushed: HashSet<u64> = (1..=4u64)
        .flat_map(|w| (0..PER_WORKER).map(move |i| w * 1_000_000 + i))
        .collect();
    let lost: Vec<_> = pushed.difference(&unique_ids).collect();
    assert!(lost.is_empty(), "lost {lost:?}");
    assert_eq!(unique_ids, pushed);
    println!(
        "{kind}: 4 workers popped {}, {} left in the Db",
        popped.len(),
        left.len()
    );
}

fn blocked_pop_sees_other_process(kind: &str, url: &str) {
    let name = unique("shared");
    let storage = Arc::new(
        Storage::builder()
            .shared_poll_interval(Duration::from_millis(20))
            .build(open(kind, url, &name))
            .unwrap(),
    );
    let waiter = {
        let s = storage.clone();
        std::thread::spawn(move || s.pop(&CancelToken::new().with_timeout(Duration::from_secs(10))))
    };
    std::thread::sleep(Duration::from_millis(100));
    open(kind, url, &name).push(&42u64.to_le_bytes()).unwrap();
    assert_eq!(id(&waiter.join().unwrap().unwrap()), 42);
}

/// A pop blocked on an empty storage is woken by another client's push, and by the deadline
/// of a lease another client let expire, through the Db's wake-ups alone: the re-check is an
/// hour, so neither item could arrive by polling.
fn woken_without_recheck(kind: &str, url: &str) {
    let name = unique("wake");
    let storage = Arc::new(
        Storage::builder()
            .shared_recheck_interval(Duration::from_secs(3600))
            .build(open(kind, url, &name))
            .unwrap(),
    );
    let pop = |s: &Arc<Storage<Box<dyn Db>>>| {
        let s = s.clone();
        let token = CancelToken::new().with_timeout(Duration::from_secs(20));
        let t = token.clone();
        let popper = std::thread::spawn(move || s.pop(&t));
        common::wait_until_blocked(&token);
        popper
    };
    let popper = pop(&storage);
    let other = open(kind, url, &name);
    other.push(&42u64.to_le_bytes()).unwrap();
    assert_eq!(id(&popper.join().unwrap().unwrap()), 42);
    other.push(&43u64.to_le_bytes()).unwrap();
    let ttl = Duration::from_millis(300);
    assert_eq!(other.leases().unwrap().pop_lease(1, ttl).unwrap().len(), 1);
    let popper = pop(&storage);
    assert_eq!(
        id(&popper.join().unwrap().unwrap()),
        43,
        "back after its lease expired"
    );
    assert!(storage.stats().db_pop_calls <= 8, "{:?}", storage.stats());
}

/// A watch whose connection the server closed (a restart) subscribes again: a pop blocked
/// after the restart is woken by another client's push, the re-check an hour away. (A
/// PostgreSQL listener used to read a closed connection as a quiet one: it never subscribed
/// again, and spun through its waits.)
fn watch_survives_restart(kind: &str, url: &str, restart_var: &str) {
    let Ok(restart) = std::env::var(restart_var) else {
        eprintln!("skipped: set {restart_var} to a command that restarts the server");
        return;
    };
    let name = unique("rewatch");
    let storage = Arc::new(
        Storage::builder()
            .shared_recheck_interval(Duration::from_secs(3600))
            .build(open(kind, url, &name))
            .unwrap(),
    );
    let status = Command::new("sh").arg("-c").arg(&restart).status().unwrap();
    assert!(status.success(), "restart command failed");
    let token = CancelToken::new().with_timeout(Duration::from_secs(30));
    let (s, t) = (storage.clone(), token.clone());
    let popper = std::thread::spawn(move || {
        loop {
            match s.pop(&t) {
                // The storage's own connection died with the restart: its first calls fail.
                Err(lifostore::Error::Db(_)) => continue,
                other => return other,
            }
        }
    });
    common::wait_until_blocked(&token);
    // Blocked for a second before anything is pushed: a watch spinning on its dead
    // connection would wake the pop into a Db call again and again meanwhile.
    std::thread::sleep(Duration::from_secs(1));
    let other = open(kind, url, &name);
    // Pushes until the pop returns: the first ones may land before the watch has subscribed
    // again (it retries every half second while the server is down), and are then found by
    // the pop that the next push's message wakes.
    let mut n = 0u64;
    while !popper.is_finished() && !token.is_cancelled() {
        other.push(&n.to_le_bytes()).unwrap();
        n += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    let got = popper.join().unwrap();
    assert!(
        got.is_ok(),
        "no wake-up after the restart: {got:?}, {n} pushed"
    );
    // Woken by messages, not by a watch spinning on its dead connection (each spin is a wake
    // and a Db call).
    let calls = storage.stats().db_pop_calls;
    assert!(calls <= 2 * n + 10, "{calls} Db pop calls for {n} pushes");
}

/// Restarts the server (command from `restart_var`) while a storage keeps pushing; nothing is
/// lost: items stay buffered while the server is down and are written once it is back.
fn survives_restart(kind: &str, url: &str, restart_var: &str) {
    let Ok(restart) = std::env::var(restart_var) else {
        eprintln!("skipped: set {restart_var} to a command that restarts the server");
        return;
    };
    let name = unique("restart");
    let storage = Storage::builder()
        .max_unflushed_age(Duration::from_secs(30))
        .close_timeout(Duration::from_secs(30))
        .build(open(kind, url, &name))
        .unwrap();
    let t = CancelToken::new();
    let mut n = 0u64;
    let mut restarted = false;
    let started = Instant::now();
    while n < 600 {
        storage.push(&t, n.to_le_bytes().to_vec()).unwrap();
        n += 1;
        if n.is_multiple_of(50) {
            let _ = storage.flush(&t); // fails while the server is down: items stay buffered
        }
        if n == 300 {
            let status = Command::new("sh").arg("-c").arg(&restart).status().unwrap();
            assert!(status.success(), "restart command failed");
            restarted = true;
        }
    }
    assert!(restarted);
    let deadline = Instant::now() + Duration::from_secs(30);
    while storage.flush(&t).is_err() {
        assert!(Instant::now() < deadline, "server did not come back");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The connection from before the restart is dead: at least one write failed and was
    // retried on a new connection.
    assert!(
        storage.stats().db_failures > 0,
        "the restart was never noticed: {:?}",
        storage.stats()
    );
    storage.close().unwrap();
    let mut got = drain(&*open(kind, url, &name));
    got.sort();
    let before = got.len();
    got.dedup();
    println!(
        "{kind}: restart run {:?}, {} duplicates",
        started.elapsed(),
        before - got.len()
    );
    assert_eq!(
        got,
        (0..600).collect::<Vec<_>>(),
        "items lost across the restart"
    );
}

fn bad_url_fails_clearly(kind: &str) {
    let url = match kind {
        "redis" => "redis://127.0.0.1:1/",
        _ => "postgres://nobody@127.0.0.1:1/none",
    };
    let err = match kind {
        #[cfg(feature = "redis")]
        "redis" => lifostore::RedisDb::open(url).map(|_| ()).unwrap_err(),
        #[cfg(feature = "postgres")]
        "postgres" => lifostore::PostgresDb::open(url).map(|_| ()).unwrap_err(),
        _ => return,
    };
    // The message says what to do; its source chain names the backend and the address.
    let text = error_chain(&err);
    assert!(
        text.contains(kind) && text.contains("127.0.0.1:1"),
        "{text:?}"
    );
    assert!(
        !err.is_permanent(),
        "an unreachable server may come back: {text}"
    );
}

/// Figures, not assertions: Db-level batch push and pop rates for 100-byte items (2048 calls
/// of batch 1, 32 of batch 1024: long enough to be more than noise).
fn rates(kind: &str, url: &str) {
    let db = open(kind, url, &unique("rates"));
    for batch in [1usize, 1024] {
        let (push, pop) = batch_rates(&*db, batch, (2048 / batch).max(32));
        println!("{kind} 100-byte items, batch {batch:>4}: push {push:>9.0}/s, pop {pop:>9.0}/s");
    }
}

/// A key holding a string: Redis answers WRONGTYPE to every call, which no retry can mend.
#[cfg(feature = "redis")]
fn redis_wrong_type_is_rejected(url: &str) {
    let key = unique("wrongtype");
    let mut raw = ::redis::Client::open(url)
        .unwrap()
        .get_connection()
        .unwrap();
    ::redis::cmd("SET")
        .arg(&key)
        .arg("not a list")
        .exec(&mut raw)
        .unwrap();
    let db = lifostore::RedisDb::open(url).unwrap().with_key(&key);
    let err = db.push_batch(&[b"a", b"b"]).unwrap_err();
    assert!(
        matches!(err.source, lifostore::DbError::Rejected { .. }),
        "{}",
        error_chain(&err.source)
    );
    assert!(err.source.is_permanent());
    assert!(db.pop().unwrap_err().is_permanent());
    ::redis::cmd("DEL").arg(&key).exec(&mut raw).unwrap();
    db.push(b"a").expect("a list again");
}

/// The item limit is the server's `proto-max-bulk-len`, read at open; a longer item is refused
/// before it is sent (Redis itself would refuse it and drop the connection).
#[cfg(feature = "redis")]
fn redis_item_limit_is_the_servers(url: &str) {
    struct Restore(::redis::Connection);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = ::redis::cmd("CONFIG")
                .arg("SET")
                .arg("proto-max-bulk-len")
                .arg("536870912")
                .exec(&mut self.0);
        }
    }
    let raw = ::redis::Client::open(url)
        .unwrap()
        .get_connection()
        .unwrap();
    let mut raw = Restore(raw);
    ::redis::cmd("CONFIG")
        .arg("SET")
        .arg("proto-max-bulk-len")
        .arg("1048576")
        .exec(&mut raw.0)
        .unwrap();
    let key = unique("limit");
    let db = lifostore::RedisDb::open(url).unwrap().with_key(&key);
    assert_eq!(db.capabilities().max_item_len, Some(1 << 20));
    let big = vec![7u8; (1 << 20) + 1];
    let refused = ::redis::cmd("SET").arg(&key).arg(&big).exec(&mut raw.0);
    assert!(
        refused.is_err(),
        "the server accepts longer values than it says"
    );
    let err = db.push(&big).unwrap_err();
    assert!(
        matches!(err, lifostore::DbError::ItemTooLarge { len, max } if len == big.len() && max == 1 << 20),
        "{err}"
    );
    db.push(&big[..1 << 20])
        .expect("an item of exactly the limit");
    assert_eq!(db.pop().unwrap().map(|x| x.len()), Some(1 << 20));
}

/// A table whose CHECK the item breaks: class 23, refused for good; other items still pass.
#[cfg(feature = "postgres")]
fn postgres_constraint_is_rejected(url: &str) {
    let table = unique("checked");
    let mut raw = ::postgres::Client::connect(url, ::postgres::NoTls).unwrap();
    raw.batch_execute(&format!(
        "CREATE TABLE {table} (id bigserial PRIMARY KEY, data bytea NOT NULL \
         CHECK (octet_length(data) <= 8), pushed_at timestamptz NOT NULL DEFAULT now())"
    ))
    .unwrap();
    let db = lifostore::PostgresDb::open(url)
        .unwrap()
        .with_table(&table)
        .unwrap();
    let err = db.push_batch(&[b"ok", b"too long!"]).unwrap_err();
    assert_eq!(err.stored, 0);
    assert!(
        matches!(err.source, lifostore::DbError::Rejected { .. }),
        "{}",
        error_chain(&err.source)
    );
    assert!(err.source.is_permanent());
    db.push_batch(&[b"ok"]).unwrap();
    assert_eq!(db.pop_batch(5).unwrap(), vec![b"ok".to_vec()]);
    assert_eq!(db.capabilities().max_item_len, Some((1 << 30) - 1024));
}

fn lease_contract(kind: &str, url: &str) {
    let db = open(kind, url, &unique("lease"));
    common::leases::lease_contract(&*db, Duration::from_millis(100));
}

/// A lease on an item taken from memory with a `lease_ttl` beyond the window: the storage
/// writes the item to the server still leased (`push_leased`) when its window comes due, so
/// another client sees a held lease and no item; the ack, after the window and within the
/// ttl, is `Ok` and removes it from the server for good.
fn fixed_ttl_writes_the_leased_item(kind: &str, url: &str) {
    let name = unique("fixedttl");
    let other = open(kind, url, &name);
    let window = Duration::from_millis(500);
    let s = Storage::builder()
        .max_unflushed_age(window)
        .lease_ttl(Duration::from_secs(60))
        .build(open(kind, url, &name))
        .expect("build");
    let t = CancelToken::new();
    let pushed = Instant::now();
    s.push(&t, "x").expect("push");
    let lease = s.pop_lease(&t).expect("lease");
    let leases = other.leases().expect("native leases");
    let until = Instant::now() + Duration::from_secs(10);
    // Waiting for another thread's write to reach the server: no event of ours to wait on.
    while leases.held_deadlines().expect("deadlines").len() != 1 {
        assert!(
            Instant::now() < until,
            "the leased item never reached the server"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(other.pop().expect("pop"), None, "in the server, but leased");
    std::thread::sleep((pushed + window).saturating_duration_since(Instant::now()));
    lease.ack().expect("an ack within the ttl");
    assert_eq!(leases.held_deadlines().expect("deadlines"), vec![]);
    assert_eq!(
        other.pop().expect("pop"),
        None,
        "acked: gone from the server"
    );
    s.close().expect("close");
}

/// Released and expired items back on top across two clients of the same key or table,
/// through a storage, and after the process holding the lease was killed.
fn back_on_top_across_clients(kind: &str, url: &str) {
    let name = unique("ontop");
    let (a, b) = (open(kind, url, &name), open(kind, url, &name));
    common::leases::back_on_top_across_clients(a, &*b, Duration::from_millis(100));
    common::leases::back_on_top_through_a_storage(open(kind, url, &unique("ontops")));
    let name = unique("holder");
    let db = open(kind, url, &name);
    common::lease_crash::back_on_top_after_the_holder_died(&*db, &format!("{kind}|{url}|{name}"));
}

/// Child mode of the consumer kill loop: `kind|url|name|seed`.
#[test]
fn lease_consumer_child() {
    let Ok(spec) = std::env::var(common::lease_crash::CHILD_ENV) else {
        return;
    };
    let parts: Vec<&str> = spec.splitn(4, '|').collect();
    let db = open(parts[0], parts[1], parts[2]);
    common::lease_crash::child_main(db, parts[3]);
}

fn consumer_kill_loop(kind: &str, url: &str) {
    let name = unique("killed");
    let db = open(kind, url, &name);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let spec = format!("{kind}|{url}|{name}");
    let r = common::lease_crash::consumer_kill_loop(&*db, &spec, 1000, 10, seed);
    println!(
        "{kind} consumer kill loop (seed {seed}): 10 kills, {} acked, {} left, {} redelivered \
         ({} after a release, the rest after a kill)",
        r.acked, r.left, r.redelivered, r.after_release
    );
    assert!(r.acked > 0, "the children acked nothing: {r:?}");
}

/// Figures, not assertions: pop against lease+ack, batch 1 and 64, same run.
fn lease_rates(kind: &str, url: &str) {
    let db = open(kind, url, &unique("lrates"));
    for batch in [1usize, 64] {
        let rounds = if batch == 1 { 200 } else { 20 };
        let (pop, lease) = common::leases::lease_rates(&*db, batch, rounds);
        println!(
            "{kind} batch {batch:>2}: pop {pop:>10.0}/s, lease+ack {lease:>10.0}/s, ratio {:.2}",
            lease / pop
        );
    }
}

macro_rules! backend_tests {
    ($feature:literal, $module:ident, $kind:literal, $url_var:literal, $restart_var:literal) => {
        #[cfg(feature = $feature)]
        mod $module {
            use super::*;

            #[test]
            fn lifo_order_batches_and_empty() {
                let _shared = SERVER.read().unwrap_or_else(|e| e.into_inner());
                if let Some(url) = server($url_var) {
                    lifo_semantics($kind, &url);
                }
            }

            #[test]
            fn storage_over_backend() {
                let _shared = SERVER.read().unwrap_or_else(|e| e.into_inner());
                if let Some(url) = server($url_var) {
                    storage_end_to_end($kind, &url);
                }
            }

            #[test]
            fn four_worker_processes_each_item_once() {
                let _shared = SERVER.read().unwrap_or_else(|e| e.into_inner());
                if let Some(url) = server($url_var) {
                    many_workers($kind, &url);
                }
            }

            #[test]
            fn blocked_pop_sees_items_from_elsewhere() {
                let _shared = SERVER.read().unwrap_or_else(|e| e.into_inner());
                if let Some(url) = server($url_var) {
                    blocked_pop_sees_other_process($kind, &url);
                }
            }

            #[test]
            fn a_blocked_pop_is_woken_by_pushes_and_lease_deadlines_elsewhere() {
                let _shared = SERVER.read().unwrap_or_else(|e| e.into_inner());
                if let Some(url) = server($url_var) {
                    woken_without_recheck($kind, &url);
                }
            }

            #[test]
            fn the_watch_subscribes_again_after_a_server_restart() {
                let _exclusive = SERVER.write().unwrap_or_else(|e| e.into_inner());
                if let Some(url) = server($url_var) {
                    watch_survives_restart($kind, &url, $restart_var);
                }
            }

            #[test]
            fn server_restart_loses_nothing() {
                let _exclusive = SERVER.write().unwrap_or_else(|e| e.into_inner());
                if let Some(url) = server($url_var) {
                    survives_restart($kind, &url, $restart_var);
                }
            }

            #[test]
            #[ignore = "figures: run on demand with --release"]
            fn batch_rates() {
                let _shared = SERVER.read().unwrap_or_else(|e| e.into_inner());
                if let Some(url) = server($url_var) {
                    rates($kind, &url);
                }
            }

            #[test]
            fn leases_hide_ack_release_and_expire() {
                let _shared = SERVER.read().unwrap_or_else(|e| e.into_inner());
                if let Some(url) = server($url_var) {
                    lease_contract($kind, &url);
                }
            }

            #[test]
            fn a_fixed_ttl_lease_from_memory_is_in_the_server_within_the_window() {
                let _shared = SERVER.read().unwrap_or_else(|e| e.into_inner());
                if let Some(url) = server($url_var) {
                    fixed_ttl_writes_the_leased_item($kind, &url);
                }
            }

            #[test]
            fn released_and_expired_items_are_back_on_top_across_clients() {
                let _shared = SERVER.read().unwrap_or_else(|e| e.into_inner());
                if let Some(url) = server($url_var) {
                    back_on_top_across_clients($kind, &url);
                }
            }

            #[test]
            fn consumer_killed_in_a_loop_acks_each_item_once_or_keeps_it() {
                let _shared = SERVER.read().unwrap_or_else(|e| e.into_inner());
                if let Some(url) = server($url_var) {
                    consumer_kill_loop($kind, &url);
                }
            }

            #[test]
            #[ignore = "figures: run on demand with --release"]
            fn lease_rates() {
                let _shared = SERVER.read().unwrap_or_else(|e| e.into_inner());
                if let Some(url) = server($url_var) {
                    super::lease_rates($kind, &url);
                }
            }

            #[test]
            fn unreachable_server_is_a_clear_error() {
                bad_url_fails_clearly($kind);
            }
        }
    };
}

#[cfg(feature = "redis")]
#[test]
fn redis_wrong_type_key_is_rejected_for_good() {
    let _shared = SERVER.read().unwrap_or_else(|e| e.into_inner());
    if let Some(url) = server("LIFOSTORE_REDIS_URL") {
        redis_wrong_type_is_rejected(&url);
    }
}

#[cfg(feature = "redis")]
#[test]
fn redis_item_limit_is_the_servers_bulk_limit() {
    let _shared = SERVER.read().unwrap_or_else(|e| e.into_inner());
    if let Some(url) = server("LIFOSTORE_REDIS_URL") {
        redis_item_limit_is_the_servers(&url);
    }
}

/// Planner settings that make PostgreSQL run an `id IN (subquery)` as a nested-loop semi join
/// with the subquery on the inner side, re-run for every outer row: the plan a server may pick
/// by itself when its statistics say the table is nearly empty.
#[cfg(feature = "postgres")]
const NESTED_LOOP_PLAN: &str = "options=-c%20enable_hashjoin%3Doff%20-c%20enable_mergejoin%3Doff\
    %20-c%20enable_hashagg%3Doff%20-c%20enable_material%3Doff%20-c%20enable_sort%3Doff";

/// A pop, a batch pop and a lease take no more rows than they ask for, whatever plan the
/// server picks. With the pop's `DELETE ... WHERE id IN (SELECT ... LIMIT n FOR UPDATE SKIP
/// LOCKED)` re-run per outer row, each re-run skipped the rows the statement had deleted
/// already and took the next ones: a `pop` over five rows stored newest first on disk deleted
/// all five and returned one (the oldest), and four items were gone (1 in about 550 rounds of
/// the wakeups bench lost an item this way).
#[cfg(feature = "postgres")]
fn postgres_takes_what_it_asks_whatever_the_plan(url: &str) {
    let table = unique("nested_loop");
    let sep = if url.contains('?') { '&' } else { '?' };
    let db = lifostore::PostgresDb::open(&format!("{url}{sep}{NESTED_LOOP_PLAN}"))
        .expect("postgres with the nested-loop plan")
        .with_table(&table)
        .expect("table");
    let mut raw = ::postgres::Client::connect(url, ::postgres::NoTls).expect("raw connection");
    // Rows stored newest first on disk, so that the scan driving the loop meets the newest
    // first (as when a new row reuses the space of deleted ones).
    let store_newest_first = |raw: &mut ::postgres::Client, ids: std::ops::RangeInclusive<i64>| {
        for i in ids.rev() {
            let data = (i as u64).to_le_bytes().to_vec();
            raw.execute(
                &format!("INSERT INTO {table} (id, data) VALUES ($1, $2)"),
                &[&i, &data],
            )
            .expect("insert");
        }
    };
    store_newest_first(&mut raw, 1..=5);
    assert_eq!(db.pop().expect("pop").map(|x| id(&x)), Some(5));
    assert_eq!(
        db.item_count().expect("count"),
        Some(4),
        "a pop takes one row"
    );
    let batch: Vec<u64> = db
        .pop_batch(2)
        .expect("pop_batch")
        .iter()
        .map(|x| id(x))
        .collect();
    assert_eq!(batch, vec![4, 3]);
    assert_eq!(
        db.item_count().expect("count"),
        Some(2),
        "a batch of 2 takes two rows"
    );
    let leases = db.leases().expect("leases");
    let leased = leases
        .pop_lease(1, Duration::from_secs(60))
        .expect("pop_lease");
    assert_eq!(
        leased.iter().map(|l| id(&l.item)).collect::<Vec<_>>(),
        vec![2]
    );
    leases.ack(&[leased[0].id]).expect("ack");
    assert_eq!(drain(&db), vec![1], "nothing lost, nothing taken twice");
    store_newest_first(&mut raw, 10..=12);
    assert_eq!(drain(&db), vec![12, 11, 10]);
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_takes_no_more_than_it_asks_whatever_the_plan() {
    let _shared = SERVER.read().unwrap_or_else(|e| e.into_inner());
    if let Some(url) = server("LIFOSTORE_POSTGRES_URL") {
        postgres_takes_what_it_asks_whatever_the_plan(&url);
    }
}

/// Opening an existing, current table takes no lock that waits for other transactions: a
/// long transaction holding the table (here an idle one that read it) does not stall `open`,
/// nor the pushes and pops that would queue behind an exclusive lock request.
#[cfg(feature = "postgres")]
fn postgres_open_waits_for_no_transaction(url: &str) {
    let table = unique("busy_open");
    let db = lifostore::PostgresDb::open(url)
        .expect("postgres")
        .with_table(&table)
        .expect("table");
    db.push(b"a").expect("push");
    let mut raw = ::postgres::Client::connect(url, ::postgres::NoTls).expect("raw connection");
    let mut long = raw.transaction().expect("begin");
    long.query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .expect("read the table");
    let (url, name) = (url.to_string(), table.clone());
    let again = common::within(Duration::from_secs(20), move || {
        let db = lifostore::PostgresDb::open(&url)?.with_table(&name)?;
        db.push(b"b")?;
        db.pop()
    });
    assert_eq!(again.expect("open, push, pop"), Some(b"b".to_vec()));
    long.commit().expect("commit");
    assert_eq!(db.pop().expect("pop"), Some(b"a".to_vec()));
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_open_of_a_current_table_waits_for_no_transaction() {
    let _shared = SERVER.read().unwrap_or_else(|e| e.into_inner());
    if let Some(url) = server("LIFOSTORE_POSTGRES_URL") {
        postgres_open_waits_for_no_transaction(&url);
    }
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_constraint_violation_is_rejected_for_good() {
    let _shared = SERVER.read().unwrap_or_else(|e| e.into_inner());
    if let Some(url) = server("LIFOSTORE_POSTGRES_URL") {
        postgres_constraint_is_rejected(&url);
    }
}

backend_tests!(
    "redis",
    redis,
    "redis",
    "LIFOSTORE_REDIS_URL",
    "LIFOSTORE_REDIS_RESTART"
);
backend_tests!(
    "postgres",
    postgres,
    "postgres",
    "LIFOSTORE_POSTGRES_URL",
    "LIFOSTORE_POSTGRES_RESTART"
);
