//! What a power loss at a [`CrashPoint`] may leave on the disk, after the disk model of
//! `docs/FORMAT.md`: a file keeps what its last successful sync made durable; each 512-byte
//! sector that later writes touched holds any one of the contents the page cache gave it since
//! (the durable one included), independently of every other sector, so any subset of the later
//! writes survives, torn at sector boundaries; the file's length is any length it had since;
//! bytes the length covers but no surviving write reached read as zeros; and a file created
//! after the last directory sync may be missing altogether.
//!
//! A crash point whose states number at most the budget is enumerated completely. Above it, the
//! images are the ones most likely to matter, then random ones drawn from a seeded generator:
//! nothing survives; everything survives; the changes land in order and the last one is cut
//! after each of its sectors (a torn last write); and random choices for every sector and
//! length.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::sim::{Change, CrashPoint, FileAtCrash, Images};

/// The sector: the unit a power loss keeps or loses whole.
pub(super) const SECTOR: usize = 512;

/// SplitMix64: a small seeded generator, so a run can be repeated from its printed seed.
#[derive(Debug, Clone)]
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n` (which is not 0).
    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The choices a power loss makes for one file.
struct FileSpace {
    path: PathBuf,
    /// The file's contents since its last sync: `versions[0]` is durable, `versions[i]` has
    /// the first `i` pending changes applied.
    versions: Vec<Vec<u8>>,
    /// The distinct lengths among the versions.
    lens: Vec<usize>,
    /// For each sector a write touched: its index and the versions that wrote it.
    sectors: Vec<(usize, Vec<usize>)>,
    /// Whether the file may be missing.
    may_vanish: bool,
}

/// One power loss's choice for one file: `None` for a missing file, else the length (an
/// index into `lens`) and, for each touched sector, the version it holds (0: durable).
type Choice = Option<(usize, Vec<usize>)>;

impl FileSpace {
    fn new(path: PathBuf, file: &FileAtCrash) -> FileSpace {
        let mut versions = vec![file.durable.to_vec()];
        let mut touched: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (i, change) in file.pending.iter().enumerate() {
            let mut next = versions[i].clone();
            match change {
                Change::Write { at, bytes } => {
                    let (at, end) = (*at as usize, *at as usize + bytes.len());
                    if next.len() < end {
                        next.resize(end, 0);
                    }
                    next[at..end].copy_from_slice(bytes);
                    for s in at / SECTOR..end.div_ceil(SECTOR) {
                        touched.entry(s).or_default().push(i + 1);
                    }
                }
                Change::SetLen(len) => next.resize(*len as usize, 0),
            }
            versions.push(next);
        }
        let mut lens: Vec<usize> = versions.iter().map(Vec::len).collect();
        lens.sort_unstable();
        lens.dedup();
        FileSpace {
            path,
            versions,
            lens,
            sectors: touched.into_iter().collect(),
            may_vanish: file.unlinked,
        }
    }

    /// How many different choices there are (saturating).
    fn size(&self) -> u128 {
        let sectors = self
            .sectors
            .iter()
            .fold(1u128, |n, (_, v)| n.saturating_mul(v.len() as u128 + 1));
        let present = sectors.saturating_mul(self.lens.len() as u128);
        present.saturating_add(u128::from(self.may_vanish))
    }

    /// The bytes a choice leaves.
    fn image(&self, len: usize, sector_versions: &[usize]) -> Vec<u8> {
        let mut out = self.versions[0].clone();
        out.resize(len, 0);
        for ((s, writers), &pick) in self.sectors.iter().zip(sector_versions) {
            if pick == 0 {
                continue;
            }
            let version = &self.versions[writers[pick - 1]];
            let (lo, hi) = (s * SECTOR, ((s + 1) * SECTOR).min(len));
            if lo < hi {
                // The version's bytes of the sector, then zeros where that version was shorter.
                let kept = version.len().clamp(lo, hi);
                out[lo..kept].copy_from_slice(&version[lo..kept]);
                out[kept..hi].fill(0);
            }
        }
        out
    }

    /// The `k`-th choice in a mixed-radix count over all choices (`k < size()`).
    fn nth(&self, mut k: usize) -> Choice {
        if self.may_vanish {
            if k == 0 {
                return None;
            }
            k -= 1;
        }
        let len = k % self.lens.len();
        k /= self.lens.len();
        let picks = self.sectors.iter().map(|(_, writers)| {
            let radix = writers.len() + 1;
            let pick = k % radix;
            k /= radix;
            pick
        });
        Some((len, picks.collect()))
    }

    fn random(&self, rng: &mut Rng) -> Choice {
        if self.may_vanish && rng.below(8) == 0 {
            return None;
        }
        let len = rng.below(self.lens.len());
        let picks = self.sectors.iter().map(|(_, w)| rng.below(w.len() + 1));
        Some((len, picks.collect()))
    }

    /// Nothing since the last sync survives (`false`), or everything does (`true`).
    fn all_or_nothing(&self, all: bool) -> Choice {
        if !all {
            let len = self.len_index(self.versions[0].len());
            return Some((len, vec![0; self.sectors.len()]));
        }
        let last = self.versions.len() - 1;
        let len = self.len_index(self.versions[last].len());
        Some((len, self.sectors.iter().map(|(_, w)| w.len()).collect()))
    }

    /// The changes before `change` land whole, then the first `cut` sectors of `change`, at
    /// the length of the version before it (`longer`: after it).
    fn torn(&self, change: usize, cut: usize, longer: bool) -> Choice {
        let mut cut_left = cut;
        let mut picks = Vec::with_capacity(self.sectors.len());
        for (_, writers) in &self.sectors {
            let mut pick = writers.iter().take_while(|&&v| v <= change).count();
            if writers.contains(&(change + 1)) && cut_left > 0 {
                cut_left -= 1;
                pick += 1;
            }
            picks.push(pick);
        }
        let version = if longer { change + 1 } else { change };
        Some((self.len_index(self.versions[version].len()), picks))
    }

    fn len_index(&self, len: usize) -> usize {
        self.lens.iter().position(|&l| l == len).unwrap_or(0)
    }

    /// How many sectors change `i` (0-based) wrote.
    fn sectors_of(&self, i: usize) -> usize {
        let v = i + 1;
        self.sectors.iter().filter(|(_, w)| w.contains(&v)).count()
    }
}

/// Up to `budget` images a power loss at `point` may leave (fewer when the states run out),
/// and the number of states the point has in all (saturating).
pub(super) fn crash_images(
    point: &CrashPoint,
    budget: usize,
    rng: &mut Rng,
) -> (Vec<Images>, u128) {
    let spaces: Vec<FileSpace> = point
        .files
        .iter()
        .map(|(p, f)| FileSpace::new(p.clone(), f))
        .collect();
    let total = spaces.iter().fold(1u128, |n, f| n.saturating_mul(f.size()));
    let choices = if total <= budget as u128 {
        all_choices(&spaces, total as usize)
    } else {
        chosen_choices(&spaces, budget, rng)
    };
    let images = choices.iter().map(|c| compose(&spaces, c)).collect();
    (images, total)
}

/// Every combination of the files' choices.
fn all_choices(spaces: &[FileSpace], total: usize) -> Vec<Vec<Choice>> {
    (0..total)
        .map(|mut k| {
            let picks = spaces.iter().map(|f| {
                let n = f.size() as usize;
                let pick = f.nth(k % n);
                k /= n;
                pick
            });
            picks.collect()
        })
        .collect()
}

/// The images most likely to matter, then random ones, `budget` in all.
fn chosen_choices(spaces: &[FileSpace], budget: usize, rng: &mut Rng) -> Vec<Vec<Choice>> {
    let mut out: Vec<Vec<Choice>> = Vec::new();
    for all in [false, true] {
        out.push(spaces.iter().map(|f| f.all_or_nothing(all)).collect());
    }
    // A torn last write: in every file, the changes land in order and one is cut. The other
    // files keep everything (the cut is in one file at a time).
    for (i, f) in spaces.iter().enumerate() {
        for change in 0..f.versions.len() - 1 {
            for cut in cuts(f.sectors_of(change), budget / 4, rng) {
                for longer in [false, true] {
                    let mut c: Vec<Choice> =
                        spaces.iter().map(|g| g.all_or_nothing(true)).collect();
                    c[i] = f.torn(change, cut, longer);
                    out.push(c);
                }
            }
        }
    }
    out.truncate(budget.saturating_sub(budget / 4).max(2));
    while out.len() < budget {
        out.push(spaces.iter().map(|f| f.random(rng)).collect());
    }
    out
}

/// Where to cut a write of `n` sectors: every place when there are few, else the first and
/// last few and random ones, `max` at most.
fn cuts(n: usize, max: usize, rng: &mut Rng) -> Vec<usize> {
    if n < max.max(8) {
        return (0..n).collect();
    }
    let mut out: Vec<usize> = (0..3).chain(n - 3..n).collect();
    while out.len() < max.max(8) {
        out.push(rng.below(n));
    }
    out
}

fn compose(spaces: &[FileSpace], choice: &[Choice]) -> Images {
    let mut images = Images::new();
    for (f, c) in spaces.iter().zip(choice) {
        if let Some((len, picks)) = c {
            images.insert(f.path.clone(), f.image(f.lens[*len], picks));
        }
    }
    images
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::super::io::Vfs;
    use super::super::sim::SimVfs;
    use super::*;

    fn point(durable: &[u8], pending: Vec<Change>, unlinked: bool) -> CrashPoint {
        let file = FileAtCrash {
            durable: Arc::new(durable.to_vec()),
            pending,
            unlinked,
        };
        let files = BTreeMap::from([(PathBuf::from("f"), file)]);
        CrashPoint { call: 1, files }
    }

    #[test]
    fn the_simulated_disk_keeps_a_crash_point_after_every_change() {
        let vfs = SimVfs::default();
        vfs.keep_crash_points();
        let path = Path::new("f");
        let f = vfs.open(path).expect("open");
        f.write_at(b"abc", 0).expect("write");
        f.read_at(&mut [0; 3], 0).expect("read");
        f.sync().expect("sync");
        vfs.sync_dir(path).expect("sync the directory");
        let points = vfs.take_crash_points();
        let at = |i: usize| &points[i].files[path];
        assert_eq!(
            points.len(),
            4,
            "created, written, synced, directory synced"
        );
        assert!(at(0).unlinked && at(0).pending.is_empty() && at(0).durable.is_empty());
        let write = Change::Write {
            at: 0,
            bytes: b"abc".to_vec(),
        };
        assert_eq!(at(1).pending, vec![write]);
        assert_eq!(
            (at(2).durable.as_slice(), at(2).unlinked),
            (&b"abc"[..], true)
        );
        assert!(at(2).pending.is_empty());
        assert!(!at(3).unlinked);
        let calls: Vec<usize> = points.iter().map(|p| p.call).collect();
        assert_eq!(calls, [1, 2, 4, 5], "the read changes nothing");
    }

    fn contents(images: Vec<Images>) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = images
            .into_iter()
            .map(|i| i[Path::new("f")].clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// 1024 synced bytes of 1, then 1024 bytes of 2 written at 512: sector 1 may hold old or
    /// new bytes, sector 2 (new) zeros or new bytes, each on its own, at either length.
    #[test]
    fn every_sector_of_an_unsynced_write_survives_or_not_on_its_own() {
        let write = Change::Write {
            at: 512,
            bytes: vec![2; 1024],
        };
        let (images, states) =
            crash_images(&point(&[1; 1024], vec![write], false), 64, &mut Rng::new(1));
        assert_eq!(states, 8);
        let mut want = Vec::new();
        for (a, b, len) in [
            (1, 0, 1024),
            (2, 0, 1024),
            (1, 0, 1536),
            (1, 2, 1536),
            (2, 0, 1536),
            (2, 2, 1536),
        ] {
            let mut v = vec![1u8; 512];
            v.extend([a; 512]);
            v.extend([b; 512]);
            v.truncate(len);
            want.push(v);
        }
        want.sort();
        assert_eq!(contents(images), want);
    }

    #[test]
    fn a_file_created_since_the_directory_sync_may_be_missing() {
        let write = Change::Write {
            at: 0,
            bytes: vec![3; 10],
        };
        let (images, _) = crash_images(&point(&[], vec![write], true), 64, &mut Rng::new(1));
        assert!(images.iter().any(|i| i.is_empty()));
        assert!(
            images
                .iter()
                .any(|i| i.get(Path::new("f")) == Some(&vec![3; 10]))
        );
    }

    /// 64 sectors: 2^64 states, far above the budget. The sample keeps nothing, everything, and
    /// the write cut after each of its first and last sectors.
    #[test]
    fn a_long_write_is_sampled_with_its_first_and_last_cuts() {
        let write = Change::Write {
            at: 0,
            bytes: vec![4; 64 * SECTOR],
        };
        let (images, states) = crash_images(&point(&[], vec![write], false), 40, &mut Rng::new(1));
        assert_eq!(images.len(), 40);
        assert!(states > 1 << 60, "{states}");
        let got = contents(images);
        for cut in [0, 1, 2, 61, 62, 63, 64] {
            let mut prefix = vec![4u8; cut * SECTOR];
            prefix.resize(64 * SECTOR, 0);
            assert!(got.contains(&prefix), "the write cut after {cut} sectors");
        }
        assert!(
            got.contains(&Vec::new()),
            "nothing kept, not even the length"
        );
    }
}
