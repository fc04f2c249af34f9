//! # lifostore
//!
//! Durable LIFO storage for blocking Rust code: many threads push byte strings and pop them
//! newest first, while a background flusher writes the buffer to an expensive database in
//! batches, so that at most the last *window* of pushes can be lost if the process dies, and
//! nothing that reached the database ever is. The window is
//! [`max_unflushed_age`](StorageBuilder::max_unflushed_age), 60 s by default; "window"
//! means that setting everywhere in these docs and in error messages.
//!
//! ```
//! use lifostore::{CancelToken, MemDb, Storage};
//!
//! # fn main() -> Result<(), lifostore::Error> {
//! let storage = Storage::new(MemDb::new())?;
//! let token = CancelToken::new();
//! storage.push(&token, b"first".to_vec())?;
//! storage.push(&token, b"second".to_vec())?;
//! assert_eq!(storage.pop(&token)?, b"second");
//! storage.close()?; // "first" is now in the database
//! # Ok(())
//! # }
//! ```
//!
//! ## Where to read on
//!
//! * [`Storage`]: open one over a file ([`Storage::open`]), over any [`Db`]
//!   ([`Storage::new`]), or with settings ([`Storage::builder`]); then `push` and `pop`, and
//!   their non-blocking, batch, durable, lease and iterator forms.
//! * [`CancelToken`]: every blocking call takes one; cancelling it or passing its deadline
//!   ends the call at once, with the reason.
//! * [`Error`]: why a call failed, in a message that says what to do; [`DbError`]: why the
//!   database failed.
//! * The databases: [`FileDb`], the embedded default (one crash-safe file, std only);
//!   [`MemDb`] for tests; `RedisDb` and `PostgresDb` behind the cargo features `redis` and
//!   `postgres`; or your own [`Db`].
//! * [`contract`]: the promises (newest first; exactly-once delivery by `pop`; bounded
//!   loss; ...) and the tests that check each.
//! * `testing` (cargo feature `testing`): fault-injecting Db wrappers for testing code built
//!   on lifostore.
//!
//! `pop` delivers each item exactly once: once it returns the item, the storage has forgotten
//! it, so for the work you do with it that is at-most-once processing (a crash mid-work loses
//! the item). [`Storage::pop_lease`] hides the item until you ack it and delivers it again if
//! the lease is released or expires: at-least-once processing, exactly once when the work is
//! idempotent.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]
#![forbid(unsafe_code)]

// The contract's pseudo-code block is not a doctest (it shows signatures, not a program).
#[cfg(not(doctest))]
pub mod contract;
mod db;
mod engine;
mod error;
mod sync;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
mod token;

pub use db::file::{FileDb, FileDbError, FileDbOptions, SalvageReport};
pub use db::mem::{MemDb, MemDbCalls};
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use db::server::postgres::PostgresDb;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use db::server::redis::RedisDb;
pub use db::{Capabilities, Db, DbChange, DbLease, DbLeases, DbWatch, LeaseId};
pub use engine::{DeadLetter, Iter, Lease, Stats, Storage, StorageBuilder, TryIter};
pub use error::{DbError, Error, PushBatchError, TryPushError, Unconfirmed};
pub use token::{CancelReason, CancelToken};

// Every Rust snippet of the README compiles (and runs, unless marked `no_run`) as a doctest.
// The README's backend snippet names `RedisDb` and `PostgresDb`, so this runs with both
// features: `cargo test --all-features --doc ReadmeDoctests` (in .ci/run).
#[cfg(all(doctest, feature = "redis", feature = "postgres"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
