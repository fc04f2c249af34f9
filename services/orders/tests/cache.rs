//! The cache on real threads: first copy wins, the newest ids are the newest `date_created`
//! whatever the insertion order, and concurrent writers lose or double nothing.

use chrono::{DateTime, Utc};
use orders::cache::{Cache, NEWEST_KEPT};

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).expect("in range")
}

#[test]
fn first_copy_wins_and_len_counts_distinct_ids() {
    let cache = Cache::default();
    assert!(cache.insert("a", at(1), b"{\"v\":1}"));
    assert!(!cache.insert("a", at(2), b"{\"v\":2}"));
    assert_eq!(cache.get("a").as_deref(), Some(&b"{\"v\":1}"[..]));
    assert_eq!(cache.len(), 1);
    assert!(cache.get("b").is_none());
}

#[test]
fn newest_ids_follow_date_created_not_arrival() {
    let cache = Cache::default();
    let mut rng = fastrand::Rng::with_seed(1);
    let mut secs: Vec<i64> = (0..5_000).collect();
    rng.shuffle(&mut secs);
    for s in &secs {
        cache.insert(&format!("id-{s}"), at(*s), b"{}");
    }
    let want: Vec<String> = (4_990..5_000).rev().map(|s| format!("id-{s}")).collect();
    assert_eq!(cache.newest(10), want);
    assert_eq!(cache.newest(NEWEST_KEPT + 5).len(), NEWEST_KEPT);
}

#[test]
fn concurrent_writers_and_readers_lose_nothing() {
    let cache = Cache::default();
    std::thread::scope(|s| {
        for t in 0..4 {
            let cache = &cache;
            s.spawn(move || {
                // Every thread inserts every id: each id must be stored exactly once.
                for i in 0..20_000 {
                    let id = format!("id-{i}");
                    cache.insert(&id, at(i), id.as_bytes());
                    if i % 7 == t {
                        assert!(cache.contains(&id));
                    }
                }
            });
        }
    });
    assert_eq!(cache.len(), 20_000);
    for i in 0..20_000 {
        let id = format!("id-{i}");
        assert_eq!(cache.get(&id).as_deref(), Some(id.as_bytes()));
    }
    assert_eq!(cache.newest(1), vec!["id-19999".to_string()]);
}
