//! The on-disk format of a [`FileDb`](super::FileDb): header page, superblock slots, records.
//! Pure functions over bytes; `docs/FORMAT.md` is the prose version of this file.

use super::crc32c;

pub(super) const MAGIC: [u8; 8] = *b"LIFOSTK\0";
/// The version a new file gets: a stack without a lease log.
pub(super) const VERSION: u32 = 1;
/// The version of a file that has used leases: its slots may name a lease log, which a build
/// that reads only version 1 would ignore (so it must refuse the file instead).
pub(super) const VERSION_LEASES: u32 = 2;
/// Size of the header page; item data starts here.
pub(super) const DATA_START: u64 = 4096;
/// The two superblock slots, in separate 512-byte sectors of the header page.
pub(super) const SLOT_OFFSETS: [u64; 2] = [512, 1024];
const SLOT_LEN: usize = 32;
/// Record framing: `len u32 | crc u32 | op u64` before the data, `len u32` after it.
pub(super) const REC_HEAD: u64 = 16;
pub(super) const REC_TAIL: u64 = 4;
pub(super) const REC_OVERHEAD: u64 = REC_HEAD + REC_TAIL;

/// The durable state named by a superblock slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Superblock {
    /// Operation number: every committed push batch or pop batch adds one (a repair adds two,
    /// see `docs/FORMAT.md`).
    pub(super) op: u64,
    /// End of the live data: the top of the stack.
    pub(super) top: u64,
    /// Items stored, not counting leased ones.
    pub(super) count: u64,
    /// Length of the lease log (`<name>.leases`) that belongs to this state; 0: no leases.
    pub(super) leases: u32,
}

impl Superblock {
    /// The state of a new, empty file.
    pub(super) const FRESH: Superblock = Superblock {
        op: 1,
        top: DATA_START,
        count: 0,
        leases: 0,
    };

    /// The slot bytes: `op | top | count | crc | leases`.
    pub(super) fn encode(&self) -> [u8; SLOT_LEN] {
        let mut b = [0u8; SLOT_LEN];
        b[0..8].copy_from_slice(&self.op.to_le_bytes());
        b[8..16].copy_from_slice(&self.top.to_le_bytes());
        b[16..24].copy_from_slice(&self.count.to_le_bytes());
        b[28..32].copy_from_slice(&self.leases.to_le_bytes());
        let crc = slot_crc(&b);
        b[24..28].copy_from_slice(&crc.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<Superblock> {
        let b = b.get(0..SLOT_LEN)?;
        if slot_crc(b) != u32_at(b, 24) {
            return None;
        }
        let sb = Superblock {
            op: u64_at(b, 0),
            top: u64_at(b, 8),
            count: u64_at(b, 16),
            leases: u32_at(b, 28),
        };
        (sb.top >= DATA_START).then_some(sb)
    }

    /// Where this state's slot lives: operation `op` writes slot `op % 2`.
    pub(super) fn slot_offset(&self) -> u64 {
        SLOT_OFFSETS[(self.op % 2) as usize]
    }
}

/// The checksum of a slot: bytes 0..24, and the lease-log length (28..32) when it is not
/// zero, so a version-1 slot (zero there) checks out unchanged.
fn slot_crc(b: &[u8]) -> u32 {
    let crc = crc32c::checksum(&b[0..24]);
    match u32_at(b, 28) {
        0 => crc,
        _ => crc32c::extend(crc, &b[28..32]),
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

fn record_crc(len: u32, op: u64, data: &[u8]) -> u32 {
    let mut head = [0u8; 12];
    head[0..4].copy_from_slice(&len.to_le_bytes());
    head[4..12].copy_from_slice(&op.to_le_bytes());
    crc32c::extend(crc32c::checksum(&head), data)
}

/// Appends the record `len | crc | op | data | len` to `out`. `data` fits a `u32` (callers
/// check item limits first).
pub(super) fn encode_record(out: &mut Vec<u8>, op: u64, data: &[u8]) {
    let len = data.len() as u32;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&record_crc(len, op, data).to_le_bytes());
    out.extend_from_slice(&op.to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&len.to_le_bytes());
}

/// Which operations a record may have been written by, for [`parse_record`].
#[derive(Debug, Clone, Copy)]
pub(super) enum OpRule {
    /// Any operation up to and including this one (a live record, or salvage).
    AtMost(u64),
    /// Exactly this one (rolling a push batch forward).
    Exactly(u64),
}

/// Checks the record at `at` in `bytes` (it must end by `limit`) against `rule`; returns its
/// end.
pub(super) fn parse_record(bytes: &[u8], at: u64, limit: u64, rule: OpRule) -> Option<u64> {
    let at_us = usize::try_from(at).ok()?;
    let head = bytes.get(at_us..at_us.checked_add(REC_HEAD as usize)?)?;
    let n = u32_at(head, 0);
    let crc = u32_at(head, 4);
    let op = u64_at(head, 8);
    let end = at.checked_add(REC_OVERHEAD + n as u64)?;
    let op_ok = match rule {
        OpRule::AtMost(max) => op <= max,
        OpRule::Exactly(want) => op == want,
    };
    if !op_ok || op == 0 || end > limit {
        return None;
    }
    let data_at = at_us + REC_HEAD as usize;
    let data = bytes.get(data_at..data_at + n as usize)?;
    let tail = bytes.get(usize::try_from(end - REC_TAIL).ok()?..usize::try_from(end).ok()?)?;
    if u32_at(tail, 0) != n || record_crc(n, op, data) != crc {
        return None;
    }
    Some(end)
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
    /// A lifostore header: version and checksum check out; the current slot, if any is valid.
    Valid(Option<Superblock>),
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
    if !(VERSION..=VERSION_LEASES).contains(&version) {
        return Header::Version(version);
    }
    let slot = |o: u64| {
        let o = o as usize;
        page.get(o..o + SLOT_LEN).and_then(Superblock::decode)
    };
    Header::Valid(match SLOT_OFFSETS.map(slot) {
        [Some(a), Some(b)] => Some(if b.op > a.op { b } else { a }),
        [a, b] => a.or(b),
    })
}

/// Whether `page` is all of a file that an interrupted first initialisation left.
///
/// Initialisation extends an empty file to 4096 bytes, writes the fresh header page but the
/// magic, syncs, then writes the magic and syncs again (`recovery::initialise`). Whatever a
/// crash, a power loss or a short write leaves of that is a file of exactly 4096 bytes without
/// the whole magic, each byte of which is either zero or the byte a fresh header page has there.
/// A file of 4096 zero bytes is therefore taken for one: it holds nothing. Older builds wrote
/// the page without extending the file first, so a short write of theirs also left a shorter
/// file: an exact prefix of the fresh page after the magic, at least through the version and
/// checksum.
fn torn_init(page: &[u8], file_len: u64) -> bool {
    if page.len() as u64 != file_len || page.len() < 16 || page[0..8] == MAGIC {
        return false;
    }
    let fresh = header_page(Superblock::FRESH);
    if file_len == DATA_START {
        let magic_or_zero = page[0..8].iter().zip(MAGIC).all(|(&b, m)| b == 0 || b == m);
        return magic_or_zero && page.iter().zip(&fresh).all(|(&b, &f)| b == 0 || b == f);
    }
    let magic_prefix = (0..8).any(|j| page[..j] == MAGIC[..j] && page[j..8] == [0u8; 8][j..]);
    magic_prefix && page[8..] == fresh[8..page.len()]
}
