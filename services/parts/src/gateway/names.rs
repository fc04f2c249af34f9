//! File names: percent-decoded from the URL path, checked.

use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};

/// Longest name accepted, in bytes: an S3 key (1024 bytes) under its bucket's name (up to
/// 63) and a `/`.
pub const MAX_NAME: usize = 1088;

/// Characters escaped when a name goes into a URL path (`/` is kept: names may hold it).
const PATH: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'\\')
    .add(b'^')
    .add(b'|')
    .add(b'[')
    .add(b']')
    .add(b'+');

/// Decodes and checks a name taken from a URL path: UTF-8, 1 to 1024 bytes, no control
/// characters. The error says what is wrong.
///
/// ```
/// use parts::gateway::names::decode_name;
/// assert_eq!(decode_name("logs/2024%20jan.txt").unwrap(), "logs/2024 jan.txt");
/// assert!(decode_name("").is_err());
/// assert!(decode_name("a%00b").is_err());
/// ```
pub fn decode_name(raw: &str) -> Result<String, String> {
    let name = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| format!("name {raw:?} is not UTF-8 once percent-decoded"))?
        .into_owned();
    if name.is_empty() {
        return Err("empty name: use /files/{name}".into());
    }
    if name.len() > MAX_NAME {
        return Err(format!("name of {} bytes; at most {MAX_NAME}", name.len()));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("name {name:?} holds a control character"));
    }
    Ok(name)
}

/// Percent-encodes a name for a URL path.
///
/// ```
/// assert_eq!(parts::gateway::names::encode_name("a b/c?"), "a%20b/c%3F");
/// ```
pub fn encode_name(name: &str) -> String {
    utf8_percent_encode(name, PATH).to_string()
}
