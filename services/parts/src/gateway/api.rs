//! The gateway's REST API. Errors are JSON: `{"error": code, "reason": text}`.
//!
//! | request | answer |
//! |---|---|
//! | `PUT /files/{name}` | `201` once all 6 parts are durable and the metadata committed |
//! | `GET /files/{name}` (`Range` supported) | `200`/`206` streamed; `416`; `503` if a part's node is down |
//! | `HEAD /files/{name}` | the head of the `GET` |
//! | `DELETE /files/{name}` | `204`; the parts are removed by cleanup jobs |
//! | `GET /files?prefix=&limit=&after=` | `{"files": [...], "truncated", "next_after"}` |
//! | `GET /nodes` | each node's fill and liveness, and the spread |
//! | `POST /nodes` | a node registers (and heartbeats): `{"id","addr","capacity"}` |
//! | `GET /stats`, `GET /jobs` | counters; cleanup queue and dead letters |
//! | `GET /rebalancer`, `PUT /rebalancer` `{"enabled": bool}` | the rebalancer |

use std::io::Write;
use std::sync::Arc;

use serde_json::{Value, json};

use super::download::{Download, FetchError, down_reason};
use super::names::decode_name;
use super::range::{Wanted, wanted};
use super::{Gateway, cluster, dates, upload};
use crate::counters::Counters;
use crate::http::{Exchange, Handler, Response};
use crate::meta::{FileInfo, MetaError};

/// The REST API.
pub struct Api {
    gw: Arc<Gateway>,
}

impl Api {
    /// The API of `gw`.
    pub fn new(gw: Arc<Gateway>) -> Api {
        Api { gw }
    }
}

/// A JSON error.
pub fn error(status: u16, code: &str, reason: impl Into<String>) -> Response {
    Response::json(status, &json!({"error": code, "reason": reason.into()}))
}

/// A metadata error as a response.
pub fn meta_error(e: &MetaError) -> Response {
    match e {
        MetaError::NotFound(_) => error(404, "not_found", e.to_string()),
        MetaError::NotEnoughNodes { .. } => error(503, "not_enough_nodes", e.to_string()),
        MetaError::UploadGone(_) => error(409, "upload_gone", e.to_string()),
        MetaError::Db { .. } | MetaError::Busy(_) => {
            error(503, "metadata_unavailable", e.to_string())
        }
    }
}

impl Handler for Api {
    fn handle(&self, ex: &mut Exchange<'_>) {
        let (method, path) = (ex.head().method.clone(), ex.head().path.clone());
        if let Some(raw) = path.strip_prefix("/files/") {
            let name = match decode_name(raw) {
                Ok(name) => name,
                Err(why) => return ex.respond(error(400, "bad_name", why)),
            };
            return match method.as_str() {
                "PUT" => self.put(ex, &name),
                "GET" | "HEAD" => get_file(&self.gw, ex, &name),
                "DELETE" => ex.respond(self.delete(&name)),
                _ => ex.respond(not_allowed(&method, "PUT, GET, HEAD, DELETE")),
            };
        }
        let response = match (method.as_str(), path.as_str()) {
            ("GET", "/files") => self.list(ex),
            ("GET", "/nodes") => cluster::nodes(&self.gw),
            ("POST", "/nodes") => cluster::register(&self.gw, ex),
            ("GET", "/stats") => self.stats(),
            ("GET", "/jobs") => self.jobs(),
            ("GET", "/rebalancer") => Response::json(200, &self.gw.rebalancer.to_json()),
            ("PUT", "/rebalancer") => self.switch_rebalancer(ex),
            (_, "/files" | "/nodes" | "/stats" | "/jobs" | "/rebalancer") => {
                not_allowed(&method, "see GET /")
            }
            ("GET", "/") => Response::json(200, &index()),
            _ => error(
                404,
                "no_route",
                format!("{method} {path}: no such endpoint; GET / lists them"),
            ),
        };
        ex.respond(response);
    }
}

fn not_allowed(method: &str, allowed: &str) -> Response {
    error(
        405,
        "method_not_allowed",
        format!("{method} is not allowed here"),
    )
    .with_header("Allow", allowed)
}

fn index() -> Value {
    json!({"endpoints": [
        "PUT /files/{name}", "GET /files/{name}", "HEAD /files/{name}", "DELETE /files/{name}",
        "GET /files?prefix=&limit=&after=", "GET /nodes", "POST /nodes", "GET /stats",
        "GET /jobs", "GET /rebalancer", "PUT /rebalancer"
    ]})
}

impl Api {
    fn put(&self, ex: &mut Exchange<'_>, name: &str) {
        let response = match upload::upload(&self.gw, ex, name, None) {
            Ok(stored) => {
                let parts: Vec<Value> = stored
                    .parts
                    .iter()
                    .map(|p| json!({"idx": p.idx, "node": p.node, "len": p.len}))
                    .collect();
                let body = json!({"name": name, "size": stored.size, "checksum": stored.checksum, "parts": parts});
                Response::json(201, &body).with_header("ETag", format!("\"{}\"", stored.checksum))
            }
            Err(upload::UploadError::Meta(e)) => meta_error(&e),
            Err(e) => error(e.status(), upload_code(&e), e.to_string()),
        };
        ex.respond(response);
    }

    fn delete(&self, name: &str) -> Response {
        match self.gw.meta.delete_file(name) {
            Ok(garbage) => {
                self.gw.jobs.enqueue_or_log(&garbage);
                Response::empty(204)
            }
            Err(e) => meta_error(&e),
        }
    }

    fn list(&self, ex: &Exchange<'_>) -> Response {
        let head = ex.head();
        let limit = match head.query_param("limit").map(|l| l.parse::<usize>()) {
            None => 1000,
            Some(Ok(n)) if (1..=10_000).contains(&n) => n,
            Some(_) => return error(400, "bad_limit", "limit must be a number from 1 to 10000"),
        };
        let prefix = head.query_param("prefix").unwrap_or_default();
        let after = head.query_param("after").unwrap_or_default();
        match self.gw.meta.list(&prefix, &after, limit) {
            Ok(page) => {
                let next = page
                    .truncated
                    .then(|| page.files.last().map(|f| f.0.clone()))
                    .flatten();
                let files: Vec<Value> = page
                    .files
                    .iter()
                    .map(|(name, size, sum, at)| json!({"name": name, "size": size, "checksum": sum, "committed_at": at}))
                    .collect();
                Response::json(
                    200,
                    &json!({"files": files, "truncated": page.truncated, "next_after": next}),
                )
            }
            Err(e) => meta_error(&e),
        }
    }

    fn stats(&self) -> Response {
        let mut stats = self.gw.counters.to_json();
        stats["jobs_queued"] = json!(self.gw.jobs.queued());
        Response::json(200, &stats)
    }

    fn jobs(&self) -> Response {
        let meta = &self.gw.meta;
        match (
            meta.garbage_rows(false, 1000),
            meta.garbage_rows(true, 1000),
        ) {
            (Ok(pending), Ok(dead)) => {
                let row = |g: &crate::meta::GarbageRow| {
                    json!({"copy": g.copy, "node": g.node, "len": g.len, "reason": g.reason,
                           "age_secs": g.age_secs, "attempts": g.attempts, "last_error": g.last_error})
                };
                Response::json(
                    200,
                    &json!({
                        "queued": self.gw.jobs.queued(),
                        "garbage": pending.iter().map(row).collect::<Vec<_>>(),
                        "dead": dead.iter().map(row).collect::<Vec<_>>(),
                    }),
                )
            }
            (Err(e), _) | (_, Err(e)) => meta_error(&e),
        }
    }

    fn switch_rebalancer(&self, ex: &mut Exchange<'_>) -> Response {
        let body = match ex.read_small_body(4096) {
            Ok(body) => body,
            Err(why) => return error(400, "bad_body", why),
        };
        match serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["enabled"].as_bool())
        {
            Some(on) => {
                self.gw.rebalancer.set_enabled(on);
                Response::json(200, &self.gw.rebalancer.to_json())
            }
            None => error(
                400,
                "bad_body",
                r#"send {"enabled": true} or {"enabled": false}"#,
            ),
        }
    }
}

fn upload_code(e: &upload::UploadError) -> &'static str {
    match e {
        upload::UploadError::NoLength => "length_required",
        upload::UploadError::Meta(_) => "metadata",
        upload::UploadError::Client(_) => "bad_body",
        upload::UploadError::Parts(_) => "parts_failed",
        upload::UploadError::Spool(_) => "spool",
        upload::UploadError::BadDigest { .. } => "bad_digest",
    }
}

/// The headers of a file's `GET`/`HEAD`.
pub fn file_headers(file: &FileInfo) -> Vec<(String, String)> {
    vec![
        ("Content-Type".into(), "application/octet-stream".into()),
        ("ETag".into(), format!("\"{}\"", file.checksum)),
        ("Last-Modified".into(), dates::http_date(file.committed_at)),
        ("Accept-Ranges".into(), "bytes".into()),
        ("X-Checksum-Crc32".into(), file.checksum.clone()),
    ]
}

/// `GET`/`HEAD` of a file: the REST API's answer (the S3 API wraps it with its own errors).
fn get_file(gw: &Arc<Gateway>, ex: &mut Exchange<'_>, name: &str) {
    let file = match gw.meta.lookup(name) {
        Ok(file) => file,
        Err(e) => return ex.respond(meta_error(&e)),
    };
    match serve_file(gw, ex, file, Vec::new()) {
        Ok(()) => {}
        Err(refusal) => ex.respond(refusal.into_response()),
    }
}

/// Why a file could not be served before its head went out.
#[derive(Debug)]
pub enum Refusal {
    /// The range lies outside the file (of this length).
    Range(u64),
    /// A part's node is down.
    NodeDown(String),
    /// The first bytes could not be fetched.
    Fetch(FetchError),
}

impl Refusal {
    /// The REST answer.
    pub fn into_response(self) -> Response {
        match self {
            Refusal::Range(len) => error(416, "bad_range", format!("the file has {len} bytes"))
                .with_header("Content-Range", format!("bytes */{len}")),
            Refusal::NodeDown(why) => error(503, "node_down", why).with_header("Retry-After", "5"),
            Refusal::Fetch(FetchError::NodeDown(why)) => error(503, "node_down", why),
            Refusal::Fetch(e) => error(502, "part_unreadable", e.to_string()),
        }
    }
}

/// Streams `file` (or the range the request asks for) with `extra` headers added; or says
/// why it cannot, before anything was sent.
pub fn serve_file(
    gw: &Arc<Gateway>,
    ex: &mut Exchange<'_>,
    file: FileInfo,
    extra: Vec<(String, String)>,
) -> Result<(), Refusal> {
    let mut headers = file_headers(&file);
    headers.extend(extra);
    let (status, start, end) = match wanted(ex.head().header("range"), file.size) {
        Wanted::Whole => (200, 0, file.size),
        Wanted::Part { start, end } => {
            headers.push((
                "Content-Range".into(),
                format!("bytes {start}-{}/{}", end - 1, file.size),
            ));
            (206, start, end)
        }
        Wanted::Unsatisfiable => return Err(Refusal::Range(file.size)),
    };
    if ex.head().method == "HEAD" {
        ex.respond_stream(status, &headers, end - start, |_| Ok(()));
        return Ok(());
    }
    if let Some(why) = down_reason(gw, &file, start, end) {
        Counters::add(&gw.counters.downloads_failed, 1);
        return Err(Refusal::NodeDown(why));
    }
    let name = file.name.clone();
    let download = Download::start(gw, file, start, end);
    let first = match download.next_chunk() {
        Some(Ok(chunk)) => Some(chunk),
        Some(Err(e)) => {
            Counters::add(&gw.counters.downloads_failed, 1);
            return Err(Refusal::Fetch(e));
        }
        None => None,
    };
    let mut complete = false;
    ex.respond_stream(status, &headers, end - start, |out: &mut dyn Write| {
        let mut next = first.map(Ok);
        while let Some(chunk) = next.or_else(|| download.next_chunk()) {
            let chunk = chunk.map_err(|e| {
                eprintln!("parts-gateway: download of {name:?} aborted after its head: {e}");
                std::io::Error::other(e)
            })?;
            out.write_all(chunk.bytes())?;
            download.recycle(chunk);
            next = None;
        }
        complete = true;
        Ok(())
    });
    let counter = if complete {
        &gw.counters.downloads_ok
    } else {
        &gw.counters.downloads_failed
    };
    Counters::add(counter, 1);
    Ok(())
}
