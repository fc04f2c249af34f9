//! ListObjectsV2 (and V1): keys of a bucket in byte order, with `prefix`, `delimiter`
//! (common prefixes), `max-keys`, `start-after`/`marker` and continuation tokens, and
//! `encoding-type=url`.

use super::Gateway;
use super::dates;
use super::s3::xml_escape;
use crate::http::{Head, Response};

/// What a listing asks for (keys relative to the bucket).
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Keys must start with it.
    pub prefix: String,
    /// Keys with it after the prefix are rolled up into common prefixes.
    pub delimiter: Option<String>,
    /// Most keys plus common prefixes returned (1 to 1000).
    pub max_keys: usize,
    /// Only keys sorting after this.
    pub after: String,
}

/// One page.
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    /// Keys: key, size, ETag (the CRC), commit time.
    pub contents: Vec<(String, u64, String, f64)>,
    /// Common prefixes.
    pub prefixes: Vec<String>,
    /// Whether more follow.
    pub truncated: bool,
    /// Where the next page starts (list after this), when truncated.
    pub next_after: Option<String>,
}

/// A string sorting after every key that starts with `prefix` (bytewise).
fn past(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}

/// Lists bucket `bucket`.
pub fn list(gw: &Gateway, bucket: &str, q: &ListQuery) -> Result<ListPage, crate::meta::MetaError> {
    let base = format!("{bucket}/");
    let mut page = ListPage::default();
    let mut after = format!("{base}{}", q.after);
    loop {
        let rows = gw
            .meta
            .list(&format!("{base}{}", q.prefix), &after, q.max_keys + 1)?;
        let mut restart = false;
        for (name, size, etag, at) in &rows.files {
            let key = &name[base.len()..];
            let rolled = q
                .delimiter
                .as_deref()
                .filter(|d| !d.is_empty())
                .and_then(|d| {
                    key[q.prefix.len()..]
                        .find(d)
                        .map(|i| key[..q.prefix.len() + i + d.len()].to_string())
                });
            if page.contents.len() + page.prefixes.len() == q.max_keys {
                page.truncated = true;
                return Ok(page);
            }
            match rolled {
                Some(common) => {
                    after = format!("{base}{}", past(&common));
                    page.next_after = Some(past(&common));
                    page.prefixes.push(common);
                    restart = true;
                    break;
                }
                None => {
                    page.contents
                        .push((key.to_string(), *size, etag.clone(), *at));
                    page.next_after = Some(key.to_string());
                    after = name.clone();
                }
            }
        }
        if !restart && !rows.truncated {
            page.next_after = None;
            return Ok(page);
        }
    }
}

/// The query of a request: `(query, v2)`, or an error message.
fn parse_query(head: &Head) -> Result<(ListQuery, bool), String> {
    let v2 = head.query_param("list-type").as_deref() == Some("2");
    let max_keys = match head.query_param("max-keys") {
        None => 1000,
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| format!("max-keys {v:?} is not a number"))?
            .min(1000),
    };
    let after = if v2 {
        match head.query_param("continuation-token") {
            Some(token) => decode_token(&token)
                .ok_or("the continuation token is not one this service issued")?,
            None => head.query_param("start-after").unwrap_or_default(),
        }
    } else {
        head.query_param("marker").unwrap_or_default()
    };
    let query = ListQuery {
        prefix: head.query_param("prefix").unwrap_or_default(),
        delimiter: head.query_param("delimiter"),
        max_keys,
        after,
    };
    Ok((query, v2))
}

/// `GET /{bucket}`: ListObjectsV2 (`list-type=2`) or V1.
pub fn list_objects(gw: &Gateway, head: &Head, bucket: &str) -> Response {
    let resource = format!("/{bucket}");
    let (q, v2) = match parse_query(head) {
        Ok(parsed) => parsed,
        Err(why) => return super::s3::s3_error(400, "InvalidArgument", &why, &resource),
    };
    if q.max_keys == 0 {
        return xml_page(bucket, &q, v2, &ListPage::default(), head);
    }
    match list(gw, bucket, &q) {
        Ok(page) => xml_page(bucket, &q, v2, &page, head),
        Err(e) => super::s3::s3_error(503, "ServiceUnavailable", &e.to_string(), &resource),
    }
}

/// Escapes a key for the XML, percent-encoding it first under `encoding-type=url`.
fn key_text(s: &str, url: bool) -> String {
    if url {
        xml_escape(&super::names::encode_name(s))
    } else {
        xml_escape(s)
    }
}

/// The XML of a page.
fn xml_page(bucket: &str, q: &ListQuery, v2: bool, page: &ListPage, head: &Head) -> Response {
    let url = head.query_param("encoding-type").as_deref() == Some("url");
    let mut x = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>{}</Name><Prefix>{}</Prefix><MaxKeys>{}</MaxKeys><IsTruncated>{}</IsTruncated>",
        xml_escape(bucket),
        key_text(&q.prefix, url),
        q.max_keys,
        page.truncated
    );
    if let Some(d) = &q.delimiter {
        x.push_str(&format!("<Delimiter>{}</Delimiter>", key_text(d, url)));
    }
    if url {
        x.push_str("<EncodingType>url</EncodingType>");
    }
    x.push_str(&paging(q, v2, page, head, url));
    for (key, size, etag, at) in &page.contents {
        x.push_str(&format!(
            "<Contents><Key>{}</Key><LastModified>{}</LastModified><ETag>&quot;{etag}&quot;</ETag><Size>{size}</Size><StorageClass>STANDARD</StorageClass></Contents>",
            key_text(key, url), dates::iso8601(*at)
        ));
    }
    for prefix in &page.prefixes {
        let prefix = key_text(prefix, url);
        x.push_str(&format!(
            "<CommonPrefixes><Prefix>{prefix}</Prefix></CommonPrefixes>"
        ));
    }
    x.push_str("</ListBucketResult>");
    Response {
        status: 200,
        headers: vec![("Content-Type".into(), "application/xml".into())],
        body: x.into_bytes(),
    }
}

/// The paging elements: V2's key count and tokens, or V1's markers.
fn paging(q: &ListQuery, v2: bool, page: &ListPage, head: &Head, url: bool) -> String {
    let next = page.next_after.as_deref().filter(|_| page.truncated);
    let mut x = String::new();
    if !v2 {
        x.push_str(&format!("<Marker>{}</Marker>", key_text(&q.after, url)));
        if let Some(next) = next {
            x.push_str(&format!("<NextMarker>{}</NextMarker>", key_text(next, url)));
        }
        return x;
    }
    let count = page.contents.len() + page.prefixes.len();
    x.push_str(&format!("<KeyCount>{count}</KeyCount>"));
    if let Some(token) = head.query_param("continuation-token") {
        x.push_str(&format!(
            "<ContinuationToken>{}</ContinuationToken>",
            xml_escape(&token)
        ));
    }
    if let Some(start) = head.query_param("start-after") {
        x.push_str(&format!(
            "<StartAfter>{}</StartAfter>",
            key_text(&start, url)
        ));
    }
    if let Some(next) = next {
        x.push_str(&format!(
            "<NextContinuationToken>{}</NextContinuationToken>",
            encode_token(next)
        ));
    }
    x
}

/// A continuation token: the hex of where the next page starts.
fn encode_token(after: &str) -> String {
    after.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_token(token: &str) -> Option<String> {
    if !token.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}
