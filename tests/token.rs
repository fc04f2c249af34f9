//! CancelToken: reasons, inheritance, deadlines, and constant memory under many children.

use std::time::{Duration, Instant};

use lifostore::{CancelReason, CancelToken};

#[test]
fn live_token_has_no_reason() {
    let t = CancelToken::new();
    assert_eq!(t.reason(), None);
    assert!(!t.is_cancelled());
    assert_eq!(t.deadline(), None);
}

#[test]
fn cancel_sets_reason_and_clones_share_it() {
    let t = CancelToken::new();
    let clone = t.clone();
    t.cancel();
    assert_eq!(clone.reason(), Some(CancelReason::Cancelled));
    assert!(clone.is_cancelled());
}

#[test]
fn parent_end_reaches_every_descendant_but_child_never_reaches_parent() {
    let root = CancelToken::new();
    let child = root.child();
    let grandchild = child.child();
    let sibling = root.child();
    grandchild.cancel();
    assert_eq!(
        child.reason(),
        None,
        "a child's cancel must not reach its parent"
    );
    assert_eq!(root.reason(), None);
    root.cancel();
    assert_eq!(child.reason(), Some(CancelReason::Cancelled));
    assert_eq!(sibling.reason(), Some(CancelReason::Cancelled));
    assert_eq!(grandchild.reason(), Some(CancelReason::Cancelled));
}

#[test]
fn deadline_exceeded_after_timeout() {
    let t = CancelToken::new().with_timeout(Duration::from_millis(20));
    assert_eq!(t.reason(), None);
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(t.reason(), Some(CancelReason::DeadlineExceeded));
}

#[test]
fn first_reason_wins_and_never_changes() {
    let t = CancelToken::new().with_timeout(Duration::from_millis(10));
    t.cancel();
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(t.reason(), Some(CancelReason::Cancelled));
    t.cancel(); // again, after the deadline passed: the first end stays
    assert_eq!(t.reason(), Some(CancelReason::Cancelled));

    let d = CancelToken::new().with_deadline(Instant::now());
    assert_eq!(d.reason(), Some(CancelReason::DeadlineExceeded));
    d.cancel();
    assert_eq!(d.reason(), Some(CancelReason::DeadlineExceeded));
}

#[test]
fn earliest_deadline_on_the_chain_wins() {
    let now = Instant::now();
    let parent = CancelToken::new().with_deadline(now + Duration::from_millis(10));
    let child = parent.with_deadline(now + Duration::from_secs(3600));
    assert_eq!(child.deadline(), Some(now + Duration::from_millis(10)));
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(child.reason(), Some(CancelReason::DeadlineExceeded));
    let tighter = CancelToken::new()
        .with_timeout(Duration::from_secs(3600))
        .with_deadline(now);
    assert_eq!(tighter.deadline(), Some(now));
}

#[test]
fn the_earlier_end_wins_even_when_observed_late() {
    // The parent is cancelled before the child's own deadline; nobody looks until after the
    // deadline. The child must report the earlier event: Cancelled.
    let parent = CancelToken::new();
    let child = parent.with_timeout(Duration::from_millis(30));
    parent.cancel();
    std::thread::sleep(Duration::from_millis(40));
    assert_eq!(child.reason(), Some(CancelReason::Cancelled));
}

#[test]
fn huge_timeout_means_no_deadline() {
    let t = CancelToken::new().with_timeout(Duration::MAX);
    assert_eq!(t.deadline(), None);
    assert_eq!(t.reason(), None);
}

#[test]
fn cancel_racing_from_many_threads_keeps_one_reason() {
    for _ in 0..200 {
        let t = CancelToken::new().with_deadline(Instant::now() + Duration::from_micros(50));
        let seen: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|i| {
                    let t = &t;
                    s.spawn(move || {
                        if i % 2 == 0 {
                            t.cancel();
                        }
                        loop {
                            if let Some(r) = t.reason() {
                                return r;
                            }
                        }
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(
            seen.iter().all(|r| *r == seen[0]),
            "reasons differ: {seen:?}"
        );
        assert_eq!(t.reason(), Some(seen[0]));
    }
}

#[test]
fn ten_million_dropped_children_leave_nothing_behind() {
    let root = CancelToken::new();
    for _ in 0..10_000_000u32 {
        let child = root.child();
        let grandchild = child.with_timeout(Duration::from_secs(1));
        drop(grandchild);
        drop(child);
    }
    // Nothing refers to the root but the root itself, and it holds no registrations:
    // its memory is what it was before the loop.
    assert_eq!(lifostore::testing::handles(&root), 1);
    assert_eq!(lifostore::testing::registrations(&root), 0);
}
