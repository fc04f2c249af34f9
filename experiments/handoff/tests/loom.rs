//! loom models of the publish design's new races (`src/publish.rs`), over its `LockedInbox`
//! (crossbeam's channel is not loom-instrumented; the models check our protocol: `pending`,
//! `waiting`, the lock, the condvar, admission and close; the inbox is any linearizable FIFO).
//!
//! ```text
//! RUSTFLAGS="--cfg handoff_loom" LOOM_MAX_PREEMPTIONS=3 \
//!   cargo test -p handoff-experiments --release --test loom --target-dir target/loom-handoff
//! ```
//!
//! `mutants.py` (beside this crate's Cargo.toml) applies the mutants each model must kill.
#![cfg(handoff_loom)]

use std::collections::HashSet;

use handoff_experiments::PublishLocked;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering::SeqCst};

/// A popper that finds the stack empty and sleeps, racing a push that may find the lock taken
/// (by that popper) and publish: the popper must wake and get the item. A third thread holds
/// the lock now and then (`len`), so the push publishes in more interleavings.
#[test]
fn a_published_push_wakes_a_sleeping_popper() {
    loom::model(|| {
        let s = Arc::new(PublishLocked::new(4));
        let popper = {
            let s = s.clone();
            loom::thread::spawn(move || s.pop())
        };
        let pusher = {
            let s = s.clone();
            loom::thread::spawn(move || s.push(vec![7]))
        };
        let _ = s.len();
        assert_eq!(pusher.join().unwrap(), Ok(()));
        assert_eq!(popper.join().unwrap(), Some(vec![7]));
        assert!(s.is_empty());
    });
}

/// A push racing a `try_pop` that holds the lock (on an empty stack, so it takes nothing): the
/// push may find the lock taken and publish, while the popper releases it. Once both returned,
/// nothing may be left unapplied in the inbox: no later lock holder is owed (in the engine
/// an item stranded there would outlive the window unwritten). So either the popper's release
/// sees the publication and applies it, or the publisher's `try_lock` finds the lock free.
#[test]
fn a_publication_racing_a_release_is_not_stranded() {
    loom::model(|| {
        let s = Arc::new(PublishLocked::new(4));
        let popper = {
            let s = s.clone();
            loom::thread::spawn(move || s.try_pop())
        };
        let pusher = {
            let s = s.clone();
            loom::thread::spawn(move || s.push(vec![7]))
        };
        assert_eq!(pusher.join().unwrap(), Ok(()));
        let popped = popper.join().unwrap();
        assert_eq!(s.unapplied(), 0, "a published push stranded in the inbox");
        if popped.is_none() {
            assert_eq!(s.len(), 1);
        }
    });
}

/// Two pushes in program order (the first may be published while another thread holds the
/// lock, the second may find it free and push directly) race a pop; afterwards the rest is
/// popped. LIFO: a pop that began after the second push returned gets 2; what remains comes out
/// newest first; every item exactly once.
#[test]
fn direct_and_published_pushes_stay_lifo_and_exactly_once() {
    loom::model(|| {
        let s = Arc::new(PublishLocked::new(4));
        let second_done = Arc::new(AtomicBool::new(false));
        let pusher = {
            let (s, done) = (s.clone(), second_done.clone());
            loom::thread::spawn(move || {
                s.push(vec![1]).unwrap();
                s.push(vec![2]).unwrap();
                done.store(true, SeqCst);
            })
        };
        let popper = {
            let (s, done) = (s.clone(), second_done.clone());
            loom::thread::spawn(move || {
                let after_second = done.load(SeqCst);
                (after_second, s.try_pop())
            })
        };
        pusher.join().unwrap();
        let (after_second, popped) = popper.join().unwrap();
        if after_second {
            assert_eq!(
                popped,
                Some(vec![2]),
                "a pop after push(2) returned must get 2"
            );
        }
        let mut rest = Vec::new();
        while let Some(x) = s.try_pop() {
            rest.push(x[0]);
        }
        let expected: Vec<u8> = match popped.as_deref() {
            None => vec![2, 1],
            Some([1]) => vec![2],
            Some([2]) => vec![1],
            other => panic!("popped {other:?}"),
        };
        assert_eq!(rest, expected, "not newest first (popped {popped:?})");
    });
}

/// Two pushes in program order while another thread holds the lock now and then (`len`, as the
/// flusher's tick or a `stats` call would): the first may be published, the second may find the
/// lock free and push directly. Popped afterwards, they come out newest first.
#[test]
fn a_direct_push_lands_above_earlier_published_ones() {
    loom::model(|| {
        let s = Arc::new(PublishLocked::new(4));
        let pusher = {
            let s = s.clone();
            loom::thread::spawn(move || {
                s.push(vec![1]).unwrap();
                s.push(vec![2]).unwrap();
            })
        };
        let _ = s.len();
        pusher.join().unwrap();
        assert_eq!(
            s.try_pop(),
            Some(vec![2]),
            "the newer push must come out first"
        );
        assert_eq!(s.try_pop(), Some(vec![1]));
    });
}

/// Pushes racing `close`: a push that returned `Ok` is in what close took (the engine writes
/// it to the Db), one that returned `Err` is not; nothing twice, nothing left behind.
#[test]
fn close_keeps_every_admitted_push() {
    loom::model(|| {
        let s = Arc::new(PublishLocked::new(4));
        let pushers: Vec<_> = (1..=2u8)
            .map(|i| {
                let s = s.clone();
                loom::thread::spawn(move || (i, s.push(vec![i]).is_ok()))
            })
            .collect();
        let closed = s.close();
        let accepted: HashSet<u8> = pushers
            .into_iter()
            .map(|p| p.join().unwrap())
            .filter(|&(_, ok)| ok)
            .map(|(i, _)| i)
            .collect();
        let taken: Vec<u8> = closed.iter().map(|e| e.data[0]).collect();
        let unique: HashSet<u8> = taken.iter().copied().collect();
        assert_eq!(unique.len(), taken.len(), "an item twice");
        assert_eq!(
            unique, accepted,
            "close lost an accepted push (or kept a refused one)"
        );
        assert!(s.is_empty(), "an item arrived after close");
    });
}
