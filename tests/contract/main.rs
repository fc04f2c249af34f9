//! The contract's promises (docs/CONTRACT.md), one module per promise: each module checks its
//! promise directly and names the deeper suites that check it further (the history checker,
//! crash and fault-injection loops, several processes, real servers, the loom models).
//! `table` checks that every test docs/CONTRACT.md's table names exists.
//!
//! Run one promise with `cargo test --test contract p03_`.

#[path = "../common/mod.rs"]
mod common;

mod p01_newest_first;
mod p02_exactly_once;
mod p03_bounded_loss;
mod p04_little_io;
mod p05_bounded_memory;
mod p06_db_failures;
mod p07_cancellation;
mod p08_clear_errors;
mod p09_durable_file;
mod p10_shared_use;
mod p11_disk_errors;
mod p12_one_bad_item;
mod p13_leases;
mod table;
