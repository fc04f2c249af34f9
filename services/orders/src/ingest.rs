//! The ingest workers (blocking threads): validate each fetched message, push valid orders
//! into the lifostore storage and the cache, and pass the batch on to the committer.

use crossbeam_channel::{Receiver, Sender};
use lifostore::{CancelToken, Error, Storage};

use crate::backoff::Backoff;
use crate::cache::Cache;
use crate::counters::{Counters, add};
use crate::edge::{Delivery, Settled};
use crate::order::Order;
use crate::orders_db::OrdersDb;
use crate::record;

/// What a worker needs; shared by all workers.
pub struct Ingest<'a> {
    /// The write-behind buffer in front of PostgreSQL.
    pub storage: &'a Storage<OrdersDb>,
    /// The order cache.
    pub cache: &'a Cache,
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
            let mut settled = Settled::default();
            for delivery in batch {
                match Order::parse(&delivery.payload) {
                    Ok(valid) => {
                        if !self.keep(&valid, &mut backoff) {
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

    /// Pushes a new order into the storage, then the cache (so an id seen in the cache is
    /// always already in the storage or in PostgreSQL). A known id is skipped: orders are
    /// immutable. Returns `false` when the service is stopping and the order was not kept.
    fn keep(&self, valid: &crate::order::ValidOrder, backoff: &mut Backoff) -> bool {
        let uid = &valid.order.order_uid;
        if self.cache.contains(uid) {
            add(&self.counters.duplicates, 1);
            return true;
        }
        let item = record::encode(valid);
        loop {
            match self.storage.push(self.token, item.as_slice()) {
                Ok(()) => break,
                // PostgreSQL has failed for longer than the window: the storage holds all it
                // may; wait and retry (the message stays unacked meanwhile).
                Err(Error::Db(e)) => {
                    eprintln!("orders: push refused while PostgreSQL fails ({e}); retrying");
                    if !backoff.wait() {
                        return false;
                    }
                }
                Err(e) => {
                    eprintln!("orders: worker stops: {e}");
                    return false;
                }
            }
        }
        backoff.reset();
        self.cache.insert(uid, valid.created, &valid.json);
        true
    }
}
