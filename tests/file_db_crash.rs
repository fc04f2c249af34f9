//! Crash loop: a child process pushes and pops through `Storage` over `FileDb` and is killed
//! with SIGKILL at random moments. After every kill the file must open, keep every item the
//! child knew was flushed and did not pop, keep every push acknowledged more than the window
//! before the kill (promise 3), return no item twice, and hold no garbage
//! (`tests/common/crash.rs`).
//!
//! `cargo test --test file_db_crash` runs 50 kills; `-- --ignored` runs the 1000-kill loop.

mod common;
use common::crash::{CHILD_ENV, child_main, crash_loop};

/// The child process's entry point (does nothing unless `CHILD_ENV` is set).
#[test]
fn crash_child() {
    child_main();
}

fn run(kills: u64) {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let t = crash_loop("crash", kills, None);
    println!(
        "{kills} kills: {} flushed-acknowledged and {} older-than-window items checked, {} left",
        t.flushed, t.window_checked, t.left
    );
}

#[test]
fn fifty_kills_lose_nothing_acknowledged() {
    run(50);
}

#[test]
#[ignore = "long: 1000 kills (run with --ignored)"]
fn thousand_kills_lose_nothing_acknowledged() {
    run(1000);
}
