//! The lease contract every Db with native leases keeps, checked against one Db.

use std::time::Duration;

use lifostore::{CancelToken, Db, DbError, DbLease, DbLeases, Error, Storage};

const LONG: Duration = Duration::from_secs(60);

fn leases(db: &dyn Db) -> &dyn DbLeases {
    db.leases().expect("a Db with native leases")
}

fn items(leases: &[DbLease]) -> Vec<Vec<u8>> {
    leases.iter().map(|l| l.item.clone()).collect()
}

fn expired_count(r: Result<(), DbError>) -> usize {
    match r {
        Err(DbError::LeaseExpired { count }) => count,
        other => panic!("expected LeaseExpired, got {other:?}"),
    }
}

/// Runs every check on `db`, which must be empty. `ttl` is a lease short enough to wait out.
pub fn lease_contract(db: &dyn Db, ttl: Duration) {
    assert!(db.leases().is_some(), "a Db with native leases");
    hides_acks_and_releases(db);
    release_restores_order(db);
    release_goes_on_top(db);
    expiry_returns_and_late_ack_fails(db, ttl);
    expiry_goes_on_top(db, ttl);
    stored_leased_is_hidden_until_it_ends(db, ttl);
    assert_eq!(db.pop_batch(100).expect("drain"), Vec::<Vec<u8>>::new());
}

fn hides_acks_and_releases(db: &dyn Db) {
    let l = leases(db);
    db.push_batch(&[b"a", b"b", b"c"]).expect("push");
    let leased = l.pop_lease(2, LONG).expect("lease");
    assert_eq!(items(&leased), vec![b"c".to_vec(), b"b".to_vec()]);
    assert_ne!(leased[0].id, leased[1].id);
    // Both deadlines are told, about a ttl ahead (give or take the clocks' skew).
    let now = std::time::SystemTime::now();
    let held = l.held_deadlines().expect("deadlines");
    assert_eq!(held.len(), 2, "{held:?}");
    for at in held {
        let ahead = at.duration_since(now).unwrap_or_default();
        assert!(
            ahead > LONG / 2 && ahead <= LONG + Duration::from_secs(5),
            "{ahead:?}"
        );
    }
    // Leased items are hidden from pops and from other leases.
    assert_eq!(db.pop_batch(10).expect("pop"), vec![b"a".to_vec()]);
    assert!(l.pop_lease(5, LONG).expect("lease empty").is_empty());
    l.ack(&[leased[0].id]).expect("ack c");
    l.release(&leased[1..]).expect("release b");
    assert_eq!(
        db.pop().expect("pop"),
        Some(b"b".to_vec()),
        "released on top"
    );
    assert_eq!(db.pop().expect("pop"), None, "acked is gone for good");
    assert_eq!(expired_count(l.ack(&[leased[0].id])), 1, "ack twice");
    assert_eq!(expired_count(l.release(&leased[1..])), 1, "release twice");
}

fn release_restores_order(db: &dyn Db) {
    let l = leases(db);
    db.push_batch(&[b"1", b"2", b"3", b"4"]).expect("push");
    let first = l.pop_lease(2, LONG).expect("lease");
    db.push(b"5").expect("push above");
    let second = l.pop_lease(1, LONG).expect("lease");
    assert_eq!(items(&second), vec![b"5".to_vec()]);
    // A release with one stale id still releases the others.
    let mut both = first.clone();
    both.push(DbLease {
        id: lifostore::LeaseId(u64::MAX - 7),
        item: b"never leased".to_vec(),
    });
    assert_eq!(expired_count(l.release(&both)), 1);
    l.ack(&[second[0].id]).expect("ack 5");
    let all = db.pop_batch(10).expect("pop all");
    assert_eq!(
        all,
        vec![b"4".to_vec(), b"3".to_vec(), b"2".to_vec(), b"1".to_vec()]
    );
}

/// A released item goes back on top, above items pushed while it was leased.
fn release_goes_on_top(db: &dyn Db) {
    let l = leases(db);
    db.push_batch(&[b"a", b"b"]).expect("push");
    let leased = l.pop_lease(1, LONG).expect("lease b");
    db.push(b"c").expect("push c");
    l.release(&leased).expect("release b");
    let all = db.pop_batch(10).expect("pop all");
    assert_eq!(all, vec![b"b".to_vec(), b"c".to_vec(), b"a".to_vec()]);
}

/// An expired lease comes back on top too, above items pushed while it was leased; one that
/// expires and is then named by an ack or a release is back on top from then on, below what
/// is pushed afterwards.
fn expiry_goes_on_top(db: &dyn Db, ttl: Duration) {
    let l = leases(db);
    db.push_batch(&[b"a", b"b"]).expect("push");
    let leased = l.pop_lease(1, ttl).expect("lease b");
    db.push(b"c").expect("push c");
    // Waiting out a deadline: there is nothing to be woken by.
    std::thread::sleep(ttl * 3);
    let all = db.pop_batch(10).expect("pop all");
    assert_eq!(
        all,
        vec![b"b".to_vec(), b"c".to_vec(), b"a".to_vec()],
        "expired: back on top"
    );
    assert_eq!(expired_count(l.ack(&[leased[0].id])), 1, "late ack");
    db.push(b"x").expect("push");
    let leased = l.pop_lease(1, ttl).expect("lease x");
    std::thread::sleep(ttl * 3);
    assert_eq!(expired_count(l.ack(&[leased[0].id])), 1, "late ack");
    db.push(b"y").expect("push y after the late ack");
    let all = db.pop_batch(10).expect("pop all");
    assert_eq!(all, vec![b"y".to_vec(), b"x".to_vec()], "back when noticed");
}

/// `push_leased` stores items already leased: hidden from pops and leases, acked (gone),
/// released (back on top, in their order) or expired (back on top by itself), as leases
/// taken by `pop_lease` are; ids in the order of the items.
fn stored_leased_is_hidden_until_it_ends(db: &dyn Db, ttl: Duration) {
    let l = leases(db);
    db.push(b"a").expect("push a");
    let ids = l
        .push_leased(&[b"x", b"y", b"z"], LONG, 1)
        .expect("push leased");
    assert_eq!(ids.len(), 3);
    assert!(
        ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2],
        "{ids:?}"
    );
    assert_eq!(l.held_deadlines().expect("deadlines").len(), 3);
    let a = l.pop_lease(5, LONG).expect("lease");
    assert_eq!(
        items(&a),
        vec![b"a".to_vec()],
        "the stored leased items are hidden"
    );
    assert_eq!(db.pop().expect("pop"), None, "only leased items left");
    l.ack(&[a[0].id]).expect("ack a");
    db.push(b"b").expect("push b");
    l.ack(&[ids[1]]).expect("ack y");
    let back = |id| DbLease {
        id,
        item: Vec::new(),
    };
    l.release(&[back(ids[2]), back(ids[0])])
        .expect("release x, z");
    assert_eq!(
        db.pop_batch(10).expect("pop all"),
        vec![b"z".to_vec(), b"x".to_vec(), b"b".to_vec()],
        "released on top, the later item above"
    );
    assert_eq!(expired_count(l.ack(&[ids[1]])), 1, "acked is gone");
    // A short ttl: back on top by itself.
    let ids = l.push_leased(&[b"s"], ttl, 2).expect("push leased");
    db.push(b"c").expect("push c");
    // Waiting out a deadline: there is nothing to be woken by.
    std::thread::sleep(ttl * 3);
    assert_eq!(
        db.pop_batch(10).expect("pop all"),
        vec![b"s".to_vec(), b"c".to_vec()],
        "expired: back on top"
    );
    assert_eq!(expired_count(l.ack(&ids)), 1, "late ack");
    assert_eq!(l.push_leased(&[], LONG, 3).expect("nothing"), Vec::new());
}

/// Two clients of one shared Db (two processes, as far as the server can tell): `a` leases
/// the top item, `b` pushes above it, `a` releases it: `b`'s next pop gets it. The same when
/// `a` dies holding the lease (`a` is dropped): the item is back on top once it expires.
pub fn back_on_top_across_clients(a: Box<dyn Db>, b: &dyn Db, ttl: Duration) {
    let la = leases(&*a);
    b.push(b"A").expect("push A");
    let lease = la.pop_lease(1, LONG).expect("a leases A");
    b.push(b"B").expect("b pushes B");
    la.release(&lease).expect("a releases A");
    assert_eq!(
        b.pop().expect("pop"),
        Some(b"A".to_vec()),
        "released: on top"
    );
    assert_eq!(b.pop().expect("pop"), Some(b"B".to_vec()));
    b.push(b"C").expect("push C");
    let lease = la.pop_lease(1, ttl).expect("a leases C");
    assert_eq!(items(&lease), vec![b"C".to_vec()]);
    drop(a); // the holder dies
    b.push(b"D").expect("b pushes D");
    std::thread::sleep(ttl * 3);
    let all = b.pop_batch(10).expect("pop all");
    assert_eq!(all, vec![b"C".to_vec(), b"D".to_vec()], "expired: on top");
}

/// How a lease ends in [`back_on_top_through_a_storage`].
#[derive(Debug, Clone, Copy)]
enum Ending {
    Release,
    Drop,
    Expiry,
}

/// The sequence a storage must keep over `db`: lease A, push B, then release A, drop the
/// lease, or let its ttl pass: the next pop returns A, then B. A is leased from the Db (flushed
/// first: a native lease) and from memory. The expiry case waits out the ttl: a pop that
/// begins after the deadline finds the item back on top whatever the flusher did.
///
/// A round only judges what the real-time order decides: if the release or drop, or the push
/// of B in the expiry case, ended later than one ttl after the lease call began (a thread
/// descheduled that long), the lease may have expired first, with B then rightly on top; such
/// a round is drained and run again (at most 20 times).
pub fn back_on_top_through_a_storage<D: Db + 'static>(db: D) {
    let ttl = Duration::from_millis(300);
    let s = Storage::builder().lease_ttl(ttl).build(db).expect("build");
    let t = CancelToken::new();
    for from_db in [true, false] {
        for ending in [Ending::Release, Ending::Drop, Ending::Expiry] {
            let case = format!(
                "{ending:?}, leased from the {}",
                if from_db { "Db" } else { "memory" }
            );
            let decided = (0..20).any(|_| back_on_top_round(&s, &t, from_db, ending, &case));
            assert!(decided, "{case}: 20 rounds, each descheduled past the ttl");
        }
    }
    s.close().expect("close");
}

/// One round of [`back_on_top_through_a_storage`]; false if the timing left it undecided.
fn back_on_top_round<D: Db + 'static>(
    s: &Storage<D>,
    t: &CancelToken,
    from_db: bool,
    ending: Ending,
    case: &str,
) -> bool {
    let ttl = Duration::from_millis(300);
    s.push(t, "A").expect("push A");
    if from_db {
        s.flush(t).expect("flush A to the Db");
    }
    let leased_at = std::time::Instant::now();
    let lease = s.pop_lease(t).expect("lease A");
    assert_eq!(&*lease, b"A", "{case}");
    s.push(t, "B").expect("push B");
    let late = match ending {
        Ending::Release => {
            lease.release();
            None
        }
        Ending::Drop => {
            drop(lease);
            None
        }
        Ending::Expiry => Some(lease),
    };
    if leased_at.elapsed() >= ttl {
        // Undecided: drain A and B (in whatever order) and any late lease.
        drop(late);
        let mut left = vec![s.pop(t).expect("pop"), s.pop(t).expect("pop")];
        left.sort();
        assert_eq!(
            left,
            vec![b"A".to_vec(), b"B".to_vec()],
            "{case}: undecided round"
        );
        return false;
    }
    if late.is_some() {
        std::thread::sleep(ttl + Duration::from_millis(20));
    }
    assert_eq!(s.pop(t).expect("pop"), b"A", "{case}: A is back on top");
    assert_eq!(s.pop(t).expect("pop"), b"B", "{case}");
    if let Some(lease) = late {
        assert!(matches!(lease.ack(), Err(Error::LeaseExpired)), "{case}");
    }
    assert_eq!(s.try_pop().expect("try_pop"), None, "{case}: nothing else");
    true
}

fn expiry_returns_and_late_ack_fails(db: &dyn Db, ttl: Duration) {
    let l = leases(db);
    db.push_batch(&[b"low", b"x"]).expect("push");
    let short = l.pop_lease(1, ttl).expect("lease");
    assert_eq!(items(&short), vec![b"x".to_vec()]);
    let other = l.pop_lease(1, LONG).expect("lease low");
    assert_eq!(items(&other), vec![b"low".to_vec()]);
    // Waiting out a deadline: there is nothing to be woken by.
    std::thread::sleep(ttl * 3);
    let again = l.pop_lease(5, LONG).expect("lease again");
    assert_eq!(
        items(&again),
        vec![b"x".to_vec()],
        "expired lease returns; long one stays"
    );
    let err = l.ack(&[short[0].id]).expect_err("late ack");
    assert!(err.to_string().contains("longer ttl"), "{err}");
    l.ack(&[again[0].id, other[0].id]).expect("ack");
}

/// Figures, not assertions: items per second through `db` taking `batch` items per call,
/// popping (`pop_batch`) against leasing then acking (`pop_lease` + `ack`), alternated five
/// times in the same run; returns the medians (pop, lease+ack).
pub fn lease_rates(db: &dyn Db, batch: usize, rounds: usize) -> (f64, f64) {
    let l = leases(db);
    let item = [0x42u8; 100];
    let items: Vec<&[u8]> = (0..batch * rounds).map(|_| &item[..]).collect();
    let (mut pops, mut leases) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        db.push_batch(&items).expect("fill");
        let t = std::time::Instant::now();
        for _ in 0..rounds {
            assert_eq!(db.pop_batch(batch).expect("pop").len(), batch);
        }
        pops.push((batch * rounds) as f64 / t.elapsed().as_secs_f64());
        db.push_batch(&items).expect("fill");
        let t = std::time::Instant::now();
        for _ in 0..rounds {
            let got = l.pop_lease(batch, LONG).expect("lease");
            assert_eq!(got.len(), batch);
            let ids: Vec<_> = got.iter().map(|l| l.id).collect();
            l.ack(&ids).expect("ack");
        }
        leases.push((batch * rounds) as f64 / t.elapsed().as_secs_f64());
    }
    (median(pops), median(leases))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
