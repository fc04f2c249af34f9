//! The engine: a bounded in-memory stack in front of a Db, with a flusher. An index only.
//!
//! Layers, each importing only the ones below it:
//!
//! 1. the facade: [`builder`] (the ways to open a storage and its settings; `Storage::open`,
//!    `new` and `builder` come first on the `Storage` page, so it is declared first),
//!    [`storage`] (each public method a short dispatch), [`iter`];
//! 2. [`ops`]: the operations, one walk per direction ([`ops::take`], [`ops::admit`]) with
//!    the wait as a parameter, the writer, the flusher, the durable wait, leases;
//! 3. [`waiter`]: how a call waits on its token and a condition variable;
//! 4. [`core`]: the state behind its mutex, the Db, and the one wake-up function;
//! 5. [`state`]: the state, split by concept, with every transition saying whom it wakes;
//! 6. leaves, which import nothing of the engine: [`policy`] (settings and pure rules),
//!    [`write_model`] (the Db's learned speed), [`wakeups`], [`lease_table`],
//!    [`durable_waiters`], [`db_call`] (panic-safe Db calls, poison isolation), [`stats`].

mod builder;
mod storage;

mod core;
mod db_call;
mod durable_waiters;
mod iter;
mod lease_table;
mod ops;
mod policy;
mod state;
mod stats;
mod waiter;
mod wakeups;
mod write_model;

pub use builder::StorageBuilder;
pub use iter::{Iter, TryIter};
pub use ops::lease::Lease;
pub use state::dead_letters::DeadLetter;
pub use stats::Stats;
pub use storage::Storage;
