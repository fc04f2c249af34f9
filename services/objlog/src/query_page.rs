//! [`QueryPage`]: a page of a log cut to the requested size and to the NATS payload limit.

use crate::wire::{Cursor, Entry, Response};

/// Room left in a response for everything but the entries (op, ids, cursor, request id).
const ENVELOPE: usize = 2048;

/// The entries of one query answer.
#[derive(Debug, PartialEq, Eq)]
pub struct QueryPage {
    /// Entries in `(ts, seq)` order.
    pub entries: Vec<Entry>,
    /// Whether entries after the page existed when it was read.
    pub more: bool,
    /// Cursor after the last entry (or the request's own cursor for an empty page).
    pub next: Option<Cursor>,
}

impl QueryPage {
    /// Keeps at most `limit` of `rows` (read with one extra row, to know whether more
    /// follow), and fewer if the encoded page would not fit `max_payload`. A page always
    /// holds at least one entry when one exists: log messages are capped so one fits.
    pub fn cut(rows: Vec<Entry>, limit: usize, max_payload: usize, after: Cursor) -> QueryPage {
        let budget = max_payload.saturating_sub(ENVELOPE);
        let mut used = 0;
        let mut entries = Vec::with_capacity(rows.len().min(limit));
        let total = rows.len();
        for row in rows {
            let size = serde_json::to_vec(&row)
                .map(|v| v.len() + 1)
                .unwrap_or(usize::MAX);
            if entries.len() == limit || (!entries.is_empty() && used + size > budget) {
                break;
            }
            used += size;
            entries.push(row);
        }
        let more = entries.len() < total;
        let next = entries
            .last()
            .map(|e| Cursor {
                ts: e.ts,
                seq: e.seq,
            })
            .or((after != Cursor::START).then_some(after));
        QueryPage {
            entries,
            more,
            next,
        }
    }

    /// Writes the page into a query response.
    pub fn fill(self, response: &mut Response) {
        response.entries = Some(self.entries);
        response.more = Some(self.more);
        response.next = self.next.map(|c| c.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: i64, len: usize) -> Vec<Entry> {
        (0..n)
            .map(|i| Entry {
                ts: i,
                seq: i,
                log: "x".repeat(len),
            })
            .collect()
    }

    #[test]
    fn cuts_to_limit_and_payload() {
        let page = QueryPage::cut(rows(11, 10), 10, 1 << 20, Cursor::START);
        assert_eq!((page.entries.len(), page.more), (10, true));
        assert_eq!(page.next, Some(Cursor { ts: 9, seq: 9 }));
        let page = QueryPage::cut(rows(5, 10), 10, 1 << 20, Cursor::START);
        assert_eq!((page.entries.len(), page.more), (5, false));
        let page = QueryPage::cut(rows(100, 1000), 100, 20_000, Cursor::START);
        assert!(page.more && page.entries.len() < 20 && !page.entries.is_empty());
        let after = Cursor { ts: 3, seq: 4 };
        let empty = QueryPage::cut(Vec::new(), 10, 1 << 20, after);
        assert_eq!(
            (empty.entries.len(), empty.more, empty.next),
            (0, false, Some(after))
        );
    }
}
