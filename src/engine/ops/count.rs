//! `Storage::len`: memory plus Db, asking the Db only when the storage does not know its count.

use crate::engine::core::Core;
use crate::engine::db_call::call_db;
use crate::error::Error;

/// Items the storage holds, memory plus Db, or `None` when the Db cannot count. Asks the Db
/// (one call, lock released) unless the storage already knows its count exactly.
pub(crate) fn len(core: &Core) -> Result<Option<u64>, Error> {
    let state = core.state.lock();
    if let Some(n) = state.known_len() {
        return Ok(Some(n));
    }
    let probe = state.begin_len_probe();
    drop(state);
    let Some(db_len) = call_db(|| core.db.item_count())? else {
        return Ok(None);
    };
    Ok(Some(core.state.lock().end_len_probe(
        probe,
        db_len,
        core.shared,
    )))
}
