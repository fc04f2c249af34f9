//! The wire format: subjects, headers, request bodies, responses and the page cursor.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Subject of append requests: `{"id": u64, "log": string}`.
pub const APPEND_SUBJECT: &str = "logs.append";
/// Subject of query requests: `{"id": u64, "after": optional cursor, "limit": optional}`.
pub const QUERY_SUBJECT: &str = "logs.query";
/// Subject every response is published to (captured by the `RESPONSES` stream).
pub const RESPONSE_SUBJECT: &str = "logs.response";
/// Subject on which every worker answers with its counters (core NATS request/reply).
pub const STATS_SUBJECT: &str = "logs.stats";
/// Header naming the client's reply subject. JetStream delivers a stream message with the
/// consumer's ack subject as its reply, so the client's own reply subject travels here.
pub const REPLY_HEADER: &str = "Objlog-Reply-To";
/// Header carrying the client's request id, echoed as `req` in the response. Clients also
/// send the same id as `Nats-Msg-Id` (JetStream's de-duplication id, so a retried publish is
/// stored once); the server does not deliver that header to consumers, hence this one.
pub const REQUEST_ID_HEADER: &str = "Objlog-Request-Id";
/// Longest log message accepted, in bytes. Small enough that one entry, even JSON-escaped
/// (at most 6 bytes per byte), fits a query page under NATS's default 1 MiB payload limit.
pub const MAX_LOG_BYTES: usize = 128 * 1024;
/// Query page size when the request names none.
pub const DEFAULT_PAGE: u32 = 100;
/// Largest page size a query may ask for; pages are also cut to fit the payload limit.
pub const MAX_PAGE: u32 = 10_000;

/// Position in an object's log: entries strictly after `(ts, seq)` come next.
/// Written as `"ts:seq"` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cursor {
    /// Timestamp, microseconds since the Unix epoch.
    pub ts: i64,
    /// JetStream stream sequence of the append.
    pub seq: i64,
}

impl Cursor {
    /// The position before every entry.
    pub const START: Cursor = Cursor {
        ts: i64::MIN,
        seq: i64::MIN,
    };
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.ts, self.seq)
    }
}

impl FromStr for Cursor {
    type Err = RequestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || RequestError::BadCursor(s.to_string());
        let (ts, seq) = s.split_once(':').ok_or_else(bad)?;
        Ok(Cursor {
            ts: ts.parse().map_err(|_| bad())?,
            seq: seq.parse().map_err(|_| bad())?,
        })
    }
}

/// A request that parsed and passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Append `log` to object `object`'s log.
    Append {
        /// Object id (fits a PostgreSQL bigint).
        object: i64,
        /// The message.
        log: String,
    },
    /// Read up to `limit` entries of object `object`'s log after `after`.
    Query {
        /// Object id.
        object: i64,
        /// Where the page starts (exclusive).
        after: Cursor,
        /// Most entries wanted (1..=MAX_PAGE).
        limit: u32,
    },
}

/// Why a request was refused. Each is answered with an error response and acked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The body is not the JSON the subject expects.
    #[error("body is not a valid {subject} request: {detail}; send {expected}")]
    BadBody {
        /// The subject.
        subject: String,
        /// What the JSON parser said.
        detail: String,
        /// The expected shape.
        expected: &'static str,
    },
    /// The object id does not fit a signed 64-bit integer.
    #[error("object id {0} is above 9223372036854775807; use a smaller id")]
    IdOutOfRange(u64),
    /// The log message is too long.
    #[error("log of {0} bytes exceeds the limit of {MAX_LOG_BYTES} bytes; split it")]
    LogTooLong(usize),
    /// The log contains a NUL character, which PostgreSQL text cannot store.
    #[error("log contains a NUL character (\\u0000), which cannot be stored; remove it")]
    NulInLog,
    /// The cursor is not `"ts:seq"`.
    #[error("cursor {0:?} is not \"ts:seq\"; pass the `next` of a previous page")]
    BadCursor(String),
    /// The limit is 0.
    #[error("limit must be at least 1 (pages hold at most {MAX_PAGE} entries)")]
    ZeroLimit,
    /// The message arrived on a subject the service does not serve.
    #[error("subject {0} is not served; use {APPEND_SUBJECT} or {QUERY_SUBJECT}")]
    UnknownSubject(String),
}

#[derive(Deserialize)]
struct AppendBody {
    id: u64,
    log: String,
}

#[derive(Deserialize)]
struct QueryBody {
    id: u64,
    after: Option<String>,
    limit: Option<u32>,
}

fn object_id(id: u64) -> Result<i64, RequestError> {
    i64::try_from(id).map_err(|_| RequestError::IdOutOfRange(id))
}

fn body<'a, T: Deserialize<'a>>(
    subject: &str,
    payload: &'a [u8],
    expected: &'static str,
) -> Result<T, RequestError> {
    serde_json::from_slice(payload).map_err(|e| RequestError::BadBody {
        subject: subject.to_string(),
        detail: e.to_string(),
        expected,
    })
}

/// Parses and validates a request received on `subject`.
pub fn parse_request(subject: &str, payload: &[u8]) -> Result<Request, RequestError> {
    match subject {
        APPEND_SUBJECT => {
            let b: AppendBody = body(subject, payload, r#"{"id": u64, "log": string}"#)?;
            if b.log.len() > MAX_LOG_BYTES {
                return Err(RequestError::LogTooLong(b.log.len()));
            }
            if b.log.contains('\0') {
                return Err(RequestError::NulInLog);
            }
            Ok(Request::Append {
                object: object_id(b.id)?,
                log: b.log,
            })
        }
        QUERY_SUBJECT => {
            let expected = r#"{"id": u64, "after": "ts:seq" (optional), "limit": u32 (optional)}"#;
            let b: QueryBody = body(subject, payload, expected)?;
            let after = match b.after {
                Some(c) => c.parse()?,
                None => Cursor::START,
            };
            let limit = b.limit.unwrap_or(DEFAULT_PAGE);
            if limit == 0 {
                return Err(RequestError::ZeroLimit);
            }
            Ok(Request::Query {
                object: object_id(b.id)?,
                after,
                limit: limit.min(MAX_PAGE),
            })
        }
        other => Err(RequestError::UnknownSubject(other.to_string())),
    }
}

/// One entry of a query page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Timestamp, microseconds since the Unix epoch.
    pub ts: i64,
    /// Stream sequence of the append (the tie-breaker of the order).
    pub seq: i64,
    /// The message.
    pub log: String,
}

/// A response, published to [`RESPONSE_SUBJECT`] and to the request's reply subject.
///
/// Appends: `{"op":"append","id","seq","req","ok":true,"ts"}` or `{..,"ok":false,"error"}`.
/// Queries: `{"op":"query","id","seq","req","ok":true,"entries":[{"ts","seq","log"}],
/// "next":"ts:seq","more":bool}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// `"append"` or `"query"`.
    pub op: String,
    /// The object id, when the request named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// Stream sequence of the request: its identity.
    pub seq: u64,
    /// The client's request id ([`REQUEST_ID_HEADER`]), when it sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// Whether the request succeeded.
    pub ok: bool,
    /// Append: the stored timestamp of the entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<i64>,
    /// Why the request failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Query: the page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entries: Option<Vec<Entry>>,
    /// Query: cursor to pass as `after` for the next page (`null` for an empty log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// Query: whether more entries were already there when the page was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub more: Option<bool>,
}

impl Response {
    /// A response with only the identity filled in.
    pub fn new(op: &str, seq: u64, req: Option<String>) -> Self {
        Response {
            op: op.to_string(),
            id: None,
            seq,
            req,
            ok: false,
            ts: None,
            error: None,
            entries: None,
            next: None,
            more: None,
        }
    }

    /// The response to a refused request.
    pub fn refused(subject: &str, seq: u64, req: Option<String>, err: &dyn fmt::Display) -> Self {
        let op = if subject == QUERY_SUBJECT {
            "query"
        } else {
            "append"
        };
        Response {
            error: Some(err.to_string()),
            ..Response::new(op, seq, req)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_good_requests_and_refuses_bad_ones() {
        let a = parse_request(APPEND_SUBJECT, br#"{"id":7,"log":"hi"}"#);
        assert_eq!(
            a,
            Ok(Request::Append {
                object: 7,
                log: "hi".into()
            })
        );
        let q = parse_request(QUERY_SUBJECT, br#"{"id":7,"after":"5:9","limit":99999}"#);
        let after = Cursor { ts: 5, seq: 9 };
        assert_eq!(
            q,
            Ok(Request::Query {
                object: 7,
                after,
                limit: MAX_PAGE
            })
        );
        let bad = |s, b: &[u8]| parse_request(s, b).unwrap_err();
        assert!(matches!(
            bad(APPEND_SUBJECT, b"{"),
            RequestError::BadBody { .. }
        ));
        assert!(matches!(
            bad(APPEND_SUBJECT, br#"{"id":"x","log":""}"#),
            RequestError::BadBody { .. }
        ));
        assert_eq!(
            bad(APPEND_SUBJECT, br#"{"id":18446744073709551615,"log":""}"#),
            RequestError::IdOutOfRange(u64::MAX)
        );
        assert_eq!(
            bad(QUERY_SUBJECT, br#"{"id":1,"after":"x"}"#),
            RequestError::BadCursor("x".into())
        );
        assert_eq!(
            bad(APPEND_SUBJECT, br#"{"id":1,"log":"a\u0000b"}"#),
            RequestError::NulInLog
        );
        assert_eq!(
            bad(QUERY_SUBJECT, br#"{"id":1,"limit":0}"#),
            RequestError::ZeroLimit
        );
        let long = format!(r#"{{"id":1,"log":"{}"}}"#, "a".repeat(MAX_LOG_BYTES + 1));
        assert_eq!(
            bad(APPEND_SUBJECT, long.as_bytes()),
            RequestError::LogTooLong(MAX_LOG_BYTES + 1)
        );
    }

    #[test]
    fn cursor_round_trips() {
        let c = Cursor { ts: -3, seq: 42 };
        assert_eq!(c.to_string().parse::<Cursor>(), Ok(c));
        assert!(Cursor::START < c);
    }
}
