//! What a server client remembers so that a lost reply does no harm: a random client id (the
//! server keeps markers per client), the push whose reply was lost ([`InDoubt`]), and the
//! calls storing leased items whose reply was lost ([`LeasedInDoubt`]).

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

/// The `push_leased` calls that failed in doubt: each one's call number (the caller's name for
/// it, [`DbLeases::push_leased`](crate::DbLeases::push_leased)), its items, and the token (a
/// number unique within the client) every attempt of that call sends.
///
/// One token per call, not per attempt: the server stores a call's items only under a token it
/// has not recorded yet and answers the ids it recorded otherwise, so whichever attempt lands
/// first is the only one that stores, even if an earlier attempt reaches the server after a
/// retry (a broken connection's last request may still be on its way). A retry is known by its
/// call number and its items both: two calls of equal bytes are two calls. Several calls are
/// kept because the storage may write other due items before it retries one; bounded, the
/// oldest forgotten first (its retry would then store the items again, as without the token).
#[derive(Default)]
pub(crate) struct LeasedInDoubt {
    calls: Vec<(u64, Vec<Vec<u8>>, u64)>,
}

impl LeasedInDoubt {
    /// The token of call `call` in doubt, if its items are exactly `items`.
    pub(crate) fn token_for(&self, call: u64, items: &[&[u8]]) -> Option<u64> {
        self.calls
            .iter()
            .find(|(c, kept, _)| *c == call && same(kept, items))
            .map(|&(_, _, token)| token)
    }

    /// Remembers that call `call` of `items` under `token` failed in doubt.
    pub(crate) fn remember(&mut self, call: u64, items: &[&[u8]], token: u64) {
        if self.token_for(call, items) == Some(token) {
            return;
        }
        self.forget(call, items);
        if self.calls.len() >= MAX_ATTEMPTS {
            self.calls.remove(0);
        }
        let kept = items.iter().map(|i| i.to_vec()).collect();
        self.calls.push((call, kept, token));
    }

    /// Forgets call `call` of `items`: an attempt of it answered, so the server's answer is
    /// known.
    pub(crate) fn forget(&mut self, call: u64, items: &[&[u8]]) {
        self.calls
            .retain(|(c, kept, _)| !(*c == call && same(kept, items)));
    }
}

/// Whether `kept` holds exactly `items`.
fn same(kept: &[Vec<u8>], items: &[&[u8]]) -> bool {
    kept.iter().map(Vec::as_slice).eq(items.iter().copied())
}

#[cfg(test)]
mod tests {
    use super::{InDoubt, LeasedInDoubt};

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

    #[test]
    fn a_leased_call_in_doubt_keeps_its_token_until_answered() {
        let a: &[&[u8]] = &[b"a"];
        let b: &[&[u8]] = &[b"b", b"c"];
        let mut d = LeasedInDoubt::default();
        assert_eq!(d.token_for(1, a), None);
        d.remember(1, a, 1);
        d.remember(2, b, 2);
        d.remember(1, a, 1); // a retry failed in doubt again: the same token
        assert_eq!((d.token_for(1, a), d.token_for(2, b)), (Some(1), Some(2)));
        assert_eq!(d.token_for(2, &[b"b"]), None, "only the same items match");
        assert_eq!(
            d.token_for(3, a),
            None,
            "equal bytes of another call are another call"
        );
        d.forget(1, a);
        assert_eq!((d.token_for(1, a), d.token_for(2, b)), (None, Some(2)));
        for t in 10..(10 + super::MAX_ATTEMPTS as u64) {
            d.remember(t, &[&t.to_le_bytes()], t);
        }
        assert_eq!(d.token_for(2, b), None, "bounded: the oldest is forgotten");
        assert_eq!(d.calls.len(), super::MAX_ATTEMPTS);
    }
}
