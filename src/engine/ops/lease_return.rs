//! Returning leases on top: one rule on every path, a released, dropped or expired item is
//! back **on top**, the next item a pop returns, above everything buffered in memory.
//!
//! Items the storage holds (memory leases, and items taken from a Db without leases) go back
//! under the lock (`State::expire_leases`, `State::end_held_lease`). An item a native Db holds
//! is Db work: the Db can only put it on top of the Db, and the items buffered in memory are
//! above the Db's top, so they are written first and the Db's release follows inside the same
//! writer role ([`write_then_release`]). A plain Db release would put the item on top of the
//! Db but under every item buffered in memory, which pops take first. The Db holds a native
//! lease a margin longer than the storage does ([`db_lease_ttl`]), so while the process lives
//! the storage returns it first; the Db's own deadline only matters if the process dies
//! holding the lease.

use std::time::{Duration, Instant};

use crate::db::DbLease;
use crate::engine::core::{Core, Signal};
use crate::engine::db_call::call_db;
use crate::engine::ops::write::{dead_letter, write_batch_then};
use crate::engine::state::State;
use crate::error::DbError;
use crate::sync::MutexGuard;

/// The ttl of a lease: the builder's `lease_ttl`, or one window.
pub(crate) fn db_ttl(core: &Core) -> Duration {
    core.lease_ttl.unwrap_or(core.cfg.max_unflushed_age)
}

/// How long a native Db holds a lease that the storage holds for `left` more, of a lease of
/// `ttl` in all: longer than the storage does, by a quarter of `ttl` (at least 1 s), so that
/// the storage, while its process lives, always returns the item itself (on top of everything
/// it buffers, [`write_then_release`]) before the Db would (on top of the Db only). The margin
/// covers a storage that is late: a flusher descheduled, a write in flight to wait for. Only
/// if the process died holding the lease does the Db return the item, this much later. (A
/// lease taken from memory and written to the Db later gets the same margin: the contract's
/// "the lease's deadline plus a quarter of the ttl".)
pub(crate) fn db_lease_ttl(left: Duration, ttl: Duration) -> Duration {
    left.saturating_add((ttl / 4).max(Duration::from_secs(1)))
}

/// Returns the native leases `keys` that are still held (`expiry`: their deadline passed; else
/// a release) on top of everything; `None` if none was held any more, else the Db release's
/// outcome. While the return is in flight the leases stay in the table, marked: an ack or
/// another return of them waits for the outcome.
///
/// Once no write is in flight, the leases are claimed and every buffered item is taken into
/// one batch in the same critical section (that instant is where the release takes effect:
/// items pushed afterwards are newer); the Db's release follows the write inside the writer
/// role ([`write_batch_then`]), so no later item can be written between the two, and a pop
/// finding memory empty waits for the landing, as for any batch in flight. If the write fails
/// (some items stay buffered), releasing now would put the item under them: the lease stays
/// with the Db instead, in the table until the Db's own deadline, as after a failed release.
pub(crate) fn write_then_release<'a>(
    core: &'a Core,
    mut state: MutexGuard<'a, State>,
    keys: &[u64],
    expiry: bool,
) -> (MutexGuard<'a, State>, Option<Result<(), DbError>>) {
    let claimed = loop {
        if !state.is_writing()
            && let Some(claimed) = state.claim_native_leases(keys)
        {
            break claimed;
        }
        state = core.sleep(Signal::Landed, state, None);
    };
    if claimed.is_empty() {
        return (state, None);
    }
    let n = state.buffered();
    let leases: Vec<DbLease> = claimed
        .iter()
        .map(|&(_, id)| DbLease {
            id,
            item: Vec::new(), // native Dbs release by id
        })
        .collect();
    let (mut state, written, released, poison) = write_batch_then(core, state, n, |written| {
        let all_stored = written.error.is_none();
        all_stored.then(|| call_db(|| release(core, &leases)))
    });
    let answer = match (written, released) {
        (_, Some(Ok(()) | Err(DbError::LeaseExpired { .. }))) => Ok(()),
        (_, Some(Err(e))) | (Err(e), None) => Err(e),
        (Ok(()), None) => Err(DbError::msg("the write before the release did not finish")),
    };
    let whom = state.settle_native_leases(&claimed, answer.is_ok(), expiry);
    core.wake_up(&mut state, whom);
    if !poison.is_empty() {
        state = dead_letter(core, state, poison);
    }
    (state, Some(answer))
}

/// The Db's release of `leases` (the Db has leases: it issued them).
fn release(core: &Core, leases: &[DbLease]) -> Result<(), DbError> {
    match core.db.leases() {
        Some(db) => db.release(leases),
        None => Err(DbError::msg("the database stopped offering leases")),
    }
}

/// Returns the leases past their deadline before a taking call looks at memory, so a call
/// that begins after a lease's deadline finds its item back on top (the flusher does the same
/// when it wakes, but may wake late on a busy machine). Items the storage holds go back under
/// the lock; native Db leases take Db calls ([`write_then_release`]), during which the lock is
/// released and taken again.
///
/// A lease past its deadline whose item is being written to the Db, still leased
/// (`ops::lease_to_db`), is skipped here: only the write's outcome says whether the Db holds
/// the item. The taking walk waits for that landing first (`take::take_waiting`), then this
/// returns the lease, a native one by then or still here, like any other past its deadline.
pub(crate) fn return_due<'a>(
    core: &'a Core,
    mut state: MutexGuard<'a, State>,
) -> MutexGuard<'a, State> {
    if !state.lease_due() {
        return state;
    }
    let (whom, native) = state.expire_leases(Instant::now());
    core.wake_up(&mut state, whom);
    if native.is_empty() {
        return state;
    }
    write_then_release(core, state, &native, true).0
}

/// Returns the native leases `keys` (past their deadline) on top, as a release does: the
/// flusher's, and `Storage::expire_leases_now`'s.
pub(crate) fn return_native<'a>(
    core: &'a Core,
    state: MutexGuard<'a, State>,
    keys: &[u64],
) -> MutexGuard<'a, State> {
    write_then_release(core, state, keys, true).0
}
