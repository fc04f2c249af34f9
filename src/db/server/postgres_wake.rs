//! PostgreSQL's wake-ups: `LISTEN` on `<table>_wake` (lower case) on a connection of the
//! watch's own; the push statement calls `pg_notify` inside its transaction, so the message
//! goes out at the commit, never for a push that rolled back; a lease or a release sends one
//! after its statement committed.

use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;

use super::wake::{Channel, Listener, ServerWatch};
use crate::db::watch::DbWatch;
use crate::error::DbError;

fn db_error(context: &str, err: postgres::Error) -> DbError {
    DbError::msg(format!("postgres: {context}: {err}"))
}

/// The server's `host:port` list, for messages.
pub(super) fn address(config: &postgres::Config) -> String {
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match host {
                postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
                postgres::config::Host::Unix(path) => format!("{}:{port}", path.display()),
            }
        })
        .collect();
    hosts.join(",")
}

/// The channel of `table`: unquoted table names are folded to lower case by the server, the
/// channel (a string to `pg_notify`) is not, so both sides use the lower-case name.
pub(super) fn channel_of(table: &str) -> String {
    format!("{}_wake", table.to_ascii_lowercase())
}

/// Sends `payload` on the channel of `table` over `client` (committed when it returns).
pub(super) fn notify(
    client: &mut postgres::Client,
    table: &str,
    payload: &str,
) -> Result<(), postgres::Error> {
    let channel = channel_of(table);
    client
        .execute("SELECT pg_notify($1, $2)", &[&channel, &payload])
        .map(drop)
}

/// A watch of `table`: `LISTEN` on a connection of its own, from now on.
pub(super) fn open_watch(
    config: &postgres::Config,
    table: &str,
) -> Result<Box<dyn DbWatch>, DbError> {
    let channel = PgChannel {
        config: config.clone(),
        channel: channel_of(table),
    };
    Ok(Box::new(ServerWatch::open(channel)?))
}

/// The server and the channel, for a watch.
struct PgChannel {
    config: postgres::Config,
    channel: String,
}

/// A connection that has run `LISTEN`.
struct PgListener {
    client: postgres::Client,
}

impl Channel for PgChannel {
    type Listener = PgListener;

    fn listen(&self) -> Result<PgListener, DbError> {
        let mut client = self.config.connect(postgres::NoTls).map_err(|e| {
            let to = address(&self.config);
            db_error(&format!("connecting to {to} to listen for wake-ups"), e)
        })?;
        // The name is a table name (letters, digits, _) plus `_wake`: safe to splice.
        client
            .batch_execute(&format!("LISTEN \"{}\"", self.channel))
            .map_err(|e| db_error("LISTEN", e))?;
        Ok(PgListener { client })
    }

    fn send(&self, payload: &str) -> Result<(), DbError> {
        let mut client = self
            .config
            .connect(postgres::NoTls)
            .map_err(|e| db_error("connecting to notify", e))?;
        client
            .execute("SELECT pg_notify($1, $2)", &[&self.channel, &payload])
            .map(drop)
            .map_err(|e| db_error("NOTIFY", e))
    }
}

impl Listener for PgListener {
    fn next(&mut self, timeout: Duration) -> Result<Option<String>, DbError> {
        let mut notes = self.client.notifications();
        let mut wait = notes.timeout_iter(timeout);
        match wait.next() {
            Ok(Some(note)) => Ok(Some(note.payload().to_string())),
            Ok(None) => Ok(None),
            Err(e) => Err(db_error("waiting for a notification", e)),
        }
    }
}
