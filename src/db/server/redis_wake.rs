//! Redis's wake-ups: pub/sub on `<key>:wake`. The push, lease and release scripts `PUBLISH`
//! inside the script (atomic with what they change); a watch holds a connection of its own
//! subscribed to the channel.

use std::time::Duration;

use super::wake::{Channel, Listener};
use crate::error::DbError;

fn db_error(context: &str, err: redis::RedisError) -> DbError {
    DbError::msg(format!("redis: {context}: {err}"))
}

/// The channel of the list `key`.
pub(super) fn channel_of(key: &str) -> String {
    format!("{key}:wake")
}

/// The server and the channel, for a watch.
pub(super) struct RedisChannel {
    pub(super) client: redis::Client,
    pub(super) channel: String,
}

/// A connection in subscriber mode.
pub(super) struct RedisListener {
    conn: redis::Connection,
}

impl Channel for RedisChannel {
    type Listener = RedisListener;

    fn listen(&self) -> Result<RedisListener, DbError> {
        let timeout = Duration::from_secs(5);
        let mut conn = self
            .client
            .get_connection_with_timeout(timeout)
            .map_err(|e| db_error("connecting to listen for wake-ups", e))?;
        let subscribe = redis::cmd("SUBSCRIBE")
            .arg(&self.channel)
            .get_packed_command();
        conn.send_packed_command(&subscribe)
            .map_err(|e| db_error("SUBSCRIBE", e))?;
        // The confirmation: once it is read, every later publish reaches this connection.
        conn.set_read_timeout(Some(timeout))
            .map_err(|e| db_error("SUBSCRIBE", e))?;
        conn.recv_response().map_err(|e| db_error("SUBSCRIBE", e))?;
        Ok(RedisListener { conn })
    }

    fn send(&self, payload: &str) -> Result<(), DbError> {
        let mut conn = self
            .client
            .get_connection_with_timeout(Duration::from_secs(5))
            .map_err(|e| db_error("connecting to publish", e))?;
        redis::cmd("PUBLISH")
            .arg(&self.channel)
            .arg(payload)
            .query::<i64>(&mut conn)
            .map(drop)
            .map_err(|e| db_error("PUBLISH", e))
    }
}

impl Listener for RedisListener {
    fn next(&mut self, timeout: Duration) -> Result<Option<String>, DbError> {
        let timeout = timeout.max(Duration::from_millis(1)); // zero is refused
        self.conn
            .set_read_timeout(Some(timeout))
            .map_err(|e| db_error("waiting for a message", e))?;
        match self.conn.recv_response() {
            Ok(value) => Ok(redis::Msg::from_owned_value(value)
                .map(|msg| msg.get_payload::<String>().unwrap_or_default())),
            Err(e) if e.is_timeout() => Ok(None),
            Err(e) => Err(db_error("waiting for a message", e)),
        }
    }
}
