//! The orders service: ingest orders from NATS JetStream, validate them, write them behind to
//! PostgreSQL through a lifostore `Storage`, keep in a cache
//! exactly the copies PostgreSQL holds for good, and serve them over HTTP.
//!
//! See the README for the design diagram and the crash story.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod backoff;
pub mod cache;
pub mod commit;
pub mod config;
pub mod counters;
pub mod edge;
pub mod error_chain;
pub mod generate;
pub mod http;
pub mod ingest;
pub mod listen;
pub mod metrics;
pub mod order;
pub mod orders_db;
pub mod publish;
pub mod rebuild;
pub mod record;
pub mod service;
pub mod tail;
pub mod view;
