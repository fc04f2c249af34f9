//! The on-disk format of a [`FileDb`](super::FileDb): header page, superblock slots, records,
//! salts. Pure functions over bytes; `docs/FORMAT.md` is the prose version of this file.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use super::crc32c;

pub(super) const MAGIC: [u8; 8] = *b"LIFOSTK\0";
/// The version this build writes: salted records and slots.
pub(super) const VERSION: u32 = 3;
/// The versions before it (1: a stack, 2: a stack that has used leases), which this build reads
/// and upgrades to [`VERSION`] at open.
pub(super) const LEGACY_VERSIONS: [u32; 2] = [1, 2];
/// Size of the header page; item data starts here.
pub(super) const DATA_START: u64 = 4096;
/// The two superblock slots, in separate 512-byte sectors of the header page.
pub(super) const SLOT_OFFSETS: [u64; 2] = [512, 1024];
/// The salt of a fresh file's state (`LIFOINIT`, little-endian).
const FRESH_SALT: u64 = u64::from_le_bytes(*b"LIFOINIT");
const SLOT_LEN: usize = 48;
const LEGACY_SLOT_LEN: usize = 32;
/// Record framing: `len u32 | crc u32 | parent u64 | salt u64` before the data, `len u32` after.
pub(super) const REC_HEAD: u64 = 24;
pub(super) const REC_TAIL: u64 = 4;
pub(super) const REC_OVERHEAD: u64 = REC_HEAD + REC_TAIL;
/// Legacy record framing (versions 1 and 2): `len u32 | crc u32 | op u64` before the data.
const LEGACY_REC_HEAD: u64 = 16;

/// The durable state named by a superblock slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Superblock {
    /// Operation number: every committed operation adds one (an undo adds two, see
    /// `docs/FORMAT.md`). It picks the slot and the lease ids.
    pub(super) op: u64,
    /// End of the live data: the top of the stack.
    pub(super) top: u64,
    /// Items stored, not counting leased ones.
    pub(super) count: u64,
    /// Length of the lease log (`<name>.leases`) that belongs to this state; 0: no leases.
    pub(super) leases: u32,
    /// Drawn at random when this state was made, never 0: a push batch from this state names
    /// it in its records, so roll-forward takes only records written from this very state.
    pub(super) salt: u64,
    /// End of the records written in the legacy layout (before an upgrade from version 1 or 2);
    /// `DATA_START` when there are none.
    pub(super) legacy: u64,
}

impl Superblock {
    /// The state of a new, empty file. Its salt is a constant, so every fresh header page is
    /// the same and a torn one can be recognised byte by byte ([`torn_init`]); no record can
    /// name the fresh state of an earlier life of the file, because a file is initialised only
    /// when it holds nothing past its header page.
    pub(super) fn fresh() -> Superblock {
        Superblock {
            op: 1,
            top: DATA_START,
            count: 0,
            leases: 0,
            salt: FRESH_SALT,
            legacy: DATA_START,
        }
    }

    /// The next state: operation `op + 1` with a new salt, `top`, `count` and `leases`.
    pub(super) fn then(&self, top: u64, count: u64, leases: u32) -> Superblock {
        Superblock {
            op: self.op + 1,
            top,
            count,
            leases,
            salt: new_salt(),
            legacy: self.legacy.min(top),
        }
    }

    /// The slot bytes: `op | top | count | crc | leases | salt | legacy`.
    pub(super) fn encode(&self) -> [u8; SLOT_LEN] {
        let mut b = [0u8; SLOT_LEN];
        b[0..8].copy_from_slice(&self.op.to_le_bytes());
        b[8..16].copy_from_slice(&self.top.to_le_bytes());
        b[16..24].copy_from_slice(&self.count.to_le_bytes());
        b[28..32].copy_from_slice(&self.leases.to_le_bytes());
        b[32..40].copy_from_slice(&self.salt.to_le_bytes());
        b[40..48].copy_from_slice(&self.legacy.to_le_bytes());
        let crc = crc32c::extend(crc32c::checksum(&b[0..24]), &b[28..48]);
        b[24..28].copy_from_slice(&crc.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<Superblock> {
        let b = b.get(0..SLOT_LEN)?;
        if crc32c::extend(crc32c::checksum(&b[0..24]), &b[28..48]) != u32_at(b, 24) {
            return None;
        }
        let sb = Superblock {
            op: u64_at(b, 0),
            top: u64_at(b, 8),
            count: u64_at(b, 16),
            leases: u32_at(b, 28),
            salt: u64_at(b, 32),
            legacy: u64_at(b, 40),
        };
        (sb.salt != 0 && DATA_START <= sb.legacy && sb.legacy <= sb.top).then_some(sb)
    }

    /// A slot of version 1 or 2: `op | top | count | crc | leases`, every record legacy.
    fn decode_legacy(b: &[u8]) -> Option<Superblock> {
        let b = b.get(0..LEGACY_SLOT_LEN)?;
        let crc = crc32c::checksum(&b[0..24]);
        let crc = match u32_at(b, 28) {
            0 => crc,
            _ => crc32c::extend(crc, &b[28..32]),
        };
        if crc != u32_at(b, 24) {
            return None;
        }
        let top = u64_at(b, 8);
        let sb = Superblock {
            op: u64_at(b, 0),
            top,
            count: u64_at(b, 16),
            leases: u32_at(b, 28),
            salt: 0,
            legacy: top,
        };
        (top >= DATA_START).then_some(sb)
    }

    /// Where this state's slot lives: operation `op` writes slot `op % 2`.
    pub(super) fn slot_offset(&self) -> u64 {
        SLOT_OFFSETS[(self.op % 2) as usize]
    }

    /// The layout of the record that ends at `top` in this state, and the lowest offset it
    /// may start at.
    pub(super) fn layout_below(&self, top: u64) -> (Layout, u64) {
        if top > self.legacy {
            (Layout::Salted, self.legacy)
        } else {
            (Layout::Legacy, DATA_START)
        }
    }
}

/// A salt no state has had: 64 random bits, never 0. std's `RandomState` keys its hasher from
/// the operating system's random source once per thread and steps the key for every new one;
/// the count, clock and process id are mixed in as well.
pub(super) fn new_salt() -> u64 {
    static DRAWN: AtomicU64 = AtomicU64::new(0);
    loop {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(DRAWN.fetch_add(1, Ordering::Relaxed));
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        h.write_u128(now.map_or(0, |d| d.as_nanos()));
        h.write_u32(std::process::id());
        let salt = h.finish();
        if salt != 0 {
            return salt;
        }
    }
}

/// The header's first 16 bytes for `version`: magic, version, checksum.
pub(super) fn header_start(version: u32) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0..8].copy_from_slice(&MAGIC);
    b[8..12].copy_from_slice(&version.to_le_bytes());
    let crc = crc32c::checksum(&b[0..12]);
    b[12..16].copy_from_slice(&crc.to_le_bytes());
    b
}

/// The little-endian `u32` at `b[i..i + 4]`; callers pass slices long enough.
pub(super) fn u32_at(b: &[u8], i: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[i..i + 4]);
    u32::from_le_bytes(w)
}

/// The little-endian `u64` at `b[i..i + 8]`; callers pass slices long enough.
pub(super) fn u64_at(b: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(w)
}

/// How a record is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Layout {
    /// Version 3: `len | crc | parent | salt | data | len`.
    Salted,
    /// Versions 1 and 2: `len | crc | op | data | len`.
    Legacy,
}

impl Layout {
    /// Bytes before the data.
    pub(super) fn head(self) -> u64 {
        match self {
            Layout::Salted => REC_HEAD,
            Layout::Legacy => LEGACY_REC_HEAD,
        }
    }

    /// Bytes of framing per record.
    pub(super) fn overhead(self) -> u64 {
        self.head() + REC_TAIL
    }
}

/// Which write made a record, as its head says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Origin {
    /// A salted record: the salt of the state its push batch extended (0 for a record that is
    /// not part of a push batch: a returned lease, a salvaged item), and the batch's own salt.
    Salted { parent: u64, salt: u64 },
    /// A legacy record: the operation that wrote it.
    Legacy { op: u64 },
}

/// The length and origin a record head claims (`head` holds at least `layout.head()` bytes).
pub(super) fn read_head(head: &[u8], layout: Layout) -> (u64, Origin) {
    let origin = match layout {
        Layout::Salted => Origin::Salted {
            parent: u64_at(head, 8),
            salt: u64_at(head, 16),
        },
        Layout::Legacy => Origin::Legacy {
            op: u64_at(head, 8),
        },
    };
    (u32_at(head, 0) as u64, origin)
}

/// The checksum of a record: its head without the checksum field, then the data.
fn record_crc(head: &[u8], data: &[u8]) -> u32 {
    crc32c::extend(
        crc32c::extend(crc32c::checksum(&head[0..4]), &head[8..]),
        data,
    )
}

/// Appends the salted record `len | crc | parent | salt | data | len` to `out`. `data` fits a
/// `u32` (callers check item limits first).
pub(super) fn encode_record(out: &mut Vec<u8>, parent: u64, salt: u64, data: &[u8]) {
    let mut head = [0u8; REC_HEAD as usize];
    head[0..4].copy_from_slice(&(data.len() as u32).to_le_bytes());
    head[8..16].copy_from_slice(&parent.to_le_bytes());
    head[16..24].copy_from_slice(&salt.to_le_bytes());
    let crc = record_crc(&head, data);
    head[4..8].copy_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(data);
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
}

/// Checks the record of `layout` at `at` in `bytes` (it must end by `limit`); returns its end
/// and origin.
pub(super) fn parse_record(
    bytes: &[u8],
    at: u64,
    limit: u64,
    layout: Layout,
) -> Option<(u64, Origin)> {
    let at_us = usize::try_from(at).ok()?;
    let head_len = layout.head() as usize;
    let head = bytes.get(at_us..at_us.checked_add(head_len)?)?;
    let (n, origin) = read_head(head, layout);
    let end = at.checked_add(layout.overhead() + n)?;
    if end > limit || origin == (Origin::Legacy { op: 0 }) {
        return None;
    }
    let data = bytes.get(at_us + head_len..at_us + head_len + n as usize)?;
    let tail = bytes.get(usize::try_from(end - REC_TAIL).ok()?..usize::try_from(end).ok()?)?;
    (u32_at(tail, 0) as u64 == n && record_crc(head, data) == u32_at(head, 4))
        .then_some((end, origin))
}

/// The header page of a file whose current state is `sb` (the other slot left zero).
pub(super) fn header_page(sb: Superblock) -> Vec<u8> {
    let mut page = vec![0u8; DATA_START as usize];
    page[0..16].copy_from_slice(&header_start(VERSION));
    let slot = sb.slot_offset() as usize;
    page[slot..slot + SLOT_LEN].copy_from_slice(&sb.encode());
    page
}

/// What the first bytes of a file say it is.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Header {
    /// A lifostore header of a version this build reads: the version, and the current slot
    /// if any is valid.
    Valid {
        version: u32,
        current: Option<Superblock>,
    },
    /// Starts with the magic but the header checksum fails.
    BadChecksum,
    /// Starts with the magic, but a format version this build does not read.
    Version(u32),
    /// What an interrupted first initialisation leaves: see [`torn_init`]. It never held an
    /// item.
    TornInit,
    /// No lifostore magic: somebody else's file.
    Foreign,
}

/// Classifies `page`, the first `min(file_len, 4096)` bytes of a file of `file_len >= 1` bytes.
pub(super) fn read_header(page: &[u8], file_len: u64) -> Header {
    if torn_init(page, file_len) {
        return Header::TornInit;
    }
    if page.len() < MAGIC.len() || page[0..8] != MAGIC {
        return Header::Foreign;
    }
    if page.len() < 16 || crc32c::checksum(&page[0..12]) != u32_at(page, 12) {
        return Header::BadChecksum;
    }
    let version = u32_at(page, 8);
    let decode = match version {
        VERSION => Superblock::decode,
        v if LEGACY_VERSIONS.contains(&v) => Superblock::decode_legacy,
        v => return Header::Version(v),
    };
    let slot = |o: u64| page.get(o as usize..).and_then(decode);
    let current = match SLOT_OFFSETS.map(slot) {
        [Some(a), Some(b)] => Some(if b.op > a.op { b } else { a }),
        [a, b] => a.or(b),
    };
    Header::Valid { version, current }
}

/// Whether `page` is all of a file that an interrupted first initialisation left.
///
/// Initialisation extends an empty file to 4096 bytes, writes the fresh header page but the
/// magic, syncs, then writes the magic and syncs again (`recovery::initialise`). Whatever a
/// crash, a power loss or a short write leaves of that is a file of exactly 4096 bytes without
/// the whole magic, each byte of which is either zero or the byte a fresh header page has there
/// (the fresh page is the same in every file: its state's salt is a constant). A file of 4096
/// zero bytes is therefore taken for one: it holds nothing. Older builds wrote the page without
/// extending the file first, so a short write of theirs also left a shorter file: an exact
/// prefix of their fresh page after the magic, at least through the version and checksum.
fn torn_init(page: &[u8], file_len: u64) -> bool {
    if page.len() as u64 != file_len || page.len() < 16 || page[0..8] == MAGIC {
        return false;
    }
    let magic_or_zero = page[0..8].iter().zip(MAGIC).all(|(&b, m)| b == 0 || b == m);
    let zero_or_fresh = |fresh: &[u8]| page.iter().zip(fresh).all(|(&b, &f)| b == 0 || b == f);
    let legacy = legacy_fresh_page();
    if file_len == DATA_START {
        return magic_or_zero
            && (zero_or_fresh(&header_page(Superblock::fresh())) || zero_or_fresh(&legacy));
    }
    let magic_prefix = (0..8).any(|j| page[..j] == MAGIC[..j] && page[j..8] == [0u8; 8][j..]);
    magic_prefix && page[8..] == legacy[8..page.len()]
}

/// The fresh header page of version 1, which older builds initialised files with.
fn legacy_fresh_page() -> Vec<u8> {
    let mut page = vec![0u8; DATA_START as usize];
    page[0..16].copy_from_slice(&header_start(1));
    let mut slot = [0u8; LEGACY_SLOT_LEN];
    slot[0..8].copy_from_slice(&1u64.to_le_bytes());
    slot[8..16].copy_from_slice(&DATA_START.to_le_bytes());
    let crc = crc32c::checksum(&slot[0..24]);
    slot[24..28].copy_from_slice(&crc.to_le_bytes());
    page[1024..1024 + LEGACY_SLOT_LEN].copy_from_slice(&slot);
    page
}
