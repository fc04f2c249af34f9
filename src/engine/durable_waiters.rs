//! [`DurableWaiters`]: the `push_durable` calls waiting for their items, each with its own
//! [`Slot`].
//!
//! Each waiting call parks its own thread on its slot instead of sleeping on a condition
//! variable shared by all of them. Whatever moves an item out of memory (a landing write, a
//! pop) settles the slot of the call waiting for it, under the state's lock, and that call
//! alone is woken: it reads its outcome from its slot without taking the state's lock again.
//! A landing write by a durable caller wakes the callers it settled only after it released
//! the lock ([`DurableWaiters::take_wakes`]), so they do not pile up on it. A broadcast woke
//! every durable waiter at every landing, and they took the state's lock one by one to learn
//! whether their item was in: about 110 context switches per write of 57 items.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use crate::error::DbError;
use crate::error::{Error, Unconfirmed};
use crate::sync::{Mutex, Parker};

/// What became of the item of a waiting `push_durable` call.
pub(crate) enum Settled {
    /// It left memory: stored in the Db, or popped by someone (who owns it).
    Done,
    /// The Db refused it for good: it went to the dead letters.
    DeadLettered(DbError),
    /// A write holding it failed: it stays buffered and is retried.
    WriteFailed(DbError),
}

/// One waiting `push_durable` call: its thread, and the outcome once settled.
pub(crate) struct Slot {
    parker: Parker,
    inner: Mutex<SlotState>,
}

#[derive(Default)]
struct SlotState {
    settled: Option<Settled>,
    /// The call has taken its outcome: it passes no wake-up on any more.
    taken: bool,
    /// Calls this one wakes once it has taken its outcome (see [`Slot::pass_on`]).
    onward: Vec<Arc<Slot>>,
}

impl Slot {
    /// A slot for a call on the current thread.
    pub(crate) fn for_current_thread() -> Arc<Slot> {
        Arc::new(Slot {
            parker: Parker::for_current_thread(),
            inner: Mutex::new(SlotState::default()),
        })
    }

    /// The call's outcome, once settled; taken, so asked for at most once after it is there.
    /// Wakes the calls [`pass_on`](Self::pass_on) gave it, if it has its outcome.
    pub(crate) fn outcome(&self) -> Option<Result<(), Error>> {
        let (settled, onward) = {
            let mut inner = self.inner.lock();
            let settled = inner.settled.take()?;
            inner.taken = true;
            (settled, std::mem::take(&mut inner.onward))
        };
        for slot in onward {
            slot.wake();
        }
        Some(match settled {
            Settled::Done => Ok(()),
            Settled::DeadLettered(e) => Err(Error::DeadLettered(e)),
            Settled::WriteFailed(e) => Err(Error::NotYetDurable {
                why: Unconfirmed::DbFailed,
                source: Some(e),
            }),
        })
    }

    fn settle(&self, settled: Settled) {
        self.inner.lock().settled = Some(settled);
    }

    /// Whether a write or pop settled the call (its outcome is there or was taken).
    fn is_settled(&self) -> bool {
        let inner = self.inner.lock();
        inner.settled.is_some() || inner.taken
    }

    /// Gives this settled call `onward` calls to wake once it has taken its outcome; if it
    /// has already, they are handed back (the caller wakes them).
    fn pass_on(&self, onward: Vec<Arc<Slot>>) -> Result<(), Vec<Arc<Slot>>> {
        let mut inner = self.inner.lock();
        if inner.taken {
            return Err(onward);
        }
        inner.onward = onward;
        Ok(())
    }

    /// Wakes the call's thread (it re-checks its slot, then the state).
    pub(crate) fn wake(&self) {
        self.parker.unpark();
    }

    /// Sleeps until [`wake`](Self::wake)d or `deadline` (spurious returns happen). Only the
    /// calling thread of the slot's `push_durable` may call it.
    pub(crate) fn sleep(&self, deadline: Option<Instant>) {
        self.parker.park_until(deadline);
    }
}

/// How many calls each woken call wakes in turn (see [`wake_as_tree`]).
const FAN_OUT: usize = 2;

/// Wakes `slots` (a landing's wake-ups, from a durable writer that released the lock) as a
/// tree: the writer wakes `FAN_OUT` settled calls, each of them wakes `FAN_OUT` more once it
/// has taken its outcome, and so on; calls not settled (the next writer) are woken at once.
/// One thread waking 60 in a row is preempted by the threads it wakes and serializes their
/// start; the tree spreads the wake-ups over the woken threads, on every core.
pub(crate) fn wake_as_tree(slots: Vec<Arc<Slot>>) {
    let (settled, others): (Vec<_>, Vec<_>) = slots.into_iter().partition(|s| s.is_settled());
    for slot in others {
        slot.wake();
    }
    // Node i's children are FAN_OUT * (i + 1) .. FAN_OUT * (i + 2): the roots are 0..FAN_OUT.
    for (i, slot) in settled.iter().enumerate() {
        let from = (FAN_OUT * (i + 1)).min(settled.len());
        let to = (FAN_OUT * (i + 2)).min(settled.len());
        if let Err(children) = slot.pass_on(settled[from..to].to_vec()) {
            for child in children {
                child.wake();
            }
        }
    }
    for slot in settled.iter().take(FAN_OUT) {
        slot.wake();
    }
}

/// The waiting `push_durable` calls, by the sequence number of their items.
#[derive(Default)]
pub(crate) struct DurableWaiters {
    waiting: BTreeMap<u64, Arc<Slot>>,
    /// The write in flight is a durable caller's: it wakes the calls its landing settles
    /// itself, once it released the state's lock ([`take_wakes`](Self::take_wakes)).
    defer: bool,
    /// Calls to wake: settled ones, and the next writer.
    to_wake: Vec<Arc<Slot>>,
}

impl DurableWaiters {
    /// Whether no `push_durable` call is waiting.
    pub(crate) fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Registers a `push_durable` call waiting for the item with sequence number `seq`.
    pub(crate) fn arrive(&mut self, seq: u64, slot: Arc<Slot>) {
        self.waiting.insert(seq, slot);
    }

    /// Ends the registration of the call for `seq`, which has its answer.
    pub(crate) fn forget(&mut self, seq: u64) {
        self.waiting.remove(&seq);
    }

    /// Ends the registration of the call for `seq`, which stops waiting. If others wait, one
    /// of them is woken: the leaver may have been the one woken to write next.
    pub(crate) fn leave(&mut self, seq: u64) {
        self.waiting.remove(&seq);
        if let Some(next) = self.waiting.values().next_back() {
            next.wake();
        }
    }

    /// The newest item a `push_durable` call is still waiting for: a writer for durable
    /// pushes takes every buffered item up to it (group commit).
    pub(crate) fn newest(&self) -> Option<u64> {
        self.waiting.keys().next_back().copied()
    }

    /// Settles the call waiting for `seq`, if any, and queues its wake-up. Returns whether
    /// there was one.
    pub(crate) fn settle(&mut self, seq: u64, settled: Settled) -> bool {
        let Some(slot) = self.waiting.remove(&seq) else {
            return false;
        };
        slot.settle(settled);
        self.to_wake.push(slot);
        true
    }

    /// A write landed: the newest call still waiting is woken to write next (it holds the
    /// newest durable item, so its write carries every call waiting now).
    pub(crate) fn landed(&mut self) {
        if let Some(next) = self.waiting.values().next_back() {
            self.to_wake.push(Arc::clone(next));
        }
    }

    /// Wakes the queued calls now, unless a durable writer's write is in flight (it wakes them
    /// after its landing, with the lock released).
    pub(crate) fn wake_queued(&mut self) {
        if !self.defer {
            for slot in self.to_wake.drain(..) {
                slot.wake();
            }
        }
    }

    /// The write about to begin is a durable caller's: its landing queues the wake-ups for
    /// [`take_wakes`](Self::take_wakes).
    pub(crate) fn defer_wakes(&mut self) {
        self.defer = true;
    }

    /// The calls a durable caller's write settled (and the next writer), to wake once the
    /// lock is released; wake-ups are immediate again from here on.
    pub(crate) fn take_wakes(&mut self) -> Vec<Arc<Slot>> {
        self.defer = false;
        std::mem::take(&mut self.to_wake)
    }

    /// Wakes every waiting call, so each re-checks the storage and its token (close, cancel).
    pub(crate) fn wake_all(&self) {
        for slot in self.waiting.values() {
            slot.wake();
        }
    }
}

#[cfg(all(test, not(lifostore_loom)))]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    /// `n` threads, each parked on its own slot until it takes its outcome; each sends its
    /// number once done. Returns the slots (registered as waiting for seq 0..n) and the
    /// receiver.
    fn parked_callers(waiters: &mut DurableWaiters, n: u64) -> mpsc::Receiver<u64> {
        let (tx, rx) = mpsc::channel();
        let (slot_tx, slot_rx) = mpsc::channel();
        for seq in 0..n {
            let (tx, slot_tx) = (tx.clone(), slot_tx.clone());
            std::thread::spawn(move || {
                let slot = Slot::for_current_thread();
                slot_tx.send((seq, Arc::clone(&slot))).expect("send slot");
                while slot.outcome().is_none() {
                    slot.sleep(None);
                }
                tx.send(seq).expect("send done");
            });
        }
        for _ in 0..n {
            let (seq, slot) = slot_rx.recv().expect("slot");
            waiters.arrive(seq, slot);
        }
        rx
    }

    /// Every caller a landing settled is woken through the tree, including the children of
    /// one that had already taken its outcome before the tree was built (handed back to the
    /// writer, which wakes them itself).
    #[test]
    fn the_wake_tree_reaches_every_settled_caller() {
        let n = 20;
        let mut waiters = DurableWaiters::default();
        let done = parked_callers(&mut waiters, n);
        waiters.defer_wakes();
        for seq in 0..n {
            assert!(waiters.settle(seq, Settled::Done));
        }
        let slots = waiters.take_wakes();
        // Caller 1 (a root, with children 4 and 5) wakes early and takes its outcome.
        slots[1].wake();
        // A caller the scheduler ran late may find its outcome before it ever sleeps and
        // finish unwoken: only caller 1 must have finished before the tree is woken.
        let mut finished = Vec::new();
        while !finished.contains(&1) {
            match done.recv_timeout(Duration::from_secs(10)) {
                Ok(seq) => finished.push(seq),
                Err(_) => panic!("caller 1 never finished; finished: {finished:?}"),
            }
        }
        wake_as_tree(slots);
        while finished.len() < n as usize {
            match done.recv_timeout(Duration::from_secs(10)) {
                Ok(seq) => finished.push(seq),
                Err(_) => panic!("callers never woken; finished: {finished:?}"),
            }
        }
        finished.sort_unstable();
        assert_eq!(finished, (0..n).collect::<Vec<_>>());
    }
}
