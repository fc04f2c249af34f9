//! [`Buffer`]: the part of lifostore's engine state that the push and pop fast paths touch,
//! modelled so every contender pays the engine's bookkeeping: a 48-byte entry (sequence
//! number, push stamp, `Vec`) in a `VecDeque`, a byte count, a capacity, a `closed` flag and the
//! memory-pop counter. The front is the oldest item (the flusher takes from there), the back
//! the newest (pops take from there).

use std::collections::VecDeque;
use std::time::Instant;

/// One buffered item, as the engine stores it.
#[derive(Debug)]
pub struct Entry {
    /// Push order: strictly increasing from front to back.
    pub seq: u64,
    /// The coarse clock's reading when the push took effect: never later than the push, and
    /// never decreasing from front to back (the flusher's window is computed from the front).
    pub stamp: Instant,
    /// The payload.
    pub data: Vec<u8>,
}

/// A push published outside the lock: its stamp and payload. It gets its sequence number when
/// a lock holder applies it.
pub type Pending = (Instant, Vec<u8>);

/// Buffered items and what a push checks against.
#[derive(Debug)]
pub struct Buffer {
    items: VecDeque<Entry>,
    bytes: usize,
    next_seq: u64,
    capacity: usize,
    max_bytes: usize,
    closed: bool,
    pops_from_memory: u64,
}

impl Buffer {
    /// An empty open buffer with room for `capacity` items.
    pub fn new(capacity: usize) -> Self {
        Buffer {
            items: VecDeque::new(),
            bytes: 0,
            next_seq: 1,
            capacity,
            max_bytes: usize::MAX / 2,
            closed: false,
            pops_from_memory: 0,
        }
    }

    /// The engine's `accepts`: open, and room for one more item of `len` bytes.
    #[inline]
    pub fn accepts(&self, len: usize) -> bool {
        !self.closed && self.items.len() < self.capacity && self.bytes + len <= self.max_bytes
    }

    /// The item capacity.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Puts `data` on top, stamped `stamp` (raised to the stamp below it, so stamps never
    /// decrease from front to back: a push published before a later-stamped one can be applied
    /// after it, and its effect is no earlier than that one's).
    #[inline]
    pub fn push(&mut self, stamp: Instant, data: Vec<u8>) {
        let stamp = match self.items.back() {
            Some(top) if top.stamp > stamp => top.stamp,
            _ => stamp,
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        self.bytes += data.len();
        self.items.push_back(Entry { seq, stamp, data });
    }

    /// Removes and returns the newest item.
    #[inline]
    pub fn take_newest(&mut self) -> Option<Vec<u8>> {
        let entry = self.items.pop_back()?;
        self.bytes -= entry.data.len();
        self.pops_from_memory += 1;
        Some(entry.data)
    }

    /// Removes and returns up to `n` of the oldest items, oldest first (the flusher's batch).
    pub fn take_oldest(&mut self, n: usize) -> Vec<Entry> {
        let n = n.min(self.items.len());
        let taken: Vec<Entry> = self.items.drain(..n).collect();
        self.bytes -= taken.iter().map(|e| e.data.len()).sum::<usize>();
        taken
    }

    /// Items held.
    #[inline]
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether no item is held.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether the buffer is closed.
    #[inline]
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Refuses every later push.
    pub fn close(&mut self) {
        self.closed = true;
    }

    /// The entries, oldest first (for checks).
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.items.iter()
    }
}
