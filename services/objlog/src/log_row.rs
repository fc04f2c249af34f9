//! [`LogRow`]: one log entry as it travels through lifostore to PostgreSQL.

use lifostore::DbError;

/// One entry of an object's log: the row the worker writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRow {
    /// JetStream stream sequence of the append: the entry's identity (unique in the table).
    pub seq: i64,
    /// Object id.
    pub object: i64,
    /// Timestamp stamped by the worker, microseconds since the Unix epoch.
    pub ts: i64,
    /// The message.
    pub log: String,
}

const HEADER: usize = 24;

impl LogRow {
    /// The lifostore item: `seq | object | ts` (little-endian i64 each), then the UTF-8 log.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + self.log.len());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.object.to_le_bytes());
        out.extend_from_slice(&self.ts.to_le_bytes());
        out.extend_from_slice(self.log.as_bytes());
        out
    }

    /// Reads an item written by [`encode`](Self::encode).
    pub fn decode(item: &[u8]) -> Result<LogRow, DbError> {
        let field = |i: usize| -> Result<i64, DbError> {
            let bytes = item
                .get(i * 8..i * 8 + 8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .ok_or_else(|| {
                    DbError::msg(format!("log item of {} bytes is truncated", item.len()))
                })?;
            Ok(i64::from_le_bytes(bytes))
        };
        let log = std::str::from_utf8(&item[HEADER.min(item.len())..])
            .map_err(|e| DbError::msg(format!("log item text is not UTF-8: {e}")))?;
        Ok(LogRow {
            seq: field(0)?,
            object: field(1)?,
            ts: field(2)?,
            log: log.to_string(),
        })
    }
}

/// Microseconds since the Unix epoch, now (0 if the clock is before 1970).
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_truncated_items() {
        let row = LogRow {
            seq: 9,
            object: -1,
            ts: 1234,
            log: "héllo".into(),
        };
        assert_eq!(LogRow::decode(&row.encode()).unwrap(), row);
        assert!(LogRow::decode(&row.encode()[..20]).is_err());
    }
}
