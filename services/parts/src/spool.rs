//! [`Spool`]: one part of an upload as it arrives, kept so it can be sent again.
//!
//! The request thread appends the part's bytes as they come off the client's connection; the
//! part's sender thread reads them behind it ([`SpoolReader`] waits for bytes not yet
//! there), so a part streams to its node while it arrives. If the node fails or misses its
//! deadline, the sender starts over from the spool to another node. Small parts stay in
//! memory; larger ones go to an unlinked temp file (page cache; nothing is left behind by a
//! crash). A spool lives until its part is durable, so at most a few parts per upload exist at
//! once, never the whole file.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// Parts up to this length are spooled in memory.
pub const MEMORY_LIMIT: u64 = 1 << 20;

enum Backing {
    Memory(Mutex<Vec<u8>>),
    File(File),
}

/// How the writer side ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    Open,
    /// All bytes are in, with the part's CRC-32.
    Complete(u32),
    /// The client's body failed; the reason.
    Failed(String),
}

struct State {
    written: u64,
    end: End,
}

/// A part's bytes, written once, read any number of times.
pub struct Spool {
    backing: Backing,
    state: Mutex<State>,
    grew: Condvar,
    len: u64,
}

impl Spool {
    /// A spool for a part of `len` bytes (a temp file in `dir` if larger than
    /// [`MEMORY_LIMIT`]).
    pub fn new(len: u64, dir: &Path) -> io::Result<Arc<Spool>> {
        let backing = if len <= MEMORY_LIMIT {
            Backing::Memory(Mutex::new(Vec::with_capacity(len as usize)))
        } else {
            let path = dir.join(format!("parts-spool-{:016x}", fastrand::u64(..)));
            let file = File::options()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)?;
            std::fs::remove_file(&path)?;
            Backing::File(file)
        };
        Ok(Arc::new(Spool {
            backing,
            state: Mutex::new(State {
                written: 0,
                end: End::Open,
            }),
            grew: Condvar::new(),
            len,
        }))
    }

    /// The part's length.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the part is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends the next bytes (from the request thread only).
    pub fn append(&self, data: &[u8]) -> io::Result<()> {
        let at = self.state.lock().written;
        match &self.backing {
            Backing::Memory(buf) => buf.lock().extend_from_slice(data),
            Backing::File(file) => file.write_all_at(data, at)?,
        }
        self.state.lock().written = at + data.len() as u64;
        self.grew.notify_all();
        Ok(())
    }

    /// All bytes are in; `crc` is the part's CRC-32 (senders compare the node's with it).
    pub fn complete(&self, crc: u32) {
        self.state.lock().end = End::Complete(crc);
        self.grew.notify_all();
    }

    /// The client's body failed: readers get an error.
    pub fn fail(&self, why: &str) {
        self.state.lock().end = End::Failed(why.to_string());
        self.grew.notify_all();
    }

    /// The client's failure, if its body failed.
    pub fn failure(&self) -> Option<String> {
        match &self.state.lock().end {
            End::Failed(why) => Some(why.clone()),
            _ => None,
        }
    }

    /// Waits until the part is complete (its CRC) or failed (the reason).
    pub fn wait_complete(&self) -> Result<u32, String> {
        let mut state = self.state.lock();
        loop {
            match &state.end {
                End::Complete(crc) => return Ok(*crc),
                End::Failed(why) => return Err(why.clone()),
                End::Open => self.grew.wait(&mut state),
            }
        }
    }

    /// A reader from the start, whose node-side time may not exceed `budget` (time spent
    /// waiting for the client's bytes does not count).
    pub fn reader(self: &Arc<Self>, budget: Duration) -> SpoolReader {
        SpoolReader {
            spool: Arc::clone(self),
            pos: 0,
            started: Instant::now(),
            waited: Duration::ZERO,
            budget,
        }
    }

    /// Waits until bytes past `pos` exist (or the end); returns how many are readable.
    fn available(&self, pos: u64) -> io::Result<u64> {
        let mut state = self.state.lock();
        loop {
            if state.written > pos {
                return Ok(state.written - pos);
            }
            match &state.end {
                End::Failed(why) => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        why.clone(),
                    ));
                }
                End::Complete(_) => return Ok(0),
                End::Open if pos >= self.len => return Ok(0),
                End::Open => self.grew.wait(&mut state),
            }
        }
    }
}

/// Reads a [`Spool`] from the start, waiting for bytes still to come.
pub struct SpoolReader {
    spool: Arc<Spool>,
    pos: u64,
    started: Instant,
    waited: Duration,
    budget: Duration,
}

impl SpoolReader {
    /// Time this reader spent on the node's side (not waiting for the client).
    pub fn node_time(&self) -> Duration {
        self.started.elapsed().saturating_sub(self.waited)
    }
}

impl SpoolReader {
    /// Waits for bytes past the reader's position; how many are there (0 at the end). Fails
    /// once the node-side time exceeds the budget, or if the client's body failed.
    fn next_available(&mut self) -> io::Result<u64> {
        if self.node_time() > self.budget {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("part deadline of {:?} passed", self.budget),
            ));
        }
        let wait_start = Instant::now();
        let available = self.spool.available(self.pos);
        self.waited += wait_start.elapsed();
        available
    }

    /// Sends the rest of the part to `out` as it arrives. A file spool goes by `sendfile`
    /// (page cache to socket, no copy through this process); a memory spool by writes.
    pub fn send_to(&mut self, out: &mut std::net::TcpStream) -> io::Result<()> {
        use std::io::Write;
        loop {
            let available = self.next_available()?.min(4 << 20) as usize;
            if available == 0 {
                return Ok(());
            }
            match &self.spool.backing {
                Backing::Memory(buf) => {
                    let chunk =
                        buf.lock()[self.pos as usize..self.pos as usize + available].to_vec();
                    out.write_all(&chunk)?;
                    self.pos += available as u64;
                }
                Backing::File(file) => {
                    let sent = rustix::fs::sendfile(&*out, file, Some(&mut self.pos), available)?;
                    if sent == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::WriteZero,
                            "sendfile sent nothing",
                        ));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `send_to` delivers over a loopback connection (sent and read on threads of
    /// their own, so a full socket buffer never blocks the test).
    fn received(mut reader: SpoolReader) -> std::thread::JoinHandle<(io::Result<()>, Vec<u8>)> {
        use std::io::Read;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut out = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut inbound, _) = listener.accept().unwrap();
        let sender = std::thread::spawn(move || reader.send_to(&mut out));
        std::thread::spawn(move || {
            let mut got = Vec::new();
            let read = inbound.read_to_end(&mut got);
            let sent = sender.join().unwrap();
            read.unwrap();
            (sent, got)
        })
    }

    fn round_trip(len: u64) {
        let spool = Spool::new(len, &std::env::temp_dir()).unwrap();
        let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
        let first = received(spool.reader(Duration::from_secs(60)));
        for chunk in data.chunks(100_003) {
            spool.append(chunk).unwrap();
        }
        spool.complete(crc32fast::hash(&data));
        let (sent, got) = first.join().unwrap();
        assert!(
            sent.is_ok() && got == data,
            "the sender follows the writer ({len} bytes)"
        );
        let (sent, again) = received(spool.reader(Duration::from_secs(60)))
            .join()
            .unwrap();
        assert!(
            sent.is_ok() && again == data,
            "a second send (a resend) sees the same bytes"
        );
    }

    #[test]
    fn readers_follow_the_writer_in_memory_and_on_disk() {
        round_trip(0);
        round_trip(MEMORY_LIMIT);
        round_trip(3 * MEMORY_LIMIT + 7);
    }

    #[test]
    fn a_failed_body_fails_the_sender() {
        let spool = Spool::new(10, &std::env::temp_dir()).unwrap();
        spool.append(b"abc").unwrap();
        spool.fail("client went away");
        let (sent, got) = received(spool.reader(Duration::from_secs(60)))
            .join()
            .unwrap();
        assert!(sent.unwrap_err().to_string().contains("client went away"));
        assert_eq!(got, b"abc");
    }
}
