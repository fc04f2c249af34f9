//! SIGKILL mid-ingest: 10 000 valid orders and 1 000 junk messages, the service killed while
//! they stream in and restarted. Nothing is lost, nothing is stored twice, every junk message
//! is recorded exactly once, and a third process rebuilds the same cache from PostgreSQL.

mod common;

use std::time::Duration;

use common::{Sandbox, wait_for};

#[test]
fn sigkill_mid_ingest_loses_nothing_and_stores_nothing_twice() {
    let sb = Sandbox::new("crash");
    let first = sb.start_service(&["--ack-wait-secs", "3"]);
    first.wait_ready();
    let mut publisher = sb.publish(10_000, 1_000, Some(4_000), 13);

    wait_for(
        Duration::from_secs(60),
        "2 500 orders stored before the kill",
        || (first.stat("stored") >= 2_500).then_some(()),
    );
    first.kill();
    let (at_kill, _) = sb.counts();
    println!("crash: SIGKILL with {at_kill} of 10000 orders in PostgreSQL");
    assert!(
        (1..10_000).contains(&at_kill),
        "the kill must land mid-ingest, found {at_kill} rows"
    );

    let second = sb.start_service(&["--ack-wait-secs", "3"]);
    assert!(
        publisher.wait().expect("publisher").success(),
        "publisher failed"
    );
    let sent = sb.sent();
    assert_eq!(sent.len(), 10_000);
    wait_for(
        Duration::from_secs(120),
        "all orders and junk recorded",
        || (sb.counts().0 == 10_000 && sb.invalid_recorded() >= 1_000).then_some(()),
    );
    second.wait_ready();
    second.assert_serves(&sent);
    let redelivered = second.stat("duplicates");
    second.stop();

    let (rows, distinct) = sb.counts();
    assert_eq!((rows, distinct), (10_000, 10_000), "rows vs distinct ids");
    sb.assert_pg_holds(&sent);
    assert_eq!(
        sb.invalid_recorded(),
        1_000,
        "junk recorded on orders.invalid"
    );

    let third = sb.start_service(&[]);
    third.wait_ready();
    assert_eq!(
        third.stat("cached"),
        10_000,
        "cache rebuilt from PostgreSQL"
    );
    third.assert_serves(&sent);
    println!(
        "crash: 10000 served equal after SIGKILL + restart; {redelivered} redelivered orders \
         were already stored; 0 duplicate rows; 1000 invalid recorded"
    );
}

/// The worst moment: orders durable in PostgreSQL but not acked when the process dies. The
/// redeliveries must be absorbed by the primary key, and the new process must see them as
/// already stored (its cache, rebuilt from PostgreSQL, knows them).
#[test]
fn crash_between_durable_and_ack_is_absorbed_by_the_primary_key() {
    let sb = Sandbox::new("abort");
    let mut publisher = sb.publish(3_000, 0, None, 21);
    assert!(publisher.wait().expect("publisher").success());
    let mut doomed = sb.start_service(&["--ack-wait-secs", "2", "--abort-after-flushes", "2"]);
    let status = doomed.child.wait().expect("reap");
    assert!(
        !status.success(),
        "the service was to abort, it exited with {status}"
    );
    let (durable, _) = sb.counts();
    println!("abort: died after its 2nd flush, {durable} orders durable, that flush's unacked");
    assert!(durable > 0, "nothing reached PostgreSQL before the abort");

    let second = sb.start_service(&["--ack-wait-secs", "2"]);
    second.wait_ready();
    let sent = sb.sent();
    wait_for(Duration::from_secs(120), "every message acked", || {
        sb.consumer_drained().then_some(())
    });
    let redelivered = second.stat("duplicates");
    assert_eq!(sb.counts(), (3_000, 3_000), "rows vs distinct ids");
    assert!(
        redelivered > 0,
        "the orders of the unacked flush must come back and be recognised as stored"
    );
    sb.assert_pg_holds(&sent);
    second.assert_serves(&sent);
    second.stop();
    println!("abort: {redelivered} redelivered orders absorbed, 3000 rows, none twice");
}
