//! What PostgreSQL stored, told to the [`View`]: a thread that LISTENs on the trigger's
//! channel, and a thread that looks ids up when notices may have been lost.

use std::sync::Arc;
use std::time::Duration;

use lifostore::DbError;
use postgres::fallible_iterator::FallibleIterator;

use crate::error_chain::chain;
use crate::orders_db::{STORED_CHANNEL, pg_config};
use crate::view::View;

/// A pause between reconnection attempts to a PostgreSQL that is down (a retry delay, not a
/// poll for an event: nothing would tell us the server is back).
const RECONNECT_PAUSE: Duration = Duration::from_millis(200);

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
#[error("could not LISTEN for stored orders on PostgreSQL; check the server")]
pub struct ListenError(#[source] DbError);

fn pg_error(e: postgres::Error) -> DbError {
    DbError::other(e)
}

fn connect_listening(config: &postgres::Config) -> Result<postgres::Client, DbError> {
    let mut client = config.connect(postgres::NoTls).map_err(pg_error)?;
    client
        .batch_execute(&format!("LISTEN {STORED_CHANNEL}"))
        .map_err(pg_error)?;
    Ok(client)
}

/// Starts listening; returns once LISTEN is active, so that a snapshot taken afterwards
/// misses no row (a row committed later is notified). Then feeds every notice to `view`,
/// reconnecting after a failure and having the view look up what it may have missed.
pub fn start(url: &str, view: Arc<View>) -> Result<(), ListenError> {
    let config = pg_config(url).map_err(ListenError)?;
    let client = connect_listening(&config).map_err(ListenError)?;
    let (view2, config2) = (Arc::clone(&view), config.clone());
    std::thread::Builder::new()
        .name("orders-listen".into())
        .spawn(move || listen(client, config2, &view2))
        .map_err(|e| ListenError(DbError::from(e)))?;
    std::thread::Builder::new()
        .name("orders-check".into())
        .spawn(move || check(config, &view))
        .map_err(|e| ListenError(DbError::from(e)))?;
    Ok(())
}

fn listen(mut client: postgres::Client, config: postgres::Config, view: &View) {
    loop {
        let failure = {
            let mut notices = client.notifications();
            let mut iter = notices.blocking_iter();
            loop {
                match iter.next() {
                    Ok(Some(n)) => deliver(view, n.payload()),
                    Ok(None) => break DbError::msg("the LISTEN connection closed"),
                    Err(e) => break pg_error(e),
                }
            }
        };
        eprintln!(
            "orders: LISTEN connection lost ({}); reconnecting",
            chain(&failure)
        );
        client = reconnect(&config, view);
    }
}

/// Re-establishes LISTEN, then has the view check every sequence stored meanwhile.
fn reconnect(config: &postgres::Config, view: &View) -> postgres::Client {
    loop {
        std::thread::sleep(RECONNECT_PAUSE);
        let attempt = connect_listening(config).and_then(|mut client| {
            let row = client
                .query_one("SELECT coalesce(max(seq), 0) FROM orders", &[])
                .map_err(pg_error)?;
            let max: i64 = row.try_get(0).map_err(pg_error)?;
            view.notices_lost(u64::try_from(max).unwrap_or(0));
            Ok(client)
        });
        match attempt {
            Ok(client) => return client,
            Err(e) => eprintln!("orders: LISTEN reconnect failed ({}); retrying", chain(&e)),
        }
    }
}

fn deliver(view: &View, payload: &str) {
    let parsed = payload
        .split_once(' ')
        .and_then(|(seq, uid)| Some((seq.parse::<u64>().ok()?, uid)));
    match parsed {
        Some((seq, uid)) => view.stored(seq, uid),
        None => eprintln!("orders: ignoring a malformed notice {payload:?} on {STORED_CHANNEL}"),
    }
}

/// Looks up, in PostgreSQL, the ids the view asks about; retries on failure.
fn check(config: postgres::Config, view: &View) {
    let mut client: Option<postgres::Client> = None;
    loop {
        let uids = view.take_to_check();
        let looked_up = lookup(&config, &mut client, &uids);
        match looked_up {
            Ok(rows) => rows.iter().for_each(|(seq, uid)| view.stored(*seq, uid)),
            Err(e) => {
                eprintln!(
                    "orders: looking up stored orders failed ({}); retrying",
                    chain(&e)
                );
                client = None;
                view.check_again(uids);
                std::thread::sleep(RECONNECT_PAUSE);
            }
        }
    }
}

fn lookup(
    config: &postgres::Config,
    client: &mut Option<postgres::Client>,
    uids: &[Box<str>],
) -> Result<Vec<(u64, String)>, DbError> {
    let client = match client {
        Some(c) => c,
        None => client.insert(config.connect(postgres::NoTls).map_err(pg_error)?),
    };
    let uids: Vec<&str> = uids.iter().map(|u| &**u).collect();
    let rows = client
        .query(
            "SELECT seq, order_uid FROM orders WHERE order_uid = ANY($1)",
            &[&uids],
        )
        .map_err(pg_error)?;
    rows.iter()
        .map(|r| {
            let seq: i64 = r.try_get(0).map_err(pg_error)?;
            Ok((
                u64::try_from(seq).unwrap_or(0),
                r.try_get(1).map_err(pg_error)?,
            ))
        })
        .collect()
}
