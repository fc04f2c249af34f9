//! Even fill at CI size: 6 nodes take files of log-normal sizes, 2 nodes join, more files
//! come, then the rebalancer runs. The fullest and emptiest nodes must end within 5 % of the
//! mean fill, moving at most 1.2x the minimum. The full-size experiment (2 000 + 2 000 files
//! up to 64 MiB) is `bench/rebalance` (numbers in the README).

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, data, wait_for};
use serde_json::Value;

/// A log-normal size: median `median`, shape `sigma`, clamped to `min..=max`.
fn lognormal(rng: &mut fastrand::Rng, median: f64, sigma: f64, min: usize, max: usize) -> usize {
    let (u1, u2) = (rng.f64().max(1e-12), rng.f64());
    let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
    ((median * (sigma * z).exp()) as usize).clamp(min, max)
}

/// `(spread of relative fills / mean, minimum bytes to move)` over the live nodes.
fn fill_figures(nodes: &Value) -> (f64, u64) {
    let live: Vec<(f64, f64)> = nodes["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["live"] == true)
        .map(|n| {
            (
                n["stored"].as_f64().unwrap(),
                n["capacity"].as_f64().unwrap(),
            )
        })
        .collect();
    let (bytes, cap): (f64, f64) = live
        .iter()
        .fold((0.0, 0.0), |(b, c), (nb, nc)| (b + nb, c + nc));
    let fills: Vec<f64> = live.iter().map(|(b, c)| b / c).collect();
    let mean = fills.iter().sum::<f64>() / fills.len() as f64;
    let spread = (fills.iter().cloned().fold(f64::MIN, f64::max)
        - fills.iter().cloned().fold(f64::MAX, f64::min))
        / mean;
    let minimum: f64 = live
        .iter()
        .map(|(b, c)| (b - bytes * c / cap).max(0.0))
        .sum();
    (spread, minimum.round() as u64)
}

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

/// Switches the rebalancer on and waits until it has moved parts and stopped; its state.
fn rebalance(c: &Cluster) -> Value {
    let on = c
        .call("PUT", "/rebalancer", Some(br#"{"enabled":true}"#), None)
        .unwrap();
    assert_eq!(on.status, 200);
    let status = wait_for(Duration::from_secs(120), "the rebalancer to finish", || {
        let r = c.call("GET", "/rebalancer", None, None).ok()?.json();
        (r["active"] == false && r["moves"].as_u64()? > 0).then_some(r)
    });
    c.wait_clean(Duration::from_secs(60));
    status
}

#[test]
fn the_rebalancer_evens_the_fill_moving_little_more_than_the_minimum() {
    let flags = [
        "--rebalance-min-bytes",
        "0",
        "--rebalance-trigger",
        "0.01",
        "--rebalance-interval-ms",
        "200",
    ];
    let mut c = Cluster::start("rebalance", 6, &flags);
    let mut rng = fastrand::Rng::with_seed(25);
    let sizes: Vec<usize> = (0..300)
        .map(|_| lognormal(&mut rng, 64.0 * 1024.0, 1.5, 1024, 4 << 20))
        .collect();
    fill(&mut c, &sizes);
    let (spread_before, minimum) = fill_figures(&c.nodes_json());
    let started = Instant::now();
    let status = rebalance(&c);
    let took = started.elapsed();
    let (spread_after, _) = fill_figures(&c.nodes_json());
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
