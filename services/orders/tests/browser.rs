//! Headless Chromium (Debian's `chromium`) loads the page with `?id=`, the page's JS fetches
//! the order, and the test reads the rendered order back from the DOM.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Sandbox, wait_for};

/// The DOM after the page's scripts ran (virtual time lets the fetch finish).
fn dump_dom(url: &str) -> String {
    let profile = std::env::temp_dir().join(format!("orders-chromium-{}", common::free_port()));
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--dump-dom", url])
        .output()
        .expect("chromium is installed (services/orders/ci installs it)");
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("DOM is UTF-8")
}

fn field(dom: &str, name: &str) -> Option<String> {
    let marker = format!("data-field=\"{name}\">");
    let start = dom.find(&marker)? + marker.len();
    let end = dom[start..].find('<')? + start;
    Some(dom[start..end].replace("&amp;", "&"))
}

#[test]
fn page_renders_an_order_looked_up_by_id() {
    let sb = Sandbox::new("browser");
    let service = sb.start_service(&[]);
    service.wait_ready();
    let mut publisher = sb.publish(20, 0, None, 5);
    assert!(publisher.wait().expect("publisher").success());
    wait_for(Duration::from_secs(30), "20 orders stored", || {
        (service.stat("stored") >= 20).then_some(())
    });
    let order = sb.sent()[7].clone();
    let uid = order["order_uid"].as_str().expect("uid");

    let dom = dump_dom(&format!("http://127.0.0.1:{}/?id={uid}", service.port));
    let expect = |name: &str, value: &serde_json::Value| {
        let shown = field(&dom, name).unwrap_or_else(|| panic!("{name} not rendered:\n{dom}"));
        let want = value
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| value.to_string());
        assert_eq!(shown, want, "{name}");
    };
    expect("summary.order_uid", &order["order_uid"]);
    expect("summary.track_number", &order["track_number"]);
    expect("summary.date_created", &order["date_created"]);
    expect("delivery.name", &order["delivery"]["name"]);
    expect("delivery.city", &order["delivery"]["city"]);
    expect("payment.amount", &order["payment"]["amount"]);
    expect("payment.currency", &order["payment"]["currency"]);
    let items = order["items"].as_array().expect("items");
    assert_eq!(
        dom.matches("data-field=\"items.name\"").count(),
        items.len()
    );
    expect("items.brand", &items[0]["brand"]);
    expect("items.total_price", &items[0]["total_price"]);
    println!(
        "browser: order {uid} rendered with {} item row(s)",
        items.len()
    );

    let missing = dump_dom(&format!(
        "http://127.0.0.1:{}/?id=no-such-order",
        service.port
    ));
    assert!(
        missing.contains("No order with id no-such-order."),
        "unknown id message not shown:\n{missing}"
    );
    assert!(field(&missing, "summary.order_uid").is_none());
    service.stop();
}
