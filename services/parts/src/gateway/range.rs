//! The `Range` header: one byte range (`bytes=a-b`, `bytes=a-`, `bytes=-n`).

/// What a `Range` header asks for, given the file's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    /// The whole file (no header, or one this server ignores, e.g. several ranges).
    Whole,
    /// Bytes `start..end` (end exclusive, within the file).
    Part {
        /// First byte.
        start: u64,
        /// One past the last byte.
        end: u64,
    },
    /// No byte of the file is in the range: `416`.
    Unsatisfiable,
}

/// Interprets `header` for a file of `len` bytes. Malformed headers and multi-range requests
/// are ignored (the whole file is sent), as RFC 9110 allows.
///
/// ```
/// use parts::gateway::range::{wanted, Wanted};
/// assert_eq!(wanted(Some("bytes=2-4"), 10), Wanted::Part { start: 2, end: 5 });
/// assert_eq!(wanted(Some("bytes=-3"), 10), Wanted::Part { start: 7, end: 10 });
/// assert_eq!(wanted(Some("bytes=8-"), 10), Wanted::Part { start: 8, end: 10 });
/// assert_eq!(wanted(Some("bytes=10-"), 10), Wanted::Unsatisfiable);
/// assert_eq!(wanted(None, 10), Wanted::Whole);
/// ```
pub fn wanted(header: Option<&str>, len: u64) -> Wanted {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Wanted::Whole;
    };
    if spec.contains(',') {
        return Wanted::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Wanted::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    let parsed = |s: &str| s.parse::<u64>().ok();
    match (first.is_empty(), parsed(first), parsed(last)) {
        // Suffix: the last n bytes.
        (true, _, Some(0)) => Wanted::Unsatisfiable,
        (true, _, Some(_)) if len == 0 => Wanted::Unsatisfiable,
        (true, _, Some(n)) => Wanted::Part {
            start: len.saturating_sub(n),
            end: len,
        },
        (false, Some(start), _) if start >= len => Wanted::Unsatisfiable,
        (false, Some(start), None) if last.is_empty() => Wanted::Part { start, end: len },
        (false, Some(start), Some(stop)) if stop >= start => Wanted::Part {
            start,
            end: stop.saturating_add(1).min(len),
        },
        _ => Wanted::Whole,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_cases() {
        assert_eq!(
            wanted(Some("bytes=0-0"), 1),
            Wanted::Part { start: 0, end: 1 }
        );
        assert_eq!(
            wanted(Some("bytes=0-100"), 10),
            Wanted::Part { start: 0, end: 10 }
        );
        assert_eq!(
            wanted(Some("bytes=-100"), 10),
            Wanted::Part { start: 0, end: 10 }
        );
        assert_eq!(wanted(Some("bytes=0-"), 0), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=-0"), 10), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=5-2"), 10), Wanted::Whole);
        assert_eq!(wanted(Some("bytes=0-1,3-4"), 10), Wanted::Whole);
        assert_eq!(wanted(Some("items=0-1"), 10), Wanted::Whole);
        assert_eq!(wanted(Some("bytes=x-1"), 10), Wanted::Whole);
    }
}
