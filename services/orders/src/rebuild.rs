//! Rebuilding the cache from PostgreSQL at start, streaming, through the [`View`]: rows at
//! or below the consumer's ack floor are final and served, the others wait for the tail.
//!
//! `query_raw` reads rows off the socket as the server sends them (the server is paced by
//! TCP), so memory holds the cache plus a socket buffer, never the whole result set.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use lifostore::DbError;
use postgres::fallible_iterator::FallibleIterator;

use crate::orders_db::pg_config;
use crate::view::View;

/// What a rebuild loaded.
#[derive(Debug, Clone, Copy)]
pub struct Rebuilt {
    /// Orders loaded.
    pub orders: usize,
    /// How long it took, connection included.
    pub took: Duration,
}

/// Why the rebuild failed.
#[derive(Debug, thiserror::Error)]
#[error("rebuilding the cache from PostgreSQL failed; check the server and restart the service")]
pub struct RebuildError(#[source] postgres::Error);

/// Hands every row of `orders` to `view` (whose tail position is the ack floor).
pub fn rebuild(url: &str, view: &View) -> Result<Rebuilt, DbError> {
    let started = Instant::now();
    let mut client = pg_config(url)?
        .connect(postgres::NoTls)
        .map_err(|e| DbError::other(RebuildError(e)))?;
    let orders = stream_rows(&mut client, view).map_err(|e| DbError::other(RebuildError(e)))?;
    Ok(Rebuilt {
        orders,
        took: started.elapsed(),
    })
}

fn stream_rows(client: &mut postgres::Client, view: &View) -> Result<usize, postgres::Error> {
    let no_params: [&str; 0] = [];
    let mut rows = client.query_raw(
        "SELECT order_uid, date_created, body::text, seq FROM orders",
        no_params,
    )?;
    let mut n = 0;
    while let Some(row) = rows.next()? {
        let uid: &str = row.try_get(0)?;
        let created: DateTime<Utc> = row.try_get(1)?;
        let body: &str = row.try_get(2)?;
        let seq: i64 = row.try_get(3)?;
        view.rebuilt(
            u64::try_from(seq).unwrap_or(0),
            uid,
            created,
            body.as_bytes(),
        );
        n += 1;
    }
    Ok(n)
}
