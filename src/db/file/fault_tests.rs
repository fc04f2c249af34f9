//! Exhaustive I/O fault injection, after SQLite's I/O-error tests: a scripted workload runs
//! once per I/O call it makes, with that one call failing (and, for writes, writing only half
//! its bytes; for syncs, also dropping the dirty pages). After each injected failure and at the
//! end, the file as a restarted process would read it (page cache) and as a restarted machine
//! would read it (durable image) must hold exactly the acknowledged, unpopped items, each
//! once, in stack order, and every call must have reported what really happened.

use std::path::Path;

use super::sim::{Call, Fault, SimVfs};
use super::{FileDb, FileDbOptions};
use crate::db::Db;

/// One step of the workload; items are named by number.
#[derive(Debug, Clone, Copy)]
enum Step {
    Push(&'static [u32]),
    Pop(usize),
    Len,
    Reopen,
}

/// The big item, large enough that popping it makes the file shrink.
const BIG: u32 = 6;

const SCRIPT: &[Step] = &[
    Step::Push(&[1]),
    Step::Push(&[2, 3, 4]),
    Step::Pop(1),
    Step::Len,
    Step::Reopen,
    Step::Push(&[5]),
    Step::Pop(2),
    Step::Push(&[BIG]),
    Step::Push(&[7, 8]),
    Step::Pop(3),
    Step::Reopen,
    Step::Push(&[9]),
    Step::Pop(1),
    Step::Pop(5),
    Step::Pop(1),
    Step::Push(&[10, 11]),
    Step::Reopen,
    Step::Pop(1),
];

fn item(n: u32) -> Vec<u8> {
    let len = if n == BIG {
        1_200_000
    } else {
        3 + 7 * n as usize
    };
    (0..len).map(|i| (n as usize * 31 + i) as u8).collect()
}

fn open(vfs: &SimVfs) -> Result<FileDb, crate::DbError> {
    FileDb::open_in(vfs, Path::new("sim.lifo"), FileDbOptions::default())
}

/// How an injected fault was met.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    /// The call it hit reported an error.
    reported: usize,
    /// The call it hit had already taken effect (or the fault changed nothing it relies on),
    /// and correctly reported success: a commit hint, a shrink, an unlock.
    absorbed: usize,
}

/// The workload with the acknowledged items modelled alongside.
struct Run {
    vfs: SimVfs,
    db: Option<FileDb>,
    /// Acknowledged, unpopped items, oldest first.
    model: Vec<Vec<u8>>,
    errors: usize,
    checked_after_fault: bool,
}

impl Run {
    fn new(vfs: SimVfs) -> Run {
        let mut run = Run {
            vfs,
            db: None,
            model: Vec::new(),
            errors: 0,
            checked_after_fault: false,
        };
        run.reopen();
        run
    }

    fn reopen(&mut self) {
        self.db = None;
        match open(&self.vfs) {
            Ok(db) => self.db = Some(db),
            Err(_) => self.errors += 1,
        }
    }

    /// The open handle; a failed open is retried (a fault fires once).
    fn db(&mut self) -> &FileDb {
        if self.db.is_none() {
            self.db = Some(open(&self.vfs).expect("a second open succeeds"));
        }
        self.db.as_ref().expect("opened above")
    }

    fn step(&mut self, step: Step) {
        match step {
            Step::Push(names) => {
                let items: Vec<Vec<u8>> = names.iter().map(|&n| item(n)).collect();
                let refs: Vec<&[u8]> = items.iter().map(|i| i.as_slice()).collect();
                match self.db().push_batch(&refs) {
                    Ok(()) => self.model.extend(items),
                    Err(e) => {
                        assert_eq!(e.stored, 0, "FileDb batches are atomic: {e:?}");
                        self.errors += 1;
                    }
                }
            }
            Step::Pop(n) => match self.db().pop_batch(n) {
                Ok(got) => {
                    let keep = self.model.len() - got.len();
                    let mut want = self.model.split_off(keep);
                    want.reverse();
                    assert_eq!(got, want, "a pop returned other items than the newest");
                }
                Err(_) => self.errors += 1,
            },
            Step::Len => match self.db().len() {
                Ok(n) => assert_eq!(n, self.model.len() as u64, "len disagrees"),
                Err(_) => self.errors += 1,
            },
            Step::Reopen => self.reopen(),
        }
        if self.vfs.fired() && !self.checked_after_fault {
            self.checked_after_fault = true;
            self.check_images("right after the fault");
        }
    }

    /// The file as a restarted process and as a restarted machine would find it holds
    /// exactly the model.
    fn check_images(&self, when: &str) {
        for (which, image) in [
            ("page cache", self.vfs.cache_image()),
            ("durable image", self.vfs.durable_image()),
        ] {
            let db = open(&SimVfs::with_image(image))
                .unwrap_or_else(|e| panic!("{when}, {which}: reopen failed: {e}"));
            let mut want = self.model.clone();
            want.reverse();
            let got = db.pop_batch(usize::MAX).unwrap_or_else(|e| {
                panic!(
                    "{when}, {which}: pop without faults: {e}; image len {}",
                    self.vfs.cache_image().len()
                )
            });
            assert_eq!(
                got.len(),
                want.len(),
                "{when}, {which}: {} items, expected {}",
                got.len(),
                want.len()
            );
            assert!(got == want, "{when}, {which}: wrong items or order");
        }
    }
}

/// Runs the script with `fault` at call `k` (or none); returns the calls made and whether any
/// call reported an error.
fn run_script(fault: Option<(usize, Fault)>) -> (Vec<Call>, usize) {
    let vfs = SimVfs::default();
    if let Some((k, f)) = fault {
        vfs.fail_at(k, f);
    }
    let mut run = Run::new(vfs);
    for &step in SCRIPT {
        run.step(step);
    }
    run.check_images("at the end");
    (run.vfs.trace(), run.errors)
}

#[test]
fn every_io_call_failing_once_loses_and_duplicates_nothing() {
    let (trace, errors) = run_script(None);
    assert_eq!(errors, 0, "the fault-free run must not fail");
    let mut points = 0;
    let mut tally = Tally::default();
    for (i, call) in trace.iter().enumerate() {
        let k = i + 1;
        let mut faults = vec![Fault::Fail];
        match call {
            Call::Write => faults.push(Fault::ShortWrite),
            Call::Sync => faults.push(Fault::LoseDirty),
            _ => {}
        }
        for fault in faults {
            let (_, errors) = run_script(Some((k, fault)));
            points += 1;
            if errors > 0 {
                tally.reported += 1;
            } else {
                tally.absorbed += 1;
            }
        }
    }
    println!(
        "fault injection: {} I/O calls in the workload, {points} injection points \
         ({} reported as errors, {} absorbed by an operation that had already taken effect)",
        trace.len(),
        tally.reported,
        tally.absorbed
    );
    assert!(points >= 150, "the workload covers too few calls: {points}");
    assert!(tally.reported > tally.absorbed, "{tally:?}");
}
