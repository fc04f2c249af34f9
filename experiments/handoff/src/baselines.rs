//! The baselines, exactly as `benches/in_memory.rs` builds them: the bare stack of issue 11,
//! crossbeam-channel's `unbounded`, and lifostore's `Storage` over a MemDb that never flushes.

use std::time::Duration;

use lifostore::{CancelToken, MemDb, Storage};

/// `parking_lot::Mutex<Vec<Vec<u8>>>` + `parking_lot::Condvar`: lock, push, unlock,
/// `notify_one`; lock, pop (waiting on the condvar while empty), unlock.
#[derive(Default)]
pub struct BareStack(parking_lot::Mutex<Vec<Vec<u8>>>, parking_lot::Condvar);

impl BareStack {
    /// Lock, push, unlock, notify.
    #[inline]
    pub fn push(&self, item: Vec<u8>) {
        self.0.lock().push(item);
        self.1.notify_one();
    }

    /// Lock, pop; while empty, wait.
    #[inline]
    pub fn pop(&self) -> Vec<u8> {
        let mut g = self.0.lock();
        loop {
            if let Some(x) = g.pop() {
                return x;
            }
            self.1.wait(&mut g);
        }
    }

    /// Lock, pop, unlock.
    #[inline]
    pub fn try_pop(&self) -> Option<Vec<u8>> {
        self.0.lock().pop()
    }
}

/// crossbeam-channel's `unbounded` (FIFO: the hand-off's reference, not a stack).
pub struct Channel(
    crossbeam_channel::Sender<Vec<u8>>,
    crossbeam_channel::Receiver<Vec<u8>>,
);

impl Default for Channel {
    fn default() -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        Channel(tx, rx)
    }
}

impl Channel {
    /// `send`.
    #[inline]
    pub fn push(&self, item: Vec<u8>) {
        let _ = self.0.send(item);
    }

    /// `recv`.
    #[inline]
    pub fn pop(&self) -> Vec<u8> {
        self.1.recv().unwrap_or_default()
    }

    /// `try_recv`.
    #[inline]
    pub fn try_pop(&self) -> Option<Vec<u8>> {
        self.1.try_recv().ok()
    }
}

/// lifostore itself, set up as `benches/in_memory.rs` does: window 1 h, room for 16 M items,
/// one item flushed first (slow start over) and the Db known empty.
pub struct Lifo(Storage<MemDb>, CancelToken);

impl Default for Lifo {
    fn default() -> Self {
        let storage = Storage::builder()
            .max_unflushed_age(Duration::from_secs(3600))
            .max_buffered_items(1 << 24)
            .build(MemDb::new())
            .expect("storage");
        let token = CancelToken::new();
        storage.push(&token, vec![0u8]).expect("push");
        storage.flush(&token).expect("flush");
        assert_eq!(storage.pop(&token).expect("pop"), vec![0u8]);
        assert!(storage.try_pop().expect("try_pop").is_none());
        Lifo(storage, token)
    }
}

impl Lifo {
    /// `Storage::push`.
    #[inline]
    pub fn push(&self, item: Vec<u8>) {
        self.0.push(&self.1, item).expect("push");
    }

    /// `Storage::pop`.
    #[inline]
    pub fn pop(&self) -> Vec<u8> {
        self.0.pop(&self.1).expect("pop")
    }

    /// `Storage::try_pop`.
    #[inline]
    pub fn try_pop(&self) -> Option<Vec<u8>> {
        self.0.try_pop().expect("try_pop")
    }
}
