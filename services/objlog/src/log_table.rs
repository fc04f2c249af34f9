//! [`LogTable`]: the PostgreSQL table of every object's log, on one reconnecting connection.

use postgres::{Client, NoTls};

use crate::log_row::LogRow;
use crate::wire::{Cursor, Entry};

const SCHEMA: &str = "
    SELECT pg_advisory_xact_lock(7014);
    CREATE TABLE IF NOT EXISTS log (
        object_id bigint NOT NULL,
        ts        bigint NOT NULL,
        seq       bigint NOT NULL PRIMARY KEY,
        msg       text   NOT NULL
    );
    CREATE INDEX IF NOT EXISTS log_object_ts_seq ON log (object_id, ts, seq);";

const INSERT: &str = "
    INSERT INTO log (object_id, ts, seq, msg)
    SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[])
    ON CONFLICT (seq) DO NOTHING
    RETURNING seq, ts";

const PAGE: &str = "
    SELECT ts, seq, msg FROM log
    WHERE object_id = $1 AND (ts, seq) > ($2, $3)
    ORDER BY ts, seq LIMIT $4";

/// One connection to the log table. A call that finds the connection broken drops it; the
/// next call reconnects, so a restarted PostgreSQL is picked up without restarting the worker.
pub struct LogTable {
    url: String,
    client: Option<Client>,
}

impl LogTable {
    /// Connects and creates the table and its index if missing.
    pub fn connect(url: &str) -> Result<LogTable, postgres::Error> {
        let mut client = Client::connect(url, NoTls)?;
        client.batch_execute(&format!("BEGIN; {SCHEMA} COMMIT;"))?;
        Ok(LogTable {
            url: url.to_string(),
            client: Some(client),
        })
    }

    /// Runs `call`, on a fresh connection if there is none. A call that finds the connection
    /// dead (the server restarted, or closed it) is retried once on a new one: every call
    /// here is a read or an idempotent insert, and without the retry the first request after
    /// an outage would fail and wait a whole AckWait for its redelivery.
    fn run<T>(
        &mut self,
        mut call: impl FnMut(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, postgres::Error> {
        let client = match &mut self.client {
            Some(c) => c,
            None => self.client.insert(Client::connect(&self.url, NoTls)?),
        };
        let result = call(client);
        let dead = |e: &postgres::Error| {
            e.is_closed() || e.as_db_error().is_some_and(|d| d.severity() == "FATAL")
        };
        match result {
            Err(e) if client.is_closed() || dead(&e) => {
                self.client = None;
                let client = self.client.insert(Client::connect(&self.url, NoTls)?);
                let retried = call(client);
                if retried.is_err() && client.is_closed() {
                    self.client = None;
                }
                retried
            }
            other => other,
        }
    }

    /// Inserts `rows` in ONE statement, skipping sequences already stored (and, of two rows
    /// with one sequence, the second). Returns `(seq, ts)` of each row this call inserted;
    /// the other sequences were there already (redeliveries).
    pub fn insert(&mut self, rows: &[LogRow]) -> Result<Vec<(i64, i64)>, postgres::Error> {
        let objects: Vec<i64> = rows.iter().map(|r| r.object).collect();
        let ts: Vec<i64> = rows.iter().map(|r| r.ts).collect();
        let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
        let logs: Vec<&str> = rows.iter().map(|r| r.log.as_str()).collect();
        let found = self.run(|c| c.query(INSERT, &[&objects, &ts, &seqs, &logs]))?;
        found
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// The stored `(seq, ts)` of the given sequences.
    pub fn stored_ts(&mut self, seqs: &[i64]) -> Result<Vec<(i64, i64)>, postgres::Error> {
        let sql = "SELECT seq, ts FROM log WHERE seq = ANY($1)";
        let rows = self.run(|c| c.query(sql, &[&seqs]))?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// Up to `limit` entries of `object`'s log after `after`, in `(ts, seq)` order.
    pub fn page(
        &mut self,
        object: i64,
        after: Cursor,
        limit: u32,
    ) -> Result<Vec<Entry>, postgres::Error> {
        let limit = i64::from(limit);
        let rows = self.run(|c| c.query(PAGE, &[&object, &after.ts, &after.seq, &limit]))?;
        Ok(rows
            .iter()
            .map(|r| Entry {
                ts: r.get(0),
                seq: r.get(1),
                log: r.get(2),
            })
            .collect())
    }
}
