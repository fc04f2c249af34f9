//! The end-of-run check: every append answered exactly once, stored exactly once in its
//! object's log, and read back exactly once, in `(ts, seq)` order, through paged queries.

use std::time::{Duration, Instant};

use postgres::NoTls;

use super::{LoadConfig, RunId, Tracker};
use crate::client::Client;
use crate::error::Error;
use crate::ring::HashRing;
use crate::wire::Cursor;

/// What the check found. [`passed`](Self::passed) says whether it is all as promised.
#[derive(Debug, Default, Clone)]
pub struct CheckReport {
    /// 1 if redeliveries were still outstanding when the check gave up waiting for them.
    pub unsettled: usize,
    /// Appends without any response.
    pub missing_responses: usize,
    /// Responses beyond the first, summed over appends (the response stream de-duplicates
    /// redelivered answers by request sequence, so this counts what got past it).
    pub duplicate_responses: usize,
    /// Appends answered with an error.
    pub error_responses: usize,
    /// Rows of the run in PostgreSQL.
    pub pg_rows: usize,
    /// Appends with no row.
    pub lost: usize,
    /// Rows beyond the first, summed over appends.
    pub duplicated: usize,
    /// Rows whose object, sequence or timestamp disagree with the publish ack / response,
    /// or that sit on another shard than the ring places their object on.
    pub mismatched: usize,
    /// Rows of the run on each shard (one entry without sharding).
    pub rows_per_shard: Vec<usize>,
    /// Query pages read.
    pub pages: usize,
    /// Pages cut short by the payload limit rather than the requested limit.
    pub capped_pages: usize,
    /// Largest page payload seen, bytes.
    pub largest_page: usize,
    /// Pages over the server's payload limit, or query failures.
    pub bad_pages: usize,
    /// Entries read out of `(ts, seq)` order.
    pub unsorted: usize,
    /// Appends not read back through queries, or read back more than once.
    pub query_mismatches: usize,
}

impl CheckReport {
    /// True when nothing was lost, duplicated, mismatched or out of order.
    pub fn passed(&self) -> bool {
        self.missing_responses
            + self.duplicate_responses
            + self.error_responses
            + self.lost
            + self.duplicated
            + self.mismatched
            + self.bad_pages
            + self.unsorted
            + self.query_mismatches
            == 0
    }
}

impl std::fmt::Display for CheckReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = self;
        write!(
            f,
            "objlog check: unsettled {} missing responses {} duplicate responses {} error responses {} | \
             pg rows {} (per shard {:?}) lost {} duplicated {} mismatched {} | query pages {} capped {} largest {} B \
             bad {} unsorted {} query mismatches {} | {}",
            c.unsettled,
            c.missing_responses,
            c.duplicate_responses,
            c.error_responses,
            c.pg_rows,
            c.rows_per_shard,
            c.lost,
            c.duplicated,
            c.mismatched,
            c.pages,
            c.capped_pages,
            c.largest_page,
            c.bad_pages,
            c.unsorted,
            c.query_mismatches,
            if c.passed() { "PASS" } else { "FAIL" }
        )
    }
}

/// Longest the check waits for redeliveries to be handled and their responses seen.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Waits until the shared consumer has nothing pending or unacked (so every redelivery is
/// handled and every repeated response published), then until the follower has read the
/// `RESPONSES` stream to its end, so duplicates are counted, not missed. JetStream offers
/// no notification for an empty consumer, so its info is polled every 100 ms. `false` if
/// this does not happen within `timeout`.
fn settle(client: &Client, tracker: &Tracker, timeout: Duration) -> Result<bool, Error> {
    let deadline = Instant::now() + timeout;
    loop {
        let (pending, unacked) = client.backlog()?;
        if pending == 0 && unacked == 0 {
            break;
        }
        if Instant::now() >= deadline {
            eprintln!("objlog check: consumer still has {pending} pending, {unacked} unacked");
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let last = client.last_response_seq()?;
    Ok(tracker.wait_followed(last, deadline.saturating_duration_since(Instant::now())))
}

/// Checks a finished run (see the module doc). `pg_urls` are the shards, in the workers'
/// order.
pub fn check(
    client: &Client,
    pg_urls: &[&str],
    cfg: &LoadConfig,
    id: RunId,
    tracker: &Tracker,
    query_limit: u32,
) -> Result<CheckReport, Error> {
    let mut report = CheckReport {
        unsettled: usize::from(!settle(client, tracker, SETTLE_TIMEOUT)?),
        ..CheckReport::default()
    };
    let slots = tracker.slots();
    for s in &slots {
        report.missing_responses += usize::from(s.ok + s.errors == 0);
        report.error_responses += usize::from(s.errors > 0);
        report.duplicate_responses += (s.ok + s.errors).saturating_sub(1) as usize;
    }
    check_table(pg_urls, cfg, id, tracker, &mut report)?;
    for object in 0..cfg.objects {
        check_queries(client, cfg, id, object, query_limit, &mut report)?;
    }
    Ok(report)
}

fn check_table(
    pg_urls: &[&str],
    cfg: &LoadConfig,
    id: RunId,
    tracker: &Tracker,
    report: &mut CheckReport,
) -> Result<(), Error> {
    let ring = HashRing::new(pg_urls.len());
    let slots = tracker.slots();
    let mut seen = vec![0usize; cfg.total];
    for (shard, url) in pg_urls.iter().enumerate() {
        let mut pg = postgres::Client::connect(url, NoTls)?;
        let (lo, hi) = (id.object_base as i64, (id.object_base + cfg.objects) as i64);
        let rows = pg.query(
            "SELECT object_id, ts, seq, msg FROM log WHERE object_id >= $1 AND object_id < $2",
            &[&lo, &hi],
        )?;
        report.pg_rows += rows.len();
        report.rows_per_shard.push(rows.len());
        for row in &rows {
            let (object, ts, seq, msg): (i64, i64, i64, String) =
                (row.get(0), row.get(1), row.get(2), row.get(3));
            let Some(k) = id.index_of(&msg).filter(|k| *k < cfg.total) else {
                report.mismatched += 1;
                continue;
            };
            seen[k] += 1;
            let slot = &slots[k];
            let want_object = (id.object_base + k as u64 % cfg.objects) as i64;
            let wrong_ts = slot.ts.is_some_and(|t| t != ts);
            let wrong_shard = ring.shard_of(object) != shard;
            if object != want_object || seq as u64 != slot.seq || wrong_ts || wrong_shard {
                report.mismatched += 1;
            }
        }
    }
    report.lost = seen.iter().filter(|n| **n == 0).count();
    report.duplicated = seen.iter().map(|n| n.saturating_sub(1)).sum();
    Ok(())
}

fn check_queries(
    client: &Client,
    cfg: &LoadConfig,
    id: RunId,
    object: u64,
    limit: u32,
    report: &mut CheckReport,
) -> Result<(), Error> {
    let expected: Vec<usize> = (object as usize..cfg.total)
        .step_by(cfg.objects as usize)
        .collect();
    let mut seen = vec![0usize; cfg.total];
    let mut after: Option<String> = None;
    let mut last = Cursor::START;
    let max_pages = expected.len() + 2;
    for page in 0..max_pages {
        let req = format!("q{}-{}-{}", id.run, object, page);
        let answer = client.query(
            id.object_base + object,
            after.as_deref(),
            limit,
            &req,
            Duration::from_secs(30),
        )?;
        report.pages += 1;
        report.largest_page = report.largest_page.max(answer.bytes);
        let r = answer.response;
        let entries = r.entries.unwrap_or_default();
        if !r.ok || answer.bytes > client.max_payload() {
            report.bad_pages += 1;
        }
        let more = r.more.unwrap_or(false);
        if more && entries.len() < limit as usize {
            report.capped_pages += 1;
        }
        for e in &entries {
            let cursor = Cursor {
                ts: e.ts,
                seq: e.seq,
            };
            report.unsorted += usize::from(cursor <= last);
            last = cursor;
            if let Some(k) = id.index_of(&e.log).filter(|k| *k < cfg.total) {
                seen[k] += 1;
            }
        }
        after = r.next;
        if !more {
            break;
        }
    }
    report.query_mismatches += expected.iter().filter(|k| seen[**k] != 1).count();
    report.query_mismatches += seen.iter().sum::<usize>().saturating_sub(expected.len());
    Ok(())
}
