//! The HTTP API against a real service: 503 while the cache loads, then lookups, newest ids,
//! errors as JSON, stats.

mod common;

use std::time::Duration;

use common::{Sandbox, wait_for};

/// 300 000 rows made in SQL, so the rebuild takes long enough to be seen loading.
const SEEDED: &str = "INSERT INTO orders (order_uid, date_created, customer_id, body)
    SELECT 'seed-' || g, '2020-01-01'::timestamptz + g * interval '1 second', 'c' || g,
           jsonb_build_object('order_uid', 'seed-' || g, 'n', g)
    FROM generate_series(1, 300000) AS g";

#[test]
fn http_api_answers_loading_then_orders() {
    let sb = Sandbox::new("api");
    let first = sb.start_service(&[]);
    first.wait_ready();
    first.stop();
    sb.pg().batch_execute(SEEDED).expect("seed rows");

    let service = sb.start_service(&[]);
    let (status, body) = wait_for(Duration::from_secs(30), "the first answer", || {
        service.get("/health")
    });
    assert_eq!((status, body.as_str()), (503, r#"{"status":"loading"}"#));
    let lookup = service.get("/orders/seed-1").expect("answer").0;
    let still_loading = service.get("/health").expect("answer").0 == 503;
    if still_loading {
        assert_eq!(lookup, 503, "lookups wait for the cache");
    }
    service.wait_ready();
    assert_eq!(service.stat("cached"), 300_000);

    let (status, body) = service.get("/orders/seed-42").expect("answer");
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).expect("json"),
        serde_json::json!({"order_uid": "seed-42", "n": 42})
    );
    let (status, body) = service.get("/orders/no-such-order").expect("answer");
    assert_eq!(status, 404);
    assert!(body.contains("\"error\""), "{body}");
    let (status, _) = service.get("/orders/bad%00id").expect("answer");
    assert_eq!(status, 400);

    let (status, body) = service.get("/orders?limit=3").expect("answer");
    assert_eq!(status, 200);
    let ids: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        ids["order_uids"],
        serde_json::json!(["seed-300000", "seed-299999", "seed-299998"])
    );
    assert_eq!(service.get("/orders?limit=0").expect("answer").0, 400);
    assert_eq!(service.get("/orders?limit=abc").expect("answer").0, 400);
    assert_eq!(service.get("/nope").expect("answer").0, 404);
    let (status, page) = service.get("/").expect("answer");
    assert_eq!(status, 200);
    assert!(page.contains("<title>Orders</title>"));
    let stats = service.stats();
    for key in [
        "received",
        "invalid",
        "stored",
        "redelivered",
        "cached",
        "lifostore",
    ] {
        assert!(stats.get(key).is_some(), "/stats lacks {key}: {stats}");
    }
    scrape_metrics(&service);
    service.stop();
}

/// `/metrics` in the Prometheus text format, with the key series: message counts, the cache,
/// lifostore's `Stats` and the request latency histogram (which counts the requests above).
fn scrape_metrics(service: &common::Service) {
    let text = service.metrics();
    for series in [
        "orders_messages_received_total",
        "orders_messages_invalid_total",
        "orders_orders_stored_total",
        "orders_messages_redelivered_total",
        "orders_orders_duplicate_total",
        "orders_lifostore_buffered_items",
        "orders_lifostore_oldest_unflushed_age_seconds",
        "orders_lifostore_db_write_rate_items_per_second",
        "orders_lifostore_dead_letters_total",
        "orders_flush_duration_seconds_count",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{series} "))),
            "/metrics lacks {series}:\n{text}"
        );
    }
    assert_eq!(service.metric("orders_cached_orders"), 300_000.0);
    // A handler times its request after it has sent the answer (the time includes the write),
    // so the client can ask for /metrics before the handler of its last lookup has counted
    // it: wait for the count, it is another thread's next step.
    let lookup_count = r#"orders_http_request_duration_seconds_count{route="order"}"#;
    wait_for(
        Duration::from_secs(10),
        "the three lookups above to be timed",
        || (service.metric(lookup_count) >= 3.0).then_some(()),
    );
    assert!(text.ends_with("# EOF\n"), "complete exposition");
}
