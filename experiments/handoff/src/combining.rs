//! Flat combining (Hendler, Incze, Shavit, Tzafrir, SPAA 2010) over the engine's buffer.
//!
//! A call that gets the state's lock at once (`try_lock`) does its own operation and then
//! *combines*: it applies every operation published in the slots, pushes first, then pops
//! (a pop published beside a push takes that push's item: the pair is eliminated inside the
//! pass without the buffer ever growing). A call that finds the lock taken publishes its
//! operation in its thread's slot and spins on the slot until a combiner marks it done, taking
//! the lock itself whenever it sees it free (then it is the combiner). After a budget of spins
//! it blocks on the lock (parking_lot's `lock`), and combines once it has it.
//!
//! Linearizable: every operation published in a slot is pending during the whole pass that
//! applies it, so the combiner may order the pass's operations as it likes (pushes, in slot
//! order, then pops); each takes effect inside its own call. Exactly once: an item moves from
//! the pusher's slot to the buffer (or straight to a popper's slot) under the state lock, and a
//! slot's item is taken by one side only, told by the slot's state.

use std::cell::Cell;
use std::sync::atomic::{
    AtomicU64, AtomicUsize,
    Ordering::{AcqRel, Acquire, Relaxed, Release},
};

use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::buffer::Buffer;
use crate::clock::Clock;
use crate::padded::Padded;

const SLOTS: usize = 64;
const IDLE: usize = 0;
/// Claimed by its owner, being written.
const BUSY: usize = 1;
const PUSH: usize = 2;
const POP: usize = 3;
/// Applied: a pop's item (or `None`: the stack was empty) is in the cell.
const DONE: usize = 4;

/// Hints a publisher spins on its slot (checking for a free lock) before it blocks on the lock.
const WAIT_HINTS: u32 = 32;

#[derive(Default)]
struct Slot {
    state: AtomicUsize,
    cell: Mutex<Option<Vec<u8>>>,
}

/// The flat-combining stack.
pub struct Combining {
    state: Padded<Mutex<Buffer>>,
    /// Bit `i` set: slot `i` holds a published operation (set after publishing; cleared by
    /// the combiner that applies it). A combiner with nothing published reads one word.
    published: Padded<AtomicU64>,
    slots: Box<[Padded<Slot>]>,
    poppers: Condvar,
    clock: Clock,
}

static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static THREAD: Cell<usize> = Cell::new(NEXT_THREAD.fetch_add(1, Relaxed));
}

impl Combining {
    /// An empty stack with room for `capacity` items.
    pub fn new(capacity: usize) -> Self {
        Combining {
            state: Padded(Mutex::new(Buffer::new(capacity))),
            published: Padded(AtomicU64::new(0)),
            slots: (0..SLOTS).map(|_| Padded(Slot::default())).collect(),
            poppers: Condvar::new(),
            clock: Clock::new(),
        }
    }

    /// Applies every published operation: pushes, then pops. Lock held.
    #[inline]
    fn combine(&self, g: &mut Buffer) {
        if self.published.load(Acquire) != 0 {
            self.combine_published(g);
        }
    }

    #[inline(never)]
    fn combine_published(&self, g: &mut Buffer) {
        let mask = self.published.swap(0, AcqRel);
        let mut pushed = 0;
        let mut pops = mask;
        let mut bits = mask;
        while bits != 0 {
            let i = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let slot = &self.slots[i];
            if slot.state.load(Acquire) == PUSH {
                if let Some(data) = slot.cell.lock().take() {
                    g.push(self.clock.now(), data);
                    pushed += 1;
                }
                slot.state.store(DONE, Release);
                pops &= !(1 << i);
            }
        }
        while pops != 0 {
            let i = pops.trailing_zeros() as usize;
            pops &= pops - 1;
            let slot = &self.slots[i];
            if slot.state.load(Acquire) == POP {
                *slot.cell.lock() = g.take_newest();
                slot.state.store(DONE, Release);
            }
        }
        for _ in 0..pushed {
            if !self.poppers.notify_one() {
                break;
            }
        }
    }

    /// Marks the calling thread's slot `index` as holding a published operation.
    #[inline]
    fn announce(&self, index: usize) {
        self.published.fetch_or(1 << index, Release);
    }

    /// The calling thread's slot, claimed; `None` if another thread holds it.
    fn claim(&self) -> Option<(usize, &Slot)> {
        let index = THREAD.with(Cell::get) % SLOTS;
        let slot = &self.slots[index];
        slot.state
            .compare_exchange(IDLE, BUSY, Acquire, Relaxed)
            .is_ok()
            .then_some((index, &**slot))
    }

    /// Waits until `slot` is done: combining whenever the lock is free, blocking on it after
    /// the spin budget.
    fn wait_done(&self, slot: &Slot) {
        let mut spent = 0;
        loop {
            if slot.state.load(Acquire) == DONE {
                return;
            }
            if spent >= WAIT_HINTS {
                self.combine(&mut self.state.lock());
                continue;
            }
            if !self.state.is_locked()
                && let Some(mut g) = self.state.try_lock()
            {
                self.combine(&mut g);
                continue;
            }
            std::hint::spin_loop();
            spent += 1;
        }
    }

    /// Pushes `data` on top.
    #[inline]
    pub fn push(&self, data: Vec<u8>) {
        if let Some(mut g) = self.state.try_lock() {
            g.push(self.clock.now(), data);
            self.combine(&mut g);
            self.poppers.notify_one();
            return;
        }
        self.push_published(data);
    }

    #[inline(never)]
    fn push_published(&self, data: Vec<u8>) {
        let Some((index, slot)) = self.claim() else {
            let mut g = self.state.lock();
            g.push(self.clock.now(), data);
            self.combine(&mut g);
            self.poppers.notify_one();
            return;
        };
        *slot.cell.lock() = Some(data);
        slot.state.store(PUSH, Release);
        self.announce(index);
        self.wait_done(slot);
        slot.state.store(IDLE, Release);
    }

    /// Removes the newest item, blocking while there is none.
    #[inline]
    pub fn pop(&self) -> Vec<u8> {
        if let Some(mut g) = self.state.try_lock() {
            self.combine(&mut g);
            if let Some(item) = g.take_newest() {
                return item;
            }
            return self.pop_waiting(g);
        }
        self.pop_published()
    }

    /// The newest item, if any (one thread: the lock is always free).
    #[inline]
    pub fn try_pop(&self) -> Option<Vec<u8>> {
        let mut g = self.state.lock();
        self.combine(&mut g);
        g.take_newest()
    }

    #[inline(never)]
    fn pop_published(&self) -> Vec<u8> {
        if let Some((index, slot)) = self.claim() {
            slot.state.store(POP, Release);
            self.announce(index);
            self.wait_done(slot);
            let item = slot.cell.lock().take();
            slot.state.store(IDLE, Release);
            if let Some(item) = item {
                return item;
            }
        }
        let mut g = self.state.lock();
        self.combine(&mut g);
        self.pop_waiting(g)
    }

    /// Empty: wait on the condvar (pushes notify; combiners notify per push applied).
    fn pop_waiting(&self, mut g: MutexGuard<'_, Buffer>) -> Vec<u8> {
        loop {
            if let Some(item) = g.take_newest() {
                return item;
            }
            self.poppers.wait(&mut g);
            self.combine(&mut g);
        }
    }
}
