//! Even fill at CI size: 6 nodes take files of log-normal sizes, 2 nodes join, more files
//! come, then the rebalancer runs. The fullest and emptiest nodes must end within 5 % of the
//! mean fill, moving at most 1.2x the minimum. The full-size experiment (2 000 + 2 000 files
//! up to 64 MiB) is `bench/rebalance` (numbers in the README).

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, EAGER_REBALANCER, data, lognormal};

fn name(i: usize) -> String {
    if i < 150 {
        format!("a{i}")
    } else {
        format!("b{i}")
    }
}

/// 150 files on 6 nodes, 2 more nodes, 150 more files (the rebalancer is off).
fn fill(c: &mut Cluster, sizes: &[usize]) {
    for (i, size) in sizes.iter().enumerate().take(150) {
        assert_eq!(c.put(&name(i), &data(*size, i as u64)).status, 201);
    }
    c.add_node();
    c.add_node();
    c.wait_live(8);
    for (i, size) in sizes.iter().enumerate().skip(150) {
        assert_eq!(c.put(&name(i), &data(*size, i as u64)).status, 201);
    }
}

#[test]
fn the_rebalancer_evens_the_fill_moving_little_more_than_the_minimum() {
    let mut c = Cluster::start("rebalance", 6, EAGER_REBALANCER);
    let mut rng = fastrand::Rng::with_seed(25);
    let sizes: Vec<usize> = (0..300)
        .map(|_| lognormal(&mut rng, 64.0 * 1024.0, 1.5, 1024, 4 << 20) as usize)
        .collect();
    fill(&mut c, &sizes);
    let (spread_before, minimum, _) = c.fill_figures();
    let started = Instant::now();
    let status = c.rebalance_until_done(Duration::from_secs(120));
    c.wait_clean(Duration::from_secs(60));
    let took = started.elapsed();
    let (spread_after, _, _) = c.fill_figures();
    let moved = status["bytes_moved"].as_u64().unwrap();
    let total: usize = sizes.iter().sum();
    eprintln!(
        "rebalance (CI size, {total} bytes in 300 files): spread {:.1}% -> {:.2}% of the mean fill; moved {moved} bytes in {} moves ({:.2}x the minimum {minimum}) in {took:.1?}",
        100.0 * spread_before,
        100.0 * spread_after,
        status["moves"],
        moved as f64 / minimum as f64
    );
    assert!(
        spread_before > 0.2,
        "placement alone leaves the new nodes behind"
    );
    assert!(spread_after <= 0.05, "spread after: {spread_after}");
    assert!(
        moved as f64 <= 1.2 * minimum as f64,
        "moved {moved}, minimum {minimum}"
    );
    for (i, size) in sizes.iter().enumerate() {
        assert!(
            c.get(&name(i)).body == data(*size, i as u64),
            "{} after the moves",
            name(i)
        );
    }
    c.check_consistent();
}
