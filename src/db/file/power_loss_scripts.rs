//! The workloads of `power_loss_tests.rs`: the scripts the first run follows, the file an
//! older build wrote that one of them starts from, and what the second run does after a
//! restart.

use super::fault_tests::{BIG, Model, Step};
use super::sim::Images;

/// A workload on the FileDb alone: batches that span several sectors, pops, leases with ack,
/// release and expiry, reopens, and a pop that shrinks the file.
pub(super) const FILE_SCRIPT: &[Step] = &[
    Step::Push(&[1]),
    Step::Push(&[2, 3, 4]),
    Step::Pop(1),
    Step::Lease(2),
    Step::Push(&[5]),
    Step::Release(1),
    Step::Ack(1),
    Step::Push(SECTORS_LONG),
    Step::Expiring(1),
    Step::Pop(2),
    Step::Reopen,
    Step::Push(&[BIG]),
    Step::Pop(1),
    Step::Lease(3),
    Step::Reopen,
    Step::Release(2),
    Step::Ack(1),
    Step::Pop(30),
    Step::Push(&[7, 8]),
];

/// The calls a `Storage` makes of its Db: flushes of a batch, its item count, lease deadlines,
/// leases acked and released in groups, drains in batches.
pub(super) const STORAGE_SCRIPT: &[Step] = &[
    Step::Push(&[
        40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55,
    ]),
    Step::Len,
    Step::Deadlines,
    Step::Lease(4),
    Step::Push(&[56, 57, 58, 59, 60]),
    Step::Ack(2),
    Step::Release(2),
    Step::Expiring(3),
    Step::Deadlines,
    Step::Pop(8),
    Step::Len,
    Step::Push(&[61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71, 72]),
    Step::Pop(64),
];

/// Push batches back to back (each one's slot is only a hint until the next sync, so
/// roll-forward walks a chain of them), batches and returns that span sectors, leases expiring
/// together.
pub(super) const CHAIN_SCRIPT: &[Step] = &[
    Step::Push(&[1]),
    Step::Push(&[2, 3]),
    Step::Push(&[4]),
    Step::Push(SECTORS_LONG),
    Step::Pop(1),
    Step::Push(&[5]),
    Step::Push(&[11, 12]),
    Step::Lease(12),
    Step::Expiring(2),
    Step::Push(&[8]),
    Step::Deadlines,
    Step::Release(8),
    Step::Push(&[9, 10]),
    Step::Pop(40),
];

/// A workload on a file an older build wrote (version 2, leases held: see
/// `tests/fixtures/README.md`): the first open upgrades it, then the records of both layouts
/// are popped, leased and released.
pub(super) const LEGACY_SCRIPT: &[Step] = &[
    Step::Push(&[80, 81]),
    Step::Ack(1),
    Step::Pop(3),
    Step::Release(1),
    Step::Lease(2),
    Step::Pop(8),
];

/// The version-2 file of [`LEGACY_SCRIPT`] and what it holds.
pub(super) fn legacy_start() -> (Images, Model) {
    let images = Images::from([
        (
            "sim.lifo".into(),
            include_bytes!("../../../tests/fixtures/version2.stack").to_vec(),
        ),
        (
            "sim.lifo.leases".into(),
            include_bytes!("../../../tests/fixtures/version2.leases").to_vec(),
        ),
    ]);
    let stack = ["v2-x1", "v2-x2", "v2-x3", "v2-y1"].map(|s| s.as_bytes().to_vec());
    let leases =
        [(3145728, "v2-x4"), (3145729, "v2-x5")].map(|(id, s)| (id, s.as_bytes().to_vec()));
    let model = Model {
        stack: stack.to_vec(),
        leases: leases.into_iter().collect(),
        expiring: Vec::new(),
    };
    (images, model)
}

/// What the second run does after a restart, one script per restart in turn. Each starts
/// with what puts a new write where the first run's stale bytes lie: a pop and a push of as
/// many items (all items but one are the same size), an ack, a short batch, or a release.
pub(super) const AFTER_RESTART: &[&[Step]] = &[
    &[
        Step::Pop(1),
        Step::Push(&[101]),
        Step::Push(&[102, 103]),
        Step::Lease(1),
        Step::Release(1),
        Step::Pop(2),
    ],
    &[
        Step::Ack(1),
        Step::Push(&[111, 112, 113, 114, 115, 116, 117, 118]),
        Step::Pop(1),
        Step::Deadlines,
        Step::Release(1),
    ],
    &[
        Step::Push(&[121, 122, 123]),
        Step::Push(&[124]),
        Step::Expiring(1),
        Step::Pop(2),
        Step::Reopen,
        Step::Lease(2),
        Step::Ack(2),
    ],
    &[
        Step::Release(2),
        Step::Push(&[131]),
        Step::Push(&[132, 133]),
        Step::Pop(3),
        Step::Lease(3),
        Step::Ack(1),
        Step::Push(&[134]),
    ],
];

/// A push batch that spans three sectors (20 records of 68 bytes).
pub(super) const SECTORS_LONG: &[u32] = &[
    20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39,
];
