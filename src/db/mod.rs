//! The Db layer: the [`Db`](interface::Db) trait and the backends behind it. An index only.
//!
//! * [`interface`]: the `Db` trait, `Capabilities`, the optional `DbLeases`, and the
//!   forwarding impls for `Arc`, `Box` and `&`;
//! * [`lease`]: lease ids and the lease table the backends with leases share;
//! * [`watch`]: `DbWatch`, the wake-ups a shared Db gives a storage instead of polling;
//! * [`file`]: `FileDb`, the embedded default (std only);
//! * [`mem`]: `MemDb`, in memory, for tests, examples and benchmarks;
//! * `server`: Redis and PostgreSQL over one client core (cargo features `redis`,
//!   `postgres`).
//!
//! Layers, each importing only the ones above it in this list: `watch`, `interface` and `lease`; the
//! backends (`file`, `mem`, `server`), which never import each other.

pub(crate) mod file;
pub(crate) mod interface;
pub(crate) mod lease;
pub(crate) mod mem;
#[cfg(any(feature = "redis", feature = "postgres"))]
pub(crate) mod server;
pub(crate) mod watch;

pub use interface::{Capabilities, Db, DbLeases};
pub use lease::{DbLease, LeaseId};
pub use watch::{DbChange, DbWatch};
