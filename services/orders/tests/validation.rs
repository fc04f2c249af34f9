//! Validation and the buffer record format, without servers: every generated order passes and
//! round-trips, every kind of junk is refused with its reason, and the limits sit where stated.

use orders::generate::{Generator, JUNK_KINDS};
use orders::order::{Invalid, MAX_ITEMS, MAX_STRING_BYTES, Order};
use orders::record;

fn order_value(seed: u64) -> serde_json::Value {
    serde_json::to_value(Generator::new(seed).order(0)).expect("serializes")
}

fn parse_value(v: &serde_json::Value) -> Result<orders::order::ValidOrder, Invalid> {
    Order::parse(v.to_string().as_bytes())
}

#[test]
fn generated_orders_are_valid_and_round_trip() {
    let mut generator = Generator::new(3);
    for i in 0..500 {
        let order = generator.order(i);
        let bytes = serde_json::to_vec(&order).expect("serializes");
        let valid = Order::parse(&bytes).expect("generated order is valid");
        assert_eq!(valid.order, order);
        let sent: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        let stored: serde_json::Value = serde_json::from_slice(&valid.json).expect("json");
        assert_eq!(stored, sent, "stored JSON equals the sent JSON");
    }
}

#[test]
fn every_junk_kind_is_rejected_with_a_reason() {
    let mut generator = Generator::new(9);
    for i in 0..(JUNK_KINDS as u64 * 3) {
        let junk = generator.junk(i);
        let err = Order::parse(&junk).expect_err("junk must be invalid");
        assert!(!err.to_string().is_empty());
    }
}

#[test]
fn missing_unknown_and_mistyped_fields_are_shape_errors() {
    let mut v = order_value(1);
    v.as_object_mut().expect("object").remove("locale");
    assert!(matches!(parse_value(&v), Err(Invalid::Shape(m)) if m.contains("locale")));
    let mut v = order_value(1);
    v["extra"] = 1.into();
    assert!(matches!(parse_value(&v), Err(Invalid::Shape(m)) if m.contains("extra")));
    let mut v = order_value(1);
    v["payment"]["amount"] = 1.5.into();
    assert!(matches!(parse_value(&v), Err(Invalid::Shape(_))));
}

#[test]
fn limits_sit_exactly_where_documented() {
    let mut v = order_value(2);
    v["delivery"]["address"] = "a".repeat(MAX_STRING_BYTES).into();
    assert!(parse_value(&v).is_ok());
    v["delivery"]["address"] = "a".repeat(MAX_STRING_BYTES + 1).into();
    let err = parse_value(&v).expect_err("too long");
    assert!(err.to_string().contains("delivery.address"), "{err}");

    let item = v["items"][0].clone();
    let mut v = order_value(2);
    v["items"] = vec![item.clone(); MAX_ITEMS].into();
    assert!(parse_value(&v).is_ok());
    v["items"] = vec![item; MAX_ITEMS + 1].into();
    assert!(matches!(parse_value(&v), Err(Invalid::Field { field, .. }) if field == "items"));
    v["items"] = serde_json::json!([]);
    assert!(parse_value(&v).is_err(), "an order has at least one item");

    let mut v = order_value(2);
    v["items"][0]["price"] = (-1).into();
    assert!(
        matches!(parse_value(&v), Err(Invalid::Field { field, .. }) if field == "items[0].price")
    );
    let mut v = order_value(2);
    v["order_uid"] = "a b".into();
    assert!(parse_value(&v).is_err(), "ids are URL-safe");
    let mut v = order_value(2);
    v["date_created"] = "1969-12-31T23:59:59Z".into();
    assert!(parse_value(&v).is_err());
    let mut v = order_value(2);
    v["date_created"] = "2021-11-26T06:22:19+03:00".into();
    assert!(parse_value(&v).is_ok(), "offsets are fine");
}

#[test]
fn oversized_messages_are_refused_before_parsing() {
    let big = vec![b' '; 10 << 20];
    assert!(matches!(Order::parse(&big), Err(Invalid::TooLarge { len, .. }) if len == 10 << 20));
}

#[test]
fn records_round_trip_and_truncation_is_detected() {
    let order = Generator::new(4).order(11);
    let valid = Order::parse(&serde_json::to_vec(&order).expect("json")).expect("valid");
    let bytes = record::encode(&valid, 1 << 40);
    let r = record::decode(&bytes).expect("decodes");
    assert_eq!(r.seq, 1 << 40);
    assert_eq!(r.uid, order.order_uid);
    assert_eq!(r.customer, order.customer_id);
    assert_eq!(r.created, valid.created);
    assert_eq!(r.json.as_bytes(), valid.json.as_slice());
    for cut in [0, 1, 7, 9, 13, 20] {
        assert!(record::decode(&bytes[..cut]).is_err(), "cut at {cut}");
    }
}
