//! How a file is cut into [`PARTS`] parts, and which parts a byte range touches.

/// Every file is cut into this many parts, each on its own node.
pub const PARTS: usize = 6;

/// The lengths of the parts of a file of `len` bytes: they differ by at most one byte (the
/// first `len % 6` parts are one byte longer) and add up to `len`. `len = 0` gives six empty
/// parts.
///
/// ```
/// assert_eq!(parts::split::part_lengths(7), [2, 1, 1, 1, 1, 1]);
/// assert_eq!(parts::split::part_lengths(0), [0; 6]);
/// ```
pub fn part_lengths(len: u64) -> [u64; PARTS] {
    let n = PARTS as u64;
    let (base, extra) = (len / n, len % n);
    std::array::from_fn(|i| base + u64::from((i as u64) < extra))
}

/// Where each part starts in the file.
pub fn part_offsets(len: u64) -> [u64; PARTS] {
    let lengths = part_lengths(len);
    let mut at = 0;
    std::array::from_fn(|i| {
        let start = at;
        at += lengths[i];
        start
    })
}

/// A piece of a byte range that lies in one part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// The part's index.
    pub part: usize,
    /// Where the piece starts inside the part.
    pub offset: u64,
    /// The piece's length (never 0).
    pub len: u64,
}

/// The pieces of the byte range `start..end` of a file of `len` bytes, in file order.
/// Empty for an empty range; `end` is capped at `len`.
///
/// ```
/// use parts::split::{pieces, Piece};
/// // 12 bytes: parts of 2 bytes each; bytes 3..6 are the end of part 1 and all of part 2.
/// assert_eq!(
///     pieces(12, 3, 6),
///     vec![Piece { part: 1, offset: 1, len: 1 }, Piece { part: 2, offset: 0, len: 2 }]
/// );
/// ```
pub fn pieces(len: u64, start: u64, end: u64) -> Vec<Piece> {
    let end = end.min(len);
    let (lengths, offsets) = (part_lengths(len), part_offsets(len));
    (0..PARTS)
        .filter_map(|part| {
            let (p_start, p_end) = (offsets[part], offsets[part] + lengths[part]);
            let (s, e) = (start.max(p_start), end.min(p_end));
            (s < e).then_some(Piece {
                part,
                offset: s - p_start,
                len: e - s,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_differ_by_at_most_one_and_add_up() {
        let lens = (0..200u64).chain([1 << 20, (1 << 20) - 1, (1 << 20) + 1, u64::MAX / 7]);
        for len in lens {
            let parts = part_lengths(len);
            assert_eq!(parts.iter().sum::<u64>(), len, "sum for {len}");
            let (min, max) = (parts.iter().min(), parts.iter().max());
            assert!(
                max.unwrap() - min.unwrap() <= 1,
                "spread for {len}: {parts:?}"
            );
            let offsets = part_offsets(len);
            for i in 1..PARTS {
                assert_eq!(offsets[i], offsets[i - 1] + parts[i - 1]);
            }
        }
    }

    #[test]
    fn pieces_cover_exactly_the_range() {
        for len in [0u64, 1, 5, 6, 7, 13, 100] {
            for start in 0..=len {
                for end in start..=len + 2 {
                    let got = pieces(len, start, end);
                    let total: u64 = got.iter().map(|p| p.len).sum();
                    assert_eq!(total, end.min(len) - start, "len {len} {start}..{end}");
                    let offsets = part_offsets(len);
                    let mut at = start;
                    for p in &got {
                        assert_eq!(offsets[p.part] + p.offset, at, "contiguous");
                        at += p.len;
                    }
                }
            }
        }
    }
}
