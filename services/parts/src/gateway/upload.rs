//! `PUT /files/{name}`: place the 6 parts, stream each to its node as the body arrives,
//! commit once all are durable.
//!
//! The request thread reads the body in order; part `i` goes into its [`Spool`] and a sender
//! thread streams it to its node right behind the reader. At most [`MAX_IN_FLIGHT`] parts are
//! in flight per upload, so while part `i`'s node fsyncs, part `i + 1` already streams, and
//! the gateway never holds more than two parts' spools. A sender whose node fails, times out
//! or returns a wrong checksum moves the part to another node (a new copy id, the old one
//! becomes garbage) and sends it again from the spool, up to [`MAX_ATTEMPTS`] nodes. The
//! upload commits only when all six senders have a durable, checked copy; any failure aborts
//! it, and every copy it placed becomes garbage for the cleanup jobs.

use std::collections::VecDeque;
use std::sync::Arc;
use std::thread::JoinHandle;

use super::Gateway;
use crate::checksum::{PartSum, Summer};
use crate::counters::Counters;
use crate::http::Exchange;
use crate::meta::{MetaError, PartTarget, UploadPlan};
use crate::node_client::CallError;
use crate::spool::Spool;

/// Parts of one upload in flight at once.
pub const MAX_IN_FLIGHT: usize = 2;
/// Nodes a part is tried on before the upload fails.
pub const MAX_ATTEMPTS: usize = 3;
/// Bytes read from the client at a time.
const CHUNK: usize = 256 << 10;

/// A committed upload.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Its length.
    pub size: u64,
    /// CRC-32 of the file, 8 hex digits.
    pub checksum: String,
    /// Where the parts went.
    pub parts: Vec<PartTarget>,
}

/// Why an upload failed.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// No `Content-Length` (needed to cut the parts while streaming).
    #[error("PUT needs Content-Length: the parts are cut as the body streams in")]
    NoLength,
    /// Metadata failure (placement included: too few nodes).
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// The client's body ended early or failed.
    #[error("the request body failed: {0}")]
    Client(String),
    /// A part could not be stored durably.
    #[error("{0}")]
    Parts(String),
    /// The gateway could not spool a part.
    #[error("spooling a part: {0}")]
    Spool(std::io::Error),
    /// The body's CRC-32 is not the one the client sent.
    #[error(
        "the body's CRC-32 is {computed}, the client sent {sent}: the body was damaged on the way"
    )]
    BadDigest {
        /// The CRC the client sent.
        sent: String,
        /// The CRC of the body received.
        computed: String,
    },
}

impl UploadError {
    /// The HTTP status for this error.
    pub fn status(&self) -> u16 {
        match self {
            UploadError::NoLength => 411,
            UploadError::Meta(MetaError::NotEnoughNodes { .. }) => 503,
            UploadError::Meta(MetaError::Db { .. } | MetaError::Busy(_)) => 503,
            UploadError::Meta(_) => 500,
            UploadError::Client(_) => 400,
            UploadError::Parts(_) => 502,
            UploadError::Spool(_) => 500,
            UploadError::BadDigest { .. } => 400,
        }
    }
}

/// Stores the request body as file `name`. With `expected` (a CRC-32 the client sent, e.g.
/// S3's `x-amz-checksum-crc32`), a body whose CRC differs is refused and nothing is kept.
pub fn upload(
    gw: &Arc<Gateway>,
    ex: &mut Exchange<'_>,
    name: &str,
    expected: Option<u32>,
) -> Result<Stored, UploadError> {
    let size = ex.head().content_length.ok_or(UploadError::NoLength)?;
    let live = |id: &str| gw.health.is_live(id);
    let plan = gw
        .meta
        .begin_upload(name, size, &gw.config.name, &live, &|| gw.why_down())?;
    let result = transfer(gw, ex, &plan).and_then(|(sums, parts, checksum)| {
        if let Some(sent) = expected.filter(|e| format!("{e:08x}") != checksum) {
            return Err(UploadError::BadDigest {
                sent: format!("{sent:08x}"),
                computed: checksum,
            });
        }
        let garbage = gw.meta.commit_upload(plan.file_id, &sums, &checksum)?;
        gw.jobs.enqueue_or_log(&garbage);
        Ok(Stored {
            size,
            checksum,
            parts,
        })
    });
    match &result {
        Ok(_) => Counters::add(&gw.counters.uploads_ok, 1),
        Err(e) => {
            Counters::add(&gw.counters.uploads_failed, 1);
            eprintln!("parts-gateway: upload of {name:?} ({size} bytes) failed: {e}");
            match gw.meta.abort_upload(plan.file_id) {
                Ok(garbage) => gw.jobs.enqueue_or_log(&garbage),
                Err(e) => eprintln!(
                    "parts-gateway: could not abort upload {}: {e}",
                    plan.file_id
                ),
            }
        }
    }
    result
}

type Sent = Result<PartTarget, UploadError>;

/// Streams the body into the parts; returns their sums, final targets and the file's CRC.
fn transfer(
    gw: &Arc<Gateway>,
    ex: &mut Exchange<'_>,
    plan: &UploadPlan,
) -> Result<(Vec<PartSum>, Vec<PartTarget>, String), UploadError> {
    let mut whole = crc32fast::Hasher::new();
    let mut buf = vec![0u8; CHUNK];
    let mut in_flight: VecDeque<Sender> = VecDeque::new();
    let (mut sums, mut done) = (Vec::new(), Vec::new());
    let mut failure = None;
    for target in &plan.parts {
        let spool = Spool::new(target.len, &gw.config.spool_dir).map_err(UploadError::Spool)?;
        in_flight.push_back(spawn_sender(
            gw,
            plan.file_id,
            target.clone(),
            Arc::clone(&spool),
        ));
        match receive(ex, &spool, &mut buf, &mut whole) {
            Ok(sum) => sums.push(sum),
            Err(why) => {
                spool.fail(&why);
                failure = Some(UploadError::Client(why));
                break;
            }
        }
        while in_flight.len() >= MAX_IN_FLIGHT && failure.is_none() {
            match join(in_flight.pop_front()) {
                Ok(t) => done.push(t),
                Err(e) => failure = Some(e),
            }
        }
        if failure.is_some() {
            break;
        }
    }
    for sender in in_flight {
        match join(Some(sender)) {
            Ok(t) => done.push(t),
            Err(e) => failure = failure.or(Some(e)),
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok((sums, done, format!("{:08x}", whole.finalize()))),
    }
}

/// A part's sender thread, or why it could not start.
type Sender = Result<JoinHandle<Sent>, String>;

fn join(sender: Option<Sender>) -> Sent {
    match sender {
        Some(Ok(handle)) => handle
            .join()
            .unwrap_or_else(|_| Err(UploadError::Parts("a part sender panicked".into()))),
        Some(Err(why)) => Err(UploadError::Parts(format!(
            "cannot start a part sender: {why}"
        ))),
        None => Err(UploadError::Parts("no sender".into())),
    }
}

/// Reads one part of the body into its spool; returns its sums.
fn receive(
    ex: &mut Exchange<'_>,
    spool: &Spool,
    buf: &mut [u8],
    whole: &mut crc32fast::Hasher,
) -> Result<PartSum, String> {
    let mut summer = Summer::new();
    let mut left = spool.len();
    while left > 0 {
        let want = buf.len().min(left as usize);
        let n = ex.read_body(&mut buf[..want]).map_err(|e| e.to_string())?;
        spool
            .append(&buf[..n])
            .map_err(|e| format!("gateway spool: {e}"))?;
        summer.update(&buf[..n]);
        left -= n as u64;
    }
    let sum = summer.finish_into(whole);
    spool.complete(sum.crc);
    Ok(sum)
}

fn spawn_sender(gw: &Arc<Gateway>, file_id: i64, target: PartTarget, spool: Arc<Spool>) -> Sender {
    let gw = Arc::clone(gw);
    let run = move || send(&gw, file_id, target, &spool);
    std::thread::Builder::new()
        .name("part-sender".into())
        .spawn(run)
        .map_err(|e| e.to_string())
}

/// Sends one part until a node holds it durably with the right checksum, moving it to
/// another node after each failure.
fn send(gw: &Arc<Gateway>, file_id: i64, mut target: PartTarget, spool: &Arc<Spool>) -> Sent {
    for attempt in 1..=MAX_ATTEMPTS {
        let mut reader = spool.reader(gw.part_budget(target.len));
        let failure = match gw
            .nodes
            .put(&target.addr, target.copy, target.len, &mut reader)
        {
            Ok(written) => match spool.wait_complete() {
                Ok(crc) if crc == written.crc && written.len == target.len => return Ok(target),
                Ok(crc) => format!(
                    "node {} stored {} bytes with CRC {:08x}; the part has {} bytes, CRC {crc:08x}",
                    target.node, written.len, written.crc, target.len
                ),
                Err(why) => return Err(UploadError::Client(why)),
            },
            Err(e) => {
                if let Some(why) = spool.failure() {
                    return Err(UploadError::Client(why));
                }
                note_failure(gw, &target.node, &e);
                e.to_string()
            }
        };
        if attempt == MAX_ATTEMPTS {
            return Err(UploadError::Parts(format!(
                "part {} could not be stored on {attempt} nodes; the last failure: {failure}",
                target.idx
            )));
        }
        Counters::add(&gw.counters.part_retries, 1);
        eprintln!(
            "parts-gateway: part {} of upload {file_id} moves to another node: {failure}",
            target.idx
        );
        let live = |id: &str| gw.health.is_live(id);
        let (next, garbage) = gw
            .meta
            .replace_part(file_id, &target, &live, &|| gw.why_down())?;
        gw.jobs.enqueue_or_log(&[garbage]);
        target = next;
    }
    Err(UploadError::Parts("no attempt made".into()))
}

/// Updates a node's health after a failed call.
pub(crate) fn note_failure(gw: &Gateway, node: &str, err: &CallError) {
    match err {
        CallError::Unreachable { .. } => gw.health.failed(node, &err.to_string()),
        CallError::TimedOut { .. } => gw.health.slow(node),
        CallError::Status { .. } | CallError::BadReply { .. } => {}
    }
}
