//! File and part rows: an upload's life (placed, parts replaced, committed or aborted),
//! lookups, listings and deletes.

use postgres::Transaction;

use super::{Delta, Meta, MetaError, NodeRow, adjust, new_copies};
use crate::checksum::{PartSum, decode_blocks, encode_blocks};
use crate::placement::{self, Candidate};
use crate::split::{PARTS, part_lengths};

/// Where one part of an upload goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartTarget {
    /// The part's index (0..6).
    pub idx: usize,
    /// The node's id.
    pub node: String,
    /// The node's address.
    pub addr: String,
    /// The copy id to write.
    pub copy: i64,
    /// The part's length.
    pub len: u64,
}

/// A placed upload: its file row and where each part goes.
#[derive(Debug, Clone)]
pub struct UploadPlan {
    /// The file row's id.
    pub file_id: i64,
    /// The parts, by index.
    pub parts: Vec<PartTarget>,
}

/// A committed part: where it is and its checksums.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartInfo {
    /// The part's index.
    pub idx: usize,
    /// The node's id.
    pub node: String,
    /// The node's address.
    pub addr: String,
    /// The copy id on the node.
    pub copy: i64,
    /// The part's length.
    pub len: u64,
    /// CRC-32 of the part.
    pub crc: u32,
    /// CRC-32 of each block.
    pub blocks: Vec<u32>,
}

/// A committed file.
#[derive(Debug, Clone)]
pub struct FileInfo {
    /// The file row's id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Its length.
    pub size: u64,
    /// CRC-32 of the whole file, 8 hex digits.
    pub checksum: String,
    /// When it was committed, seconds since the Unix epoch.
    pub committed_at: f64,
    /// Its six parts, by index.
    pub parts: Vec<PartInfo>,
}

/// One page of a listing.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// Files in name order (bytewise): name, size, checksum, commit time.
    pub files: Vec<(String, u64, String, f64)>,
    /// Whether more files follow.
    pub truncated: bool,
}

/// Which counter a part's bytes leave when it becomes garbage.
#[derive(Debug, Clone, Copy)]
enum From {
    Stored,
    Reserved,
}

fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Candidates for placement: the live nodes.
fn candidates(nodes: &[NodeRow], live: &dyn Fn(&str) -> bool) -> Vec<(Candidate, String)> {
    nodes
        .iter()
        .filter(|n| live(&n.id))
        .map(|n| {
            let c = Candidate {
                id: n.id.clone(),
                capacity: n.capacity,
                stored: n.stored,
                reserved: n.reserved,
                garbage: n.garbage,
            };
            (c, n.addr.clone())
        })
        .collect()
}

/// Chooses `needed` nodes (excluding `exclude`) or explains why not.
fn place(
    tx: &mut Transaction<'_>,
    live: &dyn Fn(&str) -> bool,
    why_down: &dyn Fn() -> String,
    needed: usize,
    part_len: u64,
    exclude: &[&str],
) -> Result<Vec<(String, String)>, MetaError> {
    let nodes = Meta::nodes_in(tx)?;
    let cands = candidates(&nodes, live);
    let plain: Vec<Candidate> = cands.iter().map(|(c, _)| c.clone()).collect();
    match placement::choose(&plain, needed, part_len, exclude) {
        Ok(chosen) => Ok(chosen
            .into_iter()
            .map(|i| (cands[i].0.id.clone(), cands[i].1.clone()))
            .collect()),
        Err(shortfall) => Err(MetaError::NotEnoughNodes {
            shortfall,
            down: why_down(),
        }),
    }
}

impl Meta {
    /// Places a new upload of `size` bytes named `name` on 6 distinct live nodes: a `writing`
    /// file row, its part rows with fresh copy ids, and the bytes reserved on the nodes.
    /// `why_down` describes the nodes that are not live, for the error when too few are.
    pub fn begin_upload(
        &self,
        name: &str,
        size: u64,
        gateway: &str,
        live: &dyn Fn(&str) -> bool,
        why_down: &dyn Fn() -> String,
    ) -> Result<UploadPlan, MetaError> {
        let lens = part_lengths(size);
        self.write("starting an upload", |tx| {
            let chosen = place(tx, live, why_down, PARTS, lens[0], &[])?;
            let file_id: i64 = tx
                .query_one(
                    "INSERT INTO files (name, size, state, gateway)
                     VALUES ($1, $2, 'writing', $3) RETURNING id",
                    &[&name, &as_i64(size), &gateway],
                )
                .map_err(MetaError::db("inserting the file row"))?
                .get(0);
            let copies = new_copies(tx, PARTS as i64)?;
            let parts: Vec<PartTarget> = (0..PARTS)
                .map(|idx| PartTarget {
                    idx,
                    node: chosen[idx].0.clone(),
                    addr: chosen[idx].1.clone(),
                    copy: copies[idx],
                    len: lens[idx],
                })
                .collect();
            insert_parts(tx, file_id, &parts)?;
            Ok(UploadPlan { file_id, parts })
        })
    }

    /// Moves part `part` of a `writing` upload to another live node (its node failed or
    /// missed the deadline): the old copy becomes garbage (returned, for its cleanup job),
    /// a new copy id is reserved on a node that holds no other part of the file.
    pub fn replace_part(
        &self,
        file_id: i64,
        part: &PartTarget,
        live: &dyn Fn(&str) -> bool,
        why_down: &dyn Fn() -> String,
    ) -> Result<(PartTarget, i64), MetaError> {
        self.write("replacing a part", |tx| {
            writing_row(tx, file_id)?;
            let rows = tx
                .query("SELECT node FROM parts WHERE file_id = $1", &[&file_id])
                .map_err(MetaError::db("reading the upload's parts"))?;
            let holders: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
            let exclude: Vec<&str> = holders.iter().map(String::as_str).collect();
            let chosen = place(tx, live, why_down, 1, part.len, &exclude)?;
            let copy = new_copies(tx, 1)?[0];
            tx.execute(
                "UPDATE parts SET node = $3, copy = $4 WHERE file_id = $1 AND idx = $2",
                &[&file_id, &(part.idx as i16), &chosen[0].0, &copy],
            )
            .map_err(MetaError::db("moving the part"))?;
            add_garbage(tx, part.copy, &part.node, part.len, "failed_write")?;
            let len = as_i64(part.len);
            adjust(
                tx,
                &[
                    Delta {
                        node: &part.node,
                        stored: 0,
                        reserved: -len,
                        garbage: len,
                    },
                    Delta {
                        node: &chosen[0].0,
                        stored: 0,
                        reserved: len,
                        garbage: 0,
                    },
                ],
            )?;
            let (node, addr) = chosen[0].clone();
            Ok((
                PartTarget {
                    node,
                    addr,
                    copy,
                    ..part.clone()
                },
                part.copy,
            ))
        })
    }

    /// Commits an upload whose parts are all durable: stores their checksums, replaces the
    /// committed file of the same name if any (its parts become garbage, returned), and makes
    /// the file visible.
    pub fn commit_upload(
        &self,
        file_id: i64,
        sums: &[PartSum],
        checksum: &str,
    ) -> Result<Vec<i64>, MetaError> {
        self.write("committing an upload", |tx| {
            let name = writing_row(tx, file_id)?;
            let idx: Vec<i16> = (0..sums.len() as i16).collect();
            let crcs: Vec<i64> = sums.iter().map(|s| i64::from(s.crc)).collect();
            let blocks: Vec<Vec<u8>> = sums.iter().map(|s| encode_blocks(&s.blocks)).collect();
            tx.execute(
                "UPDATE parts p SET crc = d.crc, blocks = d.blocks
                 FROM unnest($2::int2[], $3::int8[], $4::bytea[]) AS d(idx, crc, blocks)
                 WHERE p.file_id = $1 AND p.idx = d.idx",
                &[&file_id, &idx, &crcs, &blocks],
            )
            .map_err(MetaError::db("storing part checksums"))?;
            let old = tx
                .query_opt(
                    "SELECT id FROM files WHERE name = $1 AND state = 'committed'",
                    &[&name],
                )
                .map_err(MetaError::db("finding the file it replaces"))?;
            let garbage = match old {
                Some(row) => to_garbage(tx, row.get(0), From::Stored, "replaced")?,
                None => Vec::new(),
            };
            tx.execute(
                "UPDATE files SET state = 'committed', checksum = $2, committed_at = now()
                 WHERE id = $1",
                &[&file_id, &checksum],
            )
            .map_err(MetaError::db("committing the file row"))?;
            let deltas = own_parts(tx, file_id)?;
            let deltas: Vec<Delta<'_>> = deltas
                .iter()
                .map(|(node, len)| Delta {
                    node,
                    stored: *len,
                    reserved: -len,
                    garbage: 0,
                })
                .collect();
            adjust(tx, &deltas)?;
            Ok(garbage)
        })
    }

    /// Aborts a `writing` upload: every copy it placed becomes garbage (returned). Nothing
    /// happens if it is gone already.
    pub fn abort_upload(&self, file_id: i64) -> Result<Vec<i64>, MetaError> {
        self.write("aborting an upload", |tx| match writing_row(tx, file_id) {
            Ok(_) => to_garbage(tx, file_id, From::Reserved, "failed_upload"),
            Err(MetaError::UploadGone(_)) => Ok(Vec::new()),
            Err(e) => Err(e),
        })
    }

    /// Aborts every `writing` upload of gateway `gateway` (run when it starts: its previous
    /// process died with them). Returns the garbage.
    pub fn abort_stale_uploads(&self, gateway: &str) -> Result<Vec<i64>, MetaError> {
        self.write("aborting stale uploads", |tx| {
            let rows = tx
                .query(
                    "SELECT id FROM files WHERE gateway = $1 AND state = 'writing'",
                    &[&gateway],
                )
                .map_err(MetaError::db("finding stale uploads"))?;
            let mut garbage = Vec::new();
            for row in rows {
                garbage.extend(to_garbage(tx, row.get(0), From::Reserved, "failed_upload")?);
            }
            Ok(garbage)
        })
    }

    /// Deletes the committed file `name`: its parts become garbage (returned).
    pub fn delete_file(&self, name: &str) -> Result<Vec<i64>, MetaError> {
        self.write("deleting a file", |tx| {
            let row = tx
                .query_opt(
                    "SELECT id FROM files WHERE name = $1 AND state = 'committed'",
                    &[&name],
                )
                .map_err(MetaError::db("finding the file"))?
                .ok_or_else(|| MetaError::NotFound(name.to_string()))?;
            to_garbage(tx, row.get(0), From::Stored, "deleted")
        })
    }
}

/// Inserts an upload's part rows and reserves their bytes.
fn insert_parts(
    tx: &mut Transaction<'_>,
    file_id: i64,
    parts: &[PartTarget],
) -> Result<(), MetaError> {
    let idx: Vec<i16> = parts.iter().map(|p| p.idx as i16).collect();
    let nodes: Vec<&str> = parts.iter().map(|p| p.node.as_str()).collect();
    let copies: Vec<i64> = parts.iter().map(|p| p.copy).collect();
    let lens: Vec<i64> = parts.iter().map(|p| as_i64(p.len)).collect();
    tx.execute(
        "INSERT INTO parts (file_id, idx, node, copy, len)
         SELECT $1, * FROM unnest($2::int2[], $3::text[], $4::int8[], $5::int8[])",
        &[&file_id, &idx, &nodes, &copies, &lens],
    )
    .map_err(MetaError::db("inserting part rows"))?;
    let deltas: Vec<Delta<'_>> = parts
        .iter()
        .map(|p| Delta {
            node: &p.node,
            stored: 0,
            reserved: as_i64(p.len),
            garbage: 0,
        })
        .collect();
    adjust(tx, &deltas)
}

/// The name of upload `file_id` if it is still `writing` (row locked), else `UploadGone`.
fn writing_row(tx: &mut Transaction<'_>, file_id: i64) -> Result<String, MetaError> {
    let row = tx
        .query_opt(
            "SELECT name FROM files WHERE id = $1 AND state = 'writing' FOR UPDATE",
            &[&file_id],
        )
        .map_err(MetaError::db("reading the upload"))?;
    row.map(|r| r.get(0)).ok_or(MetaError::UploadGone(file_id))
}

/// The (node, len) of each part of a file.
fn own_parts(tx: &mut Transaction<'_>, file_id: i64) -> Result<Vec<(String, i64)>, MetaError> {
    let rows = tx
        .query(
            "SELECT node, len FROM parts WHERE file_id = $1",
            &[&file_id],
        )
        .map_err(MetaError::db("reading part rows"))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Records one garbage copy.
pub(crate) fn add_garbage(
    tx: &mut Transaction<'_>,
    copy: i64,
    node: &str,
    len: u64,
    reason: &str,
) -> Result<(), MetaError> {
    tx.execute(
        "INSERT INTO garbage (copy, node, len, reason) VALUES ($1, $2, $3, $4)
         ON CONFLICT (copy) DO NOTHING",
        &[&copy, &node, &as_i64(len), &reason],
    )
    .map_err(MetaError::db("recording garbage"))?;
    Ok(())
}

/// Turns every part of file `file_id` into garbage and removes the file row; returns the
/// garbage copy ids.
fn to_garbage(
    tx: &mut Transaction<'_>,
    file_id: i64,
    from: From,
    reason: &str,
) -> Result<Vec<i64>, MetaError> {
    let rows = tx
        .query(
            "INSERT INTO garbage (copy, node, len, reason)
             SELECT copy, node, len, $2 FROM parts WHERE file_id = $1
             ON CONFLICT (copy) DO NOTHING
             RETURNING copy, node, len",
            &[&file_id, &reason],
        )
        .map_err(MetaError::db("turning parts into garbage"))?;
    let moved: Vec<(i64, String, i64)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let deltas: Vec<Delta<'_>> = moved
        .iter()
        .map(|(_, node, len)| match from {
            From::Stored => Delta {
                node,
                stored: -len,
                reserved: 0,
                garbage: *len,
            },
            From::Reserved => Delta {
                node,
                stored: 0,
                reserved: -len,
                garbage: *len,
            },
        })
        .collect();
    adjust(tx, &deltas)?;
    tx.execute("DELETE FROM files WHERE id = $1", &[&file_id])
        .map_err(MetaError::db("removing the file row"))?;
    Ok(moved.into_iter().map(|(copy, _, _)| copy).collect())
}

impl Meta {
    /// The committed file `name` with its parts.
    pub fn lookup(&self, name: &str) -> Result<FileInfo, MetaError> {
        let mut conn = self.pool().get()?;
        let rows = conn
            .query(
                "SELECT f.id, f.size, f.checksum, extract(epoch FROM f.committed_at)::float8,
                        p.idx, p.node, n.addr, p.copy, p.len, p.crc, p.blocks
                 FROM files f JOIN parts p ON p.file_id = f.id JOIN nodes n ON n.id = p.node
                 WHERE f.name = $1 AND f.state = 'committed' ORDER BY p.idx",
                &[&name],
            )
            .map_err(MetaError::db("looking a file up"))?;
        let first = rows
            .first()
            .ok_or_else(|| MetaError::NotFound(name.to_string()))?;
        Ok(FileInfo {
            id: first.get(0),
            name: name.to_string(),
            size: first.get::<_, i64>(1).max(0) as u64,
            checksum: first.get(2),
            committed_at: first.get(3),
            parts: rows.iter().map(|r| part_info(r, 4)).collect(),
        })
    }

    /// Where part `idx` of file `file_id` is now (it may have moved since a lookup).
    pub fn part_now(&self, file_id: i64, idx: usize) -> Result<Option<PartInfo>, MetaError> {
        let mut conn = self.pool().get()?;
        let row = conn
            .query_opt(
                "SELECT p.idx, p.node, n.addr, p.copy, p.len, p.crc, p.blocks
                 FROM parts p JOIN nodes n ON n.id = p.node
                 WHERE p.file_id = $1 AND p.idx = $2 AND p.crc IS NOT NULL",
                &[&file_id, &(idx as i16)],
            )
            .map_err(MetaError::db("looking a part up"))?;
        Ok(row.map(|r| part_info(&r, 0)))
    }

    /// Up to `limit` committed files whose names start with `prefix` and sort after `after`.
    pub fn list(&self, prefix: &str, after: &str, limit: usize) -> Result<Listing, MetaError> {
        let pattern = format!("{}%", like_escape(prefix));
        let mut conn = self.pool().get()?;
        let rows = conn
            .query(
                "SELECT name, size, checksum, extract(epoch FROM committed_at)::float8
                 FROM files WHERE state = 'committed' AND name LIKE $1 AND name > $2
                 ORDER BY name LIMIT $3",
                &[&pattern, &after, &(limit as i64 + 1)],
            )
            .map_err(MetaError::db("listing files"))?;
        let mut files: Vec<(String, u64, String, f64)> = rows
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    r.get::<_, i64>(1).max(0) as u64,
                    r.get(2),
                    r.get(3),
                )
            })
            .collect();
        let truncated = files.len() > limit;
        files.truncate(limit);
        Ok(Listing { files, truncated })
    }
}

/// A part row read from columns `at..at + 7` (idx, node, addr, copy, len, crc, blocks).
fn part_info(row: &postgres::Row, at: usize) -> PartInfo {
    PartInfo {
        idx: row.get::<_, i16>(at).max(0) as usize,
        node: row.get(at + 1),
        addr: row.get(at + 2),
        copy: row.get(at + 3),
        len: row.get::<_, i64>(at + 4).max(0) as u64,
        crc: row.get::<_, Option<i64>>(at + 5).unwrap_or(0) as u32,
        blocks: decode_blocks(&row.get::<_, Option<Vec<u8>>>(at + 6).unwrap_or_default()),
    }
}

/// Escapes `LIKE` wildcards (the default escape character is `\`).
pub(crate) fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}
