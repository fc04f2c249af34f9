//! What a server client remembers so that a lost reply does no harm: a random client id (the
//! server keeps markers per client), and the push whose reply was lost ([`InDoubt`]).

use std::hash::{BuildHasher, Hasher};

/// Most in-doubt attempts remembered for one unacknowledged batch (each failed retry adds one).
const MAX_ATTEMPTS: usize = 16;

/// A random client id: std's hasher keys are random per process; the process id, the time and
/// a counter make the ids of one process differ.
pub(crate) fn client_id() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    format!("{:016x}", h.finish())
}

/// The items of a push that may have been stored although its call failed, and every attempt
/// that may have stored a leading part of them: (batch id, how many items from the oldest).
///
/// The server records the id of the last batch each client stored. A retry sends the
/// attempts that apply to its items; the server skips the leading items of the attempt whose
/// id it recorded, so what an earlier attempt stored is not stored again.
pub(crate) struct InDoubt {
    items: Vec<Vec<u8>>,
    attempts: Vec<(i64, i64)>,
}

impl InDoubt {
    /// The attempts that apply to `items`: each one stored at most the part of its items
    /// that `items` starts with. Empty when `items` starts differently.
    pub(crate) fn attempts_for(in_doubt: Option<&InDoubt>, items: &[&[u8]]) -> Vec<(i64, i64)> {
        let Some(d) = in_doubt else {
            return Vec::new();
        };
        let common = d
            .items
            .iter()
            .zip(items)
            .take_while(|(a, b)| a.as_slice() == **b)
            .count();
        let common = i64::try_from(common).unwrap_or(i64::MAX);
        d.attempts
            .iter()
            .map(|&(id, stored)| (id, stored.min(common)))
            .filter(|&(_, stored)| stored > 0)
            .collect()
    }

    /// The state after attempt `id` of `items` failed in doubt, `attempts` being the earlier
    /// attempts that applied to it.
    pub(crate) fn after(mut attempts: Vec<(i64, i64)>, id: i64, items: &[&[u8]]) -> InDoubt {
        attempts.push((id, i64::try_from(items.len()).unwrap_or(i64::MAX)));
        if attempts.len() > MAX_ATTEMPTS {
            attempts.remove(0);
        }
        InDoubt {
            items: items.iter().map(|i| i.to_vec()).collect(),
            attempts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::InDoubt;

    #[test]
    fn attempts_shrink_to_the_common_prefix() {
        let a: &[&[u8]] = &[b"a", b"b", b"c"];
        let first = InDoubt::after(Vec::new(), 7, a);
        assert_eq!(InDoubt::attempts_for(Some(&first), a), vec![(7, 3)]);
        assert_eq!(
            InDoubt::attempts_for(Some(&first), &[b"a", b"b", b"d"]),
            vec![(7, 2)]
        );
        assert_eq!(InDoubt::attempts_for(Some(&first), &[b"x"]), vec![]);
        assert_eq!(InDoubt::attempts_for(None, a), vec![]);
        let longer: &[&[u8]] = &[b"a", b"b", b"c", b"d"];
        let second = InDoubt::after(InDoubt::attempts_for(Some(&first), longer), 8, longer);
        assert_eq!(
            InDoubt::attempts_for(Some(&second), longer),
            vec![(7, 3), (8, 4)]
        );
    }

    #[test]
    fn attempts_are_bounded() {
        let a: &[&[u8]] = &[b"a"];
        let mut d = InDoubt::after(Vec::new(), 0, a);
        for id in 1..40 {
            d = InDoubt::after(InDoubt::attempts_for(Some(&d), a), id, a);
        }
        let attempts = InDoubt::attempts_for(Some(&d), a);
        assert_eq!(attempts.len(), super::MAX_ATTEMPTS);
        assert_eq!(attempts.last(), Some(&(39, 1)));
    }
}
