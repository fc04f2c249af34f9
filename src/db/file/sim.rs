//! A simulated disk behind the [`Vfs`] seam, for the fault-injection and power-loss tests:
//! files (the stack file and its lease log), each with a page cache (what reads see), a durable
//! image (what survives power loss), the changes made since its last sync, and whether its
//! directory entry is durable; a trace of every call; one fault to inject at the k-th call; and,
//! on request, a [`CrashPoint`] after every call that changes the disk, from which
//! `crash_images.rs` builds what a power loss there may leave.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::io::{FileIo, Vfs};

/// The kinds of call that go through the seam.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Call {
    Open,
    SyncDir,
    Read,
    Write,
    Sync,
    SetLen,
    Len,
    Lock,
    Unlock,
}

/// What an injected fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fault {
    /// The call fails with an I/O error and has no effect.
    Fail,
    /// A write stores the first half of its bytes, then fails.
    ShortWrite,
    /// A sync fails and the kernel drops the dirty pages: the cache falls back to the durable
    /// image (Linux after a failed `fsync`, as PostgreSQL met it in 2018).
    LoseDirty,
}

/// Every file's bytes, by path.
pub(super) type Images = BTreeMap<PathBuf, Vec<u8>>;

/// A change to a file's bytes that no successful sync has made durable yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Change {
    /// `bytes` written at offset `at` (a short write records what it stored).
    Write { at: u64, bytes: Vec<u8> },
    /// The file truncated or extended to this length.
    SetLen(u64),
}

/// One file: what reads see, and what survives a power loss.
#[derive(Debug, Default)]
struct Disk {
    /// What reads see: the durable image with `pending` applied.
    cache: Vec<u8>,
    durable: Arc<Vec<u8>>,
    /// The changes since the last successful sync, oldest first.
    pending: Vec<Change>,
    /// Created since the last directory sync: a power loss may leave no such file.
    unlinked: bool,
}

/// One file as a power loss at a crash point finds it: its durable image, the changes that
/// may or may not have reached the disk, and whether the file itself may be missing.
#[derive(Debug, Clone)]
pub(super) struct FileAtCrash {
    pub(super) durable: Arc<Vec<u8>>,
    pub(super) pending: Vec<Change>,
    pub(super) unlinked: bool,
}

/// The disk right after the `call`-th call (1-based): every file that exists.
#[derive(Debug, Clone)]
pub(super) struct CrashPoint {
    pub(super) call: usize,
    pub(super) files: BTreeMap<PathBuf, FileAtCrash>,
}

#[derive(Debug, Default)]
struct State {
    /// The files created so far.
    files: BTreeMap<PathBuf, Disk>,
    trace: Vec<Call>,
    /// Whether to keep a [`CrashPoint`] after every call that changes the disk.
    keep_crash_points: bool,
    crash_points: Vec<CrashPoint>,
    /// Inject `Fault` at the call with this 1-based index.
    fault: Option<(usize, Fault)>,
    fired: bool,
}

/// The simulated file system: cloning shares the disk.
#[derive(Debug, Clone, Default)]
pub(super) struct SimVfs(Arc<Mutex<State>>);

impl SimVfs {
    /// A disk whose files hold `images`, in the cache and durably.
    pub(super) fn with_images(images: Images) -> SimVfs {
        let vfs = SimVfs::default();
        for (path, bytes) in images {
            let disk = Disk {
                cache: bytes.clone(),
                durable: Arc::new(bytes),
                ..Disk::default()
            };
            vfs.state().files.insert(path, disk);
        }
        vfs
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Injects `fault` at the `k`-th call from now on (1-based, counting the whole trace).
    pub(super) fn fail_at(&self, k: usize, fault: Fault) {
        self.state().fault = Some((k, fault));
    }

    /// Keeps a [`CrashPoint`] after every call that changes the disk from now on.
    pub(super) fn keep_crash_points(&self) {
        self.state().keep_crash_points = true;
    }

    /// The crash points kept since the last call, oldest first.
    pub(super) fn take_crash_points(&self) -> Vec<CrashPoint> {
        std::mem::take(&mut self.state().crash_points)
    }

    /// Every call so far.
    pub(super) fn trace(&self) -> Vec<Call> {
        self.state().trace.clone()
    }

    /// Whether the injected fault has fired.
    pub(super) fn fired(&self) -> bool {
        self.state().fired
    }

    /// What a process restarted now would read (the page cache survives a process crash).
    pub(super) fn cache_images(&self) -> Images {
        let s = self.state();
        s.files
            .iter()
            .map(|(p, d)| (p.clone(), d.cache.clone()))
            .collect()
    }

    /// What a machine restarted after a power loss now would read.
    pub(super) fn durable_images(&self) -> Images {
        let s = self.state();
        s.files
            .iter()
            .map(|(p, d)| (p.clone(), d.durable.to_vec()))
            .collect()
    }

    /// Records `call`; returns the fault to inject into it, if it is the chosen one.
    fn enter(&self, call: Call) -> (MutexGuard<'_, State>, Option<Fault>) {
        let mut s = self.state();
        s.trace.push(call);
        let fault = match s.fault {
            Some((k, f)) if k == s.trace.len() => {
                s.fired = true;
                Some(f)
            }
            _ => None,
        };
        (s, fault)
    }
}

impl State {
    /// Keeps a crash point after the call just made, if asked to.
    fn crash_point(&mut self) {
        if !self.keep_crash_points {
            return;
        }
        let files = self.files.iter().map(|(p, d)| {
            let at_crash = FileAtCrash {
                durable: d.durable.clone(),
                pending: d.pending.clone(),
                unlinked: d.unlinked,
            };
            (p.clone(), at_crash)
        });
        let point = CrashPoint {
            call: self.trace.len(),
            files: files.collect(),
        };
        self.crash_points.push(point);
    }
}

fn injected() -> io::Error {
    io::Error::other("injected I/O fault")
}

impl Vfs for SimVfs {
    fn open(&self, path: &Path) -> io::Result<Box<dyn FileIo>> {
        let (mut s, fault) = self.enter(Call::Open);
        if fault.is_some() {
            return Err(injected());
        }
        if !s.files.contains_key(path) {
            let disk = Disk {
                unlinked: true,
                ..Disk::default()
            };
            s.files.insert(path.to_path_buf(), disk);
            s.crash_point();
        }
        Ok(Box::new(SimFile(self.clone(), path.to_path_buf())))
    }

    /// Every simulated file lives in one directory: its sync makes every entry durable.
    fn sync_dir(&self, _path: &Path) -> io::Result<()> {
        let (mut s, fault) = self.enter(Call::SyncDir);
        if fault.is_some() {
            return Err(injected());
        }
        for disk in s.files.values_mut() {
            disk.unlinked = false;
        }
        s.crash_point();
        Ok(())
    }
}

/// An open handle on a simulated file.
#[derive(Debug)]
struct SimFile(SimVfs, PathBuf);

impl SimFile {
    /// Runs `f` on the cache unless the call is the one to fail.
    fn simple<T>(
        &self,
        call: Call,
        f: impl FnOnce(&mut Vec<u8>) -> io::Result<T>,
    ) -> io::Result<T> {
        let (mut s, fault) = self.0.enter(call);
        if fault.is_some() {
            return Err(injected());
        }
        f(&mut s.files.entry(self.1.clone()).or_default().cache)
    }
}

impl FileIo for SimFile {
    fn read_at(&self, buf: &mut [u8], at: u64) -> io::Result<()> {
        self.simple(Call::Read, |cache| {
            let at = at as usize;
            let src = cache
                .get(at..at + buf.len())
                .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
            buf.copy_from_slice(src);
            Ok(())
        })
    }

    fn write_at(&self, buf: &[u8], at: u64) -> io::Result<()> {
        let (mut s, fault) = self.0.enter(Call::Write);
        let n = match fault {
            None => buf.len(),
            Some(Fault::ShortWrite) => buf.len() / 2,
            Some(_) => return Err(injected()),
        };
        let disk = s.files.entry(self.1.clone()).or_default();
        let (at, end) = (at as usize, at as usize + n);
        if disk.cache.len() < end {
            disk.cache.resize(end, 0);
        }
        disk.cache[at..end].copy_from_slice(&buf[..n]);
        let bytes = buf[..n].to_vec();
        disk.pending.push(Change::Write {
            at: at as u64,
            bytes,
        });
        s.crash_point();
        if n < buf.len() {
            return Err(io::Error::from(io::ErrorKind::StorageFull));
        }
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        let (mut s, fault) = self.0.enter(Call::Sync);
        let disk = s.files.entry(self.1.clone()).or_default();
        match fault {
            None => {
                disk.durable = Arc::new(disk.cache.clone());
                disk.pending.clear();
                s.crash_point();
                Ok(())
            }
            Some(Fault::LoseDirty) => {
                disk.cache = disk.durable.to_vec();
                disk.pending.clear();
                s.crash_point();
                Err(injected())
            }
            Some(_) => Err(injected()),
        }
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let (mut s, fault) = self.0.enter(Call::SetLen);
        if fault.is_some() {
            return Err(injected());
        }
        let disk = s.files.entry(self.1.clone()).or_default();
        disk.cache.resize(len as usize, 0);
        disk.pending.push(Change::SetLen(len));
        s.crash_point();
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        self.simple(Call::Len, |cache| Ok(cache.len() as u64))
    }

    fn lock(&self) -> io::Result<()> {
        self.simple(Call::Lock, |_| Ok(()))
    }

    fn unlock(&self) -> io::Result<()> {
        self.simple(Call::Unlock, |_| Ok(()))
    }
}
