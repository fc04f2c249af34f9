//! The metadata in PostgreSQL: nodes, files, parts, garbage and moves ([`schema`]).
//!
//! Every write is one transaction that first takes one advisory lock ([`schema::WRITE_LOCK`]),
//! so metadata writes from any number of gateways are serialized: no deadlocks, no lost
//! counter updates, and a file name's replacement is decided in commit order. A write is one
//! short transaction (a few statements and one commit), so the lock admits several hundred
//! file operations a second, more than the nodes' fsyncs allow on one disk. Reads take no
//! lock.

mod buckets;
mod files;
mod garbage;
mod moves;
mod nodes;
pub mod pool;
pub mod schema;

pub use files::{FileInfo, Listing, PartInfo, PartTarget, UploadPlan};
pub use garbage::GarbageRow;
pub use moves::{MoveTicket, PartRef};
pub use nodes::NodeRow;

use postgres::Transaction;

use crate::placement::Shortfall;
use pool::Pool;

/// Why a metadata call failed.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// PostgreSQL failed (or could not be reached).
    #[error("PostgreSQL, {context}: {source}")]
    Db {
        /// What the gateway was doing.
        context: &'static str,
        /// The client's error.
        source: postgres::Error,
    },
    /// Every pooled connection stayed busy.
    #[error("{0}")]
    Busy(String),
    /// Too few nodes to place a file's parts.
    #[error("cannot place the parts: {shortfall}{down}")]
    NotEnoughNodes {
        /// Counts.
        shortfall: Shortfall,
        /// Which nodes are down or slow, if any (starts with "; ").
        down: String,
    },
    /// No committed file has that name.
    #[error("no file named {0:?}")]
    NotFound(String),
    /// The upload was aborted meanwhile (its gateway restarted and cleaned it up).
    #[error("upload {0} was aborted while it ran (its gateway restarted?)")]
    UploadGone(i64),
}

impl MetaError {
    /// A `map_err` adapter for client errors.
    pub(crate) fn db(context: &'static str) -> impl Fn(postgres::Error) -> MetaError {
        move |source| MetaError::Db { context, source }
    }
}

/// The metadata store: a connection pool and the operations on the tables.
pub struct Meta {
    pool: Pool,
}

impl Meta {
    /// Connects to `url` (at most `max_connections` at once) and creates the tables if
    /// missing.
    pub fn open(url: &str, max_connections: usize) -> Result<Meta, MetaError> {
        let meta = Meta {
            pool: Pool::new(url, max_connections)?,
        };
        let mut conn = meta.pool.get()?;
        let mut tx = conn
            .transaction()
            .map_err(MetaError::db("creating the schema"))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&schema::SCHEMA_LOCK])
            .map_err(MetaError::db("locking the schema"))?;
        tx.batch_execute(schema::SCHEMA)
            .map_err(MetaError::db("creating the schema"))?;
        tx.commit().map_err(MetaError::db("creating the schema"))?;
        drop(conn);
        Ok(meta)
    }

    /// The connection pool (for reads).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Runs `f` in a transaction holding the write lock, and commits.
    pub(crate) fn write<T>(
        &self,
        what: &'static str,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<T, MetaError>,
    ) -> Result<T, MetaError> {
        let mut conn = self.pool.get()?;
        let mut tx = conn.transaction().map_err(MetaError::db(what))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&schema::WRITE_LOCK])
            .map_err(MetaError::db(what))?;
        let value = f(&mut tx)?;
        tx.commit().map_err(MetaError::db(what))?;
        Ok(value)
    }
}

/// A change of one node's counters.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Delta<'a> {
    pub node: &'a str,
    pub stored: i64,
    pub reserved: i64,
    pub garbage: i64,
}

/// Applies counter changes (several for one node add up) in one statement.
pub(crate) fn adjust(tx: &mut Transaction<'_>, deltas: &[Delta<'_>]) -> Result<(), MetaError> {
    let ids: Vec<&str> = deltas.iter().map(|d| d.node).collect();
    let col = |f: fn(&Delta<'_>) -> i64| deltas.iter().map(f).collect::<Vec<i64>>();
    let (s, r, g) = (col(|d| d.stored), col(|d| d.reserved), col(|d| d.garbage));
    tx.execute(
        "UPDATE nodes n SET stored = n.stored + d.s, reserved = n.reserved + d.r,
                            garbage = n.garbage + d.g
         FROM (SELECT id, sum(s) AS s, sum(r) AS r, sum(g) AS g
               FROM unnest($1::text[], $2::int8[], $3::int8[], $4::int8[]) AS t(id, s, r, g)
               GROUP BY id) d
         WHERE n.id = d.id",
        &[&ids, &s, &r, &g],
    )
    .map_err(MetaError::db("updating node counters"))?;
    Ok(())
}

/// Takes `n` fresh copy ids.
pub(crate) fn new_copies(tx: &mut Transaction<'_>, n: i64) -> Result<Vec<i64>, MetaError> {
    let rows = tx
        .query(
            "SELECT nextval('copy_ids') FROM generate_series(1, $1::int8)",
            &[&n],
        )
        .map_err(MetaError::db("taking copy ids"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
