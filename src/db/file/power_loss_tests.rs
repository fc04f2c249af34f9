//! Power loss at every call, once and then again, after ALICE (Pillai et al., OSDI 2014) and
//! SQLite's crash tests. A scripted workload runs on the simulated disk of `sim.rs`, which keeps
//! a crash point after every call that changes the disk; `crash_images.rs` builds what a power
//! loss there may leave (`docs/FORMAT.md`, "What it assumes of the disk"). Each image must open
//! and hold a state the calls allowed:
//!
//! - an item whose push returned `Ok` and that was not popped, leased or acked is on the stack,
//!   once, in order; a held lease is held, once; a popped or acked item is gone;
//! - the call in flight at the crash took effect or did not (a pop, a lease, an ack, a release,
//!   and the return of expired leases that may come first), except that a push batch in flight
//!   may leave a prefix of its items on top;
//! - nothing else: no unacknowledged item from an earlier crash reappears.
//!
//! Then, from a sample of the images, a second run opens the image, works on (its own script,
//! from the state it found) and is crashed at every call in the same way: stale bytes that the
//! first crash left must not come back either.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::crash_images::{Rng, crash_images};
use super::crc32c;
use super::fault_tests::{Model, Run, Step, inspect, item, open};
use super::power_loss_scripts::{
    AFTER_RESTART, CHAIN_SCRIPT, FILE_SCRIPT, LEGACY_SCRIPT, SECTORS_LONG, STORAGE_SCRIPT,
    legacy_start,
};
use super::sim::{CrashPoint, Images, SimVfs};

/// How far to explore.
#[derive(Debug, Clone, Copy)]
struct Depth {
    /// Images per crash point of the first run.
    first: usize,
    /// Restarts (second runs) per first script, at most.
    restarts: usize,
    /// Images per crash point of a second run.
    second: usize,
}

const QUICK: Depth = Depth {
    first: 16,
    restarts: 60,
    second: 4,
};

const LONG: Depth = Depth {
    first: 2048,
    restarts: 3000,
    second: 128,
};

/// One step of a recorded run: its calls and the states a crash during them may leave.
struct StepRecord {
    label: String,
    first_call: usize,
    last_call: usize,
    allowed: Vec<Model>,
}

/// A run of a script: its crash points and what each step allowed.
struct Recorded {
    points: Vec<CrashPoint>,
    steps: Vec<StepRecord>,
}

/// Runs `script` on a disk holding `images` (which hold `model`), keeping every crash point.
fn record(images: Images, model: Model, script: &[Step]) -> Recorded {
    let vfs = SimVfs::with_images(images);
    vfs.keep_crash_points();
    let mut run = Run::resume(vfs.clone(), model.clone());
    let mut steps = vec![StepRecord {
        label: "open".into(),
        first_call: 1,
        last_call: vfs.trace().len(),
        allowed: vec![model],
    }];
    for &step in script {
        let before = run.model.clone();
        let first_call = vfs.trace().len() + 1;
        run.step(step);
        let allowed = match step {
            Step::Push(names) => (0..=names.len())
                .map(|k| {
                    let mut m = before.clone();
                    m.stack.extend(names[..k].iter().map(|&n| item(n)));
                    m
                })
                .collect(),
            _ => vec![before.clone(), before.returned(), run.model.clone()],
        };
        let last_call = vfs.trace().len();
        let label = format!("{step:?}");
        steps.push(StepRecord {
            label,
            first_call,
            last_call,
            allowed,
        });
    }
    assert_eq!(run.errors, 0, "the workload itself failed");
    Recorded {
        points: vfs.take_crash_points(),
        steps,
    }
}

/// What went wrong with one image.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Verdict {
    /// Open or the read-back failed.
    Unreadable(String),
    /// An item is there twice (on the stack twice, or on the stack and leased).
    Duplicate,
    /// An item every allowed state holds is missing.
    Lost,
    /// An item no allowed state holds is there: popped, acked, or never acknowledged.
    Revived,
    /// The right items, in the wrong order or the wrong place (such as an acked or still
    /// leased item back on the stack).
    Misplaced,
    /// A call of the second run returned other items than the state it started from and the
    /// calls before it allowed (a stale item popped, say).
    WrongAnswer,
}

/// The tally of an exploration.
#[derive(Debug, Default)]
struct Tally {
    points: usize,
    /// The states the disk model allows at the points, summed (saturating).
    states: u128,
    /// Images checked (distinct per step).
    images: usize,
    violations: BTreeMap<Verdict, usize>,
    /// The first two of each kind.
    examples: BTreeMap<Verdict, Vec<String>>,
}

impl Tally {
    fn violations(&self) -> usize {
        self.violations.values().sum()
    }

    fn add(&mut self, other: Tally) {
        self.points += other.points;
        self.states = self.states.saturating_add(other.states);
        self.images += other.images;
        for (v, n) in other.violations {
            *self.violations.entry(v).or_default() += n;
        }
        for (v, examples) in other.examples {
            for e in examples {
                self.note(v.clone(), e);
            }
        }
    }

    fn note(&mut self, verdict: Verdict, example: String) {
        let kept = self.examples.entry(verdict).or_default();
        if kept.len() < 2 {
            kept.push(example);
        }
    }
}

/// The items of a state by number (or as text, for the items of the fixture files), for
/// messages.
fn names(m: &Model) -> String {
    let name = |i: &Vec<u8>| match i.get(..4) {
        Some(&[a, b, c, d]) if *i == item(u32::from_le_bytes([a, b, c, d])) => {
            u32::from_le_bytes([a, b, c, d]).to_string()
        }
        _ => String::from_utf8_lossy(i).into_owned(),
    };
    let stack: Vec<String> = m.stack.iter().map(name).collect();
    let leased: Vec<String> = m.leases.values().map(name).collect();
    format!(
        "stack [{}] leased [{}]",
        stack.join(", "),
        leased.join(", ")
    )
}

/// Judges what `images` open to against `allowed`; returns the state found if it is allowed.
fn judge(images: &Images, allowed: &[Model]) -> Result<Model, (Verdict, String)> {
    let found = open(&SimVfs::with_images(images.clone()))
        .and_then(|db| inspect(&db))
        .map_err(|e| (Verdict::Unreadable(unreadable(&e)), e.to_string()))?;
    if allowed.iter().any(|m| m.same(&found)) {
        return Ok(found);
    }
    let items =
        |m: &Model| -> Vec<Vec<u8>> { m.stack.iter().chain(m.leases.values()).cloned().collect() };
    let got = items(&found);
    let unique: HashSet<&Vec<u8>> = got.iter().collect();
    let in_all = |i: &Vec<u8>| allowed.iter().all(|m| items(m).contains(i));
    let in_any = |i: &Vec<u8>| allowed.iter().any(|m| items(m).contains(i));
    let verdict = if unique.len() < got.len() {
        Verdict::Duplicate
    } else if allowed
        .iter()
        .flat_map(items)
        .any(|i| in_all(&i) && !got.contains(&i))
    {
        Verdict::Lost
    } else if got.iter().any(|i| !in_any(i)) {
        Verdict::Revived
    } else {
        Verdict::Misplaced
    };
    let want: Vec<String> = allowed.iter().map(names).collect();
    Err((
        verdict,
        format!("found {}; allowed {want:?}", names(&found)),
    ))
}

/// The kind of a failed open, without its path.
fn unreadable(e: &crate::DbError) -> String {
    match e {
        crate::DbError::File(crate::FileDbError::NotADatabase { .. }) => "NotADatabase".into(),
        crate::DbError::File(crate::FileDbError::Corrupt { .. }) => "Corrupt".into(),
        other => format!("{other}"),
    }
}

/// The images seen so far, by a cheap checksum (CRC-32C is table-driven, fast even in a
/// debug build, where hashing every byte with SipHash dominated the run); equal checksums are
/// told apart by comparing the images.
#[derive(Default)]
struct Seen(HashMap<(usize, u32, usize), Vec<Images>>);

impl Seen {
    /// Whether `images` (for step `step`) is new; remembers it.
    fn insert(&mut self, step: usize, images: &Images) -> bool {
        let mut crc = 0;
        let mut len = 0;
        for (path, bytes) in images {
            let name = path.as_os_str().as_encoded_bytes();
            crc = crc32c::extend(crc32c::extend(crc, name), bytes);
            len += bytes.len();
        }
        let same = self.0.entry((step, crc, len)).or_default();
        if same.contains(images) {
            return false;
        }
        same.push(images.clone());
        true
    }
}

/// Crashes `rec` at every point, `budget` images each; calls `keep` with every image that
/// passed and the state it opened to.
fn explore(
    rec: &Recorded,
    budget: usize,
    rng: &mut Rng,
    what: &str,
    mut keep: impl FnMut(usize, &Images, Model),
) -> Tally {
    let mut tally = Tally::default();
    let mut seen = Seen::default();
    for (i, point) in rec.points.iter().enumerate() {
        let Some(step) = rec
            .steps
            .iter()
            .position(|s| (s.first_call..=s.last_call).contains(&point.call))
        else {
            panic!("call {} belongs to no step", point.call);
        };
        let (images, states) = crash_images(point, budget, rng);
        tally.points += 1;
        tally.states = tally.states.saturating_add(states);
        for image in images {
            if !seen.insert(step, &image) {
                continue;
            }
            tally.images += 1;
            match judge(&image, &rec.steps[step].allowed) {
                Ok(found) => keep(i, &image, found),
                Err((verdict, detail)) => {
                    let s = &rec.steps[step];
                    let example = format!(
                        "{what}: crash at call {} in step {step} ({}): {detail}",
                        point.call, s.label
                    );
                    tally.note(verdict.clone(), example);
                    *tally.violations.entry(verdict).or_default() += 1;
                }
            }
        }
    }
    tally
}

/// Crashes `script` once everywhere, then restarts from the distinct images that passed and
/// crashes each second run everywhere; returns the two tallies and the number of restarts.
fn once_and_twice(
    (images, model): (Images, Model),
    script: &[Step],
    (depth, seed): (Depth, u64),
    what: &str,
) -> (Tally, Tally, usize) {
    let mut rng = Rng::new(seed);
    let first = record(images, model, script);
    let mut by_point: BTreeMap<usize, Vec<(Images, Model)>> = BTreeMap::new();
    let mut distinct = Seen::default();
    let once = explore(
        &first,
        depth.first,
        &mut rng,
        what,
        |point, image, found| {
            if distinct.insert(0, image) {
                by_point
                    .entry(point)
                    .or_default()
                    .push((image.clone(), found));
            }
        },
    );
    let restarts = restarts(by_point.into_values().collect(), depth.restarts, &mut rng);
    let mut twice = Tally::default();
    for (r, (image, found, j)) in restarts.iter().enumerate() {
        let label = format!("{what}, restart {r} (script {j})");
        // The second run's own calls are checked as they return (a pop must return the
        // newest items the model holds): a wrong answer there is a violation too.
        let run = || record(image.clone(), found.clone(), AFTER_RESTART[*j]);
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
            Ok(second) => {
                let ignore = |_: usize, _: &Images, _: Model| {};
                twice.add(explore(&second, depth.second, &mut rng, &label, ignore));
            }
            Err(panic) => {
                let why = panic.downcast_ref::<String>().map_or("", String::as_str);
                twice.note(Verdict::WrongAnswer, format!("{label}: {why}"));
                *twice.violations.entry(Verdict::WrongAnswer).or_default() += 1;
            }
        }
    }
    (once, twice, restarts.len())
}

/// Up to `max` restarts, each an image that passed with a script of [`AFTER_RESTART`]: every
/// crash point's images in a seeded order, taken a round at a time across the points (so a
/// point with thousands of images, a long write, does not crowd out the others), each image
/// with every script.
fn restarts(
    mut by_point: Vec<Vec<(Images, Model)>>,
    max: usize,
    rng: &mut Rng,
) -> Vec<(Images, Model, usize)> {
    for images in &mut by_point {
        for i in (1..images.len()).rev() {
            images.swap(i, rng.below(i + 1));
        }
    }
    let rounds = by_point.iter().map(Vec::len).max().unwrap_or(0);
    let mut out = Vec::new();
    for round in 0..rounds {
        for images in &by_point {
            let Some((image, found)) = images.get(round) else {
                continue;
            };
            for j in 0..AFTER_RESTART.len() {
                if out.len() == max {
                    return out;
                }
                out.push((image.clone(), found.clone(), j));
            }
        }
    }
    out
}

fn seed() -> u64 {
    std::env::var("LIFOSTORE_POWER_LOSS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_0026)
}

/// A count that may be astronomically large, for messages.
fn count(n: u128) -> String {
    match n {
        0..=999_999_999_999 => n.to_string(),
        _ => format!("~2^{}", 127 - n.leading_zeros()),
    }
}

fn report(name: &str, tally: &Tally) {
    println!(
        "{name}: {} crash points, {} states the disk model allows, {} images checked, {} violations {:?}",
        tally.points,
        count(tally.states),
        tally.images,
        tally.violations(),
        tally.violations
    );
    for (verdict, examples) in &tally.examples {
        for e in examples {
            println!("  {verdict:?}: {e}");
        }
    }
}

fn run_all(depth: Depth) {
    let seed = seed();
    println!("power loss exploration, seed {seed} (LIFOSTORE_POWER_LOSS_SEED), {depth:?}");
    let (mut once, mut twice, mut restarts) = (Tally::default(), Tally::default(), 0);
    let workloads = [
        ("file", FILE_SCRIPT, (Images::new(), Model::default())),
        ("storage", STORAGE_SCRIPT, (Images::new(), Model::default())),
        (
            "chained pushes",
            CHAIN_SCRIPT,
            (Images::new(), Model::default()),
        ),
        ("version 2 file", LEGACY_SCRIPT, legacy_start()),
    ];
    for (what, script, start) in workloads {
        let started = std::time::Instant::now();
        let (o, t, r) = once_and_twice(start, script, (depth, seed), what);
        report(&format!("{what}: one crash"), &o);
        let took = started.elapsed().as_secs_f64();
        report(
            &format!("{what}: two crashes ({r} restarts, {took:.1} s)"),
            &t,
        );
        once.add(o);
        twice.add(t);
        restarts += r;
    }
    report("all: one crash", &once);
    report(&format!("all: two crashes ({restarts} restarts)"), &twice);
    assert_eq!(
        (once.violations(), twice.violations()),
        (0, 0),
        "power loss left states no call allowed (seed {seed})"
    );
    assert!(
        once.images >= 100 && twice.images >= 500,
        "explored too little"
    );
}

#[test]
fn power_loss_at_every_call_once_and_twice() {
    run_all(QUICK);
}

#[test]
#[ignore = "long: about 2 minutes in a debug build (run with --ignored)"]
fn power_loss_at_every_call_once_and_twice_long() {
    run_all(LONG);
}

/// One image per crash point of step `step` of `rec`: what a power loss leaves when nothing
/// written since the last sync survives (a file created since the last directory sync kept).
fn durable_images(rec: &Recorded, step: usize) -> Vec<Images> {
    let image = |p: &CrashPoint| -> Images {
        let files = p.files.iter();
        files
            .map(|(path, f)| (path.clone(), f.durable.to_vec()))
            .collect()
    };
    points_in(rec, step).map(image).collect()
}

/// The crash points of step `step` of `rec`.
fn points_in(rec: &Recorded, step: usize) -> impl Iterator<Item = &CrashPoint> {
    let s = &rec.steps[step];
    let calls = s.first_call..=s.last_call;
    rec.points.iter().filter(move |p| calls.contains(&p.call))
}

/// Every image a power loss during step `step` of `rec` may leave (the steps used here leave
/// few enough to enumerate).
fn every_image(rec: &Recorded, step: usize) -> Vec<Images> {
    let mut rng = Rng::new(seed());
    let mut out = Vec::new();
    for point in points_in(rec, step) {
        let (images, states) = crash_images(point, 1 << 12, &mut rng);
        assert!(states <= 1 << 12, "{states} states: too many to enumerate");
        out.extend(images);
    }
    out
}

/// Judges `images` against step `step` of `rec`; panics at the first state no call allowed.
/// Returns each image with the state it opened to (none when the step wrote nothing).
fn all_allowed(rec: &Recorded, step: usize, images: Vec<Images>) -> Vec<(Images, Model)> {
    let allowed = &rec.steps[step].allowed;
    let label = &rec.steps[step].label;
    let judged = images
        .into_iter()
        .map(|image| match judge(&image, allowed) {
            Ok(found) => (image, found),
            Err((verdict, detail)) => panic!("power loss in {label}: {verdict:?}: {detail}"),
        });
    judged.collect()
}

/// A power loss while the file is first initialised, whatever sectors of the header
/// page it keeps (all zero 4096 bytes included), leaves a file that opens as an empty
/// database, never `NotADatabase`.
#[test]
fn a_torn_first_initialisation_opens_as_an_empty_database() {
    let first = record(Images::new(), Model::default(), &[]);
    let images = every_image(&first, 0);
    assert!(images.len() > 256, "{} images", images.len());
    all_allowed(&first, 0, images);
}

/// Runs `first` from an empty file and crashes it in its last step (`images` says how), then
/// restarts from every image with `second` and crashes that in its last step, keeping nothing
/// written since the last sync; panics at the first state no call allowed.
fn crash_twice(first: &[Step], images: fn(&Recorded, usize) -> Vec<Images>, second: &[Step]) {
    let rec = record(Images::new(), Model::default(), first);
    let mut checked = 0;
    for (image, found) in all_allowed(&rec, first.len(), images(&rec, first.len())) {
        let again = record(image, found, second);
        let last = second.len();
        checked += all_allowed(&again, last, durable_images(&again, last)).len();
    }
    assert!(checked > 0, "the second runs wrote nothing");
}

/// A lease released just before a power loss: see the tests below.
const RELEASED: &[Step] = &[Step::Push(&[1, 2, 3]), Step::Lease(1), Step::Release(1)];

/// Two crashes: a release whose returned record was synced but whose slot was not
/// leaves the lease held. After the restart, a pop and a push of one item of the same size
/// put a new record right below the returned one, and a power loss that loses the push's slot
/// (a hint no sync made durable yet) must not roll the returned record forward behind it: the
/// item would be both on the stack and leased.
#[test]
fn a_release_cut_by_power_loss_is_not_rolled_forward_behind_a_later_push() {
    crash_twice(
        RELEASED,
        durable_images,
        &[Step::Pop(1), Step::Push(&[101])],
    );
}

/// Found by the explorer: the same cut release, then an ack of the still-held lease after the
/// restart. The ack leaves the top where it was, and the returned record right above it must
/// not roll forward: the acked item would be back on the stack.
#[test]
fn a_release_cut_by_power_loss_is_not_rolled_forward_after_an_ack() {
    crash_twice(RELEASED, durable_images, &[Step::Ack(1)]);
}

/// Two crashes: a push batch torn by a power loss (its first sector lost, the rest
/// kept) is dropped whole. After the restart a shorter batch ends on a record boundary of the
/// lost one, and a power loss that loses its slot must not roll the lost batch's remaining
/// records forward behind it: unacknowledged items would reappear above newer ones.
#[test]
fn a_torn_push_is_not_rolled_forward_behind_a_shorter_push() {
    let shorter = Step::Push(&[101, 102, 103, 104, 105, 106, 107, 108]);
    crash_twice(
        &[Step::Push(&[1]), Step::Push(SECTORS_LONG)],
        every_image,
        &[shorter],
    );
}
