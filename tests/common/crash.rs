//! The crash loop shared by `file_db_crash.rs` (SIGKILL) and `file_db_fiu.rs` (SIGKILL under
//! libfiu's injected I/O errors): a child process pushes and pops through `Storage` over
//! `FileDb` and is killed at a random moment. After every kill the file is reopened (without
//! faults) and must keep every item the child knew was flushed and did not pop, return no
//! item twice, and hold no garbage.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lifostore::{CancelToken, Db, FileDb, Storage};

use super::{Rng, TempDir};

/// The environment variable that turns a test binary's `crash_child` test into the child.
pub const CHILD_ENV: &str = "LIFOSTORE_CRASH_CHILD";
const ITEM_LEN: usize = 40;
/// The child's durability window.
pub const WINDOW: Duration = Duration::from_millis(40);
/// Scheduling slack on a loaded 2-core machine for the window check.
const SLACK: Duration = Duration::from_millis(150);

fn encode(id: u64) -> Vec<u8> {
    let mut v = id.to_le_bytes().to_vec();
    v.extend((0..ITEM_LEN - 8).map(|i| (id as usize * 31 + i) as u8));
    v
}

fn decode(item: &[u8]) -> Option<u64> {
    let id = u64::from_le_bytes(item.get(..8)?.try_into().ok()?);
    (item == encode(id).as_slice()).then_some(id)
}

/// Writes one line to stdout, retrying what an injected fault failed or cut short, so the
/// parent's record of events is complete. It writes to its own handle on the pipe (not the
/// buffered `Stdout`, whose state after a failed flush is unknown), a line per `write` call
/// where it can: pipe writes below `PIPE_BUF` bytes are atomic.
fn say(line: &str) {
    static PIPE: std::sync::OnceLock<std::fs::File> = std::sync::OnceLock::new();
    let pipe = PIPE.get_or_init(|| {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/stdout")
            .expect("open stdout")
    });
    let bytes = format!("{line}\n");
    let mut rest = bytes.as_bytes();
    while !rest.is_empty() {
        if let Ok(n) = (&*pipe).write(rest) {
            rest = &rest[n..];
        }
    }
}

/// Child mode: runs until killed. Prints `R` when ready, `A id` after a push returned `Ok`
/// (`X id` after it was refused),
/// `F id` once everything up to `id` is flushed, `p` before a pop and `P id` after it returned,
/// and `E` for every call that returned an error (under injected faults).
pub fn child_main() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return; // not a child: nothing to do
    };
    let (path, base) = spec.split_once('|').expect("path|base");
    let base: u64 = base.parse().expect("base");
    let storage = Storage::builder()
        .max_unflushed_age(WINDOW)
        .build(FileDb::open(path).expect("open in child"))
        .expect("build the storage");
    let token = CancelToken::new();
    let mut rng = Rng(base | 1);
    say(""); // end libtest's "test crash_child ... " line before our events
    say("R");
    for id in base.. {
        match storage.push(&token, encode(id)) {
            Ok(()) => say(&format!("A {id}")),
            Err(_) => say(&format!("X {id}")),
        }
        match rng.next() % 10 {
            0 | 1 => {
                say("p");
                match storage.pop(&token) {
                    Ok(item) => say(&format!("P {}", decode(&item).expect("popped garbage"))),
                    Err(_) => say("E"),
                }
            }
            2 => match storage.flush(&token) {
                Ok(()) => say(&format!("F {id}")),
                Err(_) => say("E"),
            },
            _ => {}
        }
    }
}

/// Reads every item in the file (newest first) and puts them back unchanged.
fn contents(path: &Path) -> Vec<Vec<u8>> {
    let db = FileDb::open(path).unwrap_or_else(|e| panic!("open after kill: {e}"));
    let items = db.pop_batch(usize::MAX).expect("read items");
    let oldest_first: Vec<&[u8]> = items.iter().rev().map(|x| x.as_slice()).collect();
    db.push_batch(&oldest_first).expect("put items back");
    items
}

/// Injected I/O faults for the child: libfiu's `fiu-run -x` preloads the POSIX wrappers, and
/// once the child is ready `fiu-ctrl` enables `enable` in it (so the test harness's own start
/// is not disturbed).
#[derive(Debug, Clone)]
pub struct Faults {
    /// A libfiu control command, e.g. `enable_random name=posix/io/rw/*,probability=0.02`.
    pub enable: String,
}

/// What the loop checked, for the figures line.
#[derive(Debug, Default)]
pub struct Totals {
    pub flushed: usize,
    pub window_checked: usize,
    pub errors_seen: usize,
    pub left: usize,
}

/// What one child printed before the kill.
#[derive(Default)]
struct Events {
    popped: HashSet<u64>,
    refused: HashSet<u64>,
    flushed_through: Option<u64>,
    pop_in_progress: bool,
    older_than_window: Vec<u64>,
    errors: usize,
}

fn parse_events(lines: &[(String, Instant)], killed_at: Instant) -> Events {
    let mut ev = Events::default();
    for (line, seen_at) in lines {
        match line.split_once(' ') {
            Some(("A", id)) if *seen_at + WINDOW + SLACK < killed_at => {
                ev.older_than_window.push(id.parse().expect("id"));
            }
            Some(("X", id)) => {
                ev.refused.insert(id.parse().expect("id"));
                ev.errors += 1;
            }
            Some(("F", id)) => ev.flushed_through = Some(id.parse().expect("id")),
            Some(("P", id)) => {
                assert!(
                    ev.popped.insert(id.parse().expect("id")),
                    "child popped twice"
                );
                ev.pop_in_progress = false;
            }
            None if line.as_str() == "p" => ev.pop_in_progress = true,
            None if line.as_str() == "E" => {
                ev.errors += 1;
                ev.pop_in_progress = false; // a failed pop took nothing
            }
            _ => {} // test harness chatter
        }
    }
    ev
}

fn spawn_child(exe: &Path, spec: String, faults: Option<(&Faults, &Path)>) -> Child {
    let args = ["--exact", "crash_child", "--nocapture", "--test-threads=1"];
    let mut cmd = match faults {
        Some((_, fifo)) => {
            let mut c = Command::new("fiu-run");
            c.args(["-x", "-f"]).arg(fifo).arg(exe).args(args);
            c
        }
        None => {
            let mut c = Command::new(exe);
            c.args(args);
            c
        }
    };
    cmd.env(CHILD_ENV, spec)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the crash child (is fiu-utils installed?)")
}

/// Runs `kills` rounds; `faults` injects I/O errors into the child. Panics on any lost,
/// duplicated, resurrected or garbled item.
pub fn crash_loop(name: &str, kills: u64, faults: Option<&Faults>) -> Totals {
    let dir = TempDir::new(name);
    let path = dir.file("crash.lifo");
    let fifo = dir.file("fiu-ctrl");
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64
        | 1;
    println!("crash loop {name}: seed {seed}");
    let mut rng = Rng(seed);
    let exe = std::env::current_exe().expect("test binary");
    let mut present: HashSet<u64> = HashSet::new();
    let mut totals = Totals::default();
    for round in 0..kills {
        if round % 50 == 0 {
            // A fresh file every 50 kills keeps the long runs' per-kill check (which reads the
            // whole file) from growing with them.
            let _ = std::fs::remove_file(&path);
            present.clear();
        }
        let base = (round + 1) * 1_000_000_000;
        let spec = format!("{}|{base}", path.display());
        let child = spawn_child(&exe, spec, faults.map(|f| (f, fifo.as_path())));
        let run_for = Duration::from_millis(100 + rng.next() % 200);
        let (lines, killed_at) = run_and_kill(child, run_for, faults, &fifo);
        let ev = parse_events(&lines, killed_at);
        present = check_round(&path, &present, &ev, base, faults.is_none())
            .unwrap_or_else(|e| panic!("round {round} (seed {seed}): {e}"));
        totals.flushed += ev.flushed_through.map_or(0, |f| (f - base + 1) as usize);
        totals.window_checked += ev.older_than_window.len();
        totals.errors_seen += ev.errors;
    }
    totals.left = present.len();
    totals
}

/// Lets the child run (enabling the faults once it is ready), kills it with SIGKILL, and
/// returns its lines, each stamped when the parent read it (never earlier than written).
fn run_and_kill(
    mut child: Child,
    run_for: Duration,
    faults: Option<&Faults>,
    fifo: &Path,
) -> (Vec<(String, Instant)>, Instant) {
    let stdout = child.stdout.take().expect("piped stdout");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line == "R" {
                let _ = ready_tx.send(());
            }
            lines.push((line, Instant::now()));
        }
        lines
    });
    let ready = ready_rx.recv_timeout(Duration::from_secs(30)).is_ok();
    if let (true, Some(f)) = (ready, faults) {
        let status = Command::new("fiu-ctrl")
            .args(["-f"])
            .arg(fifo)
            .args(["-c", &f.enable])
            .arg(child.id().to_string())
            .status()
            .expect("run fiu-ctrl");
        assert!(status.success(), "fiu-ctrl failed to enable the faults");
    }
    std::thread::sleep(run_for);
    let killed_at = Instant::now();
    child.kill().expect("SIGKILL the child");
    child.wait().expect("reap the child");
    (reader.join().expect("reader thread"), killed_at)
}

/// Checks the file after one kill; returns the ids it holds.
fn check_round(
    path: &Path,
    present: &HashSet<u64>,
    ev: &Events,
    base: u64,
    check_window: bool,
) -> Result<HashSet<u64>, String> {
    let mut must: HashSet<u64> = present.clone();
    if let Some(f) = ev.flushed_through {
        must.extend(base..=f);
    }
    if check_window {
        // Promise 3: a push acknowledged more than the window (plus scheduling slack) before
        // the kill must have reached the file, unless it was popped.
        must.extend(ev.older_than_window.iter().copied());
    }
    // A refused push stored nothing, even when a later flush covers its id.
    must.retain(|id| !ev.popped.contains(id) && !ev.refused.contains(id));
    let mut in_file = HashSet::new();
    for item in contents(path) {
        let id = decode(&item).ok_or_else(|| format!("garbage item {item:?}"))?;
        if !in_file.insert(id) {
            return Err(format!("item {id} twice in the file"));
        }
        if ev.popped.contains(&id) {
            return Err(format!("popped item {id} came back"));
        }
        if ev.refused.contains(&id) {
            return Err(format!(
                "item {id} was stored although its push was refused"
            ));
        }
    }
    let missing: Vec<_> = must.difference(&in_file).collect();
    // A pop that was under way when the child died may have taken one item from the file.
    if missing.len() > usize::from(ev.pop_in_progress) {
        return Err(format!("acknowledged items lost: {missing:?}"));
    }
    Ok(in_file)
}
