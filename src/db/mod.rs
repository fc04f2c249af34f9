//! The Db layer: the [`Db`](interface::Db) trait and the backends behind it. An index only.
//!
//! * [`interface`]: the `Db` trait, `Capabilities`, the optional `DbLeases`, and the
//!   forwarding impls for `Arc`, `Box` and `&`;
//! * [`lease`]: lease ids and the lease table the backends with leases share;
//! * [`file`]: `FileDb`, the embedded default (std only);
//! * [`mem`]: `MemDb`, in memory, for tests, examples and benchmarks;
//! * `server`: Redis and PostgreSQL over one client core (cargo features `redis`,
//!   `postgres`).
//!
//! Layers, each importing only the ones above it in this list: `interface` and `lease`; the
//! backends (`file`, `mem`, `server`), which never import each other.

pub(crate) mod file;
pub(crate) mod interface;
pub(crate) mod lease;
pub(crate) mod mem;
#[cfg(any(feature = "redis", feature = "postgres"))]
pub(crate) mod server;

pub use interface::{Capabilities, Db, DbLeases};
pub use lease::{DbLease, LeaseId};
