//! Placement: which nodes receive a file's parts. The least full nodes relative to their
//! capacity win, counting bytes still being written to them, so a node that just joined (empty)
//! receives a part of every new file at once, and concurrent uploads do not pile onto the same
//! node. Ties (e.g. empty nodes) are broken at random.

/// A node as placement sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Its id.
    pub id: String,
    /// Bytes it offers.
    pub capacity: u64,
    /// Bytes of committed parts.
    pub stored: u64,
    /// Bytes being written to it.
    pub reserved: u64,
    /// Bytes of garbage still on its disk.
    pub garbage: u64,
}

impl Candidate {
    /// Relative fill counting what is being written: `(stored + reserved) / capacity`.
    pub fn fill(&self) -> f64 {
        (self.stored + self.reserved) as f64 / self.capacity.max(1) as f64
    }

    /// Whether `len` more bytes fit on its disk (garbage still takes room).
    pub fn has_room(&self, len: u64) -> bool {
        self.stored + self.reserved + self.garbage + len <= self.capacity
    }
}

/// Too few nodes can take a part; the message says how many there are and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{usable} usable nodes for {needed} parts ({live} live, {full} of them without room for {part_len} bytes)"
)]
pub struct Shortfall {
    /// Nodes that could take a part.
    pub usable: usize,
    /// Parts to place.
    pub needed: usize,
    /// Live nodes offered.
    pub live: usize,
    /// Live nodes without room.
    pub full: usize,
    /// The part length asked for.
    pub part_len: u64,
}

/// Picks `needed` distinct nodes of `live` for parts of up to `part_len` bytes, skipping
/// the ids in `exclude` (nodes already holding a part of the file): the least full first.
/// Returns indices into `live`.
pub fn choose(
    live: &[Candidate],
    needed: usize,
    part_len: u64,
    exclude: &[&str],
) -> Result<Vec<usize>, Shortfall> {
    let mut usable: Vec<(f64, u64, usize)> = live
        .iter()
        .enumerate()
        .filter(|(_, c)| !exclude.contains(&c.id.as_str()) && c.has_room(part_len))
        .map(|(i, c)| (c.fill(), fastrand::u64(..), i))
        .collect();
    if usable.len() < needed {
        return Err(Shortfall {
            usable: usable.len(),
            needed,
            live: live.len(),
            full: live.iter().filter(|c| !c.has_room(part_len)).count(),
            part_len,
        });
    }
    usable.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    Ok(usable.into_iter().take(needed).map(|(_, _, i)| i).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, capacity: u64, stored: u64) -> Candidate {
        Candidate {
            id: id.into(),
            capacity,
            stored,
            reserved: 0,
            garbage: 0,
        }
    }

    #[test]
    fn least_full_relative_to_capacity_win() {
        let nodes: Vec<Candidate> = (0..8)
            .map(|i| node(&format!("n{i}"), 1000 * (1 + i % 2), 100 * i))
            .collect();
        let mut got = choose(&nodes, 6, 10, &[]).unwrap();
        got.sort();
        // Fills: n0 0, n1 .05, n2 .2, n3 .15, n4 .4, n5 .25, n6 .6, n7 .35 -> the six lowest.
        assert_eq!(got, vec![0, 1, 2, 3, 5, 7]);
    }

    #[test]
    fn excluded_and_full_nodes_are_skipped_and_reported() {
        let nodes: Vec<Candidate> = (0..7).map(|i| node(&format!("n{i}"), 100, 0)).collect();
        let got = choose(&nodes, 1, 10, &["n0", "n1", "n2", "n3", "n4", "n5"]).unwrap();
        assert_eq!(got, vec![6]);
        let mut full = nodes.clone();
        full[6].stored = 95;
        let err = choose(&full, 6, 10, &["n0"]).unwrap_err();
        assert_eq!((err.usable, err.live, err.full), (5, 7, 1));
    }

    #[test]
    fn a_new_empty_node_gets_a_part_of_every_file() {
        let mut nodes: Vec<Candidate> = (0..6).map(|i| node(&format!("n{i}"), 1000, 500)).collect();
        nodes.push(node("new", 1000, 0));
        for _ in 0..50 {
            let got = choose(&nodes, 6, 1, &[]).unwrap();
            assert!(got.contains(&6));
            for i in got {
                nodes[i].stored += 1;
            }
        }
    }
}
