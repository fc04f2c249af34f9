//! Registration and heartbeats: a node posts itself to `POST /nodes` on every gateway when it
//! starts and then every heartbeat period, so a gateway (even a restarted one) learns its
//! address and knows it is alive. A gateway that is down is retried at the next beat.

use std::time::Duration;

use serde_json::json;

use super::store::Store;

/// What a node says about itself.
#[derive(Debug, Clone)]
pub struct Beat {
    /// The node's id.
    pub id: String,
    /// Where gateways reach it.
    pub addr: String,
    /// Bytes it offers.
    pub capacity: u64,
}

/// Posts `beat` to every gateway every `every`, forever. Logs when a gateway starts or stops
/// answering (not every beat).
pub fn run(gateways: &[String], beat: &Beat, store: &Store, every: Duration) {
    let agent = ureq::AgentBuilder::new()
        .timeout(every.max(Duration::from_millis(200)) * 4)
        .build();
    let mut answering = vec![None::<bool>; gateways.len()];
    loop {
        let body = json!({
            "id": beat.id, "addr": beat.addr, "capacity": beat.capacity, "stored": store.used(),
        });
        for (gateway, was) in gateways.iter().zip(answering.iter_mut()) {
            let result = agent
                .post(&format!("{}/nodes", gateway.trim_end_matches('/')))
                .send_json(&body);
            let ok = result.is_ok();
            if *was != Some(ok) {
                match result {
                    Ok(_) => eprintln!("parts-node {}: registered with {gateway}", beat.id),
                    Err(e) => eprintln!(
                        "parts-node {}: gateway {gateway} not answering: {e}",
                        beat.id
                    ),
                }
                *was = Some(ok);
            }
        }
        // A period, not a wait for a condition: the beat itself is the point.
        std::thread::sleep(every);
    }
}
