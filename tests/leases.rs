//! Db-level leases on the embedded backends (MemDb, FileDb); the server backends run the same
//! contract in `tests/backends.rs`.

use std::time::Duration;

use lifostore::{Db, MemDb};

mod common;
use common::leases::lease_contract;

#[test]
fn memdb_keeps_the_lease_contract() {
    lease_contract(&MemDb::new(), Duration::from_millis(50));
}

/// A Db with only push and pop gets the documented fallback: leasing pops, ack does nothing,
/// release pushes back, nothing is hidden or returned by the Db itself.
#[test]
fn a_db_without_native_leases_gets_the_fallback() {
    let db = MemDb::new().single_item_only();
    struct Plain<'a>(&'a MemDb);
    impl Db for Plain<'_> {
        fn push(&self, data: &[u8]) -> Result<(), lifostore::DbError> {
            self.0.push(data)
        }
        fn pop(&self) -> Result<Option<Vec<u8>>, lifostore::DbError> {
            self.0.pop()
        }
    }
    let plain = Plain(&db);
    assert!(!plain.native_leases());
    plain.push_batch(&[b"a", b"b", b"c"]).expect("push");
    let leased = plain.pop_lease(2, Duration::from_millis(1)).expect("lease");
    assert_eq!(
        db.snapshot(),
        vec![b"a".to_vec()],
        "the fallback pops at once"
    );
    plain.release(&leased).expect("release");
    assert_eq!(
        db.snapshot(),
        vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
    );
    let leased = plain.pop_lease(1, Duration::from_millis(1)).expect("lease");
    plain.ack(&[leased[0].id]).expect("ack is a no-op");
    assert_eq!(db.len(), 2);
}
