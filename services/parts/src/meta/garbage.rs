//! Garbage rows: copies on nodes that nothing references any more, each waiting for its
//! cleanup job (see [`crate::jobs`]).

use super::{Delta, Meta, MetaError, adjust};

/// A garbage copy.
#[derive(Debug, Clone, PartialEq)]
pub struct GarbageRow {
    /// The copy id.
    pub copy: i64,
    /// The node holding it.
    pub node: String,
    /// The node's address.
    pub addr: String,
    /// Its length.
    pub len: u64,
    /// Why it became garbage (`deleted`, `replaced`, `failed_upload`, `failed_write`,
    /// `moved`, `aborted_move`, `stale_move`).
    pub reason: String,
    /// Seconds since it became garbage.
    pub age_secs: f64,
    /// Failed removal attempts.
    pub attempts: i32,
    /// The last removal error.
    pub last_error: Option<String>,
    /// Whether its job was given up on (dead-lettered).
    pub dead: bool,
}

const COLUMNS: &str = "g.copy, g.node, n.addr, g.len, g.reason,
    extract(epoch FROM now() - g.created_at)::float8, g.attempts, g.last_error, g.dead";

fn garbage_row(r: &postgres::Row) -> GarbageRow {
    GarbageRow {
        copy: r.get(0),
        node: r.get(1),
        addr: r.get(2),
        len: r.get::<_, i64>(3).max(0) as u64,
        reason: r.get(4),
        age_secs: r.get(5),
        attempts: r.get(6),
        last_error: r.get(7),
        dead: r.get(8),
    }
}

impl Meta {
    /// The garbage row of `copy`, if it is still garbage.
    pub fn garbage(&self, copy: i64) -> Result<Option<GarbageRow>, MetaError> {
        let mut conn = self.pool().get()?;
        let sql = format!(
            "SELECT {COLUMNS} FROM garbage g JOIN nodes n ON n.id = g.node WHERE g.copy = $1"
        );
        let row = conn
            .query_opt(&sql, &[&copy])
            .map_err(MetaError::db("reading garbage"))?;
        Ok(row.as_ref().map(garbage_row))
    }

    /// Garbage rows, the dead ones only or all, oldest first, at most `limit`.
    pub fn garbage_rows(&self, dead_only: bool, limit: i64) -> Result<Vec<GarbageRow>, MetaError> {
        let mut conn = self.pool().get()?;
        let sql = format!(
            "SELECT {COLUMNS} FROM garbage g JOIN nodes n ON n.id = g.node
             WHERE g.dead OR NOT $1 ORDER BY g.created_at, g.copy LIMIT $2"
        );
        let rows = conn
            .query(&sql, &[&dead_only, &limit])
            .map_err(MetaError::db("listing garbage"))?;
        Ok(rows.iter().map(garbage_row).collect())
    }

    /// The copy ids of every garbage row not given up on (to enqueue their jobs again).
    pub fn pending_garbage(&self) -> Result<Vec<i64>, MetaError> {
        let mut conn = self.pool().get()?;
        let rows = conn
            .query("SELECT copy FROM garbage WHERE NOT dead ORDER BY copy", &[])
            .map_err(MetaError::db("listing garbage"))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// The copy was removed from its node: drops the garbage row and its bytes from the
    /// node's counter. Returns `false` if the row was gone already (another run of the job).
    pub fn complete_garbage(&self, copy: i64) -> Result<bool, MetaError> {
        self.write("completing a cleanup", |tx| {
            let row = tx
                .query_opt(
                    "DELETE FROM garbage WHERE copy = $1 RETURNING node, len",
                    &[&copy],
                )
                .map_err(MetaError::db("removing the garbage row"))?;
            let Some(row) = row else { return Ok(false) };
            let (node, len): (String, i64) = (row.get(0), row.get(1));
            adjust(
                tx,
                &[Delta {
                    node: &node,
                    stored: 0,
                    reserved: 0,
                    garbage: -len,
                }],
            )?;
            Ok(true)
        })
    }

    /// Records a failed removal; returns the attempts so far.
    pub fn garbage_failed(&self, copy: i64, error: &str) -> Result<i32, MetaError> {
        let mut conn = self.pool().get()?;
        let row = conn
            .query_opt(
                "UPDATE garbage SET attempts = attempts + 1, last_error = $2 WHERE copy = $1
                 RETURNING attempts",
                &[&copy, &error],
            )
            .map_err(MetaError::db("recording a failed cleanup"))?;
        Ok(row.map_or(0, |r| r.get(0)))
    }

    /// Marks the job of `copy` as given up on (dead-lettered), with the reason.
    pub fn garbage_dead(&self, copy: i64, error: &str) -> Result<(), MetaError> {
        let mut conn = self.pool().get()?;
        conn.execute(
            "UPDATE garbage SET dead = true, last_error = $2 WHERE copy = $1",
            &[&copy, &error],
        )
        .map_err(MetaError::db("dead-lettering a cleanup"))?;
        Ok(())
    }

    /// Revives the dead garbage of node `node` (it came back): returns the copy ids to
    /// enqueue again.
    pub fn revive_garbage(&self, node: &str) -> Result<Vec<i64>, MetaError> {
        let mut conn = self.pool().get()?;
        let rows = conn
            .query(
                "UPDATE garbage SET dead = false, attempts = 0 WHERE node = $1 AND dead
                 RETURNING copy",
                &[&node],
            )
            .map_err(MetaError::db("reviving cleanups"))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}
