//! [`OrdersDb`]: the `orders` table in PostgreSQL as lifostore's [`Db`].
//!
//! A batch is ONE statement: `INSERT ... SELECT FROM unnest(arrays) ON CONFLICT (order_uid) DO
//! UPDATE ... WHERE orders.seq > EXCLUDED.seq`, one transaction, so a batch is stored whole or
//! not at all, an order written twice (a redelivery, or a commit whose reply was lost) is
//! stored once, and of two copies of one `order_uid` the one with the lower JetStream stream
//! sequence wins whichever is written first. A trigger notifies `orders_stored` with
//! `<seq> <order_uid>` for every row it writes, so every replica learns what the table holds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use lifostore::{Db, DbError, PushBatchError};
use parking_lot::Mutex;

use crate::record::{self, Record};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The table, the column that says which copy of an order won (`seq`: the JetStream stream
/// sequence of the stored copy; 0 for rows older than the column), and the trigger that tells
/// every replica what was stored. Under an advisory lock, so replicas starting together do
/// not race on the catalog.
const SCHEMA: &str = "
    SELECT pg_advisory_xact_lock(7015);
    CREATE TABLE IF NOT EXISTS orders (
        order_uid text PRIMARY KEY,
        date_created timestamptz NOT NULL,
        customer_id text NOT NULL,
        body jsonb NOT NULL,
        stored_at timestamptz NOT NULL DEFAULT clock_timestamp()
    );
    ALTER TABLE orders ADD COLUMN IF NOT EXISTS seq bigint NOT NULL DEFAULT 0;
    CREATE OR REPLACE FUNCTION orders_notify_stored() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('orders_stored', NEW.seq::text || ' ' || NEW.order_uid);
        RETURN NULL;
    END $$;
    DROP TRIGGER IF EXISTS orders_notify_stored ON orders;
    CREATE TRIGGER orders_notify_stored AFTER INSERT OR UPDATE ON orders
        FOR EACH ROW EXECUTE FUNCTION orders_notify_stored();";

/// The channel the trigger notifies on; each payload is `<seq> <order_uid>`.
pub const STORED_CHANNEL: &str = "orders_stored";

/// The lowest stream sequence wins: a copy replaces the stored one only if it came earlier in
/// the stream. A copy with the same sequence (a redelivery) changes nothing, fires no trigger.
/// Each row written comes back with `inserted`: false when it replaced a stored copy (an
/// updated row keeps a non-zero `xmax`, the updating transaction's id; PostgreSQL's usual way
/// to tell the two outcomes of an upsert apart).
const UPSERT_TAIL: &str = "ON CONFLICT (order_uid) DO UPDATE SET
        seq = EXCLUDED.seq, date_created = EXCLUDED.date_created,
        customer_id = EXCLUDED.customer_id, body = EXCLUDED.body, stored_at = clock_timestamp()
    WHERE orders.seq > EXCLUDED.seq
    RETURNING (xmax = 0) AS inserted";

fn insert_batch_sql() -> String {
    format!(
        "INSERT INTO orders (order_uid, seq, date_created, customer_id, body)
    SELECT u, s, d, c, b::jsonb
        FROM unnest($1::text[], $2::bigint[], $3::timestamptz[], $4::text[], $5::text[])
        AS t(u, s, d, c, b)
    {UPSERT_TAIL}"
    )
}

fn insert_one_sql() -> String {
    format!(
        "INSERT INTO orders (order_uid, seq, date_created, customer_id, body)
    VALUES ($1, $2, $3, $4, $5::text::jsonb) {UPSERT_TAIL}"
    )
}

/// How a batch reaches the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertMode {
    /// One multi-row statement per batch (the service's mode).
    Batched,
    /// One statement (and transaction) per order: the row-by-row baseline for the benchmark.
    RowByRow,
}

/// A PostgreSQL failure, with what the service was doing.
#[derive(Debug, thiserror::Error)]
#[error("postgres ({context})")]
struct PgFailure {
    context: &'static str,
    #[source]
    source: postgres::Error,
}

fn db_error(context: &'static str, source: postgres::Error) -> DbError {
    DbError::other(PgFailure { context, source })
}

/// The `orders` table; one connection, re-opened lazily after it breaks (so a restarted
/// server is picked up by the next write while lifostore keeps the batch buffered).
pub struct OrdersDb {
    config: postgres::Config,
    client: Mutex<Option<postgres::Client>>,
    mode: InsertMode,
    insert_batch: String,
    insert_one: String,
    unchanged: AtomicU64,
    replaced: AtomicU64,
}

impl std::fmt::Debug for OrdersDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrdersDb")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// Parses a PostgreSQL URL, with the service's connect timeout.
pub fn pg_config(url: &str) -> Result<postgres::Config, DbError> {
    let mut config: postgres::Config = url.parse().map_err(|e| db_error("parsing the URL", e))?;
    config.connect_timeout(CONNECT_TIMEOUT);
    Ok(config)
}

impl OrdersDb {
    /// Orders written that changed nothing: a copy with the same or a later stream sequence
    /// was stored already (redeliveries, resent ids, near duplicates).
    pub fn unchanged(&self) -> u64 {
        self.unchanged.load(Ordering::Relaxed)
    }

    /// Orders written that replaced a stored copy of their id with a later stream sequence: a
    /// near duplicate the flusher (newest first) wrote before its original.
    pub fn replaced(&self) -> u64 {
        self.replaced.load(Ordering::Relaxed)
    }

    /// Counts what a statement did: `rows` came back (inserted or replaced), the rest of
    /// `sent` changed nothing.
    fn count(&self, sent: usize, rows: &[postgres::Row]) {
        let replaced = rows
            .iter()
            .filter(|r| matches!(r.try_get::<_, bool>(0), Ok(false)))
            .count() as u64;
        self.replaced.fetch_add(replaced, Ordering::Relaxed);
        let unchanged = (sent as u64).saturating_sub(rows.len() as u64);
        self.unchanged.fetch_add(unchanged, Ordering::Relaxed);
    }

    /// Connects to `url` and creates the `orders` table (and its notify trigger) if missing.
    pub fn open(url: &str, mode: InsertMode) -> Result<Self, DbError> {
        let db = OrdersDb {
            config: pg_config(url)?,
            client: Mutex::new(None),
            mode,
            insert_batch: insert_batch_sql(),
            insert_one: insert_one_sql(),
            unchanged: AtomicU64::new(0),
            replaced: AtomicU64::new(0),
        };
        db.call("creating the orders table", |c| {
            c.batch_execute(&format!("BEGIN; {SCHEMA} COMMIT;"))
        })?;
        Ok(db)
    }

    /// Runs `f` on the connection, connecting first if there is none or the last one broke.
    fn call<T>(
        &self,
        context: &'static str,
        f: impl FnOnce(&mut postgres::Client) -> Result<T, postgres::Error>,
    ) -> Result<T, DbError> {
        let mut slot = self.client.lock();
        if slot.as_ref().is_none_or(|c| c.is_closed()) {
            *slot = None;
            let client = self
                .config
                .connect(postgres::NoTls)
                .map_err(|e| db_error("connecting", e))?;
            *slot = Some(client);
        }
        let Some(client) = slot.as_mut() else {
            return Err(DbError::msg("postgres: no connection"));
        };
        let result = f(client);
        if result.is_err() && client.is_closed() {
            *slot = None;
        }
        result.map_err(|e| db_error(context, e))
    }

    /// One statement for the batch, each id once: two copies of an id in one statement would
    /// make `ON CONFLICT DO UPDATE` fail, so the batch keeps the copy with the lowest stream
    /// sequence, the one the table would keep anyway.
    fn insert_batch(&self, records: &[Record<'_>]) -> Result<(), DbError> {
        let mut first: HashMap<&str, &Record<'_>> = HashMap::with_capacity(records.len());
        for r in records {
            let kept = first.entry(r.uid).or_insert(r);
            if r.seq < kept.seq {
                *kept = r;
            }
        }
        let rows: Vec<&Record<'_>> = first.into_values().collect();
        let uids: Vec<&str> = rows.iter().map(|r| r.uid).collect();
        let seqs: Vec<i64> = rows.iter().map(|r| r.seq_i64()).collect();
        let dates: Vec<DateTime<Utc>> = rows.iter().map(|r| r.created).collect();
        let customers: Vec<&str> = rows.iter().map(|r| r.customer).collect();
        let bodies: Vec<&str> = rows.iter().map(|r| r.json).collect();
        let rows = self.call("inserting a batch of orders", |c| {
            c.query(
                self.insert_batch.as_str(),
                &[&uids, &seqs, &dates, &customers, &bodies],
            )
        })?;
        self.count(records.len(), &rows);
        Ok(())
    }

    fn insert_one(&self, r: &Record<'_>) -> Result<(), DbError> {
        let seq = r.seq_i64();
        let rows = self.call("inserting one order", |c| {
            c.query(
                self.insert_one.as_str(),
                &[&r.uid, &seq, &r.created, &r.customer, &r.json],
            )
        })?;
        self.count(1, &rows);
        Ok(())
    }
}

impl Db for OrdersDb {
    fn push(&self, data: &[u8]) -> Result<(), DbError> {
        self.push_batch(&[data]).map_err(|e| e.source)
    }

    /// Orders are never taken out of the table: the service only writes through lifostore and
    /// never pops, so this refuses with a clear error rather than delete an order.
    fn pop(&self) -> Result<Option<Vec<u8>>, DbError> {
        Err(DbError::msg(
            "the orders table is append-only: orders are never popped; read them by id instead",
        ))
    }

    /// Batched mode: one statement for the whole batch (stored whole or not at all).
    /// Row-by-row mode: one statement per order, reporting the stored prefix on failure.
    fn push_batch(&self, items: &[&[u8]]) -> Result<(), PushBatchError> {
        let fail = |stored, source| PushBatchError { stored, source };
        let records = items
            .iter()
            .map(|item| record::decode(item).map_err(DbError::other))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| fail(0, e))?;
        match self.mode {
            InsertMode::Batched if records.is_empty() => Ok(()),
            InsertMode::Batched => self.insert_batch(&records).map_err(|e| fail(0, e)),
            InsertMode::RowByRow => {
                for (stored, r) in records.iter().enumerate() {
                    self.insert_one(r).map_err(|e| fail(stored, e))?;
                }
                Ok(())
            }
        }
    }
}
