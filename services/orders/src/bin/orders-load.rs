//! `orders-load`: paced HTTP load generator (placeholder until the bench lands).
fn main() {}
