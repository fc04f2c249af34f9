//! The node's HTTP API (called by gateways, never by users):
//!
//! * `PUT /parts/{copy}`: store a copy (exactly `Content-Length` bytes), durably; answers
//!   `201 {"copy","len","crc"}` once it is fsynced and renamed in place.
//! * `GET /parts/{copy}?offset=&len=`: read a copy or a range of it (header `X-Part-Len`: the
//!   stored length). `404` if absent, `416` if the range passes its end.
//! * `DELETE /parts/{copy}`: remove a copy; `200 {"existed": bool}` (idempotent).
//! * `GET /parts`: the inventory, `{"parts": [[copy, len], ...]}`.
//! * `GET /health`: `{"id","used","capacity"}`.

use std::io::{self, Write};
use std::sync::Arc;

use serde_json::json;

use super::store::{Store, read_some};
use crate::http::{Exchange, Handler, Response};

/// Serves a [`Store`].
pub struct NodeApi {
    store: Arc<Store>,
    capacity: u64,
}

impl NodeApi {
    /// An API over `store`, which advertises `capacity` bytes.
    pub fn new(store: Arc<Store>, capacity: u64) -> NodeApi {
        NodeApi { store, capacity }
    }
}

/// A JSON error response.
fn error(status: u16, code: &str, reason: impl Into<String>) -> Response {
    Response::json(status, &json!({"error": code, "reason": reason.into()}))
}

impl Handler for NodeApi {
    fn handle(&self, ex: &mut Exchange<'_>) {
        let (method, path) = (ex.head().method.clone(), ex.head().path.clone());
        let copy = path.strip_prefix("/parts/").map(str::parse::<u64>);
        let response = match (method.as_str(), path.as_str(), copy) {
            ("GET", "/health", _) => Response::json(
                200,
                &json!({"id": self.store.id(), "used": self.store.used(), "capacity": self.capacity}),
            ),
            ("GET", "/parts", _) => match self.store.inventory() {
                Ok(list) => Response::json(200, &json!({ "parts": list })),
                Err(e) => error(500, "io", format!("listing parts: {e}")),
            },
            (_, _, Some(Err(_))) => {
                error(400, "bad_copy", format!("{path:?}: copy ids are numbers"))
            }
            ("PUT", _, Some(Ok(copy))) => self.put(ex, copy),
            ("GET", _, Some(Ok(copy))) => return self.get(ex, copy),
            ("DELETE", _, Some(Ok(copy))) => match self.store.delete(copy) {
                Ok(existed) => Response::json(200, &json!({ "existed": existed })),
                Err(e) => error(500, "io", format!("removing copy {copy}: {e}")),
            },
            _ => error(
                404,
                "no_route",
                format!("{method} {path} is not a node endpoint"),
            ),
        };
        ex.respond(response);
    }
}

impl NodeApi {
    fn put(&self, ex: &mut Exchange<'_>, copy: u64) -> Response {
        let Some(len) = ex.head().content_length else {
            return error(411, "length_required", "PUT /parts needs Content-Length");
        };
        // The body reader and the "is the gateway still there" probe share the exchange.
        let ex = std::cell::RefCell::new(ex);
        let written = self.store.put(
            copy,
            len,
            &mut |buf| ex.borrow_mut().read_body(buf),
            &|| !ex.borrow().client_gone(),
        );
        match written {
            Ok(w) => Response::json(201, &json!({"copy": copy, "len": w.len, "crc": w.crc})),
            Err(e) if e.kind() == io::ErrorKind::StorageFull => {
                error(507, "disk_full", format!("copy {copy}: {e}"))
            }
            Err(e) => error(500, "io", format!("writing copy {copy}: {e}")),
        }
    }

    fn get(&self, ex: &mut Exchange<'_>, copy: u64) {
        let (mut file, stored) = match self.store.open_copy(copy) {
            Ok(Some(found)) => found,
            Ok(None) => {
                return ex.respond(error(404, "no_copy", format!("copy {copy} is not here")));
            }
            Err(e) => return ex.respond(error(500, "io", format!("opening copy {copy}: {e}"))),
        };
        let offset = ex
            .head()
            .query_param("offset")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0u64);
        let len = ex.head().query_param("len").and_then(|v| v.parse().ok());
        let len = len.unwrap_or(stored.saturating_sub(offset));
        if offset.checked_add(len).is_none_or(|end| end > stored) {
            let why = format!("copy {copy} holds {stored} bytes; {offset}+{len} asked");
            return ex.respond(error(416, "short_copy", why));
        }
        let headers = [("X-Part-Len".to_string(), stored.to_string())];
        ex.respond_stream(200, &headers, len, |out| {
            send_range(&mut file, offset, len, out)
        });
    }
}

/// Copies `len` bytes of `file` from `offset` to `out`.
fn send_range(
    file: &mut std::fs::File,
    offset: u64,
    len: u64,
    out: &mut dyn Write,
) -> io::Result<()> {
    use std::io::Seek;
    file.seek(io::SeekFrom::Start(offset))?;
    let mut buf = vec![0u8; 256 << 10];
    let mut left = len;
    while left > 0 {
        let want = buf.len().min(left as usize);
        let n = read_some(file, &mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "copy shrank while read",
            ));
        }
        out.write_all(&buf[..n])?;
        left -= n as u64;
    }
    Ok(())
}
