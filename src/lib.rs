//! # lifostore
//!
//! Durable LIFO storage for blocking Rust code: many threads push byte strings and pop them
//! newest first, while a background flusher writes the buffer to an expensive database in
//! batches, so that at most a configurable window of pushes (60 s by default) can be lost if
//! the process dies, and nothing that reached the database ever is.
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
//! The promises are in `docs/CONTRACT.md` (with the tests that check each); the README has
//! the design and the backends. `lifostore::testing` (cargo feature `testing`) has
//! fault-injecting Db wrappers for testing code built on lifostore.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod db;
mod engine;
mod error;
mod sync;
#[cfg(feature = "testing")]
pub mod testing;
mod token;

pub use db::file::{FileDb, FileDbError, FileDbOptions, SalvageReport};
pub use db::mem::{MemDb, MemDbCalls};
#[cfg(feature = "postgres")]
pub use db::server::postgres::PostgresDb;
#[cfg(feature = "redis")]
pub use db::server::redis::RedisDb;
pub use db::{Capabilities, Db, DbLease, DbLeases, LeaseId};
pub use engine::{DeadLetter, Iter, Lease, Stats, Storage, StorageBuilder, TryIter};
pub use error::{DbError, Error, PushBatchError, TryPushError, Unconfirmed};
pub use token::{CancelReason, CancelToken};
