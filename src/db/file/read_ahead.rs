//! Reading records down from the top of the stack, a few large reads at a time.

use std::path::Path;

use super::format::{DATA_START, REC_TAIL, Superblock, parse_record, u32_at};
use super::io::FileIo;
use super::recovery::{damage, io_err};
use crate::error::DbError;

/// A buffered stretch of the file below the top, so a batch pop reads the file in a few large
/// reads instead of two small reads per record.
pub(super) struct ReadAhead {
    start: u64,
    bytes: Vec<u8>,
    /// How far below the requested range to read ahead.
    ahead: u64,
}

impl ReadAhead {
    /// A buffer sized for popping `items` records: 4 KiB for one, up to 256 KiB for many.
    pub(super) fn new(items: usize) -> Self {
        let ahead = (items as u64).saturating_mul(256).clamp(4 << 10, 256 << 10);
        ReadAhead {
            start: 0,
            bytes: Vec::new(),
            ahead,
        }
    }

    /// The bytes `from..to` of the file (callers have checked `to - from` against the item
    /// limit), reading `from - ahead .. to` if they are not buffered.
    fn get(&mut self, io: &dyn FileIo, from: u64, to: u64) -> std::io::Result<&[u8]> {
        let end = self.start + self.bytes.len() as u64;
        if from < self.start || to > end {
            let begin = from
                .min(to.saturating_sub(self.ahead))
                .max(DATA_START.min(from));
            self.bytes.resize((to - begin) as usize, 0);
            io.read_at(&mut self.bytes, begin)?;
            self.start = begin;
        }
        let lo = (from - self.start) as usize;
        Ok(&self.bytes[lo..lo + (to - from) as usize])
    }

    /// Reads and verifies the record ending at `top` in state `sb` (which tells its layout and
    /// how low it may start); returns its start and data.
    pub(super) fn top_record(
        &mut self,
        io: &dyn FileIo,
        path: &Path,
        limit: usize,
        sb: &Superblock,
        top: u64,
    ) -> Result<(u64, Vec<u8>), DbError> {
        let (layout, floor) = sb.layout_below(top);
        if top < floor + layout.overhead() {
            return Err(damage(
                path,
                top,
                "the superblock counts items but the data region is empty",
            ));
        }
        let tail = self
            .get(io, top - REC_TAIL, top)
            .map_err(io_err("read", path))?;
        let n = u32_at(tail, 0) as u64;
        if n > limit as u64 || n + layout.overhead() > top - floor {
            let below = top - floor;
            return Err(damage(
                path,
                top - REC_TAIL,
                format!("record length {n} does not fit (limit {limit}, {below} bytes below)"),
            ));
        }
        let start = top - layout.overhead() - n;
        let rec = self.get(io, start, top).map_err(io_err("read", path))?;
        if parse_record(rec, 0, rec.len() as u64, layout).is_none() {
            return Err(damage(path, start, "record checksum mismatch"));
        }
        let head = layout.head() as usize;
        Ok((start, rec[head..head + n as usize].to_vec()))
    }
}
