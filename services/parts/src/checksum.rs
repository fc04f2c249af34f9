//! Part checksums: a CRC-32 of the whole part and one of every [`BLOCK`] of it, so that a
//! read of any range can be checked block by block before a byte of it is sent on.

use crc32fast::Hasher;

/// The checked unit inside a part: a read fetches whole blocks and checks each before use.
pub const BLOCK: u64 = 1 << 20;

/// A part's length and checksums.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartSum {
    /// The part's length in bytes.
    pub len: u64,
    /// CRC-32 (IEEE) of the whole part.
    pub crc: u32,
    /// CRC-32 of each block, in order (the last block may be short; none for an empty part).
    pub blocks: Vec<u32>,
}

/// Computes a [`PartSum`] over bytes fed in any pieces.
#[derive(Debug, Default)]
pub struct Summer {
    whole: Hasher,
    block: Hasher,
    in_block: u64,
    blocks: Vec<u32>,
    len: u64,
}

impl Summer {
    /// A summer for a new part.
    pub fn new() -> Summer {
        Summer::default()
    }

    /// Feeds the next bytes of the part.
    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        while !data.is_empty() {
            let room = (BLOCK - self.in_block) as usize;
            let (now, rest) = data.split_at(room.min(data.len()));
            self.block.update(now);
            self.in_block += now.len() as u64;
            if self.in_block == BLOCK {
                self.end_block();
            }
            data = rest;
        }
    }

    fn end_block(&mut self) {
        let block = std::mem::take(&mut self.block);
        self.whole.combine(&block);
        self.blocks.push(block.finalize());
        self.in_block = 0;
    }

    /// The checksums of everything fed.
    pub fn finish(self) -> PartSum {
        self.finish_into(&mut crc32fast::Hasher::new())
    }

    /// The checksums of everything fed; also appends the part to `file`, the CRC of the
    /// parts before it (so the file's CRC costs no second pass over the bytes).
    pub fn finish_into(mut self, file: &mut Hasher) -> PartSum {
        if self.in_block > 0 {
            self.end_block();
        }
        file.combine(&self.whole);
        PartSum {
            len: self.len,
            crc: self.whole.finalize(),
            blocks: self.blocks,
        }
    }
}

/// Block checksums as stored in the metadata: 4 bytes each, big-endian.
pub fn encode_blocks(blocks: &[u32]) -> Vec<u8> {
    blocks.iter().flat_map(|b| b.to_be_bytes()).collect()
}

/// The inverse of [`encode_blocks`] (a trailing partial entry is ignored).
pub fn decode_blocks(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The block-aligned span `(start, end)` of a part of `part_len` bytes that covers
/// `offset..offset + len`: what a checked read must fetch.
pub fn aligned_span(part_len: u64, offset: u64, len: u64) -> (u64, u64) {
    let start = offset / BLOCK * BLOCK;
    let end = (offset + len).div_ceil(BLOCK) * BLOCK;
    (start, end.min(part_len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_do_not_change_the_sums() {
        let data: Vec<u8> = (0..(3 * BLOCK + 17))
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        let mut one = Summer::new();
        one.update(&data);
        let one = one.finish();
        let mut many = Summer::new();
        for chunk in data.chunks(65_537) {
            many.update(chunk);
        }
        assert_eq!(one, many.finish());
        assert_eq!(one.crc, crc32fast::hash(&data));
        assert_eq!(one.blocks.len(), 4);
        assert_eq!(one.blocks[3], crc32fast::hash(&data[3 * BLOCK as usize..]));
        assert_eq!(decode_blocks(&encode_blocks(&one.blocks)), one.blocks);
    }

    #[test]
    fn empty_part_has_no_blocks() {
        let sum = Summer::new().finish();
        assert_eq!((sum.len, sum.crc, sum.blocks.len()), (0, 0, 0));
    }

    #[test]
    fn spans_are_block_aligned_and_capped() {
        assert_eq!(aligned_span(10, 3, 4), (0, 10));
        assert_eq!(aligned_span(3 * BLOCK, BLOCK + 1, 1), (BLOCK, 2 * BLOCK));
        assert_eq!(
            aligned_span(3 * BLOCK - 5, 2 * BLOCK, 10),
            (2 * BLOCK, 3 * BLOCK - 5)
        );
    }
}
