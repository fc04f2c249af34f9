//! Exhaustive I/O fault injection, after SQLite's I/O-error tests: a scripted workload runs
//! once per I/O call it makes, with that one call failing (and, for writes, writing only half
//! its bytes; for syncs, also dropping the dirty pages). After each injected failure and at the
//! end, the file as a restarted process would read it (page cache) and as a restarted machine
//! would read it (durable image) must hold exactly the acknowledged, unpopped items in stack
//! order plus the unacked leased items under their ids, each once, and every call must have
//! reported what really happened.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::sim::{Call, Fault, Images, SimVfs};
use super::{FileDb, FileDbOptions};
use crate::db::{Db, DbLease, DbLeases, LeaseId};
use crate::error::DbError;

/// One step of the workload; items are named by number.
#[derive(Debug, Clone, Copy)]
pub(super) enum Step {
    Push(&'static [u32]),
    Pop(usize),
    /// Lease this many items for a day (longer than any run, so they never expire in one).
    Lease(usize),
    /// Lease this many items with a deadline that has passed by the next call.
    Expiring(usize),
    /// Ack the newest this many held leases.
    Ack(usize),
    /// Ack an id that was never issued: reported, changes nothing.
    AckStale,
    /// Release the newest this many held leases.
    Release(usize),
    /// Ask for the held leases' deadlines, as a storage does (returns the expired ones).
    Deadlines,
    Len,
    Reopen,
}

/// The big item, large enough that popping it makes the file shrink (over four times the
/// live size and more than `SHRINK_SLACK`, 16 KiB in the crate's unit tests, dead).
pub(super) const BIG: u32 = 6;
/// The size of every other item: all the same, so a pop of `k` items followed by a push of
/// `k` others ends exactly where the popped ones did (where stale records may lie).
const ITEM_LEN: usize = 40;

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
    Step::Push(&[12, 13, 14, 15]),
    Step::Lease(2),
    Step::Push(&[16]),
    Step::Pop(1),
    Step::Ack(1),
    Step::Reopen,
    Step::Release(1),
    Step::Lease(2),
    Step::Expiring(1),
    Step::Deadlines,
    Step::Pop(1),
    Step::AckStale,
    Step::Ack(2),
    Step::Lease(1),
    Step::Reopen,
    Step::Release(1),
    Step::Pop(1),
];

/// Item `n`: its number, then bytes that depend on it.
pub(super) fn item(n: u32) -> Vec<u8> {
    let len = if n == BIG { 24_000 } else { ITEM_LEN };
    let mut v = n.to_le_bytes().to_vec();
    v.extend((4..len).map(|i| (n as usize * 31 + i) as u8));
    v
}

pub(super) fn open(vfs: &SimVfs) -> Result<FileDb, crate::DbError> {
    FileDb::open_in(
        std::sync::Arc::new(vfs.clone()),
        Path::new("sim.lifo"),
        FileDbOptions::default(),
    )
}

/// The stack (oldest first) and the held leases of `db`, read without changing anything
/// (expired leases are not put back, only noted).
pub(super) fn inspect(db: &FileDb) -> Result<Model, DbError> {
    db.locked(|h| {
        let sb = db.current(h)?;
        let table = db.read_leases(h, sb)?;
        let (mut stack, _) = db.read_newest(&*h.io, sb, usize::MAX)?;
        stack.reverse();
        let leases = table.iter().map(|(id, l)| (id, l.item.clone())).collect();
        Ok(Model {
            stack,
            leases,
            expiring: table.expired(crate::db::lease::now_ms()),
        })
    })
}

/// What the file must hold.
#[derive(Debug, Clone, Default)]
pub(super) struct Model {
    /// Acknowledged, unpopped, unleased items, oldest first.
    pub(super) stack: Vec<Vec<u8>>,
    /// Held leases by id.
    pub(super) leases: BTreeMap<u64, Vec<u8>>,
    /// Held leases whose deadline has passed: the next call that looks at leases puts them
    /// back on top.
    pub(super) expiring: Vec<u64>,
}

impl Model {
    /// The model once the expired leases are back on top, oldest lease first.
    pub(super) fn returned(&self) -> Model {
        let mut m = self.clone();
        for id in std::mem::take(&mut m.expiring) {
            if let Some(item) = m.leases.remove(&id) {
                m.stack.push(item);
            }
        }
        m
    }

    /// The newest `n` held leases that have not expired, newest first, as `DbLease`s.
    fn newest(&self, n: usize) -> Vec<DbLease> {
        let live = self
            .leases
            .iter()
            .filter(|(id, _)| !self.expiring.contains(id));
        let leases = live.rev().take(n);
        leases
            .map(|(&id, item)| DbLease {
                id: LeaseId(id),
                item: item.clone(),
            })
            .collect()
    }

    pub(super) fn same(&self, other: &Model) -> bool {
        self.stack == other.stack && self.leases == other.leases
    }
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
pub(super) struct Run {
    pub(super) vfs: SimVfs,
    db: Option<FileDb>,
    pub(super) model: Model,
    pub(super) errors: usize,
    checked_after_fault: bool,
}

impl Run {
    pub(super) fn new(vfs: SimVfs) -> Run {
        Run::resume(vfs, Model::default())
    }

    /// Opens the file `vfs` holds, which holds `model`.
    pub(super) fn resume(vfs: SimVfs, model: Model) -> Run {
        let mut run = Run {
            vfs,
            db: None,
            model,
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

    pub(super) fn step(&mut self, step: Step) {
        match step {
            Step::Push(names) => self.push(names),
            Step::Pop(n) => {
                self.leasing_call(|db| db.pop_batch(n).map(|got| (got, Vec::new())));
            }
            Step::Lease(n) => {
                let ttl = Duration::from_secs(86_400);
                self.leasing_call(|db| db.pop_lease(n, ttl).map(|l| (Vec::new(), l)));
            }
            Step::Expiring(n) => {
                let held: Vec<u64> = self.model.leases.keys().copied().collect();
                let ok = self
                    .leasing_call(|db| db.pop_lease(n, Duration::ZERO).map(|l| (Vec::new(), l)));
                if ok {
                    let new = self.model.leases.keys().filter(|id| !held.contains(id));
                    self.model.expiring.extend(new);
                }
            }
            Step::Ack(n) | Step::Release(n) => self.end_leases(step, n),
            Step::Deadlines => {
                let call = |db: &FileDb| db.held_deadlines().map(|_| (Vec::new(), Vec::new()));
                self.leasing_call(call);
            }
            Step::AckStale => {
                let before = self.model.clone();
                match self.db().ack(&[LeaseId(3)]) {
                    Err(DbError::LeaseExpired { count: 1 }) => self.model = before.returned(),
                    Err(_) => {
                        self.errors += 1;
                        self.model = self.either(before.clone(), before.returned());
                    }
                    Ok(()) => panic!("an ack of an id never issued succeeded"),
                }
            }
            Step::Len => match self.db().len() {
                Ok(n) => assert_eq!(n, self.model.stack.len() as u64, "len disagrees"),
                Err(_) => self.errors += 1,
            },
            Step::Reopen => self.reopen(),
        }
        if self.vfs.fired() && !self.checked_after_fault {
            self.checked_after_fault = true;
            self.check_images("right after the fault");
        }
    }

    fn push(&mut self, names: &[u32]) {
        let items: Vec<Vec<u8>> = names.iter().map(|&n| item(n)).collect();
        let refs: Vec<&[u8]> = items.iter().map(|i| i.as_slice()).collect();
        match self.db().push_batch(&refs) {
            Ok(()) => self.model.stack.extend(items),
            Err(e) => {
                assert_eq!(e.stored, 0, "FileDb batches are atomic: {e:?}");
                self.errors += 1;
            }
        }
    }

    /// A call that first puts expired leases back, then pops (the first of the pair) or
    /// leases (the second) the newest items; returns whether it succeeded.
    fn leasing_call(
        &mut self,
        call: impl FnOnce(&FileDb) -> Result<(Vec<Vec<u8>>, Vec<DbLease>), DbError>,
    ) -> bool {
        let before = self.model.clone();
        let mut after = before.returned();
        match call(self.db()) {
            Ok((popped, leased)) => {
                let got: Vec<Vec<u8>> = leased
                    .iter()
                    .map(|l| l.item.clone())
                    .chain(popped)
                    .collect();
                let keep = after.stack.len() - got.len();
                let mut want = after.stack.split_off(keep);
                want.reverse();
                assert_eq!(
                    got, want,
                    "a pop or lease returned other items than the newest"
                );
                after
                    .leases
                    .extend(leased.into_iter().map(|l| (l.id.0, l.item)));
                self.model = after;
                true
            }
            Err(_) => {
                self.errors += 1;
                self.model = self.either(before.clone(), before.returned());
                false
            }
        }
    }

    /// Acks or releases the newest `n` held leases.
    fn end_leases(&mut self, step: Step, n: usize) {
        let leases = self.model.newest(n);
        let ids: Vec<LeaseId> = leases.iter().map(|l| l.id).collect();
        let before = self.model.clone();
        let result = match step {
            Step::Ack(_) => self.db().ack(&ids),
            _ => self.db().release(&leases),
        };
        match result {
            Ok(()) => {
                let mut after = before.returned();
                let mut ended: Vec<u64> = ids.iter().map(|id| id.0).collect();
                ended.sort_unstable();
                for id in ended {
                    let item = after.leases.remove(&id).expect("held");
                    if matches!(step, Step::Release(_)) {
                        after.stack.push(item);
                    }
                }
                self.model = after;
            }
            Err(e) => {
                assert!(!matches!(e, DbError::LeaseExpired { .. }), "{e}");
                self.errors += 1;
                self.model = self.either(before.clone(), before.returned());
            }
        }
    }

    /// After a failed call that may or may not have put expired leases back first: the state
    /// the file is really in, which must be one of the two.
    fn either(&self, not_returned: Model, returned: Model) -> Model {
        let found = open(&SimVfs::with_images(self.vfs.cache_images()))
            .and_then(|db| inspect(&db))
            .expect("the page cache opens after a failed call");
        if found.same(&not_returned) {
            not_returned
        } else {
            assert!(
                found.same(&returned),
                "a failed call left neither state: {found:?}"
            );
            returned
        }
    }

    /// The files as a restarted process and as a restarted machine would find them hold
    /// exactly the model.
    fn check_images(&self, when: &str) {
        for (which, images) in [
            ("page cache", self.vfs.cache_images()),
            ("durable image", self.vfs.durable_images()),
        ] {
            self.check_image(when, which, images);
        }
    }

    fn check_image(&self, when: &str, which: &str, images: Images) {
        let db = open(&SimVfs::with_images(images))
            .unwrap_or_else(|e| panic!("{when}, {which}: reopen failed: {e}"));
        let got = inspect(&db).unwrap_or_else(|e| panic!("{when}, {which}: inspect: {e}"));
        let want = &self.model;
        assert_eq!(
            (got.stack.len(), got.leases.len()),
            (want.stack.len(), want.leases.len()),
            "{when}, {which}: (stack, leased) item counts"
        );
        assert!(
            got.stack == want.stack,
            "{when}, {which}: wrong items or order"
        );
        assert!(got.leases == want.leases, "{when}, {which}: wrong leases");
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
