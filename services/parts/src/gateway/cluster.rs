//! `POST /nodes` (registration and heartbeats) and `GET /nodes` (fill and liveness).

use serde_json::{Value, json};

use super::Gateway;
use super::api::{error, meta_error};
use crate::health::Status;
use crate::http::{Exchange, Response};
use crate::rebalance::plan::{Load, spread};

/// A node's registration: `{"id", "addr", "capacity"}` (extra fields ignored).
pub fn register(gw: &Gateway, ex: &mut Exchange<'_>) -> Response {
    let body = match ex.read_small_body(64 << 10) {
        Ok(body) => body,
        Err(why) => return error(400, "bad_body", why),
    };
    let (id, addr, capacity) = match parse_registration(&body) {
        Ok(fields) => fields,
        Err(why) => return error(400, "bad_registration", why),
    };
    // The address goes to the metadata before the node counts as live here: a download
    // that sees it live must find its new address.
    if gw.health.differs(&id, &addr, capacity) {
        match gw.meta.register_node(&id, &addr, capacity) {
            Ok(new) => eprintln!(
                "parts-gateway: node {id} at {addr} ({capacity} bytes) {}",
                if new { "joined" } else { "registered" }
            ),
            Err(e) => return meta_error(&e),
        }
    }
    if gw.health.beat(&id, &addr, capacity) {
        match gw.meta.revive_garbage(&id) {
            Ok(revived) => gw.jobs.enqueue_or_log(&revived),
            Err(e) => eprintln!("parts-gateway: reviving the cleanups of {id}: {e}"),
        }
        gw.rebalancer.wake();
    }
    let timeout = gw.config.heartbeat_timeout.as_millis() as u64;
    Response::json(200, &json!({"id": id, "heartbeat_timeout_ms": timeout}))
}

/// Checks a registration body.
fn parse_registration(body: &[u8]) -> Result<(String, String, u64), String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
    let id = v["id"].as_str().ok_or("missing \"id\" (a string)")?;
    let addr = v["addr"].as_str().ok_or("missing \"addr\" (host:port)")?;
    let capacity = v["capacity"]
        .as_u64()
        .ok_or("missing \"capacity\" (bytes, > 0)")?;
    let id_ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !id_ok {
        return Err(format!("id {id:?}: use 1 to 64 letters, digits, - or _"));
    }
    let port_ok = addr
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if !port_ok {
        return Err(format!("addr {addr:?} is not host:port"));
    }
    if capacity == 0 || capacity > i64::MAX as u64 {
        return Err(format!("capacity {capacity} is out of range"));
    }
    Ok((id.to_string(), addr.to_string(), capacity))
}

/// Every node with its fill and liveness, and the spread of fills among live nodes.
pub fn nodes(gw: &Gateway) -> Response {
    let rows = match gw.meta.nodes() {
        Ok(rows) => rows,
        Err(e) => return meta_error(&e),
    };
    let mut live_loads = Vec::new();
    let list: Vec<Value> = rows
        .iter()
        .map(|n| {
            let status = gw.health.status(&n.id);
            let fill = (n.stored + n.reserved) as f64 / n.capacity.max(1) as f64;
            if status == Status::Live {
                live_loads.push(Load {
                    id: n.id.clone(),
                    capacity: n.capacity,
                    bytes: n.stored + n.reserved,
                });
            }
            let down = match status {
                Status::Live => Value::Null,
                Status::Down(why) => json!(why),
            };
            json!({"id": n.id, "addr": n.addr, "capacity": n.capacity, "stored": n.stored,
                   "reserved": n.reserved, "garbage": n.garbage, "fill": fill,
                   "live": down.is_null(), "down_reason": down})
        })
        .collect();
    let all: Vec<Load> = rows
        .iter()
        .map(|n| Load {
            id: n.id.clone(),
            capacity: n.capacity,
            bytes: n.stored + n.reserved,
        })
        .collect();
    Response::json(
        200,
        &json!({
            "nodes": list, "live": live_loads.len(),
            "spread": spread(&all), "live_spread": spread(&live_loads),
        }),
    )
}
