//! Group commit against the per-operation-fsync stores a user would otherwise pick, in one
//! run, interleaved round by round (see `benches/support/group_commit.rs`, shared with the
//! root `group_commit` bench): lifostore's `push_durable` from 64 threads over a FileDb,
//! against
//! * SQLite committing each insert (`synchronous=FULL`), in WAL mode and in the default
//!   rollback-journal mode (`journal_mode=DELETE`), each in its best shape: one thread, as
//!   64 threads with a connection each were slower on this machine (they queue on SQLite's
//!   file lock through its busy handler; `SHAPES=all` adds the 64-thread forms);
//! * bstack (one fsync-durable push per item), 64 threads sharing the stack;
//! * FileDb::push per item, 64 threads;
//! * the raw append+fdatasync floor at the batch size lifostore produced in that round.
//!
//! 100-byte items.

#[path = "../../benches/support/group_commit.rs"]
mod support;

use std::path::Path;
use std::sync::{Arc, Mutex};

use criterion::{Criterion, criterion_group, criterion_main};
use support::{
    BatchCell, Contender, Crew, ITEM, Job, THREADS, compare, filedb_per_op, fresh, lifostore,
    on_crew, raw_floor,
};

/// SQLite's journal modes compared.
#[derive(Clone, Copy)]
enum Journal {
    Wal,
    Rollback,
}

impl Journal {
    fn name(self) -> &'static str {
        match self {
            Journal::Wal => "wal",
            Journal::Rollback => "rollback",
        }
    }
}

fn sqlite(path: &Path, journal: Journal) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(path).expect("sqlite");
    let mode = match journal {
        Journal::Wal => "WAL",
        Journal::Rollback => "DELETE",
    };
    c.pragma_update(None, "journal_mode", mode)
        .expect("journal");
    c.pragma_update(None, "synchronous", "FULL").expect("full");
    c.busy_timeout(std::time::Duration::from_secs(60))
        .expect("busy");
    c.execute(
        "CREATE TABLE IF NOT EXISTS s (id INTEGER PRIMARY KEY, data BLOB NOT NULL)",
        [],
    )
    .expect("table");
    c
}

/// One insert in its own (autocommit) transaction: one commit, so one durable sync or more.
fn insert(c: &rusqlite::Connection, item: &[u8]) {
    c.prepare_cached("INSERT INTO s (data) VALUES (?1)")
        .expect("prep")
        .execute([item])
        .expect("insert");
}

/// SQLite committing each insert from one thread: 64 inserts per run.
fn sqlite_one_thread(journal: Journal) -> Contender {
    let conn = sqlite(&fresh(&format!("one-{}.db", journal.name())), journal);
    let item = vec![0xA5u8; ITEM];
    let n = THREADS as u64;
    Contender {
        name: format!("sqlite_{}_commit_each_1_thread", journal.name()),
        items: Box::new(move || n),
        run: Box::new(move || {
            let t = std::time::Instant::now();
            for _ in 0..n {
                insert(&conn, &item);
            }
            (n, t.elapsed())
        }),
    }
}

/// SQLite committing each insert from 64 threads, a connection each: one insert each per run.
fn sqlite_64_threads(crew: &Arc<Crew>, journal: Journal) -> Contender {
    let path = fresh(&format!("many-{}.db", journal.name()));
    let conns: Arc<Vec<Mutex<rusqlite::Connection>>> = Arc::new(
        (0..THREADS)
            .map(|_| Mutex::new(sqlite(&path, journal)))
            .collect(),
    );
    let item = vec![0xA5u8; ITEM];
    let job: Job = Arc::new(move |i| insert(&conns[i].lock().expect("conn"), &item));
    let name = format!("sqlite_{}_commit_each_64_threads", journal.name());
    on_crew(&name, crew, THREADS as u64, job)
}

/// bstack: 64 threads sharing one stack, one durable push per item, 2 each per run.
fn bstack_per_op(crew: &Arc<Crew>) -> Contender {
    let bs = Arc::new(bstack::BStack::open(fresh("per-op.bstack")).expect("bstack"));
    let item = vec![0xA5u8; ITEM];
    let job: Job = Arc::new(move |_| {
        for _ in 0..2 {
            bs.push(&item).expect("push");
        }
    });
    on_crew("bstack_push_per_item", crew, (THREADS * 2) as u64, job)
}

fn group_commit_peers(c: &mut Criterion) {
    let crew = Arc::new(Crew::new());
    let batch = BatchCell::default();
    let (ours, storage) = lifostore(&crew, &batch);
    let mut contenders = vec![
        ours,
        sqlite_one_thread(Journal::Wal),
        sqlite_one_thread(Journal::Rollback),
        bstack_per_op(&crew),
        filedb_per_op(&crew),
        raw_floor(&batch),
    ];
    if std::env::var("SHAPES").is_ok_and(|s| s == "all") {
        contenders.push(sqlite_64_threads(&crew, Journal::Wal));
        contenders.push(sqlite_64_threads(&crew, Journal::Rollback));
    }
    compare(c, "group_commit_vs_peers_100B", &mut contenders, &batch);
    drop(contenders);
    support::print_totals(&storage.stats());
    support::cleanup();
}

criterion_group!(benches, group_commit_peers);
criterion_main!(benches);
