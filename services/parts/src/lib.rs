//! # parts
//!
//! A file store that cuts every file into 6 parts of (almost) equal length and keeps them on
//! 6 distinct storage nodes out of n >= 6. A gateway (`parts-gateway`) serves a REST API (and
//! an S3-compatible subset), keeps the metadata in PostgreSQL, streams parts to and from the
//! nodes (`parts-node`) with bounded memory, places parts on the least-filled nodes, moves
//! parts to new nodes in the background, and runs its cleanup jobs through a lifostore
//! `Storage` over `PostgresDb`. The README has the API, the design and the crash story.
//!
//! Layout: [`http`] (the blocking HTTP server), [`node`] (the storage node), [`gateway`]
//! (the API, uploads, downloads, S3), [`meta`] (PostgreSQL), [`placement`], [`rebalance`],
//! [`jobs`], and the pieces they share: [`split`], [`checksum`], [`spool`], [`health`],
//! [`node_client`], [`counters`], [`args`].

pub mod args;
pub mod checksum;
pub mod counters;
pub mod gateway;
pub mod health;
pub mod http;
pub mod jobs;
pub mod meta;
pub mod node;
pub mod node_client;
pub mod placement;
pub mod rebalance;
pub mod split;
pub mod spool;
