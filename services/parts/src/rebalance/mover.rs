//! Runs planned moves: record, copy, check, switch, clean up (see [`crate::meta::MoveTicket`]
//! for why each step is safe to repeat or abandon).

use parking_lot::Mutex;

use super::plan::Move;
use crate::counters::Counters;
use crate::gateway::Gateway;
use crate::gateway::upload::note_failure;

/// Runs `moves` on `concurrency` threads; returns (moves done, bytes moved, moves failed).
pub fn run_all(gw: &Gateway, moves: Vec<Move>, concurrency: usize) -> (u64, u64, u64) {
    let queue = Mutex::new(moves);
    let totals = Mutex::new((0u64, 0u64, 0u64));
    std::thread::scope(|scope| {
        for _ in 0..concurrency.max(1) {
            scope.spawn(|| {
                while let Some(mv) = queue.lock().pop() {
                    let outcome = move_part(gw, &mv);
                    let mut t = totals.lock();
                    match outcome {
                        Ok(Some(bytes)) => {
                            t.0 += 1;
                            t.1 += bytes;
                        }
                        Ok(None) => {}
                        Err(why) => {
                            t.2 += 1;
                            Counters::add(&gw.counters.moves_failed, 1);
                            eprintln!(
                                "parts-gateway: move of copy {} to {} failed: {why}",
                                mv.part.copy, mv.to
                            );
                        }
                    }
                }
            });
        }
    });
    totals.into_inner()
}

/// Moves one part; `Ok(Some(bytes))` when the part now lives on the destination, `Ok(None)`
/// when the move no longer applied (the part changed meanwhile).
fn move_part(gw: &Gateway, mv: &Move) -> Result<Option<u64>, String> {
    let p = &mv.part;
    let ticket = gw
        .meta
        .begin_move(p.file_id, p.idx, p.copy, &mv.to)
        .map_err(|e| e.to_string())?;
    let Some(ticket) = ticket else {
        return Ok(None);
    };
    if let Err(why) = copy(gw, &ticket) {
        match gw.meta.abort_moves(Some(ticket.copy)) {
            Ok(garbage) => gw.jobs.enqueue_or_log(&garbage),
            Err(e) => eprintln!("parts-gateway: could not abandon move {}: {e}", ticket.copy),
        }
        return Err(why);
    }
    let (garbage, switched) = gw.meta.finish_move(&ticket).map_err(|e| e.to_string())?;
    gw.jobs.enqueue_or_log(&garbage);
    if !switched {
        return Ok(None);
    }
    Counters::add(&gw.counters.moves_done, 1);
    Counters::add(&gw.counters.bytes_moved, ticket.len);
    Ok(Some(ticket.len))
}

/// Streams the source copy to the destination and checks the CRC the destination computed
/// against the part's recorded one.
fn copy(gw: &Gateway, t: &crate::meta::MoveTicket) -> Result<(), String> {
    let (reader, stored) = gw
        .nodes
        .get(&t.src_addr, t.src_copy, 0, t.len)
        .inspect_err(|e| note_failure(gw, &t.src_node, e))
        .map_err(|e| format!("reading the source: {e}"))?;
    if stored != t.len {
        return Err(format!(
            "the source copy holds {stored} bytes, {} recorded",
            t.len
        ));
    }
    let written = gw
        .nodes
        .put(
            &t.dst_addr,
            t.copy,
            t.len,
            &mut crate::node_client::ReadBody(reader),
        )
        .inspect_err(|e| note_failure(gw, &t.dst_node, e))
        .map_err(|e| format!("writing the destination: {e}"))?;
    if written.crc != t.crc || written.len != t.len {
        return Err(format!(
            "the copy on {} has CRC {:08x} ({} bytes); the part's is {:08x} ({} bytes): the source may be corrupt",
            t.dst_node, written.crc, written.len, t.crc, t.len
        ));
    }
    Ok(())
}
