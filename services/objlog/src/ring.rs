//! [`HashRing`]: consistent hashing of object ids onto PostgreSQL shards, so all of one
//! object's log lives on one shard and adding a shard moves only the objects it takes over.

/// Points each shard places on the ring; more points spread objects more evenly.
const POINTS_PER_SHARD: u64 = 128;

/// SplitMix64's finalizer: a fixed, well-mixed 64-bit hash (stable across Rust versions and
/// machines, unlike `std`'s `DefaultHasher`), so every worker maps an object alike.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A ring over shards `0..n`. Shard `i` is the i-th PostgreSQL URL: every worker must list
/// the shards in the same order.
#[derive(Debug, Clone)]
pub struct HashRing {
    points: Vec<(u64, usize)>,
}

impl HashRing {
    /// A ring over `shards` shards (at least 1).
    pub fn new(shards: usize) -> HashRing {
        let mut points: Vec<(u64, usize)> = (0..shards.max(1))
            .flat_map(|s| (0..POINTS_PER_SHARD).map(move |p| (mix(((s as u64) << 32) | p), s)))
            .collect();
        points.sort_unstable();
        HashRing { points }
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.points.iter().map(|p| p.1 + 1).max().unwrap_or(1)
    }

    /// The shard holding `object`'s log: the first point at or after the object's hash.
    pub fn shard_of(&self, object: i64) -> usize {
        let h = mix(object as u64 ^ 0x6f62_6a6c_6f67);
        let i = self.points.partition_point(|p| p.0 < h);
        self.points
            .get(i)
            .or(self.points.first())
            .map_or(0, |p| p.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_objects_and_moves_only_what_a_new_shard_takes() {
        let (three, four) = (HashRing::new(3), HashRing::new(4));
        let mut per_shard = [0usize; 3];
        for id in 0..30_000i64 {
            let s = three.shard_of(id);
            per_shard[s] += 1;
            let moved = four.shard_of(id);
            assert!(
                moved == s || moved == 3,
                "object {id} moved from {s} to {moved}"
            );
        }
        assert!(
            per_shard.iter().all(|n| (7_000..13_000).contains(n)),
            "{per_shard:?}"
        );
        assert_eq!((three.shards(), HashRing::new(1).shard_of(42)), (3, 0));
    }
}
