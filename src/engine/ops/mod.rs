//! The operations: what the storage's calls do, each over the state and the core.
//!
//! * [`take`]: the one walk that takes items (pops, batch pops, leases), blocking or not;
//! * [`admit`]: the one walk that puts items in (push, batch push, durable push), blocking
//!   or not;
//! * [`write`]: the writer role (a batch write, `flush`, `close`'s drain);
//! * [`flusher`]: the background thread's loop;
//! * [`durable`]: `push_durable`'s wait, with group commit;
//! * [`lease`]: the lease guard and the ends of a lease;
//! * [`lease_return`]: returning a native Db lease on top of everything buffered;
//! * [`lease_to_db`]: writing a memory-leased item to the Db, still leased, when the window
//!   comes due for it (with a `lease_ttl`, over a Db with native leases);
//! * [`count`]: the size of the storage, `len`;
//! * [`watch`]: the thread that turns a shared Db's wake-ups into re-checks.
//!
//! They import the core, the state and the leaves; none imports the facade.

pub(crate) mod admit;
pub(crate) mod count;
pub(crate) mod durable;
pub(crate) mod flusher;
pub(crate) mod lease;
pub(crate) mod lease_return;
pub(crate) mod lease_to_db;
pub(crate) mod take;
pub(crate) mod watch;
pub(crate) mod write;
