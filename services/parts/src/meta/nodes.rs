//! Node rows: registration and listing.

use super::{Meta, MetaError};

/// A node's row.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRow {
    /// Its id (chosen by the node, kept in its directory).
    pub id: String,
    /// Where it listens (`host:port`).
    pub addr: String,
    /// Bytes it offers.
    pub capacity: u64,
    /// Bytes of committed parts on it.
    pub stored: u64,
    /// Bytes being written to it (uploads, move destinations).
    pub reserved: u64,
    /// Bytes of garbage on it, waiting for cleanup jobs.
    pub garbage: u64,
    /// Seconds since the Unix epoch when it first registered.
    pub registered_at: f64,
}

impl NodeRow {
    fn from_row(row: &postgres::Row) -> NodeRow {
        let n = |i: usize| row.get::<_, i64>(i).max(0) as u64;
        NodeRow {
            id: row.get(0),
            addr: row.get(1),
            capacity: n(2),
            stored: n(3),
            reserved: n(4),
            garbage: n(5),
            registered_at: row.get(6),
        }
    }
}

const COLUMNS: &str =
    "id, addr, capacity, stored, reserved, garbage, extract(epoch FROM registered_at)::float8";

impl Meta {
    /// Records node `id` at `addr` with `capacity` (new, or moved to another address, or
    /// resized). Returns whether the node is new to the cluster.
    pub fn register_node(&self, id: &str, addr: &str, capacity: u64) -> Result<bool, MetaError> {
        let cap = i64::try_from(capacity).unwrap_or(i64::MAX);
        let mut conn = self.pool().get()?;
        let row = conn
            .query_one(
                "INSERT INTO nodes (id, addr, capacity) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO UPDATE SET addr = $2, capacity = $3
                 RETURNING (xmax = 0)",
                &[&id, &addr, &cap],
            )
            .map_err(MetaError::db("registering a node"))?;
        Ok(row.get(0))
    }

    /// Every node, by id.
    pub fn nodes(&self) -> Result<Vec<NodeRow>, MetaError> {
        let mut conn = self.pool().get()?;
        let rows = conn
            .query(&format!("SELECT {COLUMNS} FROM nodes ORDER BY id"), &[])
            .map_err(MetaError::db("listing nodes"))?;
        Ok(rows.iter().map(NodeRow::from_row).collect())
    }

    /// Every node, by id, inside a write transaction (placement, moves).
    pub(crate) fn nodes_in(tx: &mut postgres::Transaction<'_>) -> Result<Vec<NodeRow>, MetaError> {
        let rows = tx
            .query(&format!("SELECT {COLUMNS} FROM nodes ORDER BY id"), &[])
            .map_err(MetaError::db("reading nodes"))?;
        Ok(rows.iter().map(NodeRow::from_row).collect())
    }
}
