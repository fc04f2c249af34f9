//! # objlog
//!
//! Per-object message logs written by any number of worker processes: requests arrive through
//! a NATS JetStream work queue, each worker buffers appends in a lifostore [`Storage`]
//! (`lifostore::Storage`) whose Db writes a batch as one multi-row INSERT into PostgreSQL, and
//! a request is acked only after its rows are in PostgreSQL and its response is in the
//! `RESPONSES` stream. See the README for the flow, the crash story and the numbers.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod client;
pub mod counters;
pub mod edge;
pub mod error;
pub mod handler;
pub mod load;
pub mod log_db;
pub mod log_row;
pub mod log_table;
pub mod metrics;
pub mod query_page;
pub mod ring;
pub mod topology;
pub mod wire;
pub mod worker;

pub use error::Error;
