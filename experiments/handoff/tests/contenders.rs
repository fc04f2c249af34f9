//! Every contender is a stack: newest first on one thread, and every item exactly once in an
//! N:N hand-off on real threads. The publish design's engine duties too: sequence numbers and
//! stamps in order for the flusher, the capacity bound, and a close that leaves nothing behind.
#![cfg(not(handoff_loom))]

use std::collections::HashSet;
use std::sync::{Arc, Barrier};

use handoff_experiments::{CAPACITY, Contender, PublishChannel, PublishLocked, contenders};

fn item(thread: u64, i: u64) -> Vec<u8> {
    [thread.to_le_bytes(), i.to_le_bytes()].concat()
}

#[test]
fn one_thread_pops_newest_first() {
    for (name, c) in contenders() {
        if name == "crossbeam" {
            continue; // FIFO: the reference, not a stack
        }
        for i in 0..100 {
            c.push(item(0, i));
        }
        for i in (0..100).rev() {
            assert_eq!(c.pop(), item(0, i), "{name}");
        }
        assert_eq!(c.try_pop(), None, "{name}");
    }
}

fn hand_off(c: &Arc<dyn Contender>, pairs: u64, per: u64) -> Vec<Vec<u8>> {
    let barrier = Arc::new(Barrier::new(2 * pairs as usize));
    let mut pushers = Vec::new();
    let mut poppers = Vec::new();
    for t in 0..pairs {
        let (c1, b1) = (c.clone(), barrier.clone());
        pushers.push(std::thread::spawn(move || {
            b1.wait();
            for i in 0..per {
                c1.push(item(t, i));
            }
        }));
        let (c2, b2) = (c.clone(), barrier.clone());
        poppers.push(std::thread::spawn(move || {
            b2.wait();
            (0..per).map(|_| c2.pop()).collect::<Vec<_>>()
        }));
    }
    for p in pushers {
        p.join().unwrap();
    }
    poppers
        .into_iter()
        .flat_map(|p| p.join().unwrap())
        .collect()
}

#[test]
fn hand_off_keeps_every_item_once() {
    for (name, c) in contenders() {
        for pairs in [1, 4, 16] {
            let per = 20_000 / pairs;
            let got = hand_off(&c, pairs, per);
            let unique: HashSet<_> = got.iter().cloned().collect();
            assert_eq!(got.len(), unique.len(), "{name} {pairs}: an item twice");
            let all: HashSet<_> = (0..pairs)
                .flat_map(|t| (0..per).map(move |i| item(t, i)))
                .collect();
            assert_eq!(unique, all, "{name} {pairs}: an item lost");
            assert_eq!(c.try_pop(), None, "{name}");
        }
    }
}

/// Pushers race a flusher taking the oldest items and poppers; then a close. Every pushed item
/// comes out once (popped or flushed), the flushed batches are in push order (sequence numbers
/// increasing, stamps never decreasing), and each pusher's items reach the flusher oldest first.
fn publish_with_flusher<I: handoff_experiments::publish::Inbox>() {
    let s = Arc::new(handoff_experiments::Publish::<I>::new(CAPACITY));
    let per = 20_000u64;
    let pushers: Vec<_> = (0..3u64)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in 0..per {
                    s.push(item(t, i)).unwrap();
                }
            })
        })
        .collect();
    let popper = {
        let s = s.clone();
        std::thread::spawn(move || (0..per).map(|_| s.pop().unwrap()).collect::<Vec<_>>())
    };
    let flusher = {
        let s = s.clone();
        std::thread::spawn(move || {
            let mut out = Vec::new();
            while out.len() < per as usize {
                out.extend(s.take_oldest(64));
                std::thread::yield_now();
            }
            out
        })
    };
    for p in pushers {
        p.join().unwrap();
    }
    let popped = popper.join().unwrap();
    let mut flushed = flusher.join().unwrap();
    flushed.extend(s.close());
    for w in flushed.windows(2) {
        assert!(w[0].seq < w[1].seq, "flushed out of push order");
        assert!(w[0].stamp <= w[1].stamp, "stamps decreased");
    }
    let mut last = [None::<u64>; 3];
    for e in &flushed {
        let t = u64::from_le_bytes(e.data[..8].try_into().unwrap()) as usize;
        let i = u64::from_le_bytes(e.data[8..].try_into().unwrap());
        assert!(
            last[t] < Some(i),
            "a pusher's items reached the flusher out of order"
        );
        last[t] = Some(i);
    }
    let mut all: Vec<Vec<u8>> = popped;
    all.extend(flushed.into_iter().map(|e| e.data));
    let unique: HashSet<_> = all.iter().cloned().collect();
    assert_eq!(unique.len(), all.len(), "an item twice");
    assert_eq!(unique.len(), 3 * per as usize, "an item lost");
    assert_eq!(
        s.push(vec![1]),
        Err(vec![1]),
        "a push after close is refused"
    );
}

#[test]
fn publish_channel_with_flusher_and_close() {
    publish_with_flusher::<handoff_experiments::publish::ChannelInbox>();
}

#[test]
fn publish_locked_with_flusher_and_close() {
    publish_with_flusher::<handoff_experiments::publish::LockedInbox>();
}

/// The capacity is exact: with room for 8, eight pushers publishing at once never put a ninth
/// item in; the ninth push waits until a pop makes room.
#[test]
fn publish_capacity_is_a_bound() {
    let s = Arc::new(PublishChannel::new(8));
    for round in 0..200 {
        let pushers: Vec<_> = (0..9u64)
            .map(|t| {
                let s = s.clone();
                std::thread::spawn(move || s.push(item(t, round)).unwrap())
            })
            .collect();
        // Nine pushes, room for eight: exactly one waits; wait until the eight are in.
        while s.len() < 8 {
            std::thread::yield_now();
        }
        assert_eq!(s.len(), 8);
        assert!(s.try_pop().is_some());
        for p in pushers {
            p.join().unwrap();
        }
        assert_eq!(s.len(), 8);
        while s.try_pop().is_some() {}
    }
    let _ = PublishLocked::new(1);
}
