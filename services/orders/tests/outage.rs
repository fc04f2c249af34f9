//! PostgreSQL stopped for a few seconds during ingest: the service keeps taking orders into
//! the lifostore buffer (the cache shows only what PostgreSQL holds, so it does not grow),
//! and once the server is back everything lands.

mod common;

use std::time::{Duration, Instant};

use common::{Sandbox, env_url, sh, wait_for};

#[test]
fn postgres_outage_mid_ingest_loses_nothing() {
    let stop = env_url("LIFOSTORE_POSTGRES_STOP");
    let start = env_url("LIFOSTORE_POSTGRES_START");
    let sb = Sandbox::new("outage");
    let service = sb.start_service(&["--ack-wait-secs", "30"]);
    service.wait_ready();
    // 3 000 orders before the outage, 6 000 published while PostgreSQL is down: ingest must
    // take those into the buffer (however long the stop itself takes on a busy machine).
    let mut before = sb.publish_named("before", 3_000, 50, Some(1_500), 77);
    wait_for(Duration::from_secs(60), "500 orders stored", || {
        (service.stat("stored") >= 500).then_some(())
    });
    sh(&stop);
    let down_at = Instant::now();
    assert!(
        before.wait().expect("publisher").success(),
        "publisher failed"
    );
    let pushes = || service.stats()["lifostore"]["pushes"].as_u64().unwrap_or(0);
    let pushes_at_stop = pushes();
    let mut during = sb.publish_named("during", 6_000, 50, Some(1_500), 78);
    let pushes_in_outage = wait_for(
        Duration::from_secs(60),
        "ingest to go on into the buffer while PostgreSQL is down",
        || Some(pushes()).filter(|n| *n > pushes_at_stop),
    );
    // The outage lasts 3 s at least: a timed stop is what this test is about.
    std::thread::sleep(Duration::from_secs(3).saturating_sub(down_at.elapsed()));
    let stats = service.stats();
    let cached_in_outage = stats["cached"].as_u64().unwrap_or(0);
    let written = stats["lifostore"]["items_flushed"].as_u64().unwrap_or(0);
    sh(&start);
    println!("outage: {pushes_at_stop} pushed at stop, then {pushes_in_outage} while down");
    assert!(
        cached_in_outage <= written,
        "the cache must show only what reached PostgreSQL: {stats}"
    );

    assert!(
        during.wait().expect("publisher").success(),
        "publisher failed"
    );
    let mut sent = sb.sent_named("before");
    sent.extend(sb.sent_named("during"));
    wait_for(
        Duration::from_secs(120),
        "all 9 000 orders in PostgreSQL",
        || (sb.counts().0 == 9_000).then_some(()),
    );
    let stats = service.stats();
    assert!(
        stats["lifostore"]["db_failures"].as_u64().unwrap_or(0) > 0,
        "the outage was not seen by the storage: {stats}"
    );
    sb.assert_pg_holds(&sent);
    service.assert_serves(&sent);
    wait_for(Duration::from_secs(60), "every order acked", || {
        (service.stat("stored") >= 9_000).then_some(())
    });
    service.stop();
    println!("outage: 9000 of 9000 orders in PostgreSQL after a 3 s outage");
}
