//! The one seam between a [`FileDb`](super::FileDb) and the operating system.
//!
//! Every file operation a `FileDb` makes (open, read, write, sync, set_len, stat, lock) goes
//! through [`Vfs`] and [`FileIo`], as SQLite's VFS does, so the fault-injection tests can make
//! any single call fail, write only part of its bytes, or drop dirty pages on a failed sync.

use std::fmt::Debug;
use std::fs::{File, FileType, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt};
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
        refuse_special(path)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        // Again on what was opened, in case the path was replaced in between.
        let meta = file.metadata()?;
        if let Some(what) = special(meta.file_type()) {
            return Err(not_regular(what));
        }
        // A kernel pseudo-file (`/proc/version`) is "regular" with size 0, yet has content:
        // an empty file to initialise, to every other check. A regular empty file reads 0.
        if meta.len() == 0 && file.read_at(&mut [0u8; 1], 0)? > 0 {
            return Err(not_regular(
                "a kernel pseudo-file (as in /proc), not a file on a disk",
            ));
        }
        Ok(Box::new(StdFile(file)))
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        match path.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(dir) => File::open(dir)?.sync_all(),
            None => File::open(".")?.sync_all(),
        }
    }
}

/// Fails with a [`NotARegularFile`] error if `path` exists and is neither a regular file nor
/// a directory (opening a directory fails with its own clear error). Checked before opening:
/// opening a FIFO can block, a device would take the writes, `/proc` files are not storage,
/// and a socket cannot be opened at all (`ENXIO`, which would read as a device fault).
pub(crate) fn refuse_special(path: &Path) -> io::Result<()> {
    match std::fs::metadata(path) {
        Ok(meta) => match special(meta.file_type()) {
            Some(what) => Err(not_regular(what)),
            None => Ok(()),
        },
        Err(_) => Ok(()), // missing (open creates it) or unreadable (open says why)
    }
}

/// What a file of type `ft` is, when it is neither a regular file nor a directory.
fn special(ft: FileType) -> Option<&'static str> {
    if ft.is_file() || ft.is_dir() {
        None
    } else if ft.is_fifo() {
        Some("a FIFO (named pipe), not a regular file")
    } else if ft.is_char_device() {
        Some("a character device, not a regular file")
    } else if ft.is_block_device() {
        Some("a block device, not a regular file")
    } else if ft.is_socket() {
        Some("a socket, not a regular file")
    } else {
        Some("not a regular file")
    }
}

/// The error [`refuse_special`] and [`StdVfs::open`] return: what the path is, as an
/// [`io::ErrorKind::InvalidInput`] carrying a [`NotARegularFile`].
fn not_regular(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, NotARegularFile(what))
}

/// A path that is not a regular file on a disk: what it is ("a FIFO (named pipe), not a
/// regular file", ...). FileDb refuses it before writing a byte.
#[derive(Debug)]
pub(crate) struct NotARegularFile(pub(crate) &'static str);

impl std::fmt::Display for NotARegularFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for NotARegularFile {}

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
