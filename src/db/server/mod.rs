//! The server backends, Redis and PostgreSQL, over one client core. An index only.
//!
//! * [`client`]: the core both share: one connection per client, re-opened after it breaks,
//!   batch ids and the pushes in doubt, pop sequence numbers, and the settlement of the last
//!   pop when the client is dropped; generic over [`client::Protocol`], the few statements a
//!   server runs;
//! * [`in_doubt`]: the client id and the bookkeeping of a push whose reply was lost;
//! * [`wake`]: wake-ups from a server channel (`DbWatch` over a subscribed connection);
//! * `redis` and `postgres`: their scripts and SQL, and the [`Db`](crate::Db) impls;
//!   `redis_wake` and `postgres_wake`: their channels (pub/sub, `LISTEN`/`NOTIFY`).

pub(crate) mod client;
pub(crate) mod in_doubt;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
#[cfg(feature = "postgres")]
mod postgres_wake;
#[cfg(feature = "redis")]
pub(crate) mod redis;
#[cfg(feature = "redis")]
mod redis_wake;
pub(crate) mod wake;
