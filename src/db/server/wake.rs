//! Wake-ups from a server ([`ServerWatch`]): a dedicated connection subscribed to the Db's
//! channel (PostgreSQL `LISTEN`, Redis `SUBSCRIBE`), whose messages say that some client
//! stored items or took a lease, and the payloads they carry.
//!
//! The server sends a message to every subscribed connection when the push that stored items
//! commits (PostgreSQL delivers a `NOTIFY` made inside the push's transaction at its commit;
//! Redis's push script publishes inside the script). A message is lost when the watch's
//! connection is down at that moment: the storage's slow re-check covers it, and a watch
//! whose connection broke reconnects and subscribes again at its next wait.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::db::watch::{DbChange, DbWatch};
use crate::error::DbError;

/// Payload: some client stored items (a push or a release).
pub(crate) const STORED: &str = "s";
/// Payload: the storage that owns the watch is closing (any other watch ignores it).
const INTERRUPT: &str = "i";

/// The longest one blocking read lasts: a watch checks its stop flag at least this often, so
/// a storage closes within this time even if its interrupt message cannot be sent.
const SLICE: Duration = Duration::from_millis(500);

/// Payload: some client took a lease that comes back by itself at `at` (`l <epoch ms>`).
pub(crate) fn lease_payload(at: SystemTime) -> String {
    let ms = at
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    format!("l {ms}")
}

/// Adds one payload to `change`; an unknown one (an interrupt, a newer format) just wakes.
fn decode(payload: &str, change: &mut DbChange) {
    if payload == STORED {
        change.stored = true;
    } else if let Some(ms) = payload.strip_prefix("l ").and_then(|m| m.parse().ok()) {
        let at = UNIX_EPOCH + Duration::from_millis(ms);
        change.lease_due = change.lease_due.max(Some(at));
    }
}

/// One server subscription: a connection that receives the channel's messages.
pub(crate) trait Listener: Send {
    /// The next message's payload, waiting at most `timeout` (`None`: it passed). `Err`: the
    /// connection broke (the watch reconnects at its next wait).
    fn next(&mut self, timeout: Duration) -> Result<Option<String>, DbError>;
}

/// How a server backend opens a subscription and sends a message on its channel.
pub(crate) trait Channel: Send + Sync + 'static {
    /// The listener type.
    type Listener: Listener;
    /// A new connection, subscribed.
    fn listen(&self) -> Result<Self::Listener, DbError>;
    /// Sends `payload` on the channel from a connection of its own.
    fn send(&self, payload: &str) -> Result<(), DbError>;
}

/// A [`DbWatch`] over a server channel.
pub(crate) struct ServerWatch<C: Channel> {
    channel: Arc<C>,
    listener: Option<C::Listener>,
    stop: Arc<AtomicBool>,
}

impl<C: Channel> ServerWatch<C> {
    /// Subscribes now, so a push committed after this returns reaches the watch.
    pub(crate) fn open(channel: C) -> Result<Self, DbError> {
        let listener = channel.listen()?;
        Ok(ServerWatch {
            channel: Arc::new(channel),
            listener: Some(listener),
            stop: Arc::new(AtomicBool::new(false)),
        })
    }

    /// One read of at most `slice`; a broken connection is dropped and reported as a change
    /// (a message may have been lost meanwhile: a pop should ask the Db).
    fn read(&mut self, slice: Duration) -> Result<Option<String>, DbError> {
        let listener = match self.listener.as_mut() {
            Some(listener) => listener,
            None => self.listener.insert(self.channel.listen()?),
        };
        match listener.next(slice) {
            Ok(got) => Ok(got),
            Err(_) => {
                self.listener = None;
                Ok(Some(STORED.to_string()))
            }
        }
    }
}

impl<C: Channel> DbWatch for ServerWatch<C> {
    fn wait(&mut self, until: Option<Instant>) -> Result<DbChange, DbError> {
        let mut change = DbChange::default();
        while !self.stop.load(Ordering::Acquire) {
            let left = until.map(|t| t.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                break;
            }
            let slice = left.map_or(SLICE, |l| l.min(SLICE));
            match self.read(slice) {
                Ok(Some(payload)) => {
                    decode(&payload, &mut change);
                    break;
                }
                Ok(None) => {}
                // Cannot reconnect now: wait a slice (as a timeout) and try again, so a
                // server that comes back is watched again; the re-check covers the gap.
                Err(_) => std::thread::sleep(slice),
            }
        }
        Ok(change)
    }

    fn interrupter(&self) -> Result<Box<dyn Fn() + Send + Sync>, DbError> {
        let (stop, channel) = (Arc::clone(&self.stop), Arc::clone(&self.channel));
        Ok(Box::new(move || {
            stop.store(true, Ordering::Release);
            // Best effort: without it the wait notices the flag within a slice.
            let _ = channel.send(INTERRUPT);
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_decode_and_merge() {
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let mut change = DbChange::default();
        decode(&lease_payload(at), &mut change);
        decode(&lease_payload(at - Duration::from_secs(1)), &mut change);
        assert_eq!(change, DbChange::lease_due(at));
        decode(STORED, &mut change);
        assert!(change.stored);
        let mut nothing = DbChange::default();
        decode(INTERRUPT, &mut nothing);
        decode("l x", &mut nothing);
        assert_eq!(nothing, DbChange::default());
    }
}
