//! `GET /files/{name}` (with `Range`) and `HEAD`: the parts streamed back in order, every
//! block checked before a byte of it is sent.
//!
//! A fetcher thread reads the block-aligned span of each part the range touches from its
//! node, checks each block's CRC against the metadata and hands the bytes in range to the
//! response through a bounded channel (at most [`QUEUE`] blocks in memory per download).
//! The first block is fetched before the head goes out, so a part that is missing, short or
//! corrupt at the start is answered `502` with the reason; a failure found later aborts the
//! connection (a reset), so a client never takes wrong or short bytes for the file. Every
//! mismatch is counted and logged with the file, part, copy and node.

use std::io::Read;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use super::Gateway;
use crate::checksum::{BLOCK, aligned_span};
use crate::counters::Counters;
use crate::meta::{FileInfo, PartInfo};
use crate::node_client::CallError;
use crate::split::{Piece, pieces};

/// Blocks queued between the fetcher and the response.
pub const QUEUE: usize = 4;

/// Why bytes of a file could not be served.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    /// The part's node is down.
    #[error("{0}")]
    NodeDown(String),
    /// The copy is missing or shorter than recorded.
    #[error("{0}")]
    Missing(String),
    /// A block's checksum did not match.
    #[error("{0}")]
    Corrupt(String),
}

/// Verified bytes: a block buffer and the range of it that belongs to the response.
pub struct Chunk {
    buf: Vec<u8>,
    range: std::ops::Range<usize>,
}

impl Chunk {
    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[self.range.clone()]
    }
}

/// A download in progress: verified chunks in order. Block buffers go back to the fetcher
/// once written ([`recycle`](Self::recycle)), so a download allocates at most `QUEUE + 2`.
pub struct Download {
    chunks: Receiver<Result<Chunk, FetchError>>,
    free: std::sync::mpsc::Sender<Vec<u8>>,
}

impl Download {
    /// Starts fetching bytes `start..end` of `file`.
    pub fn start(gw: &Arc<Gateway>, file: FileInfo, start: u64, end: u64) -> Download {
        let (tx, rx) = sync_channel(QUEUE);
        let (free, free_rx) = std::sync::mpsc::channel();
        let gw = Arc::clone(gw);
        let spawned = std::thread::Builder::new()
            .name("part-fetcher".into())
            .spawn(move || {
                let out = Out { tx, free: free_rx };
                for piece in pieces(file.size, start, end) {
                    let part = file.parts[piece.part].clone();
                    if let Err(e) = fetch_piece(&gw, &file, part, piece, &out) {
                        let _ = out.tx.send(Err(e));
                        return;
                    }
                }
            });
        if let Err(e) = spawned {
            let (tx, rx) = sync_channel(1);
            let why = format!("cannot start a fetcher: {e}");
            let _ = tx.send(Err(FetchError::NodeDown(why)));
            return Download { chunks: rx, free };
        }
        Download { chunks: rx, free }
    }

    /// The next verified chunk; `None` at the end.
    pub fn next_chunk(&self) -> Option<Result<Chunk, FetchError>> {
        self.chunks.recv().ok()
    }

    /// Gives a written chunk's buffer back to the fetcher.
    pub fn recycle(&self, chunk: Chunk) {
        let _ = self.free.send(chunk.buf);
    }
}

/// The fetcher's side: where chunks go, and where buffers come back.
struct Out {
    tx: SyncSender<Result<Chunk, FetchError>>,
    free: Receiver<Vec<u8>>,
}

impl Out {
    /// A block buffer: a recycled one, or a new one (at most `QUEUE + 2` exist).
    fn buffer(&self) -> Vec<u8> {
        self.free
            .try_recv()
            .unwrap_or_else(|_| vec![0u8; BLOCK as usize])
    }
}

/// The reason a part's node is not live, if it is not.
pub fn down_reason(gw: &Gateway, file: &FileInfo, start: u64, end: u64) -> Option<String> {
    pieces(file.size, start, end).into_iter().find_map(|piece| {
        let part = &file.parts[piece.part];
        match gw.health.status(&part.node) {
            crate::health::Status::Live => None,
            crate::health::Status::Down(why) => Some(format!(
                "part {} of {:?} is on node {} ({}), which is down: {why}",
                part.idx, file.name, part.node, part.addr
            )),
        }
    })
}

/// Fetches one piece (its block-aligned span), checks it, sends the bytes in range.
/// `Ok` also when the receiver went away (the client left).
fn fetch_piece(
    gw: &Gateway,
    file: &FileInfo,
    mut part: PartInfo,
    piece: Piece,
    out: &Out,
) -> Result<(), FetchError> {
    let (span_start, span_end) = aligned_span(part.len, piece.offset, piece.len);
    let mut reader = open_span(gw, file, &mut part, span_start, span_end)?;
    let mut pos = span_start;
    while pos < span_end {
        let block_len = BLOCK.min(part.len - pos) as usize;
        let mut buf = out.buffer();
        let block = &mut buf[..block_len];
        if let Err(e) = reader.read_exact(block) {
            let why = format!(
                "part {} of {:?}: reading copy {} from node {} ({}) at byte {pos}: {e}",
                part.idx, file.name, part.copy, part.node, part.addr
            );
            return Err(FetchError::NodeDown(why));
        }
        check_block(gw, file, &part, pos, block)?;
        let (from, to) = (
            pos.max(piece.offset),
            (pos + block_len as u64).min(piece.offset + piece.len),
        );
        let range = (from - pos) as usize..(to - pos) as usize;
        if from < to && out.tx.send(Ok(Chunk { buf, range })).is_err() {
            return Ok(());
        }
        pos += block_len as u64;
    }
    Ok(())
}

/// Opens `span_start..span_end` of the part's copy; follows the part if it moved since the
/// lookup (the rebalancer finished a move meanwhile).
fn open_span(
    gw: &Gateway,
    file: &FileInfo,
    part: &mut PartInfo,
    span_start: u64,
    span_end: u64,
) -> Result<Box<dyn Read + Send + Sync>, FetchError> {
    let mut result = gw
        .nodes
        .get(&part.addr, part.copy, span_start, span_end - span_start);
    // The copy moved (a finished rebalancing move), or its node came back at another
    // address since the lookup: follow it once.
    let stale = matches!(
        result,
        Err(CallError::Status { status: 404, .. } | CallError::Unreachable { .. })
    );
    if stale
        && let Ok(Some(now)) = gw.meta.part_now(file.id, part.idx)
        && (now.copy != part.copy || now.addr != part.addr)
    {
        *part = now;
        result = gw
            .nodes
            .get(&part.addr, part.copy, span_start, span_end - span_start);
    }
    let what = format!(
        "part {} of {:?} (copy {} on node {} at {})",
        part.idx, file.name, part.copy, part.node, part.addr
    );
    match result {
        Ok((_, stored)) if stored != part.len => Err(missing(
            gw,
            format!("{what} holds {stored} bytes; {} recorded", part.len),
        )),
        Ok((reader, _)) => Ok(reader),
        Err(CallError::Status { status: 404, .. }) => {
            Err(missing(gw, format!("{what} is missing on its node")))
        }
        Err(CallError::Status {
            status: 416, body, ..
        }) => Err(missing(
            gw,
            format!("{what} is shorter than recorded: {body}"),
        )),
        Err(e) => {
            super::upload::note_failure(gw, &part.node, &e);
            Err(FetchError::NodeDown(format!("{what}: {e}")))
        }
    }
}

fn missing(gw: &Gateway, why: String) -> FetchError {
    Counters::add(&gw.counters.missing_parts, 1);
    eprintln!("parts-gateway: missing part: {why}");
    FetchError::Missing(why)
}

/// Checks the block at byte `pos` of the part against its recorded CRC.
fn check_block(
    gw: &Gateway,
    file: &FileInfo,
    part: &PartInfo,
    pos: u64,
    block: &[u8],
) -> Result<(), FetchError> {
    let index = (pos / BLOCK) as usize;
    let got = crc32fast::hash(block);
    let expected = part.blocks.get(index).copied();
    if expected == Some(got) {
        return Ok(());
    }
    Counters::add(&gw.counters.checksum_mismatches, 1);
    let why = format!(
        "checksum mismatch: file {:?} part {} copy {} on node {} ({}), block {index} (part bytes {pos}..{}): recorded {}, read {got:08x}",
        file.name,
        part.idx,
        part.copy,
        part.node,
        part.addr,
        pos + block.len() as u64,
        expected.map_or("nothing".to_string(), |e| format!("{e:08x}")),
    );
    eprintln!("parts-gateway: {why}");
    Err(FetchError::Corrupt(why))
}
