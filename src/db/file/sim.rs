//! A simulated disk behind the [`Vfs`] seam, for the fault-injection tests: files (the stack
//! file and its lease log), each with a page cache (what reads see) and a durable image (what
//! survives power loss), a trace of every call, and one fault to inject at the k-th call.

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

/// One file: what reads see, and what survives a power loss.
#[derive(Debug, Default)]
struct Disk {
    cache: Vec<u8>,
    durable: Vec<u8>,
}

#[derive(Debug, Default)]
struct State {
    /// The files created so far.
    files: BTreeMap<PathBuf, Disk>,
    trace: Vec<Call>,
    /// Whether to keep a copy of the durable images after every successful sync.
    keep_durable: bool,
    /// The copies kept, oldest first.
    durable_log: Vec<Images>,
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
                durable: bytes,
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

    /// Keeps a copy of the durable images after every successful sync from now on: the
    /// crash points of a run.
    pub(super) fn keep_durable_snapshots(&self) {
        self.state().keep_durable = true;
    }

    /// The copies kept since the last call, oldest first.
    pub(super) fn take_durable_snapshots(&self) -> Vec<Images> {
        std::mem::take(&mut self.state().durable_log)
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
            .map(|(p, d)| (p.clone(), d.durable.clone()))
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

fn injected() -> io::Error {
    io::Error::other("injected I/O fault")
}

impl Vfs for SimVfs {
    fn open(&self, path: &Path) -> io::Result<Box<dyn FileIo>> {
        let (mut s, fault) = self.enter(Call::Open);
        if fault.is_some() {
            return Err(injected());
        }
        s.files.entry(path.to_path_buf()).or_default();
        Ok(Box::new(SimFile(self.clone(), path.to_path_buf())))
    }

    fn sync_dir(&self, _path: &Path) -> io::Result<()> {
        match self.enter(Call::SyncDir).1 {
            Some(_) => Err(injected()),
            None => Ok(()),
        }
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
        let cache = &mut s.files.entry(self.1.clone()).or_default().cache;
        let (at, end) = (at as usize, at as usize + n);
        if cache.len() < end {
            cache.resize(end, 0);
        }
        cache[at..end].copy_from_slice(&buf[..n]);
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
                disk.durable = disk.cache.clone();
                if s.keep_durable {
                    let images = s.files.iter().map(|(p, d)| (p.clone(), d.durable.clone()));
                    let images = images.collect();
                    s.durable_log.push(images);
                }
                Ok(())
            }
            Some(Fault::LoseDirty) => {
                disk.cache = disk.durable.clone();
                Err(injected())
            }
            Some(_) => Err(injected()),
        }
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.simple(Call::SetLen, |cache| {
            cache.resize(len as usize, 0);
            Ok(())
        })
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
