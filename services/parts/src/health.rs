//! [`Health`]: a gateway's view of which nodes are up, from their heartbeats and from the
//! gateway's own calls to them.
//!
//! A node is **live** when its last heartbeat is recent (within `timeout`), no call to it
//! failed since that heartbeat, and it is not serving a penalty for missing a part deadline.
//! A failed call (refused, reset) takes a node out at once, so uploads stop choosing a killed
//! node without waiting for the heartbeat timeout; its next heartbeat brings it back. A
//! missed deadline (a slow node) keeps it out for `penalty` even while it keeps beating.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// One node's state as this gateway sees it.
#[derive(Debug, Clone)]
struct Seen {
    addr: String,
    capacity: u64,
    last_beat: Instant,
    failed_at: Option<(Instant, String)>,
    slow_until: Option<Instant>,
}

/// Whether a node is live, and why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Heard from recently, nothing failed since.
    Live,
    /// Not live; the reason (for error messages and `GET /nodes`).
    Down(String),
}

/// The liveness table.
#[derive(Debug)]
pub struct Health {
    nodes: Mutex<HashMap<String, Seen>>,
    timeout: Duration,
    penalty: Duration,
}

impl Health {
    /// A table where a node is down `timeout` after its last heartbeat, and out for `penalty`
    /// after a missed deadline.
    pub fn new(timeout: Duration, penalty: Duration) -> Health {
        Health {
            nodes: Mutex::new(HashMap::new()),
            timeout,
            penalty,
        }
    }

    /// Records a heartbeat; returns whether the node came up with it (it was unknown to this
    /// gateway, or not live).
    pub fn beat(&self, id: &str, addr: &str, capacity: u64) -> bool {
        let now = Instant::now();
        let mut nodes = self.nodes.lock();
        let came_up = nodes
            .get(id)
            .is_none_or(|s| self.status_of(s, now) != Status::Live);
        let seen = nodes.entry(id.to_string()).or_insert_with(|| Seen {
            addr: addr.to_string(),
            capacity,
            last_beat: now,
            failed_at: None,
            slow_until: None,
        });
        seen.addr = addr.to_string();
        seen.capacity = capacity;
        seen.last_beat = now;
        seen.failed_at = None;
        came_up
    }

    /// Whether a beat with this address and capacity would tell this gateway something new
    /// (the node is unknown, moved or resized): then the metadata must be updated first.
    pub fn differs(&self, id: &str, addr: &str, capacity: u64) -> bool {
        self.nodes
            .lock()
            .get(id)
            .is_none_or(|s| s.addr != addr || s.capacity != capacity)
    }

    /// A call to the node failed (refused, reset, I/O error): out until its next heartbeat.
    pub fn failed(&self, id: &str, why: &str) {
        if let Some(seen) = self.nodes.lock().get_mut(id) {
            seen.failed_at = Some((Instant::now(), why.to_string()));
        }
    }

    /// The node missed a part deadline: out for the penalty, whatever its heartbeats say.
    pub fn slow(&self, id: &str) {
        if let Some(seen) = self.nodes.lock().get_mut(id) {
            seen.slow_until = Some(Instant::now() + self.penalty);
        }
    }

    /// The node's status.
    pub fn status(&self, id: &str) -> Status {
        match self.nodes.lock().get(id) {
            Some(seen) => self.status_of(seen, Instant::now()),
            None => Status::Down("not heard from since this gateway started".into()),
        }
    }

    /// Whether the node is live.
    pub fn is_live(&self, id: &str) -> bool {
        self.status(id) == Status::Live
    }

    /// The nodes that are not live, with reasons: `"; down: n1 (why), n2 (why)"`, or empty.
    pub fn describe_down(&self, known: &[String]) -> String {
        let down: Vec<String> = known
            .iter()
            .filter_map(|id| match self.status(id) {
                Status::Live => None,
                Status::Down(why) => Some(format!("{id} ({why})")),
            })
            .collect();
        if down.is_empty() {
            String::new()
        } else {
            format!("; not live: {}", down.join(", "))
        }
    }

    fn status_of(&self, seen: &Seen, now: Instant) -> Status {
        if let Some((_, why)) = &seen.failed_at {
            return Status::Down(format!("a call to it failed: {why}"));
        }
        if let Some(until) = seen.slow_until.filter(|u| *u > now) {
            let left = until - now;
            return Status::Down(format!(
                "missed a part deadline; out for {:.1} s more",
                left.as_secs_f64()
            ));
        }
        let quiet = now.duration_since(seen.last_beat);
        if quiet > self.timeout {
            return Status::Down(format!("no heartbeat for {:.1} s", quiet.as_secs_f64()));
        }
        Status::Live
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_takes_a_node_out_until_its_next_beat() {
        let health = Health::new(Duration::from_secs(60), Duration::from_secs(60));
        assert!(matches!(health.status("a"), Status::Down(_)));
        assert!(
            health.differs("a", "127.0.0.1:1", 10),
            "unknown: the metadata needs it"
        );
        assert!(
            health.beat("a", "127.0.0.1:1", 10),
            "the first beat brings it up"
        );
        assert!(!health.differs("a", "127.0.0.1:1", 10));
        assert!(health.differs("a", "127.0.0.1:2", 10), "moved");
        assert!(!health.beat("a", "127.0.0.1:1", 10), "already live");
        assert!(health.is_live("a"));
        health.failed("a", "connection refused");
        assert!(!health.is_live("a"));
        assert!(
            health
                .describe_down(&["a".into()])
                .contains("connection refused")
        );
        assert!(
            health.beat("a", "127.0.0.1:1", 10),
            "back with its next beat"
        );
        assert!(health.is_live("a"));
    }

    #[test]
    fn a_slow_node_stays_out_for_the_penalty_despite_beats() {
        let health = Health::new(Duration::from_secs(60), Duration::from_secs(60));
        health.beat("a", "x", 1);
        health.slow("a");
        health.beat("a", "x", 1);
        assert!(!health.is_live("a"));
    }

    #[test]
    fn silence_beyond_the_timeout_is_down() {
        let health = Health::new(Duration::ZERO, Duration::ZERO);
        health.beat("a", "x", 1);
        let start = Instant::now();
        while start.elapsed() == Duration::ZERO {}
        assert!(!health.is_live("a"));
    }
}
