//! The publish design ("try the lock, else publish"): asymmetric flat combining.
//!
//! A push that finds the state's lock free takes it and pushes as the engine does. A push that
//! finds it taken does not queue on it: it *publishes* its item into an inbox (a lock-free
//! channel, or a second tiny lock) and returns. Whoever holds the state's lock next (a pop, a
//! direct push, the flusher) applies every published item, in publication order, before it
//! looks at the stack: it combines the pushes that arrived meanwhile, in one pass.
//!
//! Pushers therefore never wait for each other or for a popper (nor `sched_yield`); only
//! poppers (and the flusher) queue on the lock, and each lock holder does the work of many
//! pushes. Waiting still happens on the Condvar-guarded stack.
//!
//! # Why it is a stack (linearizable, LIFO, exactly once)
//! * A direct push takes effect at its `push_back` under the lock; a published push at its
//!   enqueue into the inbox (crossbeam's tail CAS; the inbox lock's critical section).
//! * Every lock holder first applies the inbox, in inbox order, until it finds it empty, and only
//!   then reads or changes the buffer. So whenever a lock holder looks at the buffer, the
//!   buffer *is* the abstract stack: every push that took effect earlier is in it, in the order
//!   the pushes took effect (direct pushes apply the inbox first, so they land above everything
//!   published before them). A pop takes effect at the instant it saw the inbox empty (`pending`
//!   zero, or the channel's `Empty`): it then returns the newest item of the stack at that
//!   instant. The buffer cannot change before its `pop_back` (it holds the lock), and any push
//!   published after that instant takes effect after it.
//! * Exactly once: an item is in exactly one place at a time (the pusher's hands, the inbox,
//!   the buffer, the popper's hands); moves between them are a channel send/receive or happen
//!   under the lock.
//!
//! # Waking a popper (the new race)
//! A popper that finds nothing announces itself (`waiting += 1`, then a SeqCst fence), then
//! re-checks under the lock that no publication is outstanding (`pending == 0`, else it drains
//! the inbox) before it waits on the condvar. A publishing pusher counts itself in `pending`
//! before it enqueues, and after it enqueued, a SeqCst fence, then reads `waiting`. By the total
//! order of SeqCst fences, either
//! the popper's re-check finds the item (`pending` non-zero and the inbox holding it), or the
//! pusher's read of `waiting` comes after the announcement: it takes the lock (which the popper
//! holds from its re-check until its wait releases it) and notifies. A publication counted but
//! not enqueued when the popper drains the inbox is the second case: its enqueue, and so its
//! read of `waiting`, comes after the drain, which comes after the announcement.
//!
//! # Capacity and close
//! `pending` also carries the admission: a publisher is admitted only if the items held plus
//! those published stay within the capacity, and not once `CLOSED` is set (the same RMW), so
//! the bound is exact and a close never leaves an admitted item behind in the inbox: it waits
//! until `pending` has drained to zero.

use crate::buffer::{Buffer, Entry, Pending};
use crate::clock::Clock;
use crate::padded::Padded;
use crate::sync::{
    AtomicUsize, Condvar, Mutex, MutexGuard,
    Ordering::{Relaxed, SeqCst},
    fence, pause,
};

/// Set in `pending` by `close`: no publication is admitted after it.
const CLOSED: usize = 1 << (usize::BITS - 1);

/// Publishing is for a stack that poppers keep shallow (a hand-off). Once this many items are
/// held (buffered plus published), a push that finds the lock taken waits for it, as in the
/// engine: pushers that run ahead of their poppers are held back by the lock, instead of
/// growing the stack without bound (memory, and in the engine early writes to the Db).
pub const PUBLISH_DEPTH: usize = 256;

/// Where published pushes wait for the next lock holder.
pub trait Inbox: Send + Sync + Default + 'static {
    /// Enqueues a published push (never blocks for long: no lock is held long on it).
    fn send(&self, p: Pending);
    /// Moves every enqueued push into `buf`, oldest first; returns how many. Called with the
    /// state's lock held.
    fn drain_into(&self, buf: &mut Buffer) -> usize;
    /// Whether nothing is enqueued: what a releasing lock holder reads after its fence (see
    /// `Publish::unlock`). Exact for what `send` completed before it (not an admission count:
    /// a publisher admitted but not yet enqueued is not waited for; its own `try_lock` after
    /// the enqueue covers it).
    fn is_empty(&self) -> bool;
}

/// A crossbeam-channel `unbounded` channel: a lock-free enqueue.
#[cfg(not(handoff_loom))]
pub struct ChannelInbox(
    crossbeam_channel::Sender<Pending>,
    crossbeam_channel::Receiver<Pending>,
);

#[cfg(not(handoff_loom))]
impl Default for ChannelInbox {
    fn default() -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        ChannelInbox(tx, rx)
    }
}

#[cfg(not(handoff_loom))]
impl Inbox for ChannelInbox {
    #[inline]
    fn send(&self, p: Pending) {
        // The receiver lives as long as the sender (both are ours): never disconnected.
        let _ = self.0.send(p);
    }

    #[inline]
    fn is_empty(&self) -> bool {
        self.1.is_empty()
    }

    #[inline]
    fn drain_into(&self, buf: &mut Buffer) -> usize {
        let mut n = 0;
        while let Ok((stamp, data)) = self.1.try_recv() {
            buf.push(stamp, data);
            n += 1;
        }
        n
    }
}

/// A `Vec` behind its own lock, held for one `push` or one swap: a second, much shorter
/// critical section instead of the state's.
#[derive(Default)]
pub struct LockedInbox {
    items: Mutex<Vec<Pending>>,
    /// `items.len()`, stored under `items`' lock.
    len: AtomicUsize,
    spare: Mutex<Vec<Pending>>,
}

impl Inbox for LockedInbox {
    #[inline]
    fn send(&self, p: Pending) {
        let mut items = self.items.lock();
        items.push(p);
        self.len.store(items.len(), Relaxed);
    }

    #[inline]
    fn is_empty(&self) -> bool {
        self.len.load(Relaxed) == 0
    }

    #[inline]
    fn drain_into(&self, buf: &mut Buffer) -> usize {
        // `spare` is only touched here, under the state's lock: never contended.
        let mut spare = self.spare.lock();
        {
            let mut items = self.items.lock();
            std::mem::swap(&mut *items, &mut *spare);
            self.len.store(0, Relaxed);
        }
        let n = spare.len();
        for (stamp, data) in spare.drain(..) {
            buf.push(stamp, data);
        }
        n
    }
}

/// The stack: the engine's buffer behind one lock, plus the inbox and three counters.
pub struct Publish<I: Inbox> {
    state: Padded<Mutex<Buffer>>,
    /// Items in the buffer as the last lock holder left it: what admission counts as held.
    held: Padded<AtomicUsize>,
    /// Publications admitted and not yet applied (enqueued, or about to be), plus `CLOSED`.
    pending: Padded<AtomicUsize>,
    /// Poppers announced to sleep (between their announcement and their return).
    waiting: Padded<AtomicUsize>,
    inbox: I,
    poppers: Condvar,
    pushers: Condvar,
    clock: Clock,
    capacity: usize,
}

impl<I: Inbox> Publish<I> {
    /// An empty stack with room for `capacity` items.
    pub fn new(capacity: usize) -> Self {
        Publish {
            state: Padded(Mutex::new(Buffer::new(capacity))),
            held: Padded(AtomicUsize::new(0)),
            pending: Padded(AtomicUsize::new(0)),
            waiting: Padded(AtomicUsize::new(0)),
            inbox: I::default(),
            poppers: Condvar::new(),
            pushers: Condvar::new(),
            clock: Clock::new(),
            capacity,
        }
    }

    /// Pushes `data` on top; `Err(data)` once closed.
    #[inline]
    pub fn push(&self, data: Vec<u8>) -> Result<(), Vec<u8>> {
        if let Some(mut g) = self.state.try_lock() {
            // Nothing published (and not closed): exactly the engine's push.
            if self.pending.load(SeqCst) == 0 && g.accepts(data.len()) {
                g.push(self.clock.now(), data);
                self.held.store(g.len(), Relaxed);
                // Under the lock: a popper checks and waits while holding it.
                self.poppers.notify_one();
                self.unlock(g);
                return Ok(());
            }
            return self.push_waiting(g, data);
        }
        self.publish(data)
    }

    /// The items held plus those published leave room for one more.
    #[inline]
    fn has_room(&self, buf: &Buffer) -> bool {
        buf.len() + (self.pending.load(SeqCst) & !CLOSED) < self.capacity
    }

    /// The lock was taken: publish instead of waiting for it.
    #[inline(never)]
    fn publish(&self, data: Vec<u8>) -> Result<(), Vec<u8>> {
        let before = self.pending.fetch_add(1, SeqCst);
        let held = (before & !CLOSED) + self.held.load(Relaxed);
        if before & CLOSED != 0 || held >= self.capacity || held >= PUBLISH_DEPTH {
            // Closed, full or deep: the locked path decides (waits for room, or refuses).
            self.pending.fetch_sub(1, SeqCst);
            let g = self.lock();
            return self.push_waiting(g, data);
        }
        self.inbox.send((self.clock.now(), data));
        // Dekker with `pop_waiting`'s announcement: publication, fence, read `waiting`; there:
        // announcement, fence, read `pending` and the inbox. (An RMW and a load both SeqCst
        // would do in C++; loom checks SeqCst fences, not SeqCst accesses, so fences it is.)
        fence(SeqCst);
        if self.waiting.load(Relaxed) != 0 {
            // A popper may be between its re-check and its wait, holding the lock: take it, so
            // the notify lands after the wait began (or before the re-check, which then sees
            // the item in the buffer: we apply the inbox here).
            let mut g = self.state.lock();
            self.apply_published(&mut g);
            self.poppers.notify_one();
            self.unlock(g);
        } else if let Some(mut g) = self.state.try_lock() {
            // Not stranded (the race `unlock` closes from the other side): the lock was free
            // after our enqueue, so its last holder may have read the inbox's length before it:
            // apply it ourselves (`pending` counts our publication until someone applies it).
            self.apply_published(&mut g);
            self.unlock(g);
        }
        Ok(())
    }

    /// Releases the lock, then makes sure no publication is stranded in the inbox: a push
    /// published while we held the lock (after we applied the inbox) would otherwise wait for
    /// the next lock holder, which may not come for a long time (in the engine: past the
    /// window, with nobody to write it). Dekker with `publish`: there, enqueue, fence,
    /// `try_lock`; here, release, fence, read the inbox's length. Either we see the enqueued
    /// item and apply it (if someone else holds the lock now, its own release checks again),
    /// or its `try_lock` comes after our release and finds the lock free (or held by a later
    /// holder, whose release checks again).
    #[inline]
    fn unlock(&self, g: MutexGuard<'_, Buffer>) {
        drop(g);
        fence(SeqCst);
        if !self.inbox.is_empty() {
            self.apply_after_unlock();
        }
    }

    #[cold]
    #[inline(never)]
    fn apply_after_unlock(&self) {
        if let Some(mut g) = self.state.try_lock() {
            // Drain whatever is there (not `apply_published`: it skips the inbox when `pending`
            // reads zero, and our fence orders the inbox's length, not `pending`).
            self.apply_inbox(&mut g);
            // A popper sleeping now announced itself before its last check, and its
            // publishers notify it; waking one here as well costs nothing when none sleeps.
            self.poppers.notify_one();
            self.unlock(g);
        }
    }

    /// Publications admitted and not yet applied to the buffer (for the loom models: zero once
    /// every thread has returned, or an item is stranded in the inbox).
    pub fn unapplied(&self) -> usize {
        self.pending.load(SeqCst) & !CLOSED
    }

    /// A push that found publications to apply first, or the buffer full, or the stack closed;
    /// lock held.
    #[cold]
    fn push_waiting(&self, mut g: MutexGuard<'_, Buffer>, data: Vec<u8>) -> Result<(), Vec<u8>> {
        loop {
            self.apply_published(&mut g);
            if g.is_closed() {
                return Err(data);
            }
            if g.accepts(data.len()) && self.has_room(&g) {
                g.push(self.clock.now(), data);
                self.held.store(g.len(), Relaxed);
                self.poppers.notify_one();
                self.unlock(g);
                return Ok(());
            }
            g = self.pushers.wait(g);
        }
    }

    /// Applies every published push to the buffer, in publication order. Lock held.
    #[inline]
    fn apply_published(&self, g: &mut Buffer) {
        if self.pending.load(SeqCst) & !CLOSED != 0 {
            self.apply_inbox(g);
        }
    }

    #[inline(never)]
    fn apply_inbox(&self, g: &mut Buffer) {
        let n = self.inbox.drain_into(g);
        if n > 0 {
            self.pending.fetch_sub(n, SeqCst);
            self.held.store(g.len(), Relaxed);
        }
    }

    /// Takes the newest item. Lock held.
    #[inline(always)]
    fn take(&self, g: &mut Buffer) -> Option<Vec<u8>> {
        self.apply_published(g);
        let item = g.take_newest()?;
        self.held.store(g.len(), Relaxed);
        self.pushers.notify_one();
        Some(item)
    }

    /// Removes the newest item, blocking while there is none; `None` once closed and empty.
    #[inline(always)]
    pub fn pop(&self) -> Option<Vec<u8>> {
        let mut g = self.lock();
        if let Some(item) = self.take(&mut g) {
            self.unlock(g);
            return Some(item);
        }
        self.pop_waiting(g)
    }

    /// The newest item if there is one, without waiting.
    #[inline]
    pub fn try_pop(&self) -> Option<Vec<u8>> {
        let mut g = self.lock();
        let item = self.take(&mut g);
        self.unlock(g);
        item
    }

    /// The state's lock: a spin without `sched_yield` (`spin::LOCK_SPIN_LONG_HINTS`), then
    /// parking_lot's `lock`.
    #[inline]
    fn lock(&self) -> MutexGuard<'_, Buffer> {
        #[cfg(not(handoff_loom))]
        return crate::spin::lock_spinning_by(
            &self.state,
            crate::spin::LOCK_SPIN_LONG_HINTS,
            crate::spin::LOCK_SPIN_LONG_STEP,
        );
        #[cfg(handoff_loom)]
        return self.state.lock();
    }

    /// `pop` when the stack was empty: spin a little, then announce and wait.
    #[inline(never)]
    fn pop_waiting<'a>(&'a self, g: MutexGuard<'a, Buffer>) -> Option<Vec<u8>> {
        if g.is_closed() {
            return None;
        }
        self.unlock(g);
        self.spin_for_item();
        let mut g = self.lock();
        self.waiting.fetch_add(1, Relaxed);
        fence(SeqCst);
        let item = loop {
            if let Some(item) = self.take(&mut g) {
                break Some(item);
            }
            if g.is_closed() {
                break None;
            }
            g = self.poppers.wait(g);
        };
        self.waiting.fetch_sub(1, Relaxed);
        self.unlock(g);
        item
    }

    /// Snoozes (no lock: spins, then `sched_yield`s, as the engine's popper does) until
    /// something is held or published, or the rounds run out.
    fn spin_for_item(&self) {
        #[cfg(not(handoff_loom))]
        crate::spin::snooze_until(|| {
            self.pending.load(SeqCst) & !CLOSED != 0 || self.held.load(Relaxed) != 0
        });
    }

    /// The flusher's side: removes up to `n` of the oldest items (published ones included).
    pub fn take_oldest(&self, n: usize) -> Vec<Entry> {
        let mut g = self.state.lock();
        self.apply_published(&mut g);
        let batch = g.take_oldest(n);
        self.held.store(g.len(), Relaxed);
        self.pushers.notify_all();
        self.unlock(g);
        batch
    }

    /// Closes and takes every item held, oldest first (what the engine's `close` writes to the
    /// Db): no push is admitted after `CLOSED` is set, and every push admitted before it is
    /// waited for and included. Blocked pops return `None`; pushes return `Err`.
    pub fn close(&self) -> Vec<Entry> {
        let mut g = self.state.lock();
        self.pending.fetch_or(CLOSED, SeqCst);
        // Publishers admitted before CLOSED are enqueueing now; refused ones are undoing.
        while self.pending.load(SeqCst) & !CLOSED != 0 {
            self.apply_published(&mut g);
            pause();
        }
        g.close();
        let all = g.take_oldest(usize::MAX);
        self.held.store(0, Relaxed);
        self.poppers.notify_all();
        self.pushers.notify_all();
        all
    }

    /// Items held (published ones included).
    pub fn len(&self) -> usize {
        let mut g = self.state.lock();
        self.apply_published(&mut g);
        let n = g.len();
        self.unlock(g);
        n
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
