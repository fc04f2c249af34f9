//! The ingest workers (blocking threads): validate each fetched message, push valid orders
//! (with their stream sequence) into the lifostore storage, and pass the batch on to the
//! committer. The cache is not theirs: it shows only what PostgreSQL holds, through the
//! [`View`](crate::view::View).

use crossbeam_channel::{Receiver, Sender};
use lifostore::{CancelToken, Error, Storage};

use crate::backoff::Backoff;
use crate::counters::{Counters, add};
use crate::edge::{Delivery, Settled};
use crate::error_chain::chain;
use crate::order::{Order, ValidOrder};
use crate::orders_db::OrdersDb;
use crate::record;

/// What a worker needs; shared by all workers.
pub struct Ingest<'a> {
    /// The write-behind buffer in front of PostgreSQL.
    pub storage: &'a Storage<OrdersDb>,
    /// Message counters.
    pub counters: &'a Counters,
    /// Token for the storage's blocking calls.
    pub token: &'a CancelToken,
}

impl Ingest<'_> {
    /// Processes batches until the edge hangs up (or the storage refuses for good).
    ///
    /// Every delivery of a batch is handed to the committer only after each valid order in it
    /// was pushed into the storage, so the committer's next `flush` covers it.
    pub fn run(
        &self,
        batches: Receiver<Vec<Delivery>>,
        done: Sender<Settled>,
        mut backoff: Backoff,
    ) {
        for batch in batches {
            add(&self.counters.received, batch.len() as u64);
            let again = batch.iter().filter(|d| d.delivered > 1).count();
            add(&self.counters.redelivered, again as u64);
            let mut settled = Settled::default();
            for delivery in batch {
                match Order::parse(&delivery.payload) {
                    Ok(valid) => {
                        if !self.keep(&valid, delivery.seq, &mut backoff) {
                            return;
                        }
                        settled.valid.push(delivery);
                    }
                    Err(reason) => {
                        add(&self.counters.invalid, 1);
                        settled.invalid.push((delivery, reason.to_string()));
                    }
                }
            }
            if done.send(settled).is_err() {
                return;
            }
        }
    }

    /// Pushes a valid order into the storage, whatever its id: PostgreSQL keeps, of all
    /// copies of an id, the one with the lowest stream sequence. Returns `false` when the
    /// service is stopping and the order was not pushed.
    fn keep(&self, valid: &ValidOrder, seq: u64, backoff: &mut Backoff) -> bool {
        let item = record::encode(valid, seq);
        loop {
            match self.storage.push(self.token, item.as_slice()) {
                Ok(()) => break,
                // PostgreSQL has failed for longer than the window: the storage holds all it
                // may; wait and retry (the message stays unacked meanwhile).
                Err(e @ Error::Db(_)) => {
                    eprintln!(
                        "orders: push refused while PostgreSQL fails ({}); retrying",
                        chain(&e)
                    );
                    if !backoff.wait() {
                        return false;
                    }
                }
                Err(e) => {
                    eprintln!("orders: worker stops: {}", chain(&e));
                    return false;
                }
            }
        }
        backoff.reset();
        true
    }
}
