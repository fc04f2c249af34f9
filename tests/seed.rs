//! The original usage as a test: 1000 pushers and 1000 poppers share one token over a Db that
//! costs 5 ms per call. Every item comes out exactly once, with far fewer Db calls than the
//! 2000 a storage calling the Db once per operation would make.

use std::collections::HashSet;
use std::sync::{Arc, Barrier};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lifostore::{CancelToken, MemDb, Storage};

#[test]
fn thousand_pushers_thousand_poppers_one_token() {
    const N: usize = 1000;
    let storage = Arc::new(Storage::new(MemDb::with_latency(Duration::from_millis(5))).unwrap());
    let token = CancelToken::new().with_timeout(Duration::from_secs(120));
    let start = Arc::new(Barrier::new(2 * N));
    let pushers: Vec<_> = (0..N)
        .map(|i| {
            let (s, t, b) = (storage.clone(), token.clone(), start.clone());
            std::thread::spawn(move || {
                b.wait();
                let ts = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_nanos();
                s.push(&t, format!("{i} {ts}")).unwrap();
            })
        })
        .collect();
    let poppers: Vec<_> = (0..N)
        .map(|_| {
            let (s, t, b) = (storage.clone(), token.clone(), start.clone());
            std::thread::spawn(move || {
                b.wait();
                s.pop(&t).unwrap()
            })
        })
        .collect();
    for p in pushers {
        p.join().unwrap();
    }
    let mut ids = HashSet::new();
    for p in poppers {
        let text = String::from_utf8(p.join().unwrap()).unwrap();
        let id: usize = text.split(' ').next().unwrap().parse().unwrap();
        assert!(ids.insert(id), "item {id} popped twice");
    }
    assert_eq!(ids, (0..N).collect::<HashSet<_>>());
    let stats = storage.stats();
    storage.close().unwrap();
    assert!(storage.db().is_empty());
    println!(
        "seed: {} Db calls against {} naive; {stats:?}",
        stats.db_calls(),
        2 * N
    );
    assert!(
        stats.db_calls() < 100,
        "expected far fewer Db calls than 2000: {stats:?}"
    );
    assert_eq!(stats.db_calls(), storage.db().calls().total());
}
