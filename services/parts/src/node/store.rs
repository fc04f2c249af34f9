//! [`Store`]: a node's parts as files in its directory.
//!
//! Layout: `<dir>/node-id` (the node's identity, kept across restarts), `<dir>/parts/<copy>`
//! (one file per stored copy of a part, named by its copy id), `<dir>/tmp/` (writes in
//! progress). A write goes to a temp file, is fsynced, renamed into `parts/`, and `parts/` is
//! fsynced: after a crash a copy is either whole under its name or absent, and leftover temp
//! files are removed when the node starts.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Chunk size of reads and writes.
const CHUNK: usize = 256 << 10;

/// A copy written: its length and CRC-32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Bytes written.
    pub len: u64,
    /// CRC-32 (IEEE) of the bytes.
    pub crc: u32,
}

/// The node's directory.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    id: String,
    /// Bytes in `parts/`.
    used: AtomicU64,
}

impl Store {
    /// Opens (creating if needed) the store in `dir`: reads or creates the node id, removes
    /// temp files a crash left, and sums the bytes stored.
    pub fn open(dir: &Path) -> io::Result<Store> {
        fs::create_dir_all(dir.join("parts"))?;
        fs::create_dir_all(dir.join("tmp"))?;
        for entry in fs::read_dir(dir.join("tmp"))? {
            fs::remove_file(entry?.path())?;
        }
        let id = read_or_create_id(dir)?;
        let store = Store {
            dir: dir.to_path_buf(),
            id,
            used: AtomicU64::new(0),
        };
        let used = store.inventory()?.iter().map(|(_, len)| len).sum();
        store.used.store(used, Ordering::Relaxed);
        Ok(store)
    }

    /// The node's id (random, created on first start, kept in `<dir>/node-id`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Bytes stored in parts.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn part_path(&self, copy: u64) -> PathBuf {
        self.dir.join("parts").join(copy.to_string())
    }

    /// Writes copy `copy` from `body` (exactly `len` bytes; fewer is an error), durably:
    /// temp file, fsync, rename, fsync of the directory. Replaces an existing copy of that id
    /// (a retried write). On any error nothing is left behind.
    ///
    /// `wanted` is asked after the fsync, just before the rename: if the writer gave up
    /// meanwhile (a gateway cut a slow node off, or died), the copy is dropped instead of
    /// appearing after the gateway already counted it as garbage, where a cleanup job that ran
    /// in between could no longer see it.
    pub fn put(
        &self,
        copy: u64,
        len: u64,
        body: &mut dyn FnMut(&mut [u8]) -> io::Result<usize>,
        wanted: &dyn Fn() -> bool,
    ) -> io::Result<Written> {
        let tmp = self
            .dir
            .join("tmp")
            .join(format!("{copy}.{:016x}", fastrand::u64(..)));
        let result = self.write_temp(&tmp, len, body).and_then(|written| {
            if !wanted() {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "the writer went away before the copy was complete; dropped",
                ));
            }
            let old = fs::metadata(self.part_path(copy)).map(|m| m.len()).ok();
            fs::rename(&tmp, self.part_path(copy))?;
            File::open(self.dir.join("parts"))?.sync_all()?;
            self.used.fetch_add(written.len, Ordering::Relaxed);
            if let Some(old) = old {
                self.used.fetch_sub(old, Ordering::Relaxed);
            }
            Ok(written)
        });
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn write_temp(
        &self,
        tmp: &Path,
        len: u64,
        body: &mut dyn FnMut(&mut [u8]) -> io::Result<usize>,
    ) -> io::Result<Written> {
        let mut file = File::create(tmp)?;
        let mut crc = crc32fast::Hasher::new();
        let mut buf = vec![0u8; CHUNK];
        let mut done = 0u64;
        while done < len {
            let want = CHUNK.min((len - done) as usize);
            let n = body(&mut buf[..want])?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("body ended after {done} of {len} bytes"),
                ));
            }
            file.write_all(&buf[..n])?;
            crc.update(&buf[..n]);
            done += n as u64;
        }
        file.sync_all()?;
        Ok(Written {
            len,
            crc: crc.finalize(),
        })
    }

    /// Opens copy `copy` for reading, with its length; `Ok(None)` if it is not stored.
    pub fn open_copy(&self, copy: u64) -> io::Result<Option<(File, u64)>> {
        match File::open(self.part_path(copy)) {
            Ok(file) => {
                let len = file.metadata()?.len();
                Ok(Some((file, len)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes copy `copy` durably (fsync of the directory); `Ok(false)` if it was not there.
    pub fn delete(&self, copy: u64) -> io::Result<bool> {
        let path = self.part_path(copy);
        let len = match fs::symlink_metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        fs::remove_file(&path)?;
        File::open(self.dir.join("parts"))?.sync_all()?;
        self.used.fetch_sub(len, Ordering::Relaxed);
        Ok(true)
    }

    /// Every stored copy with its length, by copy id. Files whose names are not copy ids are
    /// skipped.
    pub fn inventory(&self) -> io::Result<Vec<(u64, u64)>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(self.dir.join("parts"))? {
            let entry = entry?;
            let Some(copy) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            out.push((copy, entry.metadata()?.len()));
        }
        out.sort_unstable();
        Ok(out)
    }
}

/// Reads `<dir>/node-id`, or creates it durably with a random id.
fn read_or_create_id(dir: &Path) -> io::Result<String> {
    let path = dir.join("node-id");
    match fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let id = format!("n{:012x}", fastrand::u64(..) >> 16);
    let tmp = dir.join("node-id.tmp");
    let mut file = File::create(&tmp)?;
    file.write_all(id.as_bytes())?;
    file.sync_all()?;
    fs::rename(&tmp, &path)?;
    File::open(dir)?.sync_all()?;
    Ok(id)
}

/// Reads up to `buf.len()` bytes of `file`, retrying on interruption; 0 at its end.
pub fn read_some(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match file.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}
