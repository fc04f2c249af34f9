//! One winner per `order_uid`, chosen by the stream: of several copies of an id (same id,
//! other content), the one with the lowest JetStream stream sequence is what PostgreSQL holds
//! and what GET serves, whatever the number of workers and across a crash; and GET never
//! serves a copy that later loses.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Sandbox, env_url, sh, wait_for};
use orders::generate::Generator;
use serde_json::Value;

/// Sets its flag when dropped.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A copy of `order` with the same id and other content.
fn near_duplicate(order: &Value, k: usize) -> Value {
    let mut copy = order.clone();
    copy["customer_id"] = Value::from(format!("copy-{k}"));
    copy["track_number"] = Value::from(format!("COPY{k}"));
    copy
}

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("json")
}

/// 3 000 orders and 150 near duplicates, each 1 to 3 000 messages after its original; half
/// published before the service starts (a backlog both workers split), half while it runs,
/// in batches of 50 so the two workers interleave, and INSERTs of 20 rows, so that the
/// lifostore flusher (newest first) often writes a copy before its original. A watcher keeps
/// asking for the duplicated ids meanwhile: a copy must never be served.
#[test]
fn near_duplicates_lose_to_the_first_copy_with_two_workers() {
    let sb = Sandbox::new("neardup");
    let mut generator = Generator::new(31);
    let originals: Vec<Value> = (0..3_000)
        .map(|i| serde_json::to_value(generator.order(i)).expect("order"))
        .collect();
    let mut rng = fastrand::Rng::with_seed(31);
    let mut slots: Vec<Vec<Value>> = originals.iter().map(|o| vec![o.clone()]).collect();
    slots.resize(6_001, Vec::new());
    let mut duplicated = Vec::new();
    for k in 0..150 {
        let i = k * 20;
        let distance = if k % 10 == 0 { 1 } else { rng.usize(1..=3_000) };
        slots[i + distance].push(near_duplicate(&originals[i], k));
        duplicated.push(originals[i]["order_uid"].as_str().expect("uid").to_string());
    }
    let messages: Vec<Vec<u8>> = slots.iter().flatten().map(bytes).collect();
    let (backlog, live) = messages.split_at(messages.len() / 2);
    sb.publish_raw(backlog);

    let service = sb.start_service(&["--workers", "2", "--batch", "50", "--db-batch", "20"]);
    service.wait_ready();
    let copies_served = AtomicBool::new(false);
    let done = AtomicBool::new(false);
    let originals_by_id: HashMap<&str, &Value> = originals
        .iter()
        .map(|o| (o["order_uid"].as_str().expect("uid"), o))
        .collect();
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                for uid in &duplicated {
                    if let Some(served) = service.served(uid)
                        && Some(&&served) != originals_by_id.get(uid.as_str())
                    {
                        eprintln!("neardup: {uid} served as {served}");
                        copies_served.store(true, Ordering::Relaxed);
                    }
                }
            }
        });
        // Ends the watcher however this part ends (a failed assertion included).
        let _stop_watching = SetOnDrop(&done);
        sb.publish_raw(live);
        wait_for(Duration::from_secs(120), "every message acked", || {
            sb.consumer_drained().then_some(())
        });
        service.assert_serves(&originals);
    });
    assert!(
        !copies_served.load(Ordering::Relaxed),
        "a near duplicate was served at some point"
    );
    assert_eq!(sb.counts(), (3_000, 3_000), "rows vs distinct ids");
    sb.assert_pg_holds(&originals);
    // Each copy either changed nothing (its original was stored first) or was stored first
    // and then replaced by its original (one replaced row); redeliveries only add to the
    // first count.
    let (unchanged, replaced) = (service.stat("duplicates"), service.stat("replaced"));
    assert!(
        unchanged + replaced >= 150,
        "each of the 150 copies changed nothing or was replaced by its original: \
         {unchanged} unchanged, {replaced} replaced"
    );
    assert!(replaced <= 150, "only copies are replaced: {replaced}");
    service.stop();
    println!(
        "neardup: 150 near duplicates over 3000 orders, 2 workers: 0 won, 0 ever served \
         ({unchanged} writes changed nothing, {replaced} copies stored first were replaced)"
    );
}

/// The crash of issue 24: PostgreSQL down, the original published and taken by the service
/// (not durable, not acked), the service SIGKILLed, a second copy published, everything
/// restarted. JetStream hands the second copy over at once and the original only after
/// ack-wait (10 s): PostgreSQL stores the copy first, then the original replaces it. GET must
/// never serve the copy, and in the end serves the original, which PostgreSQL holds.
#[test]
fn after_a_crash_the_original_wins_over_a_copy_stored_first() {
    let stop = env_url("LIFOSTORE_POSTGRES_STOP");
    let start = env_url("LIFOSTORE_POSTGRES_START");
    let sb = Sandbox::new("reorder");
    let original = serde_json::to_value(Generator::new(41).order(0)).expect("order");
    let copy = near_duplicate(&original, 1);
    let uid = original["order_uid"].as_str().expect("uid").to_string();

    let first = sb.start_service(&["--ack-wait-secs", "10"]);
    first.wait_ready();
    sh(&stop);
    sb.publish_raw(&[bytes(&original)]);
    wait_for(Duration::from_secs(30), "the original received", || {
        (first.stat("received") >= 1).then_some(())
    });
    assert_eq!(first.served(&uid), None, "not durable: not served");
    first.kill();
    sb.publish_raw(&[bytes(&copy)]);
    sh(&start);

    let second = sb.start_service(&[]);
    second.wait_ready();
    let mut copy_stored_first = false;
    let served = wait_for(Duration::from_secs(60), "the order served", || {
        copy_stored_first |= sb.pg_body(&uid).as_ref() == Some(&copy);
        second.served(&uid)
    });
    assert_eq!(served, original, "GET serves the original");
    assert!(
        copy_stored_first,
        "the copy was to be stored before the original's redelivery (else this test did not \
         test the reorder)"
    );
    wait_for(Duration::from_secs(60), "both copies acked", || {
        sb.consumer_drained().then_some(())
    });
    assert_eq!(
        sb.pg_body(&uid),
        Some(original.clone()),
        "PostgreSQL holds it"
    );
    assert_eq!(
        second.served(&uid),
        Some(original),
        "and GET still serves it"
    );
    second.stop();
    println!(
        "reorder: the copy was stored first, the original replaced it; GET never served the copy"
    );
}
