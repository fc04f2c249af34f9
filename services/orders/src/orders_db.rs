//! [`OrdersDb`]: the `orders` table in PostgreSQL as lifostore's [`Db`].
//!
//! A batch is ONE statement: `INSERT ... SELECT FROM unnest(arrays) ON CONFLICT (order_uid) DO
//! NOTHING`, one transaction, so a batch is stored whole or not at all, and an order written
//! twice (a redelivery, or a commit whose reply was lost) is stored once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use lifostore::{Db, DbError, PushBatchError};
use parking_lot::Mutex;

use crate::record::{self, Record};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS orders (
    order_uid text PRIMARY KEY,
    date_created timestamptz NOT NULL,
    customer_id text NOT NULL,
    body jsonb NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT clock_timestamp()
)";

const INSERT_BATCH: &str = "INSERT INTO orders (order_uid, date_created, customer_id, body)
    SELECT u, d, c, b::jsonb FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[])
        AS t(u, d, c, b)
    ON CONFLICT (order_uid) DO NOTHING";

const INSERT_ONE: &str = "INSERT INTO orders (order_uid, date_created, customer_id, body)
    VALUES ($1, $2, $3, $4::text::jsonb) ON CONFLICT (order_uid) DO NOTHING";

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
    /// Connects to `url` and creates the `orders` table if missing.
    pub fn open(url: &str, mode: InsertMode) -> Result<Self, DbError> {
        let db = OrdersDb {
            config: pg_config(url)?,
            client: Mutex::new(None),
            mode,
        };
        db.call("creating the orders table", |c| c.batch_execute(SCHEMA))?;
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

    fn insert_batch(&self, records: &[Record<'_>]) -> Result<(), DbError> {
        let uids: Vec<&str> = records.iter().map(|r| r.uid).collect();
        let dates: Vec<DateTime<Utc>> = records.iter().map(|r| r.created).collect();
        let customers: Vec<&str> = records.iter().map(|r| r.customer).collect();
        let bodies: Vec<&str> = records.iter().map(|r| r.json).collect();
        self.call("inserting a batch of orders", |c| {
            c.execute(INSERT_BATCH, &[&uids, &dates, &customers, &bodies])
                .map(|_| ())
        })
    }

    fn insert_one(&self, r: &Record<'_>) -> Result<(), DbError> {
        self.call("inserting one order", |c| {
            c.execute(INSERT_ONE, &[&r.uid, &r.created, &r.customer, &r.json])
                .map(|_| ())
        })
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
