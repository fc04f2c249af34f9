//! The rebalancer: moves parts to under-filled nodes (new ones, typically) in the background
//! until every live node has about the same relative fill.
//!
//! One gateway at a time rebalances (it holds a PostgreSQL advisory lock on a connection of
//! its own; the lock goes with the process). When it takes the lock it first abandons any
//! move a previous holder left half done ([`crate::meta::Meta::abort_moves`]). It wakes when
//! a node comes up and every `interval`; it starts when the spread of relative fills exceeds
//! `trigger` (and the imbalance is at least `min_bytes`), then plans ([`plan`]) and runs moves
//! ([`mover`]) round after round until a plan comes back empty.

pub mod mover;
pub mod plan;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use serde_json::json;

use crate::gateway::Gateway;
use crate::meta::schema::REBALANCER_LOCK;
use plan::{Load, PartRef};

/// How the rebalancer runs.
#[derive(Debug, Clone)]
pub struct RebalanceConfig {
    /// Whether it runs at start (`PUT /rebalancer` switches it).
    pub enabled: bool,
    /// How often it checks the fill when nothing wakes it.
    pub interval: Duration,
    /// Start when `(max fill - min fill) / mean fill` exceeds this.
    pub trigger: f64,
    /// ... and the bytes to move are at least this many.
    pub min_bytes: u64,
    /// Moves run at once.
    pub concurrency: usize,
    /// Moves planned per round.
    pub batch: usize,
}

/// What the rebalancer has done, for `GET /rebalancer`.
#[derive(Debug, Clone, Default)]
struct Figures {
    active: bool,
    rounds: u64,
    moves: u64,
    bytes_moved: u64,
    failed: u64,
    /// The minimum to move, measured when the current (or last) activity started.
    minimum_at_start: u64,
    last_error: Option<String>,
}

/// The rebalancer's switch, wake-up and figures.
pub struct Rebalancer {
    config: RebalanceConfig,
    enabled: AtomicBool,
    woken: Mutex<bool>,
    wake: Condvar,
    figures: Mutex<Figures>,
}

impl Rebalancer {
    /// A rebalancer with `config`.
    pub fn new(config: RebalanceConfig) -> Rebalancer {
        Rebalancer {
            enabled: AtomicBool::new(config.enabled),
            config,
            woken: Mutex::new(false),
            wake: Condvar::new(),
            figures: Mutex::new(Figures::default()),
        }
    }

    /// Wakes it (a node came up, or it was switched on).
    pub fn wake(&self) {
        *self.woken.lock() = true;
        self.wake.notify_all();
    }

    /// Switches it on or off.
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
        self.wake();
    }

    /// Its state as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        let f = self.figures.lock().clone();
        json!({
            "enabled": self.enabled.load(Ordering::Relaxed), "active": f.active,
            "rounds": f.rounds, "moves": f.moves, "bytes_moved": f.bytes_moved,
            "failed_moves": f.failed, "minimum_at_start": f.minimum_at_start,
            "last_error": f.last_error,
        })
    }

    /// Sleeps until woken or `interval` passes.
    fn sleep(&self) {
        let mut woken = self.woken.lock();
        if !*woken {
            self.wake.wait_for(&mut woken, self.config.interval);
        }
        *woken = false;
    }
}

/// Starts the rebalancer thread.
pub fn spawn(gw: Arc<Gateway>) {
    let spawned = std::thread::Builder::new()
        .name("rebalancer".into())
        .spawn(move || run(&gw));
    if let Err(e) = spawned {
        eprintln!("parts-gateway: cannot start the rebalancer: {e}");
    }
}

fn run(gw: &Gateway) {
    let r = &gw.rebalancer;
    let mut lock: Option<postgres::Client> = None;
    loop {
        r.sleep();
        if !r.enabled.load(Ordering::Relaxed) {
            continue;
        }
        if lock.as_mut().is_none_or(|c| c.is_closed()) {
            lock = take_lock(gw);
            if lock.is_none() {
                continue;
            }
        }
        while r.enabled.load(Ordering::Relaxed) {
            match round(gw) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    r.figures.lock().last_error = Some(e);
                    break;
                }
            }
        }
        r.figures.lock().active = false;
    }
}

/// Takes the cluster's rebalancer lock on a connection of its own and abandons the moves a
/// previous holder left; `None` if another gateway holds it (or PostgreSQL is unreachable).
fn take_lock(gw: &Gateway) -> Option<postgres::Client> {
    let mut client = postgres::Client::connect(&gw.config.postgres, postgres::NoTls).ok()?;
    let row = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&REBALANCER_LOCK])
        .ok()?;
    if !row.get::<_, bool>(0) {
        return None;
    }
    match gw.meta.abort_moves(None) {
        Ok(garbage) => {
            if !garbage.is_empty() {
                eprintln!(
                    "parts-gateway: rebalancer abandoned {} unfinished moves",
                    garbage.len()
                );
            }
            gw.jobs.enqueue_or_log(&garbage);
            Some(client)
        }
        Err(e) => {
            eprintln!("parts-gateway: rebalancer cannot abandon old moves: {e}");
            None
        }
    }
}

/// Plans and runs one round; `Ok(false)` when there is nothing (more) to do.
fn round(gw: &Gateway) -> Result<bool, String> {
    let r = &gw.rebalancer;
    let (loads, parts) = snapshot(gw)?;
    let active = r.figures.lock().active;
    let minimum = plan::minimum_to_move(&loads);
    if !active && (plan::spread(&loads) <= r.config.trigger || minimum < r.config.min_bytes) {
        return Ok(false);
    }
    let moves = plan::plan(&loads, &parts, r.config.batch);
    if moves.is_empty() {
        return Ok(false);
    }
    if !active {
        let mut f = r.figures.lock();
        f.active = true;
        f.minimum_at_start = minimum;
        eprintln!(
            "parts-gateway: rebalancing: spread {:.1}% of the mean fill, at least {minimum} bytes to move",
            100.0 * plan::spread(&loads)
        );
    }
    let (done, bytes, failed) = mover::run_all(gw, moves, r.config.concurrency);
    let mut f = r.figures.lock();
    f.rounds += 1;
    f.moves += done;
    f.bytes_moved += bytes;
    f.failed += failed;
    Ok(done > 0)
}

/// The live nodes' loads and all committed parts.
fn snapshot(gw: &Gateway) -> Result<(Vec<Load>, Vec<PartRef>), String> {
    let nodes = gw.meta.nodes().map_err(|e| e.to_string())?;
    let loads: Vec<Load> = nodes
        .iter()
        .filter(|n| gw.health.is_live(&n.id))
        .map(|n| Load {
            id: n.id.clone(),
            capacity: n.capacity,
            bytes: n.stored + n.reserved,
        })
        .collect();
    let parts = gw.meta.committed_parts().map_err(|e| e.to_string())?;
    Ok((loads, parts))
}
