//! Test helpers: fault-injecting Db wrappers (filled in by the reliability suite).
