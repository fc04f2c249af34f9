//! Move rows: a part being copied to another node by the rebalancer. Each step is its own
//! transaction and every one is safe to repeat or to abandon:
//! 1. [`Meta::begin_move`] records the move and reserves the bytes on the destination;
//! 2. the copy is written to the destination under a fresh copy id and checked;
//! 3. [`Meta::finish_move`] points the part at the new copy in one transaction (the source
//!    copy becomes garbage), or, if the part changed meanwhile, makes the new copy garbage;
//! 4. the source copy's cleanup job removes it.
//!
//! A crash before step 3 leaves a move row: [`Meta::abort_moves`] (run when the rebalancer
//! starts) turns its destination copy into garbage. A crash after step 3 leaves only garbage.

use super::files::add_garbage;
use super::{Delta, Meta, MetaError, adjust, new_copies};
use crate::checksum::decode_blocks;

/// A committed part, as the rebalancer plans with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartRef {
    /// Its file row.
    pub file_id: i64,
    /// Its index.
    pub idx: usize,
    /// Its node.
    pub node: String,
    /// Its copy id.
    pub copy: i64,
    /// Its length.
    pub len: u64,
}

/// A move in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveTicket {
    /// The new copy's id (on the destination).
    pub copy: i64,
    /// The file row.
    pub file_id: i64,
    /// The part's index.
    pub idx: usize,
    /// The copy being moved.
    pub src_copy: i64,
    /// Its node.
    pub src_node: String,
    /// That node's address.
    pub src_addr: String,
    /// The destination node.
    pub dst_node: String,
    /// Its address.
    pub dst_addr: String,
    /// The part's length.
    pub len: u64,
    /// The part's CRC-32.
    pub crc: u32,
    /// Its block CRCs.
    pub blocks: Vec<u32>,
}

impl Meta {
    /// Starts moving part `idx` of file `file_id`, now copy `src_copy`, to node `dst`.
    /// `None` if the part is no longer that copy (moved, deleted, replaced) or `dst` already
    /// holds a part of the file.
    pub fn begin_move(
        &self,
        file_id: i64,
        idx: usize,
        src_copy: i64,
        dst: &str,
    ) -> Result<Option<MoveTicket>, MetaError> {
        self.write("starting a move", |tx| {
            let row = tx
                .query_opt(
                    "SELECT p.node, s.addr, d.addr, p.len, p.crc, p.blocks
                     FROM parts p JOIN files f ON f.id = p.file_id AND f.state = 'committed'
                     JOIN nodes s ON s.id = p.node JOIN nodes d ON d.id = $4
                     WHERE p.file_id = $1 AND p.idx = $2 AND p.copy = $3
                       AND NOT EXISTS (SELECT 1 FROM parts o WHERE o.file_id = $1 AND o.node = $4)",
                    &[&file_id, &(idx as i16), &src_copy, &dst],
                )
                .map_err(MetaError::db("reading the part to move"))?;
            let Some(row) = row else { return Ok(None) };
            let copy = new_copies(tx, 1)?[0];
            let len: i64 = row.get(3);
            tx.execute(
                "INSERT INTO moves (copy, file_id, idx, src_copy, src_node, dst_node, len)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &copy,
                    &file_id,
                    &(idx as i16),
                    &src_copy,
                    &row.get::<_, String>(0),
                    &dst,
                    &len,
                ],
            )
            .map_err(MetaError::db("recording the move"))?;
            adjust(
                tx,
                &[Delta {
                    node: dst,
                    stored: 0,
                    reserved: len,
                    garbage: 0,
                }],
            )?;
            Ok(Some(MoveTicket {
                copy,
                file_id,
                idx,
                src_copy,
                src_node: row.get(0),
                src_addr: row.get(1),
                dst_node: dst.to_string(),
                dst_addr: row.get(2),
                len: len.max(0) as u64,
                crc: row.get::<_, Option<i64>>(4).unwrap_or(0) as u32,
                blocks: decode_blocks(&row.get::<_, Option<Vec<u8>>>(5).unwrap_or_default()),
            }))
        })
    }

    /// The new copy is written and checked: switches the part to it. Returns the garbage
    /// (the source copy, or the new copy if the part changed meanwhile) and whether the part
    /// was switched.
    pub fn finish_move(&self, t: &MoveTicket) -> Result<(Vec<i64>, bool), MetaError> {
        self.write("finishing a move", |tx| {
            let gone = tx
                .execute("DELETE FROM moves WHERE copy = $1", &[&t.copy])
                .map_err(MetaError::db("removing the move row"))?;
            if gone == 0 {
                // Aborted meanwhile (a restarted rebalancer): the new copy is garbage already.
                return Ok((Vec::new(), false));
            }
            let switched = tx
                .execute(
                    "UPDATE parts SET node = $4, copy = $5
                     WHERE file_id = $1 AND idx = $2 AND copy = $3",
                    &[
                        &t.file_id,
                        &(t.idx as i16),
                        &t.src_copy,
                        &t.dst_node,
                        &t.copy,
                    ],
                )
                .map_err(MetaError::db("switching the part"))?
                == 1;
            let len = i64::try_from(t.len).unwrap_or(i64::MAX);
            if switched {
                add_garbage(tx, t.src_copy, &t.src_node, t.len, "moved")?;
                adjust(
                    tx,
                    &[
                        Delta {
                            node: &t.src_node,
                            stored: -len,
                            reserved: 0,
                            garbage: len,
                        },
                        Delta {
                            node: &t.dst_node,
                            stored: len,
                            reserved: -len,
                            garbage: 0,
                        },
                    ],
                )?;
                return Ok((vec![t.src_copy], true));
            }
            add_garbage(tx, t.copy, &t.dst_node, t.len, "stale_move")?;
            adjust(
                tx,
                &[Delta {
                    node: &t.dst_node,
                    stored: 0,
                    reserved: -len,
                    garbage: len,
                }],
            )?;
            Ok((vec![t.copy], false))
        })
    }

    /// Abandons moves: the one with new copy `only`, or all of them (`None`, when the
    /// rebalancer starts). Their destination copies become garbage (returned).
    pub fn abort_moves(&self, only: Option<i64>) -> Result<Vec<i64>, MetaError> {
        self.write("aborting moves", |tx| {
            let rows = tx
                .query(
                    "DELETE FROM moves WHERE copy = $1 OR $1 IS NULL RETURNING copy, dst_node, len",
                    &[&only],
                )
                .map_err(MetaError::db("removing move rows"))?;
            let mut garbage = Vec::new();
            for row in rows {
                let (copy, node, len): (i64, String, i64) = (row.get(0), row.get(1), row.get(2));
                add_garbage(tx, copy, &node, len.max(0) as u64, "aborted_move")?;
                adjust(
                    tx,
                    &[Delta {
                        node: &node,
                        stored: 0,
                        reserved: -len,
                        garbage: len,
                    }],
                )?;
                garbage.push(copy);
            }
            Ok(garbage)
        })
    }

    /// Every committed part, for the rebalancer's plan.
    pub fn committed_parts(&self) -> Result<Vec<PartRef>, MetaError> {
        let mut conn = self.pool().get()?;
        let rows = conn
            .query(
                "SELECT p.file_id, p.idx, p.node, p.copy, p.len
                 FROM parts p JOIN files f ON f.id = p.file_id WHERE f.state = 'committed'",
                &[],
            )
            .map_err(MetaError::db("reading parts"))?;
        Ok(rows
            .iter()
            .map(|r| PartRef {
                file_id: r.get(0),
                idx: r.get::<_, i16>(1).max(0) as usize,
                node: r.get(2),
                copy: r.get(3),
                len: r.get::<_, i64>(4).max(0) as u64,
            })
            .collect())
    }
}
