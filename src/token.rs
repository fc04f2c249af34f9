//! [`CancelToken`]: lifostore's stand-in for Go's `context.Context`.
//!
//! # Design
//! A token is an `Arc` to a node that knows its parent, its own deadline and, once it has
//! ended, *why* and *when* (the first end is latched and never changes). Parents do not know
//! their children: a child holds its parent, never the reverse, so a root that outlives millions
//! of short-lived children keeps constant memory, and a child's end can never reach its parent.
//!
//! A child's end is the earliest of: its own `cancel()`, its own deadline, and its parent's end.
//! It is computed when someone looks (`reason()`, a blocked call re-checking) and latched under
//! the node's lock, so a `cancel()` racing a deadline yields one reason that every observer sees.
//!
//! Deadlines need no thread at all: a blocked lifostore call waits on its condition variable
//! with a timed wait until the token's earliest deadline, then re-checks the token. Explicit
//! cancellation wakes blocked calls through *registrations*: while a call is blocked it
//! registers a waker on the token and every ancestor, and removes it on every exit path (the
//! registration is a guard). Cancelling latches the reason, copies the wakers out, releases the
//! token's lock and only then runs them, so a waker may take the storage's lock without a lock
//! order cycle (storage lock -> token lock is the only nesting).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64 as StdAtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::sync::{AtomicBool, Mutex};

/// Why a [`CancelToken`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CancelReason {
    /// [`CancelToken::cancel`] was called on the token or one of its ancestors.
    Cancelled,
    /// The deadline of the token or one of its ancestors passed.
    DeadlineExceeded,
}

impl fmt::Display for CancelReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CancelReason::Cancelled => "cancelled",
            CancelReason::DeadlineExceeded => "deadline exceeded",
        })
    }
}

/// Something a blocked call asks the token to run when the token is cancelled.
pub(crate) trait Wake: Send + Sync {
    fn wake(&self);
}

#[derive(Clone, Copy)]
struct End {
    reason: CancelReason,
    at: Instant,
}

fn earliest(a: Option<End>, b: Option<End>) -> Option<End> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if y.at < x.at { y } else { x }),
        (x, None) => x,
        (None, y) => y,
    }
}

struct Node {
    parent: Option<Arc<Node>>,
    /// This node's own deadline.
    own_deadline: Option<Instant>,
    /// The earliest deadline on the chain from this node to the root.
    chain_deadline: Option<Instant>,
    /// Set (Release) after `state.end` is latched; a cheap first check for the hot path.
    ended: AtomicBool,
    state: Mutex<NodeState>,
}

struct NodeState {
    end: Option<End>,
    waiters: Vec<(u64, Arc<dyn Wake>)>,
}

/// Registration ids; unique across all tokens so one id can be removed from a whole chain.
static NEXT_WAITER_ID: StdAtomicU64 = StdAtomicU64::new(1);

impl Node {
    fn new(parent: Option<Arc<Node>>, deadline: Option<Instant>) -> Arc<Node> {
        let inherited = parent.as_ref().and_then(|p| p.chain_deadline);
        let chain_deadline = match (inherited, deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Arc::new(Node {
            parent,
            own_deadline: deadline,
            chain_deadline,
            ended: AtomicBool::new(false),
            state: Mutex::new(NodeState {
                end: None,
                waiters: Vec::new(),
            }),
        })
    }

    /// The end this node would latch now, from its ancestors and its own deadline.
    fn pending(&self, now: Instant) -> Option<End> {
        let from_parent = self.parent.as_ref().and_then(|p| p.end());
        let from_deadline = self.own_deadline.filter(|d| now >= *d).map(|at| End {
            reason: CancelReason::DeadlineExceeded,
            at,
        });
        earliest(from_parent, from_deadline)
    }

    /// The node's end, latching it if it has just happened.
    fn end(&self) -> Option<End> {
        // Acquire pairs with the Release in `latch`: seeing the flag means `state.end` is set.
        if self.ended.load(Ordering::Acquire) {
            return self.state.lock().end;
        }
        let deadline_passed = self.chain_deadline.is_some_and(|d| Instant::now() >= d);
        if !deadline_passed && !self.ancestor_ended() {
            return None;
        }
        self.latch(false)
    }

    fn ancestor_ended(&self) -> bool {
        let mut node = self.parent.as_deref();
        while let Some(n) = node {
            if n.ended.load(Ordering::Acquire) {
                return true;
            }
            node = n.parent.as_deref();
        }
        false
    }

    /// Latches the end under the node's lock: the first end wins. Lock order is child, then
    /// ancestors (via `pending`); a node never locks its children, so this cannot deadlock.
    fn latch(&self, cancel: bool) -> Option<End> {
        let mut st = self.state.lock();
        if let Some(end) = st.end {
            return Some(end);
        }
        let now = Instant::now();
        let end = match self.pending(now) {
            Some(end) => end,
            None if cancel => End {
                reason: CancelReason::Cancelled,
                at: now,
            },
            None => return None,
        };
        st.end = Some(end);
        self.ended.store(true, Ordering::Release);
        if !cancel {
            // Latched by an observer (a deadline passed, or an ancestor ended). Nobody needs
            // waking: deadline waiters sleep with a timed wait of their own, and waiters of an
            // ancestor are registered on that ancestor, whose `cancel` woke them. Observers may
            // hold a storage lock here, which a waker would take again.
            return Some(end);
        }
        let wakers: Vec<Arc<dyn Wake>> = st.waiters.iter().map(|(_, w)| Arc::clone(w)).collect();
        drop(st);
        // Run wakers without the token's lock held: a waker takes the storage's lock, and a
        // blocked call holds that lock while it registers here (storage -> token order).
        // `cancel` is never called with a storage lock held.
        for w in wakers {
            w.wake();
        }
        Some(end)
    }
}

/// A cancellation token: cancel it, or give it a deadline, to make blocking calls return.
///
/// Every blocking lifostore call takes a `&CancelToken`. A call given a token that has already
/// ended returns at once with the reason and no side effect; a call blocked when its token ends
/// wakes within milliseconds (no polling: explicit cancels wake it directly, deadlines end its
/// timed wait).
///
/// Tokens form a tree. [`child`](Self::child), [`with_timeout`](Self::with_timeout) and
/// [`with_deadline`](Self::with_deadline) make a child that ends when its parent ends, or
/// earlier; ending a child never affects its parent. The first reason a token ends with is
/// the one it keeps. Clones share one token; cloning is an `Arc` clone.
///
/// ```
/// use lifostore::{CancelReason, CancelToken};
/// use std::time::Duration;
///
/// let root = CancelToken::new();
/// let request = root.with_timeout(Duration::from_secs(5));
/// assert_eq!(request.reason(), None);
/// root.cancel();
/// assert_eq!(request.reason(), Some(CancelReason::Cancelled));
/// ```
#[derive(Clone)]
pub struct CancelToken {
    node: Arc<Node>,
}

impl Default for CancelToken {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelToken")
            .field("reason", &self.reason())
            .field("deadline", &self.deadline())
            .finish()
    }
}

impl CancelToken {
    /// A root token: no parent, no deadline; it ends only when [`cancel`](Self::cancel)led.
    pub fn new() -> Self {
        CancelToken {
            node: Node::new(None, None),
        }
    }

    /// A child that ends when this token ends or when it is cancelled itself.
    pub fn child(&self) -> CancelToken {
        CancelToken {
            node: Node::new(Some(Arc::clone(&self.node)), None),
        }
    }

    /// A child that also ends with [`CancelReason::DeadlineExceeded`] after `timeout`.
    ///
    /// A timeout too large to represent as an `Instant` means no deadline.
    pub fn with_timeout(&self, timeout: Duration) -> CancelToken {
        let deadline = Instant::now().checked_add(timeout);
        CancelToken {
            node: Node::new(Some(Arc::clone(&self.node)), deadline),
        }
    }

    /// A child that also ends with [`CancelReason::DeadlineExceeded`] at `deadline`.
    ///
    /// The earliest deadline on the chain wins: a child cannot outlive its parent's deadline.
    pub fn with_deadline(&self, deadline: Instant) -> CancelToken {
        CancelToken {
            node: Node::new(Some(Arc::clone(&self.node)), Some(deadline)),
        }
    }

    /// Ends this token and its descendants with [`CancelReason::Cancelled`], unless it has
    /// already ended (then the first reason stays). Wakes every call blocked on it.
    pub fn cancel(&self) {
        self.node.latch(true);
    }

    /// Whether the token has ended, for any reason (cancel or deadline, its own or inherited).
    pub fn is_cancelled(&self) -> bool {
        self.reason().is_some()
    }

    /// Why the token ended, or `None` while it is live. Once `Some`, it never changes.
    #[inline]
    pub fn reason(&self) -> Option<CancelReason> {
        // The hot path of every storage call: a root token with no deadline that has not been
        // cancelled answers with one atomic load, without the call into `end`.
        if self.node.parent.is_none()
            && self.node.chain_deadline.is_none()
            && !self.node.ended.load(Ordering::Acquire)
        {
            return None;
        }
        self.node.end().map(|e| e.reason)
    }

    /// The earliest deadline on the chain from this token to its root, if any.
    pub fn deadline(&self) -> Option<Instant> {
        self.node.chain_deadline
    }

    /// Registers `waker` on this token and all its ancestors until the guard drops.
    pub(crate) fn register(&self, waker: Arc<dyn Wake>) -> Registration<'_> {
        let id = NEXT_WAITER_ID.fetch_add(1, Ordering::Relaxed);
        let mut node = Some(&*self.node);
        while let Some(n) = node {
            n.state.lock().waiters.push((id, Arc::clone(&waker)));
            node = n.parent.as_deref();
        }
        Registration { token: self, id }
    }

    /// Number of live waiter registrations on this token alone (for leak tests, through
    /// `testing::registrations`).
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(crate) fn registrations(&self) -> usize {
        self.node.state.lock().waiters.len()
    }

    /// Number of handles (clones and children) keeping this token alive (for leak tests,
    /// through `testing::handles`).
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(crate) fn handles(&self) -> usize {
        Arc::strong_count(&self.node)
    }
}

/// A waker registration; removes itself from every node of the chain when dropped.
pub(crate) struct Registration<'a> {
    token: &'a CancelToken,
    id: u64,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let mut node = Some(&*self.token.node);
        while let Some(n) = node {
            let mut st = n.state.lock();
            if let Some(pos) = st.waiters.iter().position(|(id, _)| *id == self.id) {
                st.waiters.swap_remove(pos);
            }
            drop(st);
            node = n.parent.as_deref();
        }
    }
}
