//! Issue 22, phase 1: hand-off designs for lifostore's Condvar-guarded stack.
//!
//! Each contender is a stack of byte strings with the engine's bookkeeping on the push path
//! ([`buffer::Buffer`]: a sequence number and a stamp per item, a capacity, the oldest items
//! reachable for the flusher), newest first, exactly once, waiting on a condvar. They are
//! measured against crossbeam-channel's `unbounded` and the bare `parking_lot` stack in
//! `benches/handoff.rs`; `src/bin/driver.rs` runs one contender for `perf stat`. See README.md
//! for the designs, the figures and the port plan.

#![warn(missing_docs)]

pub mod baselines;
pub mod buffer;
pub mod clock;
pub mod combining;
pub mod elimination;
pub mod locked;
pub mod padded;
pub mod parking;
pub mod publish;
pub mod spin;
pub mod sync;

/// Room for 16 M items, as the bench gives lifostore: nothing in these runs waits for room.
pub const CAPACITY: usize = 1 << 24;

/// What the hand-off benches call.
pub trait Contender: Send + Sync + 'static {
    /// Pushes `item`.
    fn push(&self, item: Vec<u8>);
    /// Pops an item, blocking while there is none.
    fn pop(&self) -> Vec<u8>;
    /// Pops an item if there is one (the pair's second half).
    fn try_pop(&self) -> Option<Vec<u8>>;
}

#[cfg(not(handoff_loom))]
macro_rules! contender {
    ($($t:ty),*) => {$(
        impl Contender for $t {
            #[inline]
            fn push(&self, item: Vec<u8>) {
                <$t>::push(self, item)
            }
            #[inline]
            fn pop(&self) -> Vec<u8> {
                <$t>::pop(self)
            }
            #[inline]
            fn try_pop(&self) -> Option<Vec<u8>> {
                <$t>::try_pop(self)
            }
        }
    )*};
}

#[cfg(not(handoff_loom))]
contender!(
    baselines::BareStack,
    baselines::Channel,
    baselines::Lifo,
    locked::Locked<{ locked::ENGINE }>,
    locked::Locked<{ locked::SPIN_LOCK }>,
    locked::Locked<{ locked::SPIN_LONG }>,
    locked::Locked<{ locked::NO_YIELD }>,
    combining::Combining,
    elimination::Elimination,
    parking::Parking
);

impl<I: publish::Inbox> Contender for Publish<I> {
    #[inline]
    fn push(&self, item: Vec<u8>) {
        // Never closed in the benches.
        let _ = Publish::push(self, item);
    }
    #[inline]
    fn pop(&self) -> Vec<u8> {
        Publish::pop(self).unwrap_or_default()
    }
    #[inline]
    fn try_pop(&self) -> Option<Vec<u8>> {
        Publish::try_pop(self)
    }
}

pub use publish::Publish;

/// The publish design over crossbeam's lock-free channel.
#[cfg(not(handoff_loom))]
pub type PublishChannel = Publish<publish::ChannelInbox>;
/// The publish design over a `Vec` behind its own lock.
pub type PublishLocked = Publish<publish::LockedInbox>;

/// Every contender by name, freshly built: `(name, contender)`.
#[cfg(not(handoff_loom))]
pub fn contenders() -> Vec<(&'static str, std::sync::Arc<dyn Contender>)> {
    use std::sync::Arc;
    vec![
        ("crossbeam", Arc::new(baselines::Channel::default())),
        ("bare_stack", Arc::new(baselines::BareStack::default())),
        ("lifostore", Arc::new(baselines::Lifo::default())),
        (
            "model",
            Arc::new(locked::Locked::<{ locked::ENGINE }>::new(CAPACITY)),
        ),
        (
            "model_spinlock",
            Arc::new(locked::Locked::<{ locked::SPIN_LOCK }>::new(CAPACITY)),
        ),
        (
            "model_spinlong",
            Arc::new(locked::Locked::<{ locked::SPIN_LONG }>::new(CAPACITY)),
        ),
        (
            "model_noyield",
            Arc::new(locked::Locked::<{ locked::NO_YIELD }>::new(CAPACITY)),
        ),
        ("model_park", Arc::new(parking::Parking::new(CAPACITY))),
        ("combining", Arc::new(combining::Combining::new(CAPACITY))),
        (
            "elimination",
            Arc::new(elimination::Elimination::new(CAPACITY)),
        ),
        ("publish_chan", Arc::new(PublishChannel::new(CAPACITY))),
        ("publish_lock", Arc::new(PublishLocked::new(CAPACITY))),
    ]
}
