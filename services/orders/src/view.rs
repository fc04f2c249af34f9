//! [`View`]: decides what the cache may show. It shows an order only once it is **final**:
//! the copy PostgreSQL holds now, and the one it will hold forever.
//!
//! Two facts meet here, and an order becomes visible when both are in:
//!
//! * **Which copy wins**, read from the stream itself. Every replica tails the orders stream
//!   in stream order (an ordered consumer, no acks, its own position), so the first valid
//!   copy of an `order_uid` it reads is the copy with the lowest stream sequence: the winner,
//!   since PostgreSQL keeps the lowest sequence on conflict. That copy becomes a *candidate*;
//!   later copies of the id are ignored.
//! * **That the winner is durable**, from PostgreSQL: a trigger notifies `<seq> <order_uid>`
//!   for every row it writes (whichever replica wrote it). A notice whose sequence equals
//!   the candidate's means PostgreSQL holds the winner, and a row only ever moves to a lower
//!   sequence, so it holds it for good: the candidate moves into the cache.
//!
//! A notice for a later copy (PostgreSQL holds a copy that will still lose, e.g. after a
//! crash the original waits for its redelivery while a resent copy is stored) is ignored:
//! the id stays unserved until the original is stored. A notice that comes before the tail
//! has read the message is kept until it has. Notices lost while the LISTEN connection was
//! down, or dropped at the notice bound, are made up by looking the candidates up in
//! PostgreSQL ([`View::take_to_check`]).
//!
//! At start the cache is rebuilt from the rows whose sequence is at or below the consumer's
//! ack floor (every message up to it is acked, so every copy up to it was stored and the row
//! holds the lowest: final); the other rows become notices, and the tail starts right after
//! the floor.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use parking_lot::{Condvar, Mutex};

use crate::cache::Cache;
use crate::order::Order;

/// The first copy of an id read from the stream, not yet seen stored.
struct Candidate {
    seq: u64,
    created: DateTime<Utc>,
    json: Arc<[u8]>,
}

#[derive(Default)]
struct State {
    /// Per id, its first copy in the stream, until PostgreSQL is seen holding it.
    candidates: HashMap<Box<str>, Candidate>,
    /// Per id the tail has not reached yet, the lowest sequence PostgreSQL was seen holding.
    notices: HashMap<Box<str>, u64>,
    /// The highest stream sequence the tail has read.
    tail: u64,
    /// Candidates at or below this sequence may have missed their notice: look them up.
    check_upto: u64,
    /// Ids to look up in PostgreSQL.
    to_check: Vec<Box<str>>,
}

/// The cache and the rules for filling it. Shared by the tail reader, the LISTEN thread, the
/// checker and the HTTP threads.
pub struct View {
    cache: Cache,
    state: Mutex<State>,
    /// Signalled when candidates leave (room for the tail) or ids wait to be checked.
    changed: Condvar,
    max_candidates: usize,
}

impl View {
    /// An empty view holding at most `max_candidates` unconfirmed orders (the tail waits
    /// beyond that) and four times as many early notices.
    pub fn new(max_candidates: usize) -> View {
        View {
            cache: Cache::default(),
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            max_candidates: max_candidates.max(1),
        }
    }

    /// The cache the HTTP side reads.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// Candidates waiting to be seen stored.
    pub fn pending(&self) -> usize {
        self.state.lock().candidates.len()
    }

    /// The tail starts after `floor` (the consumer's ack floor at start).
    pub fn start_at(&self, floor: u64) {
        self.state.lock().tail = floor;
    }

    /// The highest stream sequence read so far.
    pub fn tail(&self) -> u64 {
        self.state.lock().tail
    }

    /// A row of the start-up snapshot: final at or below the floor, a notice above it.
    pub fn rebuilt(&self, seq: u64, uid: &str, created: DateTime<Utc>, json: &[u8]) {
        let mut state = self.state.lock();
        if seq <= state.tail {
            self.cache.insert(uid, created, json);
        } else {
            self.notice(&mut state, seq, uid);
        }
    }

    /// The message at stream sequence `seq`, read by the tail in stream order. Waits while
    /// the view holds `max_candidates` unconfirmed orders.
    pub fn read(&self, seq: u64, payload: &[u8]) {
        let valid = Order::parse(payload).ok();
        let mut state = self.state.lock();
        while state.candidates.len() >= self.max_candidates {
            self.changed.wait(&mut state);
        }
        if seq <= state.tail {
            return; // read already (the tail was re-opened)
        }
        state.tail = seq;
        let Some(valid) = valid else { return };
        let uid = valid.order.order_uid.as_str();
        if self.cache.contains(uid) || state.candidates.contains_key(uid) {
            return; // a later copy: the first one wins
        }
        match state.notices.remove(uid) {
            Some(stored) if stored == seq => {
                self.cache.insert(uid, valid.created, &valid.json);
            }
            _ => {
                if seq <= state.check_upto {
                    state.to_check.push(uid.into());
                    self.changed.notify_all();
                }
                let candidate = Candidate {
                    seq,
                    created: valid.created,
                    json: valid.json.into(),
                };
                state.candidates.insert(uid.into(), candidate);
            }
        }
    }

    /// PostgreSQL holds the copy at `seq` of `uid` (a trigger's notice, or a look-up).
    pub fn stored(&self, seq: u64, uid: &str) {
        let mut state = self.state.lock();
        self.notice(&mut state, seq, uid);
    }

    fn notice(&self, state: &mut State, seq: u64, uid: &str) {
        if self.cache.contains(uid) {
            return;
        }
        if let Some(candidate) = state.candidates.get(uid) {
            if candidate.seq == seq {
                if let Some(c) = state.candidates.remove(uid) {
                    self.cache.insert(uid, c.created, &c.json);
                }
                self.changed.notify_all();
            }
            return; // otherwise a later copy, stored for now: it will lose
        }
        if seq <= state.tail {
            return; // a copy the tail read and set aside, or one from before the floor
        }
        if let Some(lowest) = state.notices.get_mut(uid) {
            *lowest = (*lowest).min(seq);
        } else if state.notices.len() < self.max_candidates.saturating_mul(4) {
            state.notices.insert(uid.into(), seq);
        } else {
            // Dropped: when the tail reads this id, PostgreSQL is asked instead.
            state.check_upto = state.check_upto.max(seq);
        }
    }

    /// Notices may have been lost (the LISTEN connection broke): every sequence up to
    /// `max_stored` (the table's highest, read after LISTEN was re-established) is checked
    /// against PostgreSQL, for the candidates now and those the tail reads later.
    pub fn notices_lost(&self, max_stored: u64) {
        let mut state = self.state.lock();
        state.check_upto = state.check_upto.max(max_stored);
        let uids: Vec<Box<str>> = state.candidates.keys().cloned().collect();
        state.to_check.extend(uids);
        self.changed.notify_all();
    }

    /// Waits until some ids need a look-up in PostgreSQL, and takes them.
    pub fn take_to_check(&self) -> Vec<Box<str>> {
        let mut state = self.state.lock();
        while state.to_check.is_empty() {
            self.changed.wait(&mut state);
        }
        std::mem::take(&mut state.to_check)
    }

    /// Puts back ids whose look-up failed.
    pub fn check_again(&self, uids: Vec<Box<str>>) {
        self.state.lock().to_check.extend(uids);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::Generator;

    fn copy(uid: &str, customer: &str) -> Vec<u8> {
        let mut order = Generator::new(3).order(1);
        order.order_uid = uid.into();
        order.customer_id = customer.into();
        serde_json::to_vec(&order).unwrap_or_default()
    }

    fn served_customer(view: &View, uid: &str) -> Option<String> {
        let json = view.cache().get(uid)?;
        let order: serde_json::Value = serde_json::from_slice(&json).ok()?;
        order["customer_id"].as_str().map(str::to_string)
    }

    #[test]
    fn a_later_copy_stored_first_is_never_shown() {
        let view = View::new(10);
        view.read(1, &copy("a", "original"));
        view.read(2, &copy("a", "second"));
        view.stored(2, "a"); // the crash case: the second copy is stored first
        assert_eq!(served_customer(&view, "a"), None);
        view.stored(1, "a");
        assert_eq!(served_customer(&view, "a").as_deref(), Some("original"));
        view.stored(1, "a");
        assert_eq!(view.pending(), 0);
    }

    #[test]
    fn a_notice_before_the_tail_read_waits_for_it() {
        let view = View::new(10);
        view.stored(5, "b");
        view.read(4, &copy("c", "x"));
        assert_eq!(served_customer(&view, "b"), None);
        view.read(5, &copy("b", "first"));
        assert_eq!(served_customer(&view, "b").as_deref(), Some("first"));
        assert_eq!(view.pending(), 1, "c is still waiting");
    }

    #[test]
    fn the_snapshot_is_final_only_up_to_the_floor() {
        let view = View::new(10);
        view.start_at(10);
        view.rebuilt(3, "d", Utc::now(), b"{}");
        view.rebuilt(12, "e", Utc::now(), b"{}");
        assert!(view.cache().contains("d"));
        assert!(
            !view.cache().contains("e"),
            "above the floor: may still lose"
        );
        view.read(11, &copy("e", "earlier"));
        view.read(12, &copy("e", "later"));
        view.stored(11, "e");
        assert_eq!(served_customer(&view, "e").as_deref(), Some("earlier"));
    }

    #[test]
    fn lost_notices_are_looked_up() {
        let view = View::new(10);
        view.read(1, &copy("f", "x"));
        view.notices_lost(7);
        assert_eq!(view.take_to_check(), vec![Box::<str>::from("f")]);
        view.read(6, &copy("g", "y"));
        assert_eq!(view.take_to_check(), vec![Box::<str>::from("g")]);
        view.read(8, &copy("h", "z"));
        view.stored(8, "h");
        assert!(view.cache().contains("h"));
    }
}
