//! The rebalancer's plan: which parts to move where so every live node ends near the same
//! relative fill, moving as few bytes as possible.
//!
//! Each live node's target is its share of the live nodes' bytes in proportion to its
//! capacity; its *excess* is what it holds above that. The minimum any plan must move is the
//! sum of the positive excesses. The plan moves, repeatedly, the largest part of the most
//! over-full node that is no larger than both that node's excess and the receiver's deficit,
//! to the most under-full node that holds no part of the same file (the 6 parts of a file stay
//! on 6 distinct nodes). A move never overshoots either side, so each byte moved reduces the
//! positive excess by one byte: the plan moves at most the minimum. It stops when no part
//! fits, i.e. when the nodes are as even as the part sizes allow.

use std::collections::{HashMap, HashSet};

pub use crate::meta::PartRef;

/// A live node as the plan sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Load {
    /// Its id.
    pub id: String,
    /// Bytes it offers.
    pub capacity: u64,
    /// Bytes it holds or is receiving (committed parts plus reservations).
    pub bytes: u64,
}

/// One planned move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    /// The part.
    pub part: PartRef,
    /// Its destination node.
    pub to: String,
}

/// Relative fills of the nodes: `(max - min) / mean`, 0 for no bytes.
pub fn spread(loads: &[Load]) -> f64 {
    let fills: Vec<f64> = loads
        .iter()
        .map(|l| l.bytes as f64 / l.capacity.max(1) as f64)
        .collect();
    let mean = fills.iter().sum::<f64>() / fills.len().max(1) as f64;
    let (min, max) = fills
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), f| (lo.min(*f), hi.max(*f)));
    if mean <= 0.0 { 0.0 } else { (max - min) / mean }
}

/// Each node's excess over its target (negative: a deficit).
pub fn excesses(loads: &[Load]) -> Vec<f64> {
    let total: f64 = loads.iter().map(|l| l.bytes as f64).sum();
    let capacity: f64 = loads.iter().map(|l| l.capacity as f64).sum();
    loads
        .iter()
        .map(|l| l.bytes as f64 - total * l.capacity as f64 / capacity.max(1.0))
        .collect()
}

/// The fewest bytes any plan must move to even `loads` out exactly.
pub fn minimum_to_move(loads: &[Load]) -> u64 {
    excesses(loads)
        .iter()
        .filter(|e| **e > 0.0)
        .sum::<f64>()
        .round() as u64
}

/// Plans up to `max_moves` moves of `parts` among `loads` (live nodes only; parts on other
/// nodes stay where they are but still count for the distinct-node rule).
pub fn plan(loads: &[Load], parts: &[PartRef], max_moves: usize) -> Vec<Move> {
    let mut excess = excesses(loads);
    let index: HashMap<&str, usize> = loads
        .iter()
        .enumerate()
        .map(|(i, l)| (l.id.as_str(), i))
        .collect();
    let mut holders: HashMap<i64, HashSet<String>> = HashMap::new();
    let mut on_node: Vec<Vec<&PartRef>> = vec![Vec::new(); loads.len()];
    for part in parts {
        holders
            .entry(part.file_id)
            .or_default()
            .insert(part.node.clone());
        if let Some(&i) = index.get(part.node.as_str()) {
            on_node[i].push(part);
        }
    }
    for list in &mut on_node {
        list.sort_by_key(|p| std::cmp::Reverse(p.len));
    }
    let mut moved: HashSet<i64> = HashSet::new();
    let mut moves = Vec::new();
    let mut stuck: HashSet<usize> = HashSet::new();
    while moves.len() < max_moves {
        let Some(donor) = (0..loads.len())
            .filter(|i| !stuck.contains(i) && excess[*i] >= 1.0)
            .max_by(|a, b| excess[*a].total_cmp(&excess[*b]))
        else {
            break;
        };
        match best_move(&excess, donor, &on_node[donor], &holders, loads, &moved) {
            Some((part, to)) => {
                excess[donor] -= part.len as f64;
                excess[to] += part.len as f64;
                let files = holders.entry(part.file_id).or_default();
                files.remove(&part.node);
                files.insert(loads[to].id.clone());
                moved.insert(part.copy);
                moves.push(Move {
                    part: part.clone(),
                    to: loads[to].id.clone(),
                });
            }
            None => {
                stuck.insert(donor);
            }
        }
    }
    moves
}

/// The largest part of `donor` that fits the donor's excess and some receiver's deficit,
/// with that receiver (the most under-full that can take it).
fn best_move<'p>(
    excess: &[f64],
    donor: usize,
    parts: &[&'p PartRef],
    holders: &HashMap<i64, HashSet<String>>,
    loads: &[Load],
    moved: &HashSet<i64>,
) -> Option<(&'p PartRef, usize)> {
    let mut receivers: Vec<usize> = (0..excess.len()).filter(|r| excess[*r] <= -1.0).collect();
    receivers.sort_by(|a, b| excess[*a].total_cmp(&excess[*b]));
    for part in parts {
        if moved.contains(&part.copy) || part.len == 0 || part.len as f64 > excess[donor] {
            continue;
        }
        let files = holders.get(&part.file_id);
        let fits = |r: &usize| {
            part.len as f64 <= -excess[*r] && !files.is_some_and(|f| f.contains(&loads[*r].id))
        };
        if let Some(&to) = receivers.iter().find(|r| fits(r)) {
            return Some((part, to));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Six full nodes and two empty ones, one part of each file per old node.
    fn cluster(files: i64, part_len: impl Fn(i64) -> u64) -> (Vec<Load>, Vec<PartRef>) {
        let mut parts = Vec::new();
        let mut loads: Vec<Load> = (0..8)
            .map(|i| Load {
                id: format!("n{i}"),
                capacity: 1 << 40,
                bytes: 0,
            })
            .collect();
        for f in 0..files {
            for (idx, load) in loads.iter_mut().enumerate().take(6) {
                let len = part_len(f);
                parts.push(PartRef {
                    file_id: f,
                    idx,
                    node: format!("n{idx}"),
                    copy: f * 6 + idx as i64,
                    len,
                });
                load.bytes += len;
            }
        }
        (loads, parts)
    }

    fn apply(loads: &mut [Load], moves: &[Move]) -> u64 {
        let mut bytes = 0;
        for m in moves {
            let from = loads.iter().position(|l| l.id == m.part.node).unwrap();
            let to = loads.iter().position(|l| l.id == m.to).unwrap();
            loads[from].bytes -= m.part.len;
            loads[to].bytes += m.part.len;
            bytes += m.part.len;
        }
        bytes
    }

    #[test]
    fn evens_out_new_nodes_moving_no_more_than_the_minimum() {
        let (mut loads, parts) = cluster(3000, |f| 1000 + (f as u64 * 7919) % 100_000);
        let minimum = minimum_to_move(&loads);
        let moves = plan(&loads, &parts, usize::MAX);
        let moved = apply(&mut loads, &moves);
        assert!(moved <= minimum, "moved {moved} > minimum {minimum}");
        assert!(
            moved as f64 >= 0.95 * minimum as f64,
            "moved {moved} of {minimum}"
        );
        assert!(spread(&loads) <= 0.01, "spread {}", spread(&loads));
    }

    #[test]
    fn parts_of_a_file_stay_on_distinct_nodes() {
        let (_, parts) = cluster(200, |_| 10);
        let loads: Vec<Load> = (0..8)
            .map(|i| Load {
                id: format!("n{i}"),
                capacity: 100,
                bytes: if i < 6 { 2000 } else { 0 },
            })
            .collect();
        let moves = plan(&loads, &parts, usize::MAX);
        let mut where_: HashMap<(i64, usize), String> = parts
            .iter()
            .map(|p| ((p.file_id, p.idx), p.node.clone()))
            .collect();
        for m in &moves {
            where_.insert((m.part.file_id, m.part.idx), m.to.clone());
        }
        for f in 0..200 {
            let nodes: HashSet<&String> = (0..6).map(|i| &where_[&(f, i)]).collect();
            assert_eq!(nodes.len(), 6, "file {f}");
        }
        assert!(!moves.is_empty());
    }

    #[test]
    fn an_even_cluster_needs_no_moves() {
        let loads: Vec<Load> = (0..6)
            .map(|i| Load {
                id: format!("n{i}"),
                capacity: 10,
                bytes: 5,
            })
            .collect();
        assert_eq!(minimum_to_move(&loads), 0);
        assert!(plan(&loads, &[], 10).is_empty());
        assert_eq!(spread(&loads), 0.0);
    }
}
