//! Leases on a [`FileDb`]: taking items into the lease log, acking them, and putting them back
//! on the stack (release, expiry). The rules are in `docs/FORMAT.md`, "Leases".

use std::time::Duration;

use super::format::{Superblock, encode_record};
use super::io::FileIo;
use super::lease_log::{self, BATCH_BITS, Kind, MAX_BATCH, log_path};
use super::recovery::{damage, io_err};
use super::{FileDb, Handle};
use crate::db::lease::{DbLease, LeaseId};
use crate::db::lease::{LeaseTable, deadline_ms, now_ms};
use crate::error::DbError;

impl FileDb {
    /// The current state and the leases it holds, after putting the expired ones back.
    pub(super) fn leased_state(&self, h: &mut Handle) -> Result<(Superblock, LeaseTable), DbError> {
        let sb = self.current(h)?;
        let table = self.read_leases(h, sb)?;
        let expired = table.expired(now_ms());
        if expired.is_empty() {
            return Ok((sb, table));
        }
        self.return_leases(h, sb, table, &expired)
    }

    /// The lease log, opened (and its directory entry synced) on first use by this handle.
    fn log_io<'h>(&self, h: &'h mut Handle) -> Result<&'h dyn FileIo, DbError> {
        if h.log.is_none() {
            let path = log_path(&self.path);
            let io = self.vfs.open(&path).map_err(io_err("open", &path))?;
            self.vfs
                .sync_dir(&path)
                .map_err(io_err("sync the directory of", &path))?;
            h.log = Some(io);
        }
        match &h.log {
            Some(io) => Ok(&**io),
            None => Err(DbError::msg("the lease log is not open")),
        }
    }

    /// The leases state `sb` holds: its lease log replayed, read again on every call.
    pub(super) fn read_leases(
        &self,
        h: &mut Handle,
        sb: Superblock,
    ) -> Result<LeaseTable, DbError> {
        if sb.leases == 0 {
            return Ok(LeaseTable::default());
        }
        let path = log_path(&self.path);
        let mut bytes = vec![0u8; sb.leases as usize];
        match self.log_io(h)?.read_at(&mut bytes, 0) {
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(damage(
                &path,
                0,
                format!(
                    "the lease log is shorter than the {} bytes its stack file names",
                    sb.leases
                ),
            )),
            Err(e) => Err(DbError::io("read", &path, e)),
            Ok(()) => lease_log::replay(&bytes, &self.path),
        }
    }

    /// Appends `entries` to the log of state `sb` and syncs it; returns the new log length.
    /// Nothing names the entries until a slot with that length is committed.
    fn append_log(&self, h: &mut Handle, sb: Superblock, entries: &[u8]) -> Result<u32, DbError> {
        let path = log_path(&self.path);
        let len = u32::try_from(sb.leases as u64 + entries.len() as u64).map_err(|_| {
            DbError::msg("the lease log reached 4 GiB; ack or release leases so it can start over")
        })?;
        let io = self.log_io(h)?;
        io.write_at(entries, sb.leases as u64)
            .map_err(io_err("write", &path))?;
        io.sync().map_err(io_err("sync", &path))?;
        Ok(len)
    }

    /// The log length once `ids` end with `kind`: 0 when no lease stays held (the log starts
    /// over, nothing written), else the log with one entry per id appended and synced.
    fn end_leases(
        &self,
        h: &mut Handle,
        sb: Superblock,
        still_held: &LeaseTable,
        kind: Kind,
        ids: &[u64],
    ) -> Result<u32, DbError> {
        if still_held.is_empty() {
            return Ok(0);
        }
        let mut entries = Vec::new();
        for &id in ids {
            lease_log::encode(&mut entries, kind, id, 0, &[]);
        }
        self.append_log(h, sb, &entries)
    }

    /// The deadlines of the leases the file holds (epoch milliseconds), after putting the
    /// expired ones back.
    pub(super) fn lease_deadlines(&self) -> Result<Vec<u64>, DbError> {
        self.locked(|h| {
            let (_, table) = self.leased_state(h)?;
            Ok(table.iter().map(|(_, held)| held.deadline).collect())
        })
    }

    /// Leases up to `max` items off the top: one log append and sync, one slot and sync.
    pub(super) fn lease_top(&self, max: usize, ttl: Duration) -> Result<Vec<DbLease>, DbError> {
        let max = max.min(MAX_BATCH);
        if max == 0 {
            return Ok(Vec::new());
        }
        self.locked(|h| {
            let (sb, _) = self.leased_state(h)?;
            let (items, top) = self.read_newest(&*h.io, sb, max)?;
            if items.is_empty() {
                return Ok(Vec::new());
            }
            let first = (sb.op + 1).checked_mul(1 << BATCH_BITS).ok_or_else(|| {
                DbError::msg(
                    "the file has used up its 2^44 lease operations; move its items to a new file",
                )
            })?;
            let ids: Vec<u64> = LeaseTable::ids_for(first, items.len()).collect();
            let deadline = deadline_ms(now_ms(), ttl);
            let mut entries = Vec::new();
            for (&id, item) in ids.iter().zip(&items) {
                lease_log::encode(&mut entries, Kind::Lease, id, deadline, item);
            }
            let leases = self.append_log(h, sb, &entries)?;
            let after = sb.then(top, sb.count - items.len() as u64, leases);
            self.commit(h, sb, after)?;
            self.shrink(&*h.io, top);
            let leased = ids.into_iter().zip(items);
            Ok(leased
                .map(|(id, item)| DbLease {
                    id: LeaseId(id),
                    item,
                })
                .collect())
        })
    }

    /// Stores `items` (oldest first) already leased until `ttl` from now: one lease entry each,
    /// appended to the log and synced, then one slot, synced, with `top` and `count`
    /// unchanged. The same entries and commit as a lease of items that were on the stack.
    pub(super) fn store_leased(
        &self,
        items: &[&[u8]],
        ttl: Duration,
    ) -> Result<Vec<LeaseId>, DbError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        if items.len() > MAX_BATCH {
            return Err(DbError::msg(
                "a FileDb stores at most 2^20 leased items per call",
            ));
        }
        self.locked(|h| {
            let (sb, _) = self.leased_state(h)?;
            let first = (sb.op + 1).checked_mul(1 << BATCH_BITS).ok_or_else(|| {
                DbError::msg(
                    "the file has used up its 2^44 lease operations; move its items to a new file",
                )
            })?;
            // Oldest first, smallest id first: returned in id order, the newest ends on top.
            let ids: Vec<u64> = (first..first + items.len() as u64).collect();
            let deadline = deadline_ms(now_ms(), ttl);
            let mut entries = Vec::new();
            for (&id, item) in ids.iter().zip(items) {
                lease_log::encode(&mut entries, Kind::Lease, id, deadline, item);
            }
            let leases = self.append_log(h, sb, &entries)?;
            self.commit(h, sb, sb.then(sb.top, sb.count, leases))?;
            Ok(ids.into_iter().map(LeaseId).collect())
        })
    }

    /// Acks the held ones of `ids`; returns how many were not held.
    pub(super) fn ack_leases(&self, ids: &[LeaseId]) -> Result<usize, DbError> {
        self.locked(|h| {
            let (sb, mut table) = self.leased_state(h)?;
            let held: Vec<u64> = ids
                .iter()
                .filter_map(|id| table.remove(id.0).map(|_| id.0))
                .collect();
            if !held.is_empty() {
                let leases = self.end_leases(h, sb, &table, Kind::Ack, &held)?;
                self.commit(h, sb, sb.then(sb.top, sb.count, leases))?;
            }
            Ok(ids.len() - held.len())
        })
    }

    /// Puts the held ones of `ids` back on top; returns how many were not held.
    pub(super) fn release_leases(&self, ids: &[LeaseId]) -> Result<usize, DbError> {
        self.locked(|h| {
            let (sb, table) = self.leased_state(h)?;
            let mut held: Vec<u64> = ids
                .iter()
                .map(|id| id.0)
                .filter(|&id| table.contains(id))
                .collect();
            held.sort_unstable();
            held.dedup();
            if !held.is_empty() {
                self.return_leases(h, sb, table, &held)?;
            }
            Ok(ids.len() - held.len())
        })
    }

    /// Puts the leases `ids` (held, ascending) back on top, oldest first, and ends them in the
    /// log: the records (which name no parent state, so roll-forward never takes them),
    /// synced, then the slot, synced.
    pub(super) fn return_leases(
        &self,
        h: &mut Handle,
        sb: Superblock,
        mut table: LeaseTable,
        ids: &[u64],
    ) -> Result<(Superblock, LeaseTable), DbError> {
        let items: Vec<Vec<u8>> = ids
            .iter()
            .filter_map(|&id| table.remove(id))
            .map(|l| l.item)
            .collect();
        let leases = self.end_leases(h, sb, &table, Kind::Return, ids)?;
        let mut after = sb.then(sb.top, sb.count + items.len() as u64, leases);
        let mut buf = Vec::new();
        for item in &items {
            encode_record(&mut buf, 0, after.salt, item);
        }
        after.top += buf.len() as u64;
        if let Err(e) = h.io.write_at(&buf, sb.top) {
            return Err(self.undo(h, sb, after, "write", e));
        }
        if let Err(e) = h.io.sync() {
            return Err(self.undo(h, sb, after, "sync", e));
        }
        self.commit(h, sb, after)?;
        Ok((after, table))
    }
}
