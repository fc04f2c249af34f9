//! The one seam between a [`FileDb`](super::FileDb) and the operating system.
//!
//! Every file operation a `FileDb` makes (open, read, write, sync, set_len, stat, lock) goes
//! through [`Vfs`] and [`FileIo`], as SQLite's VFS does, so the fault-injection tests can make
//! any single call fail, write only part of its bytes, or drop dirty pages on a failed sync.

use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Opens files and syncs directories.
pub(crate) trait Vfs: Send + Sync + Debug {
    /// Opens `path` for reading and writing, creating an empty file if there is none.
    fn open(&self, path: &Path) -> io::Result<Box<dyn FileIo>>;

    /// Makes the directory entry of `path` durable (after creating the file).
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
}

/// One open file. Positional reads and writes; no shared cursor.
pub(crate) trait FileIo: Send + Sync + Debug {
    /// Fills `buf` from offset `at`; a short file is an error.
    fn read_at(&self, buf: &mut [u8], at: u64) -> io::Result<()>;
    /// Writes all of `buf` at offset `at`. On error, any prefix of `buf` may have been written.
    fn write_at(&self, buf: &[u8], at: u64) -> io::Result<()>;
    /// `fdatasync`: everything written so far is durable when it returns `Ok`.
    fn sync(&self) -> io::Result<()>;
    /// Truncates (or extends) the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// The file's length.
    fn len(&self) -> io::Result<u64>;
    /// Takes the exclusive advisory lock shared with other processes (blocks).
    fn lock(&self) -> io::Result<()>;
    /// Releases the lock.
    fn unlock(&self) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct StdVfs;

impl Vfs for StdVfs {
    fn open(&self, path: &Path) -> io::Result<Box<dyn FileIo>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        Ok(Box::new(StdFile(file)))
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        match path.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(dir) => File::open(dir)?.sync_all(),
            None => File::open(".")?.sync_all(),
        }
    }
}

#[derive(Debug)]
struct StdFile(File);

impl FileIo for StdFile {
    fn read_at(&self, buf: &mut [u8], at: u64) -> io::Result<()> {
        self.0.read_exact_at(buf, at)
    }
    fn write_at(&self, buf: &[u8], at: u64) -> io::Result<()> {
        self.0.write_all_at(buf, at)
    }
    fn sync(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn lock(&self) -> io::Result<()> {
        self.0.lock()
    }
    fn unlock(&self) -> io::Result<()> {
        self.0.unlock()
    }
}
