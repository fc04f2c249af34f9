//! Benchmarks only: see benches/durable_peers.rs.
