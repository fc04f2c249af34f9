//! [`Stack`]: the items held in memory, buffered and in flight.
//!
//! # Invariants (hold whenever the lock is free)
//! * `items` is ordered by push order: front = oldest, back = newest (the top of the stack).
//!   An item a lease returns ([`Stack::put_back_on_top`]) counts as pushed when it returns: it
//!   gets a new sequence number and goes to the back, keeping its push stamp.
//! * Push stamps never decrease from front to back, so the front is the item due first:
//!   returning an item with an older stamp lowers the stamps above it to its own (they are
//!   written earlier, never later).
//! * The in-flight batch, when there is one, is older than every entry of `items`: writers
//!   always take from the front, pushes go to the back, pops take from the back. So "newest
//!   first" across memory and Db is: the back of `items`, then the in-flight batch, then the Db.
//! * At most one batch is in flight: whoever begins it ([`Stack::begin_write`]) is the only
//!   writer until it lands ([`Stack::land`]).
//! * `bytes` counts the bytes of `items` plus the in-flight batch.

use std::collections::VecDeque;
use std::time::Instant;

/// One buffered item.
pub(crate) struct Entry {
    pub(crate) seq: u64,
    pub(crate) pushed_at: Instant,
    pub(crate) data: Vec<u8>,
}

/// The batch a writer took with [`Stack::begin_write`]; handed back to [`Stack::land`].
pub(crate) struct Batch(Vec<Entry>);

impl Batch {
    /// How many items it holds.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The items, oldest first, as the Db's `push_batch` takes them.
    pub(crate) fn items(&self) -> Vec<&[u8]> {
        self.0.iter().map(|e| e.data.as_slice()).collect()
    }
}

/// The batch being written (there is at most one).
struct InFlight {
    len: usize,
    /// Sequence number of its oldest item.
    first_seq: u64,
    /// Push instant of its oldest item: while a write is under way the oldest held items are
    /// in flight, not in `items`.
    oldest: Option<Instant>,
}

/// The items in memory, in push order, and the batch in flight.
pub(crate) struct Stack {
    items: VecDeque<Entry>,
    bytes: usize,
    in_flight: Option<InFlight>,
    next_seq: u64,
    /// Items leases put back on top (they took a sequence number without a push).
    returned: u64,
}

impl Stack {
    pub(crate) fn new() -> Self {
        Stack {
            items: VecDeque::new(),
            bytes: 0,
            in_flight: None,
            next_seq: 1,
            returned: 0,
        }
    }

    /// Items held, buffered plus in flight.
    #[inline]
    pub(crate) fn held(&self) -> usize {
        self.items.len() + self.in_flight.as_ref().map_or(0, |f| f.len)
    }

    /// Bytes held, buffered plus in flight.
    #[inline]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Items buffered, not counting an in-flight batch.
    pub(crate) fn buffered(&self) -> usize {
        self.items.len()
    }

    /// Items in the batch in flight.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.as_ref().map_or(0, |f| f.len)
    }

    /// Whether a batch is in flight.
    #[inline]
    pub(crate) fn is_writing(&self) -> bool {
        self.in_flight.is_some()
    }

    /// The sequence number the next item gets.
    #[inline]
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Items pushed so far (returned items are not pushes).
    pub(crate) fn pushed(&self) -> u64 {
        self.next_seq - 1 - self.returned
    }

    /// Puts `data`, stamped `now`, on top; returns its sequence number.
    #[inline]
    pub(crate) fn push(&mut self, data: Vec<u8>, now: Instant) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.bytes += data.len();
        self.items.push_back(Entry {
            seq,
            pushed_at: now,
            data,
        });
        seq
    }

    /// Removes and returns the newest buffered item.
    #[inline]
    pub(crate) fn take_newest(&mut self) -> Option<Entry> {
        let entry = self.items.pop_back()?;
        self.bytes -= entry.data.len();
        Some(entry)
    }

    /// Removes up to `max` of the newest buffered items; yields them newest first.
    pub(crate) fn take_newest_n(&mut self, max: usize) -> impl Iterator<Item = Entry> + '_ {
        let from = self.items.len() - max.min(self.items.len());
        self.bytes -= self
            .items
            .range(from..)
            .map(|e| e.data.len())
            .sum::<usize>();
        self.items.drain(from..).rev()
    }

    /// Puts an item a lease returns on top (the newest), with its push stamp `pushed_at`:
    /// a new sequence number, and the stamps above it lowered to `pushed_at`, so the flusher
    /// writes it (with everything below it) when it comes due, as if it had never left.
    pub(crate) fn put_back_on_top(&mut self, data: Vec<u8>, pushed_at: Instant) {
        for entry in self.items.iter_mut().rev() {
            if entry.pushed_at <= pushed_at {
                break;
            }
            entry.pushed_at = pushed_at;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.returned += 1;
        self.bytes += data.len();
        self.items.push_back(Entry {
            seq,
            pushed_at,
            data,
        });
    }

    /// Push instants of the buffered items, oldest first.
    pub(crate) fn stamps(&self) -> impl ExactSizeIterator<Item = Instant> + Clone + '_ {
        self.items.iter().map(|e| e.pushed_at)
    }

    /// Push instant of the oldest buffered item (not counting an in-flight batch).
    pub(crate) fn oldest_buffered(&self) -> Option<Instant> {
        self.items.front().map(|e| e.pushed_at)
    }

    /// Push instant of the oldest item held in memory, in flight or buffered.
    pub(crate) fn oldest_held(&self) -> Option<Instant> {
        let in_flight = self.in_flight.as_ref().and_then(|f| f.oldest);
        match (in_flight, self.oldest_buffered()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether every item pushed with a sequence number <= `seq` has left memory.
    pub(crate) fn flushed_through(&self, seq: u64) -> bool {
        let in_flight_old = self.in_flight.as_ref().is_some_and(|f| f.first_seq <= seq);
        let buffered_old = self.items.front().is_some_and(|e| e.seq <= seq);
        !in_flight_old && !buffered_old
    }

    /// How many of the oldest items, up to `max`, have a sequence number <= `seq`.
    pub(crate) fn count_through(&self, seq: u64, max: usize) -> usize {
        self.items
            .iter()
            .take(max)
            .take_while(|e| e.seq <= seq)
            .count()
    }

    /// Takes the writer role and the oldest `n` buffered items as the in-flight batch. The
    /// caller must have checked that no batch is in flight.
    pub(crate) fn begin_write(&mut self, n: usize) -> Batch {
        debug_assert!(self.in_flight.is_none(), "two batches in flight");
        let n = n.min(self.items.len());
        let batch: Vec<Entry> = self.items.drain(..n).collect();
        self.in_flight = Some(InFlight {
            len: batch.len(),
            first_seq: batch.first().map_or(u64::MAX, |e| e.seq),
            oldest: batch.first().map(|e| e.pushed_at),
        });
        Batch(batch)
    }

    /// Lands the in-flight `batch`, of which the first `settled` items left memory (stored, or
    /// poison): returns them, and how many were not stored. Those go back to the front of the
    /// stack (still the oldest), so nothing is dropped and nothing written twice. Releases the
    /// writer role.
    pub(crate) fn land(&mut self, batch: Batch, settled: usize) -> (Vec<Entry>, usize) {
        let mut batch = batch.0;
        self.in_flight = None;
        let unstored = batch.split_off(settled.min(batch.len()));
        let back = unstored.len();
        self.bytes -= batch.iter().map(|e| e.data.len()).sum::<usize>();
        // Unstored items are older than everything still buffered: they go back to the front.
        for entry in unstored.into_iter().rev() {
            self.items.push_front(entry);
        }
        (batch, back)
    }

    /// Sequence numbers of the oldest `n` buffered items.
    pub(crate) fn oldest_seqs(&self, n: usize) -> impl Iterator<Item = u64> + '_ {
        self.items.iter().take(n).map(|e| e.seq)
    }
}
