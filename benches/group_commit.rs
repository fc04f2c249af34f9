//! Group commit: 64 threads each doing `push_durable` of 100-byte items over a FileDb, beside,
//! in the same run and interleaved round by round, the per-operation fsync peer (64 threads
//! each calling `FileDb::push`, one fsync per item: what a caller who needs each item durable
//! gets without group commit) and the raw floor at the batch size group commit produced in
//! that round (append that many framed items to a plain file, one `sync_data`). Throughput is
//! items per second; the summary prints each round's ratios and their medians. The SQLite and
//! bstack peers are in `bench-peers` (`group_commit_peers`), so the root build needs no
//! SQLite.

#[path = "support/group_commit.rs"]
mod support;

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use support::{BatchCell, Crew, compare, filedb_per_op, lifostore, raw_floor};

fn group_commit(c: &mut Criterion) {
    let crew = Arc::new(Crew::new());
    let batch = BatchCell::default();
    let (ours, storage) = lifostore(&crew, &batch);
    let mut contenders = vec![ours, filedb_per_op(&crew), raw_floor(&batch)];
    compare(c, "durable_push_64_threads_100B", &mut contenders, &batch);
    drop(contenders);
    support::print_totals(&storage.stats());
    support::cleanup();
}

criterion_group!(benches, group_commit);
criterion_main!(benches);
