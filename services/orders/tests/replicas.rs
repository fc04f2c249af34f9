//! Two replicas share the durable consumer (JetStream spreads the messages), and each serves
//! every order, not only those it ingested: how soon after the ack is measured; then one is
//! SIGKILLed and the survivor serves everything.

mod common;

use std::time::{Duration, Instant};

use common::{Sandbox, Service, wait_for};
use orders::generate::Generator;

/// Percentile of sorted `v` (nearest rank).
fn pct(v: &[f64], p: f64) -> f64 {
    let i = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[i.clamp(1, v.len()) - 1]
}

/// Publishes one order at a time and watches both replicas and the consumer's ack floor:
/// returns, per order, the time from the ack (the first moment the ack floor covers the
/// message) until BOTH replicas serve it (0 when both served it before the ack was seen),
/// in ms; the time the second replica served it after the first, in ms; and how often each
/// replica served first.
fn visibility_after_ack(
    sb: &Sandbox,
    replicas: [&Service; 2],
    n: u64,
) -> (Vec<f64>, Vec<f64>, [u64; 2]) {
    let consumer = format!("svc-{}", sb.name);
    let stream = sb.stream();
    let mut generator = Generator::new(51);
    let (mut lags, mut gaps) = (Vec::new(), Vec::new());
    let mut first_by = [0u64; 2];
    sb.jetstream(|js| async move {
        let s = js.get_stream(&stream).await.expect("stream");
        let mut consumer: async_nats::jetstream::consumer::PullConsumer =
            s.get_consumer(&consumer).await.expect("consumer");
        for i in 0..n {
            let order = generator.order(i);
            let uid = order.order_uid.clone();
            let body = serde_json::to_vec(&order).expect("json");
            let seq = js
                .publish(sb.subject(), body.into())
                .await
                .expect("publish")
                .await
                .expect("publish ack")
                .sequence;
            let path = format!("/orders/{uid}");
            let (mut acked, mut seen) = (None::<Instant>, [None::<Instant>; 2]);
            let deadline = Instant::now() + Duration::from_secs(30);
            while acked.is_none() || seen.iter().any(Option::is_none) {
                assert!(Instant::now() < deadline, "order {uid} not served by both");
                for (r, at) in replicas.iter().zip(seen.iter_mut()) {
                    if at.is_none() && r.get(&path).is_some_and(|(s, _)| s == 200) {
                        *at = Some(Instant::now());
                    }
                }
                if acked.is_none() {
                    let info = consumer.info().await.expect("consumer info");
                    if info.ack_floor.stream_sequence >= seq {
                        acked = Some(Instant::now());
                    }
                }
            }
            let (Some(acked), [Some(a), Some(b)]) = (acked, seen) else {
                unreachable!("the loop ends once all three are set")
            };
            first_by[usize::from(b < a)] += 1;
            let both = a.max(b);
            lags.push(both.saturating_duration_since(acked).as_secs_f64() * 1e3);
            gaps.push((both - a.min(b)).as_secs_f64() * 1e3);
        }
        (lags, gaps, first_by)
    })
}

#[test]
fn two_replicas_serve_every_order_and_one_survives_a_sigkill() {
    let sb = Sandbox::new("replicas");
    let args = ["--ack-wait-secs", "3", "--batch", "100"];
    let r1 = sb.start_service(&args);
    let r2 = sb.start_service(&args);
    r1.wait_ready();
    r2.wait_ready();

    let (mut lags, mut gaps, first_by) = visibility_after_ack(&sb, [&r1, &r2], 300);
    lags.sort_by(f64::total_cmp);
    gaps.sort_by(f64::total_cmp);
    let (p50, p99, max) = (pct(&lags, 50.0), pct(&lags, 99.0), pct(&lags, 100.0));
    println!(
        "replicas: served by both replicas after the ack, 300 orders one at a time: \
         p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms (first served by r1 {} times, by r2 {})",
        first_by[0], first_by[1]
    );
    println!(
        "replicas: second replica after the first: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        pct(&gaps, 50.0),
        pct(&gaps, 99.0),
        pct(&gaps, 100.0)
    );
    let ingested = [r1.stat("stored"), r2.stat("stored")];
    assert!(
        ingested.iter().all(|n| *n > 0),
        "both replicas must have ingested some: {ingested:?}"
    );
    // The bound asked for; the p50 only, since a 2-core machine shared with builds can stall
    // any process (the p99 and max are reported above).
    assert!(p50 < 100.0, "p50 {p50:.1} ms after the ack");

    // r1 is frozen (SIGSTOP) mid-ingest and only then killed, so it dies holding messages it
    // never acked whatever the scheduler did: either a batch in hand, or the pull request that
    // async-nats keeps outstanding, into which JetStream delivers part of the second half
    // published while r1 is frozen. (Killing at a polled moment could land when r1 had acked
    // all it had and the publisher was done: then nothing comes back.) Those messages go to r2
    // after the 3 s ack wait.
    let mut first_half = sb.publish_named("sent-a", 3_000, 150, Some(3_000), 52);
    wait_for(Duration::from_secs(60), "r1 busy ingesting", || {
        (r1.stat("stored") >= ingested[0] + 300).then_some(())
    });
    let r1 = r1.freeze();
    assert!(first_half.wait().expect("publisher").success());
    let mut second_half = sb.publish_named("sent-b", 3_000, 150, Some(3_000), 53);
    assert!(second_half.wait().expect("publisher").success());
    wait_for(
        Duration::from_secs(60),
        "r1's unacked to come back to r2",
        || (r2.metric("orders_messages_redelivered_total") > 0.0).then_some(()),
    );
    r1.kill();
    let mut sent = sb.sent_named("sent-a");
    sent.extend(sb.sent_named("sent-b"));
    wait_for(Duration::from_secs(120), "every message acked", || {
        sb.consumer_drained().then_some(())
    });
    r2.assert_serves(&sent);
    sb.assert_pg_holds(&sent);
    assert_eq!(sb.counts(), (6_300, 6_300), "rows vs distinct ids");
    r2.stop();
    println!("replicas: r1 frozen mid-ingest, then SIGKILLed; r2 serves all 6 300 orders");
}
