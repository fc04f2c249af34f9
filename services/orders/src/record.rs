//! The bytes one order takes in the lifostore buffer: the indexed columns in front of the
//! JSON, so the database writer needs no second JSON parse.
//!
//! Layout: `u64 stream seq | u16 uid_len | uid | i64 date_created (unix µs) | u16 customer_len | customer | json`,
//! integers little endian.

use chrono::{DateTime, Utc};

use crate::order::ValidOrder;

/// One decoded buffer item, borrowing from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    /// The JetStream stream sequence of the message this copy came in: of two copies of one
    /// id, the lower wins.
    pub seq: u64,
    /// `order_uid`.
    pub uid: &'a str,
    /// `date_created`.
    pub created: DateTime<Utc>,
    /// `customer_id`.
    pub customer: &'a str,
    /// The order's canonical JSON.
    pub json: &'a str,
}

impl Record<'_> {
    /// `seq` as PostgreSQL's `bigint` (stream sequences stay far below 2^63).
    pub fn seq_i64(&self) -> i64 {
        i64::try_from(self.seq).unwrap_or(i64::MAX)
    }
}

/// A buffer item that does not decode: a bug of this service, never the sender's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("buffered order record is malformed at byte {at}; this is a bug in the orders service")]
pub struct MalformedRecord {
    /// Where decoding stopped.
    pub at: usize,
}

/// Encodes a valid order that came with stream sequence `seq` (its strings are bounded by
/// validation, so the `u16`s never clip).
pub fn encode(order: &ValidOrder, seq: u64) -> Vec<u8> {
    let uid = order.order.order_uid.as_bytes();
    let customer = order.order.customer_id.as_bytes();
    let mut out = Vec::with_capacity(20 + uid.len() + customer.len() + order.json.len());
    out.extend_from_slice(&seq.to_le_bytes());
    put_str(&mut out, uid);
    out.extend_from_slice(&order.created.timestamp_micros().to_le_bytes());
    put_str(&mut out, customer);
    out.extend_from_slice(&order.json);
    out
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&s[..usize::from(len)]);
}

/// Decodes what [`encode`] wrote.
pub fn decode(bytes: &[u8]) -> Result<Record<'_>, MalformedRecord> {
    let mut at = 0;
    let seq = take(bytes, &mut at, 8)?
        .try_into()
        .map(u64::from_le_bytes)
        .map_err(|_| MalformedRecord { at })?;
    let uid = take_str(bytes, &mut at)?;
    let micros = take(bytes, &mut at, 8)?
        .try_into()
        .map(i64::from_le_bytes)
        .map_err(|_| MalformedRecord { at })?;
    let created = DateTime::from_timestamp_micros(micros).ok_or(MalformedRecord { at })?;
    let customer = take_str(bytes, &mut at)?;
    let json = std::str::from_utf8(&bytes[at..]).map_err(|_| MalformedRecord { at })?;
    Ok(Record {
        seq,
        uid,
        created,
        customer,
        json,
    })
}

fn take<'a>(bytes: &'a [u8], at: &mut usize, n: usize) -> Result<&'a [u8], MalformedRecord> {
    let slice = bytes.get(*at..*at + n).ok_or(MalformedRecord { at: *at })?;
    *at += n;
    Ok(slice)
}

fn take_str<'a>(bytes: &'a [u8], at: &mut usize) -> Result<&'a str, MalformedRecord> {
    let len = take(bytes, at, 2)?;
    let len = usize::from(u16::from_le_bytes([len[0], len[1]]));
    let start = *at;
    std::str::from_utf8(take(bytes, at, len)?).map_err(|_| MalformedRecord { at: start })
}
