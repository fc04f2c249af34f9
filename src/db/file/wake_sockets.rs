//! FileDb's wake-ups across processes: Unix datagram sockets registered in a directory
//! beside the file, std only.
//!
//! A storage watching the file ([`FileWatch`]) binds a datagram socket under a random name in
//! Linux's abstract socket namespace (no file to clean up, no 108-byte path limit) and then
//! creates an empty file of that name in `<name>.wake/` beside the database. Every handle that
//! commits a push, a release or a lease sends one 9-byte datagram to each name registered
//! there ([`notify`]), after its commit and before its call returns, never blocking: a
//! receiver whose queue is full already has wake-ups it has not read, and one whose socket is
//! gone (its process died) refuses the datagram, so the sender deletes its stale entry.
//!
//! The order that keeps a wake-up from being lost between a pop that found the file empty and
//! a push: the watcher registers (socket bound, then its entry created) before its storage's
//! first Db call, and a pusher lists the directory after its commit. A push committed before
//! the registration is seen by the storage's first pop; one committed after it finds the
//! entry. A notifier that dies between its commit and its send loses the wake-up: the
//! storage's slow re-check (`StorageBuilder::shared_recheck_interval`) finds the item.
//!
//! Linux only (abstract sockets); elsewhere `FileDb::watch` returns `None` and a storage
//! polls. Processes in different network namespaces (containers sharing a volume) do not
//! see each other's sockets and fall back to the re-check.

use std::io::ErrorKind;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::format::new_salt;
use crate::db::watch::{DbChange, DbWatch};
use crate::error::DbError;

/// A datagram: the kind, then a deadline in milliseconds since the Unix epoch (little endian).
const MESSAGE_LEN: usize = 9;
/// Kind: the sender stored items (a push or a release).
const STORED: u8 = 1;
/// Kind: the sender took a lease that comes back at the deadline.
const LEASED: u8 = 2;
/// Kind: wake the watch's own thread (the storage is closing).
const INTERRUPT: u8 = 0;
/// Prefix of the abstract socket names, so `ss -x` shows whose they are.
const PREFIX: &str = "lifostore-wake/";

/// The abstract address a registered `name` is bound to.
fn address(name: &str) -> std::io::Result<SocketAddr> {
    SocketAddr::from_abstract_name(format!("{PREFIX}{name}"))
}

/// Tells every watcher registered in `dir` that the file changed: items stored, or (with
/// `lease_due`) a lease that comes back then. Best effort and non-blocking: a wake-up is a
/// hint (see the module docs); an entry whose socket is gone is removed.
pub(super) fn notify(dir: &Path, lease_due: Option<SystemTime>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return; // no watcher ever registered
    };
    let Ok(socket) = UnixDatagram::unbound() else {
        return;
    };
    if socket.set_nonblocking(true).is_err() {
        return;
    }
    let message = encode(lease_due);
    for entry in entries.flatten() {
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let Ok(addr) = address(&name) else { continue };
        if let Err(e) = socket.send_to_addr(&message, &addr)
            && e.kind() == ErrorKind::ConnectionRefused
        {
            // Nobody is bound to the name: its process died without unregistering.
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn encode(lease_due: Option<SystemTime>) -> [u8; MESSAGE_LEN] {
    let mut message = [0u8; MESSAGE_LEN];
    match lease_due {
        None => message[0] = STORED,
        Some(at) => {
            message[0] = LEASED;
            let ms = at
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis();
            message[1..].copy_from_slice(&(ms as u64).to_le_bytes());
        }
    }
    message
}

/// Adds one datagram to `change`.
fn decode(message: &[u8], change: &mut DbChange) {
    match message.first() {
        Some(&STORED) => change.stored = true,
        Some(&LEASED) if message.len() == MESSAGE_LEN => {
            let mut ms = [0u8; 8];
            ms.copy_from_slice(&message[1..]);
            let at = UNIX_EPOCH + Duration::from_millis(u64::from_le_bytes(ms));
            change.lease_due = change.lease_due.max(Some(at));
        }
        _ => {} // an interrupt, or a datagram of a newer format: just wake
    }
}

/// A storage's watch of one file: its bound socket and its registration.
#[derive(Debug)]
pub(super) struct FileWatch {
    socket: UnixDatagram,
    name: String,
    entry: PathBuf,
}

impl FileWatch {
    /// Binds a socket under a fresh name and registers it in `dir` (created if missing).
    pub(super) fn register(dir: &Path) -> Result<Self, DbError> {
        let name = format!("{}-{:016x}", std::process::id(), new_salt());
        let socket = UnixDatagram::bind_addr(&address(&name)?)
            .map_err(|e| DbError::io("bind the wake-up socket for", dir, e))?;
        std::fs::create_dir_all(dir).map_err(|e| DbError::io("create", dir, e))?;
        let entry = dir.join(&name);
        std::fs::write(&entry, b"").map_err(|e| DbError::io("register in", dir, e))?;
        Ok(FileWatch {
            socket,
            name,
            entry,
        })
    }

    /// Sets how long the next receive may block: until `until`, or for ever.
    fn block_until(&self, until: Option<Instant>) -> std::io::Result<()> {
        self.socket.set_nonblocking(false)?;
        let timeout = until.map(|t| {
            let left = t.saturating_duration_since(Instant::now());
            left.max(Duration::from_micros(1)) // zero means "for ever" to the socket
        });
        self.socket.set_read_timeout(timeout)
    }

    fn broken(&self, e: std::io::Error) -> DbError {
        DbError::io("receive a wake-up on", &self.entry, e)
    }
}

impl DbWatch for FileWatch {
    fn wait(&mut self, until: Option<Instant>) -> Result<DbChange, DbError> {
        let mut change = DbChange::default();
        if until.is_some_and(|t| t <= Instant::now()) {
            return Ok(change);
        }
        self.block_until(until).map_err(|e| self.broken(e))?;
        let mut buf = [0u8; 64];
        match self.socket.recv(&mut buf) {
            Ok(n) => decode(&buf[..n], &mut change),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Ok(change);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => return Ok(change),
            Err(e) => return Err(self.broken(e)),
        }
        // Whatever else arrived meanwhile is the same news: read it all now, in one wake-up.
        self.socket
            .set_nonblocking(true)
            .map_err(|e| self.broken(e))?;
        while let Ok(n) = self.socket.recv(&mut buf) {
            decode(&buf[..n], &mut change);
        }
        Ok(change)
    }

    fn interrupter(&self) -> Result<Box<dyn Fn() + Send + Sync>, DbError> {
        let addr = address(&self.name)?;
        let socket = UnixDatagram::unbound().map_err(|e| self.broken(e))?;
        Ok(Box::new(move || {
            let _ = socket.send_to_addr(&[INTERRUPT], &addr);
        }))
    }
}

impl Drop for FileWatch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_merge() {
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let later = at + Duration::from_secs(1);
        let mut change = DbChange::default();
        decode(&encode(Some(later)), &mut change);
        decode(&encode(Some(at)), &mut change);
        assert_eq!(change, DbChange::lease_due(later));
        decode(&encode(None), &mut change);
        assert!(change.stored);
        let mut nothing = DbChange::default();
        decode(&[INTERRUPT], &mut nothing);
        assert_eq!(nothing, DbChange::default());
    }

    #[test]
    fn a_registered_watch_hears_a_notify_and_a_dead_entry_is_removed() {
        let dir = std::env::temp_dir().join(format!("lifostore-wake-{}", new_salt()));
        let mut watch = FileWatch::register(&dir).expect("register");
        std::fs::write(dir.join("1-dead"), b"").expect("a stale entry");
        notify(&dir, None);
        let soon = Some(Instant::now() + Duration::from_secs(5));
        assert_eq!(watch.wait(soon).expect("wait"), DbChange::stored());
        assert!(!dir.join("1-dead").exists(), "nobody bound: the entry goes");
        (watch.interrupter().expect("interrupter"))();
        assert_eq!(watch.wait(soon).expect("wait"), DbChange::default());
        let past = Some(Instant::now());
        assert_eq!(watch.wait(past).expect("wait"), DbChange::default());
        drop(watch);
        assert_eq!(std::fs::read_dir(&dir).expect("dir").count(), 0);
        std::fs::remove_dir_all(&dir).ok();
    }
}
