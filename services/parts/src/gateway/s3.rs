//! An S3-compatible subset, path style, on a port of its own (`--s3`), for S3 clients
//! (boto3, the aws CLI) with unsigned requests:
//!
//! | request | S3 operation |
//! |---|---|
//! | `GET /` | ListBuckets |
//! | `PUT /{bucket}`, `HEAD /{bucket}`, `DELETE /{bucket}` | CreateBucket, HeadBucket, DeleteBucket (empty only) |
//! | `GET /{bucket}?list-type=2&prefix=&delimiter=&max-keys=&continuation-token=&start-after=` | ListObjectsV2 (and V1 with `marker`) |
//! | `PUT /{bucket}/{key}` | PutObject (checks `x-amz-checksum-crc32` when sent) |
//! | `GET /{bucket}/{key}` (with `Range`), `HEAD /{bucket}/{key}` | GetObject, HeadObject |
//! | `DELETE /{bucket}/{key}` | DeleteObject |
//!
//! Object `key` of bucket `b` is the file `b/key` of the REST API. Errors are S3's XML
//! (`NoSuchBucket`, `NoSuchKey`, `InvalidRange`, `BadDigest`, ...). Not supported (answered
//! `501 NotImplemented`): multipart uploads, copies, versioning, ACLs, tagging; signatures
//! are not checked (there are no credentials).

use std::sync::Arc;

use base64::Engine;

use super::api::{Refusal, serve_file};
use super::names::decode_name;
use super::upload::{UploadError, upload};
use super::{Gateway, dates};
use crate::http::{Exchange, Handler, Response};
use crate::meta::MetaError;

const XMLNS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";
/// Longest S3 key, in bytes.
const MAX_KEY: usize = 1024;

/// The S3 API.
pub struct S3Api {
    gw: Arc<Gateway>,
}

impl S3Api {
    /// The S3 API of `gw`.
    pub fn new(gw: Arc<Gateway>) -> S3Api {
        S3Api { gw }
    }
}

/// Escapes text for XML.
pub fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// An S3 error response.
pub(crate) fn s3_error(status: u16, code: &str, message: &str, resource: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{}</Message><Resource>{}</Resource><RequestId>parts</RequestId></Error>",
        xml_escape(message),
        xml_escape(resource)
    );
    xml(status, body)
}

fn xml(status: u16, body: String) -> Response {
    Response {
        status,
        headers: vec![("Content-Type".into(), "application/xml".into())],
        body: body.into_bytes(),
    }
}

fn meta_s3_error(e: &MetaError, resource: &str) -> Response {
    match e {
        MetaError::NotFound(_) => s3_error(
            404,
            "NoSuchKey",
            "The specified key does not exist.",
            resource,
        ),
        MetaError::NotEnoughNodes { .. } | MetaError::Db { .. } | MetaError::Busy(_) => {
            s3_error(503, "ServiceUnavailable", &e.to_string(), resource)
        }
        MetaError::UploadGone(_) => s3_error(500, "InternalError", &e.to_string(), resource),
    }
}

/// S3's bucket naming rules (the common subset): 3 to 63 of `a-z 0-9 . -`, starting and
/// ending with a letter or digit.
pub fn valid_bucket(name: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    (3..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && edge(name.chars().next())
        && edge(name.chars().last())
}

impl Handler for S3Api {
    fn handle(&self, ex: &mut Exchange<'_>) {
        let (method, path) = (ex.head().method.clone(), ex.head().path.clone());
        let trimmed = path.trim_start_matches('/');
        let (bucket, key) = match trimmed.split_once('/') {
            Some((b, k)) => (b.to_string(), k.to_string()),
            None => (trimmed.to_string(), String::new()),
        };
        let query = ex.head().query.clone();
        if [
            "uploads",
            "uploadId",
            "acl",
            "tagging",
            "versioning",
            "versions",
            "policy",
        ]
        .iter()
        .any(|sub| {
            query
                .split('&')
                .any(|p| p == *sub || p.starts_with(&format!("{sub}=")))
        }) {
            let why = "multipart uploads, ACLs, tagging, versioning and policies are not supported";
            return ex.respond(s3_error(501, "NotImplemented", why, &path));
        }
        if bucket.is_empty() {
            return ex.respond(match method.as_str() {
                "GET" => self.list_buckets(),
                _ => s3_error(405, "MethodNotAllowed", "use GET / to list buckets", "/"),
            });
        }
        if !valid_bucket(&bucket) {
            return ex.respond(s3_error(
                400,
                "InvalidBucketName",
                "bucket names are 3 to 63 of a-z 0-9 . -",
                &path,
            ));
        }
        if key.is_empty() {
            let response = self.bucket_op(ex, &method, &bucket);
            return ex.respond(response);
        }
        self.object_op(ex, &method, &bucket, &key);
    }
}

impl S3Api {
    fn list_buckets(&self) -> Response {
        match self.gw.meta.buckets() {
            Ok(buckets) => {
                let items: String = buckets
                    .iter()
                    .map(|(name, at)| {
                        format!(
                            "<Bucket><Name>{}</Name><CreationDate>{}</CreationDate></Bucket>",
                            xml_escape(name),
                            dates::iso8601(*at)
                        )
                    })
                    .collect();
                xml(
                    200,
                    format!(
                        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListAllMyBucketsResult xmlns=\"{XMLNS}\"><Owner><ID>parts</ID><DisplayName>parts</DisplayName></Owner><Buckets>{items}</Buckets></ListAllMyBucketsResult>"
                    ),
                )
            }
            Err(e) => meta_s3_error(&e, "/"),
        }
    }

    fn bucket_op(&self, ex: &mut Exchange<'_>, method: &str, bucket: &str) -> Response {
        let resource = format!("/{bucket}");
        let meta = &self.gw.meta;
        let no_bucket = || {
            s3_error(
                404,
                "NoSuchBucket",
                "The specified bucket does not exist.",
                &resource,
            )
        };
        match method {
            "PUT" => match meta.create_bucket(bucket) {
                Ok(true) => Response::empty(200).with_header("Location", resource.clone()),
                Ok(false) => s3_error(
                    409,
                    "BucketAlreadyOwnedByYou",
                    "You already own this bucket.",
                    &resource,
                ),
                Err(e) => meta_s3_error(&e, &resource),
            },
            "HEAD" => match meta.bucket_exists(bucket) {
                Ok(true) => Response::empty(200),
                Ok(false) => no_bucket(),
                Err(e) => meta_s3_error(&e, &resource),
            },
            "DELETE" => match meta.delete_bucket(bucket) {
                Ok(Some(true)) => Response::empty(204),
                Ok(Some(false)) => s3_error(
                    409,
                    "BucketNotEmpty",
                    "The bucket you tried to delete is not empty.",
                    &resource,
                ),
                Ok(None) => no_bucket(),
                Err(e) => meta_s3_error(&e, &resource),
            },
            "GET" => match meta.bucket_exists(bucket) {
                Ok(true) => super::s3_list::list_objects(&self.gw, ex.head(), bucket),
                Ok(false) => no_bucket(),
                Err(e) => meta_s3_error(&e, &resource),
            },
            _ => s3_error(
                405,
                "MethodNotAllowed",
                "not allowed on a bucket",
                &resource,
            ),
        }
    }

    fn object_op(&self, ex: &mut Exchange<'_>, method: &str, bucket: &str, raw_key: &str) {
        let resource = format!("/{bucket}/{raw_key}");
        let key = match decode_name(raw_key) {
            Ok(key) if key.len() <= MAX_KEY => key,
            Ok(_) => {
                return ex.respond(s3_error(
                    400,
                    "KeyTooLongError",
                    "keys are at most 1024 bytes",
                    &resource,
                ));
            }
            Err(why) => return ex.respond(s3_error(400, "InvalidArgument", &why, &resource)),
        };
        match self.gw.meta.bucket_exists(bucket) {
            Ok(true) => {}
            Ok(false) => {
                return ex.respond(s3_error(
                    404,
                    "NoSuchBucket",
                    "The specified bucket does not exist.",
                    &resource,
                ));
            }
            Err(e) => return ex.respond(meta_s3_error(&e, &resource)),
        }
        let name = format!("{bucket}/{key}");
        match method {
            "PUT" => self.put_object(ex, &name, &resource),
            "GET" | "HEAD" => self.get_object(ex, &name, &resource),
            "DELETE" => {
                let response = match self.gw.meta.delete_file(&name) {
                    Ok(garbage) => {
                        self.gw.jobs.enqueue_or_log(&garbage);
                        Response::empty(204)
                    }
                    Err(MetaError::NotFound(_)) => Response::empty(204),
                    Err(e) => meta_s3_error(&e, &resource),
                };
                ex.respond(response);
            }
            _ => ex.respond(s3_error(
                405,
                "MethodNotAllowed",
                "not allowed on an object",
                &resource,
            )),
        }
    }

    fn put_object(&self, ex: &mut Exchange<'_>, name: &str, resource: &str) {
        if ex.head().header("x-amz-copy-source").is_some() {
            return ex.respond(s3_error(
                501,
                "NotImplemented",
                "CopyObject is not supported",
                resource,
            ));
        }
        let expected = match ex.head().header("x-amz-checksum-crc32").map(decode_crc32) {
            None => None,
            Some(Some(crc)) => Some(crc),
            Some(None) => {
                return ex.respond(s3_error(
                    400,
                    "InvalidRequest",
                    "x-amz-checksum-crc32 is not a base64 CRC-32",
                    resource,
                ));
            }
        };
        let response = match upload(&self.gw, ex, name, expected) {
            Ok(stored) => {
                let mut r =
                    Response::empty(200).with_header("ETag", format!("\"{}\"", stored.checksum));
                if let Some(crc) = expected {
                    r = r.with_header("x-amz-checksum-crc32", encode_crc32(crc));
                }
                r
            }
            Err(e) => upload_s3_error(&e, resource),
        };
        ex.respond(response);
    }

    fn get_object(&self, ex: &mut Exchange<'_>, name: &str, resource: &str) {
        let file = match self.gw.meta.lookup(name) {
            Ok(file) => file,
            Err(e) => return ex.respond(meta_s3_error(&e, resource)),
        };
        let mut extra = Vec::new();
        if ex.head().header("range").is_none()
            && let Ok(crc) = u32::from_str_radix(&file.checksum, 16)
        {
            extra.push(("x-amz-checksum-crc32".to_string(), encode_crc32(crc)));
        }
        let refusal = match serve_file(&self.gw, ex, file, extra) {
            Ok(()) => return,
            Err(refusal) => refusal,
        };
        let response = match refusal {
            Refusal::Range(len) => s3_error(
                416,
                "InvalidRange",
                "The requested range is not satisfiable",
                resource,
            )
            .with_header("Content-Range", format!("bytes */{len}")),
            Refusal::NodeDown(why) => s3_error(503, "ServiceUnavailable", &why, resource),
            Refusal::Fetch(e) => s3_error(500, "InternalError", &e.to_string(), resource),
        };
        ex.respond(response);
    }
}

fn upload_s3_error(e: &UploadError, resource: &str) -> Response {
    let message = e.to_string();
    match e {
        UploadError::NoLength => s3_error(411, "MissingContentLength", &message, resource),
        UploadError::Meta(m) => meta_s3_error(m, resource),
        UploadError::Client(_) => s3_error(400, "IncompleteBody", &message, resource),
        UploadError::BadDigest { .. } => s3_error(400, "BadDigest", &message, resource),
        UploadError::Parts(_) | UploadError::Spool(_) => {
            s3_error(500, "InternalError", &message, resource)
        }
    }
}

/// S3's CRC-32 header: the big-endian CRC, base64.
pub fn encode_crc32(crc: u32) -> String {
    base64::engine::general_purpose::STANDARD.encode(crc.to_be_bytes())
}

/// The inverse of [`encode_crc32`].
pub fn decode_crc32(text: &str) -> Option<u32> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()?;
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}
