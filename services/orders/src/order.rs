//! The order message: typed structs, parsed with serde, and the limits a valid order keeps.
//!
//! Parsing is strict: every field is required, no unknown field is accepted, integers must be
//! non-negative 64-bit integers, strings have a length limit and no NUL character (PostgreSQL
//! stores neither NUL in `text` nor `\u0000` in `jsonb`, so such an order could never be
//! written). What passes [`Order::parse`] is exactly what the service stores and serves.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Largest message accepted, in bytes; larger ones are rejected before any parsing.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Longest string field, in bytes.
pub const MAX_STRING_BYTES: usize = 256;
/// Longest `order_uid`, in bytes.
pub const MAX_UID_BYTES: usize = 64;
/// Most items in one order.
pub const MAX_ITEMS: usize = 100;

/// Why a message is not a valid order. The message is shown to operators on `orders.invalid`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// The message is larger than [`MAX_MESSAGE_BYTES`].
    #[error("message of {len} bytes exceeds the limit of {max} bytes; send orders one per message")]
    TooLarge {
        /// The message's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The message is not JSON of the order's shape (syntax, missing or unknown field, type).
    #[error("not an order: {0}; send a JSON object with every order field")]
    Shape(String),
    /// A field is present with the right type but a value out of bounds.
    #[error("field {field}: {problem}")]
    Field {
        /// The field's path, e.g. `items[3].name`.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
}

/// A delivery address and contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Delivery {
    pub name: String,
    pub phone: String,
    pub zip: String,
    pub city: String,
    pub address: String,
    pub region: String,
    pub email: String,
}

/// The payment of an order; amounts in the currency's minor unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Payment {
    pub transaction: String,
    pub request_id: String,
    pub currency: String,
    pub provider: String,
    pub amount: i64,
    /// Unix seconds.
    pub payment_dt: i64,
    pub bank: String,
    pub delivery_cost: i64,
    pub goods_total: i64,
    pub custom_fee: i64,
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Item {
    pub chrt_id: i64,
    pub track_number: String,
    pub price: i64,
    pub rid: String,
    pub name: String,
    pub sale: i64,
    pub size: String,
    pub total_price: i64,
    pub nm_id: i64,
    pub brand: String,
    pub status: i64,
}

/// An order, as published on the `orders` subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Order {
    pub order_uid: String,
    pub track_number: String,
    pub entry: String,
    pub delivery: Delivery,
    pub payment: Payment,
    pub items: Vec<Item>,
    pub locale: String,
    pub internal_signature: String,
    pub customer_id: String,
    pub delivery_service: String,
    pub shardkey: String,
    pub sm_id: i64,
    /// RFC 3339.
    pub date_created: String,
    pub oof_shard: String,
}

/// A valid order with the values the database indexes, and its canonical JSON.
#[derive(Debug, Clone)]
pub struct ValidOrder {
    /// The parsed order.
    pub order: Order,
    /// `date_created`, parsed.
    pub created: DateTime<Utc>,
    /// The order serialized again: what is stored and served.
    pub json: Vec<u8>,
}

impl Order {
    /// Parses and validates one message.
    pub fn parse(bytes: &[u8]) -> Result<ValidOrder, Invalid> {
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(Invalid::TooLarge {
                len: bytes.len(),
                max: MAX_MESSAGE_BYTES,
            });
        }
        let order: Order =
            serde_json::from_slice(bytes).map_err(|e| Invalid::Shape(e.to_string()))?;
        let created = order.check()?;
        let json = serde_json::to_vec(&order).map_err(|e| Invalid::Shape(e.to_string()))?;
        Ok(ValidOrder {
            order,
            created,
            json,
        })
    }

    /// Checks every bound; returns the parsed `date_created`.
    fn check(&self) -> Result<DateTime<Utc>, Invalid> {
        check_uid(&self.order_uid)?;
        for (field, value) in [
            ("track_number", &self.track_number),
            ("entry", &self.entry),
            ("locale", &self.locale),
            ("internal_signature", &self.internal_signature),
            ("customer_id", &self.customer_id),
            ("delivery_service", &self.delivery_service),
            ("shardkey", &self.shardkey),
            ("date_created", &self.date_created),
            ("oof_shard", &self.oof_shard),
        ] {
            check_str(field, value)?;
        }
        check_int("sm_id", self.sm_id)?;
        self.delivery.check()?;
        self.payment.check()?;
        if self.items.is_empty() || self.items.len() > MAX_ITEMS {
            return Err(field_error(
                "items",
                format!(
                    "has {} items, an order has 1 to {MAX_ITEMS}",
                    self.items.len()
                ),
            ));
        }
        for (i, item) in self.items.iter().enumerate() {
            item.check(i)?;
        }
        parse_date(&self.date_created)
    }
}

impl Delivery {
    fn check(&self) -> Result<(), Invalid> {
        for (field, value) in [
            ("delivery.name", &self.name),
            ("delivery.phone", &self.phone),
            ("delivery.zip", &self.zip),
            ("delivery.city", &self.city),
            ("delivery.address", &self.address),
            ("delivery.region", &self.region),
            ("delivery.email", &self.email),
        ] {
            check_str(field, value)?;
        }
        Ok(())
    }
}

impl Payment {
    fn check(&self) -> Result<(), Invalid> {
        for (field, value) in [
            ("payment.transaction", &self.transaction),
            ("payment.request_id", &self.request_id),
            ("payment.currency", &self.currency),
            ("payment.provider", &self.provider),
            ("payment.bank", &self.bank),
        ] {
            check_str(field, value)?;
        }
        for (field, value) in [
            ("payment.amount", self.amount),
            ("payment.payment_dt", self.payment_dt),
            ("payment.delivery_cost", self.delivery_cost),
            ("payment.goods_total", self.goods_total),
            ("payment.custom_fee", self.custom_fee),
        ] {
            check_int(field, value)?;
        }
        Ok(())
    }
}

impl Item {
    fn check(&self, index: usize) -> Result<(), Invalid> {
        for (field, value) in [
            ("track_number", &self.track_number),
            ("rid", &self.rid),
            ("name", &self.name),
            ("size", &self.size),
            ("brand", &self.brand),
        ] {
            check_str(&format!("items[{index}].{field}"), value)?;
        }
        for (field, value) in [
            ("chrt_id", self.chrt_id),
            ("price", self.price),
            ("sale", self.sale),
            ("total_price", self.total_price),
            ("nm_id", self.nm_id),
            ("status", self.status),
        ] {
            check_int(&format!("items[{index}].{field}"), value)?;
        }
        Ok(())
    }
}

fn field_error(field: &str, problem: impl Into<String>) -> Invalid {
    Invalid::Field {
        field: field.to_string(),
        problem: problem.into(),
    }
}

/// An id is 1 to [`MAX_UID_BYTES`] of `[A-Za-z0-9._-]`, so it is safe in a URL path.
pub fn check_uid(uid: &str) -> Result<(), Invalid> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if uid.is_empty() || uid.len() > MAX_UID_BYTES || !uid.chars().all(ok_char) {
        return Err(field_error(
            "order_uid",
            format!("must be 1 to {MAX_UID_BYTES} characters of A-Z a-z 0-9 . _ -"),
        ));
    }
    Ok(())
}

fn check_str(field: &str, value: &str) -> Result<(), Invalid> {
    if value.len() > MAX_STRING_BYTES {
        return Err(field_error(
            field,
            format!("{} bytes, the limit is {MAX_STRING_BYTES}", value.len()),
        ));
    }
    if value.contains('\0') {
        return Err(field_error(field, "contains a NUL character"));
    }
    Ok(())
}

fn check_int(field: &str, value: i64) -> Result<(), Invalid> {
    if value < 0 {
        return Err(field_error(field, format!("{value} is negative")));
    }
    Ok(())
}

/// RFC 3339, years 1970 to 9999 (PostgreSQL's `timestamptz` takes every such value).
fn parse_date(value: &str) -> Result<DateTime<Utc>, Invalid> {
    let parsed = DateTime::parse_from_rfc3339(value)
        .map_err(|e| field_error("date_created", format!("not RFC 3339 ({e})")))?
        .with_timezone(&Utc);
    if parsed.timestamp() < 0 {
        return Err(field_error("date_created", "is before 1970"));
    }
    Ok(parsed)
}
