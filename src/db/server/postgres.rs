//! [`PostgresDb`]: a PostgreSQL table as the stack (feature `postgres`): its SQL, and the
//! [`Protocol`] that runs it for the client core, which makes a lost reply harmless.

use std::time::{Duration, SystemTime};

use super::client::{Popped, Protocol, ServerClient};
use super::postgres_wake::{address, channel_of, notify, open_watch};
use super::wake::{STORED, lease_payload};
use crate::db::interface::{Capabilities, Db, DbLeases, refuse_oversize};
use crate::db::lease::{DbLease, LeaseId, lease_result, system_time, ttl_millis};
use crate::db::watch::DbWatch;
use crate::error::{DbError, PushBatchError};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A bytea is at most 1 GB with headers, as is the one `bytea[]` a batch travels in.
const MAX_ITEM_LEN: usize = (1 << 30) - 1024;

/// Longest table name: PostgreSQL's 63-byte identifiers, less the side tables' `_clients`.
const MAX_TABLE_LEN: usize = 63 - "_clients".len();

/// A [`Db`] over a PostgreSQL table `(id bigserial primary key, data bytea not null,
/// pushed_at timestamptz not null default now())`, created if missing, with side tables
/// `<table>_clients`, `<table>_taken` and `<table>_lmarks` (see below).
///
/// A batch push is one `INSERT ... SELECT FROM unnest($1) WITH ORDINALITY` statement (one
/// transaction; ids grow oldest to newest). A batch pop is one statement: `WITH pick AS
/// MATERIALIZED (SELECT id ... ORDER BY id DESC LIMIT n FOR UPDATE SKIP LOCKED) DELETE ...
/// WHERE id IN (SELECT id FROM pick) RETURNING`, so concurrent workers never take the same
/// row: every item is popped by exactly one process. The `MATERIALIZED` pick runs once: a
/// locking subquery inside the `DELETE` may be run again per row by the server's plan, and
/// then takes more than `n` rows. (`SKIP LOCKED` means a pop that races another may take the
/// next-newest rows instead of waiting: order across processes is newest-first up to rows in
/// flight elsewhere.)
///
/// One connection per `PostgresDb`, opened by [`open`](Self::open) (a bad URL or unreachable
/// server fails there) and re-opened lazily after it breaks, so a restarted server is picked
/// up by the next call.
///
/// # When the connection breaks during a call
///
/// Each call is one statement in its own transaction. A connection cut before the server
/// commits rolls the transaction back: nothing was stored, nothing was taken, and the call's
/// error is the whole truth. Only a cut after the commit, before its reply arrives, leaves the
/// outcome in doubt. For that case each `PostgresDb` is a client with a random id:
///
/// * **Push.** Every batch carries a batch id, and the same statement records it as the
///   client's last stored batch in `<table>_clients` (an upsert, so a retry waits for a
///   still-running earlier attempt and sees its outcome). When a push fails with its outcome in
///   doubt, the `PostgresDb` keeps the batch's id and items; if the next push starts with the
///   same items (the storage retries a failed batch first), the statement skips the ones that
///   batch stored. So a retried batch is stored **once**. Left over: if the retry no longer
///   contains some items of the lost batch (a `pop` took them from memory in between), those
///   items exist twice: in the Db and in the caller's hands.
/// * **Pop.** The same statement that deletes the rows copies them into `<table>_taken`, and
///   every call says which pop's reply arrived. The next call deletes the copies when the reply
///   arrived and returns them again when it did not. So an item whose reply was lost is **not
///   lost**: this client's next pop returns it. Left over: a client that never calls again
///   keeps its last pop in `<table>_taken`; dropping the `PostgresDb` puts lost items back into
///   the table (reconnecting for it if needed), and `open` deletes copies and client rows older
///   than a day (a retry after more than a day, or after more than 16 in-doubt attempts in a
///   row, is not recognised: its items are stored twice).
///
/// # Leases
///
/// The table has two more columns, `lease_id bigint` and `leased_until timestamptz` (added to
/// an existing table by `open`), and a sequence `<table>_lseq` for lease ids.
/// [`pop_lease`](DbLeases::pop_lease) is one statement: it picks the newest rows that are not
/// leased with `FOR UPDATE SKIP LOCKED`, as a pop does, and stamps them with a new lease id and
/// `now() + ttl` instead of deleting them; every pop skips leased rows. [`ack`](DbLeases::ack)
/// deletes the rows whose lease is still held; [`release`](DbLeases::release) clears the lease and
/// gives the row a new id from the table's sequence, so it is back **on top**. An expired
/// lease comes back on top too, when a statement first notices it (the server's clock
/// decides): a pop or lease that finds an expired lease in the table takes nothing and says
/// so, the client then gives every expired row a new id (oldest deadline first, so the
/// newest lease ends on top) and asks again, two more round trips only then; an ack or a
/// release naming an expired lease gives its row a new id in the same statement. So an
/// expired item is back on top on every path, also after the process that held it died.
///
/// Why not a transaction held open per lease (`FOR UPDATE SKIP LOCKED` inside it, rolled back
/// by a crash)? It would pin one server connection per outstanding lease (connections are
/// the scarcest PostgreSQL resource, a few hundred per server), hold back `VACUUM`'s horizon
/// for as long as any lease is open (bloating every table in the database, not just this
/// one), and a consumer that hangs but keeps its socket open would hold its items forever,
/// with no deadline. A lease column costs one short transaction per call, survives the
/// consumer's crash like any row, and expires by itself. A lease whose reply was lost comes
/// back at its deadline; an ack whose reply was lost and is retried reports the ids it acked
/// as [`DbError::LeaseExpired`]. [`push_leased`](DbLeases::push_leased) records the ids it
/// stored under the call's token in `<table>_lmarks` (deleted a minute after the leases' ttl);
/// a call whose reply was lost is retried by the storage with the same items and token, and
/// the statement answers the recorded ids instead of storing the items a second time.
///
/// Cost: one upsert per push; per pop, a copy of the popped rows and its deletion by the next
/// call, so a 1024-row pop runs at about 0.4 of its former rate; single-item calls are no
/// slower, as push and pop are prepared once per connection (the README's backend section has
/// the figures).
///
/// ```no_run
/// use lifostore::{PostgresDb, Storage};
///
/// let db = PostgresDb::open("postgres://app@127.0.0.1/app")?.with_table("jobs_lifo")?;
/// let storage = Storage::new(db)?;
/// # Ok::<(), lifostore::Error>(())
/// ```
pub struct PostgresDb {
    client: ServerClient<Postgres>,
}

/// The server and the table.
struct Postgres {
    config: postgres::Config,
    table: String,
}

/// A connection and the statements prepared on it (a prepared statement saves the round trip
/// and the planning of a prepare on every call).
struct Conn {
    client: postgres::Client,
    statements: Vec<(String, postgres::Statement)>,
}

/// Most statements kept prepared on one connection (push and pop, per table used).
const MAX_STATEMENTS: usize = 8;

/// How long a `push_leased` call's mark outlives its leases' ttl, in ms (see
/// [`Postgres::push_leased_sql`]).
const MARK_MARGIN_MS: f64 = 60_000.0;

/// The id of the extra row a pop or lease statement returns when it took nothing because an
/// expired lease waits to come back on top (row ids are positive).
const EXPIRED_MARK: i64 = -1;

impl Conn {
    /// `sql`, prepared on this connection the first time it is used.
    fn prepared(&mut self, sql: &str) -> Result<postgres::Statement, postgres::Error> {
        if let Some((_, st)) = self.statements.iter().find(|(text, _)| text == sql) {
            return Ok(st.clone());
        }
        let st = self.client.prepare(sql)?;
        if self.statements.len() >= MAX_STATEMENTS {
            self.statements.clear();
        }
        self.statements.push((sql.to_string(), st.clone()));
        Ok(st)
    }
}

impl std::fmt::Debug for PostgresDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresDb")
            .field("table", &self.client.protocol().table)
            .field("client", &self.client.id())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("postgres: {context}")]
struct PgFailure {
    context: String,
    #[source]
    source: postgres::Error,
}

/// A data exception (class 22, e.g. a value too long), an integrity constraint the values
/// break (class 23, e.g. a CHECK on the table) or a program limit (class 54) is the server
/// refusing the values for good: [`DbError::Rejected`]. Everything else may pass.
fn db_error(context: &str, err: postgres::Error) -> DbError {
    let class = err.code().map(|c| &c.code()[..2]);
    if matches!(class, Some("22" | "23" | "54")) {
        return DbError::Rejected {
            reason: format!("postgres: {context}: {err}"),
        };
    }
    DbError::Other(std::sync::Arc::new(PgFailure {
        context: context.to_string(),
        source: err,
    }))
}

/// Accepts plain SQL identifiers only: a letter or `_`, then letters, digits or `_`, at most
/// [`MAX_TABLE_LEN`] bytes. The table name is spliced into SQL, so nothing else may pass.
fn valid_table(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= MAX_TABLE_LEN
}

/// The statements that create `table`, its side tables, and what later versions added to an
/// existing table, each only if missing.
fn schema_sql(table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {t} (id bigserial PRIMARY KEY, data bytea NOT NULL, \
         pushed_at timestamptz NOT NULL DEFAULT now()); \
         ALTER TABLE {t} ADD COLUMN IF NOT EXISTS lease_id bigint, \
         ADD COLUMN IF NOT EXISTS leased_until timestamptz; \
         CREATE INDEX IF NOT EXISTS {t}_lease ON {t} (lease_id) WHERE lease_id IS NOT NULL; \
         CREATE SEQUENCE IF NOT EXISTS {t}_lseq; \
         CREATE TABLE IF NOT EXISTS {t}_clients (client text PRIMARY KEY, \
         batch bigint NOT NULL, prev bigint, touched_at timestamptz NOT NULL DEFAULT now()); \
         CREATE TABLE IF NOT EXISTS {t}_taken (client text NOT NULL, seq bigint NOT NULL, \
         id bigint NOT NULL, data bytea NOT NULL, pushed_at timestamptz NOT NULL, \
         taken_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (client, id)); \
         CREATE TABLE IF NOT EXISTS {t}_lmarks (token text PRIMARY KEY, \
         ids bigint[] NOT NULL, expires_at timestamptz NOT NULL); ",
        t = table
    )
}

/// Whether every object [`schema_sql`] makes exists already, read from the catalog (no lock
/// on the table).
fn schema_is_current(client: &mut postgres::Client, table: &str) -> Result<bool, postgres::Error> {
    let names: Vec<String> = ["", "_lease", "_lseq", "_clients", "_taken", "_lmarks"]
        .iter()
        .map(|suffix| format!("{table}{suffix}"))
        .collect();
    let sql = "SELECT bool_and(to_regclass(n) IS NOT NULL) \
                 AND (SELECT count(*) FROM pg_attribute WHERE attrelid = to_regclass($2) \
                   AND attname IN ('lease_id', 'leased_until') AND NOT attisdropped) = 2 \
               FROM unnest($1::text[]) AS n";
    client.query_one(sql, &[&names, &names[0]])?.try_get(0)
}

impl PostgresDb {
    /// Connects to `url` (`postgres://user[:password]@host[:port]/dbname`) and creates the
    /// table `lifostore` (and its side tables) if missing.
    pub fn open(url: &str) -> Result<Self, DbError> {
        let mut config: postgres::Config =
            url.parse().map_err(|e| db_error("parsing the URL", e))?;
        config.connect_timeout(CONNECT_TIMEOUT);
        let pg = Postgres {
            config,
            table: "lifostore".to_string(),
        };
        let db = PostgresDb {
            client: ServerClient::new(pg, None),
        };
        db.create_tables()?;
        Ok(db)
    }

    /// Uses (and creates if missing) the table `table` instead.
    ///
    /// Errors with a clear message for a name that is not a plain SQL identifier of at most
    /// 55 bytes (the side table `<table>_clients` must fit PostgreSQL's 63).
    pub fn with_table(mut self, table: &str) -> Result<Self, DbError> {
        if !valid_table(table) {
            return Err(DbError::msg(format!(
                "{table:?} is not a valid table name: use letters, digits and _ (starting with a \
                 letter or _), at most {MAX_TABLE_LEN} bytes"
            )));
        }
        self.client.protocol_mut().table = table.to_string();
        self.create_tables()?;
        Ok(self)
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.client.protocol().table
    }

    /// Number of rows in the table that are not leased (or whose lease has expired). Rows a
    /// client popped and has not yet acknowledged (see the type's docs) are not counted.
    pub fn len(&self) -> Result<u64, DbError> {
        let n: i64 = self.client.run(|pg, c| {
            let sql = format!(
                "SELECT count(*) FROM {} WHERE leased_until IS NULL OR leased_until <= now()",
                pg.table
            );
            c.client.query_one(&sql, &[])?.try_get(0)
        })?;
        Ok(n.max(0) as u64)
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> Result<bool, DbError> {
        Ok(self.len()? == 0)
    }

    /// Creates the table and its side tables if missing (an existing table gets the ones a
    /// later version added), and deletes side rows of clients gone for more than a day.
    ///
    /// The DDL runs only when the catalog says something is missing: `ALTER TABLE ... ADD
    /// COLUMN IF NOT EXISTS` takes the table's exclusive lock even when the column exists, so
    /// running it at every open made each open wait for any long transaction on the table, and
    /// every push and pop queue behind that open.
    fn create_tables(&self) -> Result<(), DbError> {
        let table = &self.client.protocol().table;
        let current = self
            .client
            .run(|_, c| schema_is_current(&mut c.client, table))?;
        let mut sql = if current {
            String::new()
        } else {
            schema_sql(table)
        };
        sql.push_str(&format!(
            "DELETE FROM {t}_clients WHERE touched_at < now() - interval '1 day'; \
             DELETE FROM {t}_taken WHERE taken_at < now() - interval '1 day';",
            t = table
        ));
        self.client.run(|_, c| {
            match c.client.batch_execute(&sql) {
                // Two processes creating the same table at once: one wins, the other sees a
                // duplicate; either way the table exists now.
                Err(e)
                    if e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION)
                        || e.code() == Some(&postgres::error::SqlState::DUPLICATE_TABLE)
                        || e.code() == Some(&postgres::error::SqlState::DUPLICATE_OBJECT) =>
                {
                    Ok(())
                }
                other => other,
            }
        })
    }

    /// Runs `sql` (naming the table as `{t}`) with the lease ids `ids` as `$1`; returns how
    /// many of them were not held (`sql` returns one boolean row per lease it ended: `true` for
    /// a held one, `false` for an expired one it put back on top).
    fn end_leases(&self, sql: &str, ids: &[LeaseId]) -> Result<usize, DbError> {
        let ids: Vec<i64> = ids.iter().map(|id| id.0 as i64).collect();
        let ended = self.client.run(|pg, c| {
            let statement = c.prepared(&sql.replace("{t}", &pg.table))?;
            let rows = c.client.query(&statement, &[&ids])?;
            let held: Result<Vec<bool>, _> = rows.iter().map(|r| r.try_get(0)).collect();
            Ok(held?.into_iter().filter(|&h| h).count())
        })?;
        Ok(ids.len().saturating_sub(ended))
    }

    /// Wakes the watching storages after a lease or release committed; best effort.
    fn announce(&self, payload: &str) {
        let _ = self
            .client
            .run(|pg, c| notify(&mut c.client, &pg.table, payload));
    }
}

impl Postgres {
    /// The pop statement: settles this client's previous pop (its reply arrived: delete the
    /// copies; it did not: return them again, up to `$4`), then takes up to `$4` in all, unless
    /// an expired lease waits to come back on top: then it takes nothing new and returns the
    /// row [`EXPIRED_MARK`] too. `$1` client, `$2` acknowledged pop, `$3` this pop, `$4` max.
    ///
    /// The rows to take are picked once, in a `MATERIALIZED` CTE, and the `DELETE` names
    /// them. Written as `DELETE ... WHERE id IN (SELECT ... LIMIT n FOR UPDATE SKIP LOCKED)`,
    /// the server may run the subquery again for every row it scans (a nested-loop semi join,
    /// which it picks when its statistics say the table is nearly empty), and each run skips
    /// the rows the statement deleted already, so takes the next ones: a pop of one row
    /// deleted every row and returned one (`tests/backends.rs`,
    /// `postgres_takes_no_more_than_it_asks_whatever_the_plan`).
    fn pop_sql(&self) -> String {
        format!(
            "WITH exp AS ({expired}), \
             lost_ids AS MATERIALIZED (SELECT id FROM {t}_taken WHERE client = $1 \
               AND seq <> $2 ORDER BY id DESC LIMIT $4), \
             lost AS (UPDATE {t}_taken SET seq = $3 WHERE client = $1 \
               AND id IN (SELECT id FROM lost_ids) RETURNING id, data), \
             done AS (DELETE FROM {t}_taken WHERE client = $1 AND seq = $2), \
             pick AS MATERIALIZED (SELECT id FROM {t} \
               WHERE lease_id IS NULL AND NOT (SELECT e FROM exp) ORDER BY id DESC \
               LIMIT greatest($4 - (SELECT count(*) FROM lost_ids), 0) FOR UPDATE SKIP LOCKED), \
             took AS (DELETE FROM {t} WHERE id IN (SELECT id FROM pick) \
               RETURNING id, data, pushed_at), \
             kept AS (INSERT INTO {t}_taken (client, seq, id, data, pushed_at) \
               SELECT $1, $3, id, data, pushed_at FROM took) \
             SELECT id, data FROM lost UNION ALL SELECT id, data FROM took \
             UNION ALL SELECT {EXPIRED_MARK}, '\\x'::bytea FROM exp WHERE e",
            t = self.table,
            expired = self.any_expired_sql(),
        )
    }

    /// `SELECT e`: whether a lease in the table has expired (its row waits to come back on
    /// top). Uses the partial index on leased rows.
    fn any_expired_sql(&self) -> String {
        format!(
            "SELECT EXISTS (SELECT 1 FROM {t} WHERE lease_id IS NOT NULL \
               AND leased_until <= now()) AS e",
            t = self.table
        )
    }

    /// Puts every expired lease back on top: each row gets a new id, oldest deadline first
    /// (rows leased together keep their order), so the newest lease ends on top. Rows another
    /// transaction holds are left for the next call.
    fn return_expired_sql(&self) -> String {
        format!(
            "WITH r AS MATERIALIZED (SELECT id, leased_until FROM {t} WHERE lease_id IS NOT NULL \
               AND leased_until <= now() FOR UPDATE SKIP LOCKED), \
             n AS (SELECT id, nextval(pg_get_serial_sequence('{t}', 'id')) AS new \
               FROM (SELECT id FROM r ORDER BY leased_until, id) s) \
             UPDATE {t} SET id = n.new, lease_id = NULL, leased_until = NULL \
             FROM n WHERE {t}.id = n.id",
            t = self.table
        )
    }

    /// The lease statement for up to `$1` rows leased for `$2` ms: (row id, lease id, data),
    /// or just the [`EXPIRED_MARK`] row if an expired lease waits to come back on top.
    fn lease_sql(&self) -> String {
        format!(
            "WITH exp AS ({expired}), \
             took AS MATERIALIZED (SELECT id FROM {t} WHERE lease_id IS NULL \
               AND NOT (SELECT e FROM exp) ORDER BY id DESC LIMIT $1 FOR UPDATE SKIP LOCKED), \
             leased AS (UPDATE {t} SET lease_id = nextval('{t}_lseq'), \
               leased_until = now() + $2 * interval '1 millisecond' \
               FROM took WHERE {t}.id = took.id RETURNING {t}.id, {t}.lease_id, {t}.data) \
             SELECT id, lease_id, data FROM leased \
             UNION ALL SELECT {EXPIRED_MARK}, {EXPIRED_MARK}, '\\x'::bytea FROM exp WHERE e",
            t = self.table,
            expired = self.any_expired_sql(),
        )
    }
}

impl Postgres {
    /// The store-leased statement: `$1` items (oldest first), `$2` ttl in ms, `$3` the call's
    /// token, `$4` the mark's lifetime in ms. Answers one row: the lease ids, in item order.
    ///
    /// The mark `<table>_lmarks(token)` is an upsert holding the ids: if an earlier attempt of
    /// the call committed it, the upsert returns that attempt's ids (an attempt still running
    /// makes it wait, then see the outcome, as the push's client row does), they differ from
    /// the fresh ones `f` drew, and nothing is inserted. Marks past their lifetime (a margin
    /// after their leases' deadline, when the items are back anyway) are deleted by the same
    /// statement, skipping rows another transaction holds.
    fn push_leased_sql(&self) -> String {
        format!(
            "WITH f AS (SELECT array_agg(v ORDER BY v) AS ids FROM (SELECT nextval('{t}_lseq') \
               AS v FROM generate_series(1, cardinality($1::bytea[]))) s), \
             m AS (INSERT INTO {t}_lmarks AS k (token, ids, expires_at) \
               SELECT $3, f.ids, now() + $4 * interval '1 millisecond' FROM f \
               ON CONFLICT (token) DO UPDATE SET expires_at = k.expires_at RETURNING k.ids), \
             ins AS (INSERT INTO {t} (data, lease_id, leased_until) \
               SELECT u.d, m.ids[u.n], now() + $2 * interval '1 millisecond' \
               FROM m, f, unnest($1::bytea[]) WITH ORDINALITY AS u(d, n) \
               WHERE m.ids = f.ids ORDER BY u.n), \
             gone AS (DELETE FROM {t}_lmarks WHERE token IN (SELECT token FROM {t}_lmarks \
               WHERE expires_at <= now() AND token <> $3 FOR UPDATE SKIP LOCKED)) \
             SELECT ids FROM m",
            t = self.table
        )
    }
}

impl Protocol for Postgres {
    type Conn = Conn;
    type Error = postgres::Error;

    fn connect(&self) -> Result<Conn, DbError> {
        let client = self
            .config
            .connect(postgres::NoTls)
            .map_err(|e| db_error(&format!("connecting to {}", address(&self.config)), e))?;
        Ok(Conn {
            client,
            statements: Vec::new(),
        })
    }

    fn is_closed(conn: &Conn) -> bool {
        conn.client.is_closed()
    }

    fn broke(conn: &Conn, _: &postgres::Error) -> bool {
        conn.client.is_closed()
    }

    /// A server error means the statement failed and its transaction rolled back; any other
    /// (the connection broke while it ran) may come after the commit.
    fn in_doubt(e: &postgres::Error) -> bool {
        e.as_db_error().is_none()
    }

    fn error(&self, e: postgres::Error) -> DbError {
        db_error(&format!("a call on table {}", self.table), e)
    }

    /// One statement, one transaction: records the batch as the client's last in
    /// `<table>_clients` (an upsert, so a retry waits for a still-running earlier attempt and
    /// sees its outcome) and inserts the items the recorded attempt did not store.
    fn push(
        &self,
        conn: &mut Conn,
        client: &str,
        batch: i64,
        attempts: &[(i64, i64)],
        items: &[&[u8]],
    ) -> Result<(), postgres::Error> {
        let sql = format!(
            "WITH c AS (INSERT INTO {t}_clients AS k (client, batch) VALUES ($1, $2) \
               ON CONFLICT (client) DO UPDATE SET prev = k.batch, batch = EXCLUDED.batch, \
               touched_at = now() RETURNING k.prev), \
             s AS (SELECT coalesce(max(a.stored), 0) AS skip FROM c, \
               unnest($3::int8[], $4::int8[]) AS a(id, stored) WHERE a.id = c.prev), \
             w AS (SELECT pg_notify('{wake}', '{STORED}')) \
             INSERT INTO {t} (data) SELECT u.d FROM unnest($5::bytea[]) WITH ORDINALITY \
               AS u(d, n), s, w WHERE u.n > s.skip ORDER BY u.n",
            t = self.table,
            wake = channel_of(&self.table),
        );
        let (ids, stored): (Vec<i64>, Vec<i64>) = attempts.iter().copied().unzip();
        let values: Vec<&[u8]> = items.to_vec();
        let client = client.to_string();
        let params: [&(dyn postgres::types::ToSql + Sync); 5] =
            [&client, &batch, &ids, &stored, &values];
        let statement = conn.prepared(&sql)?;
        conn.client.execute(&statement, &params).map(drop)
    }

    /// One statement (`DELETE ... FOR UPDATE SKIP LOCKED ... RETURNING` inside), newest first;
    /// it takes nothing new if an expired lease waits to come back on top, and says so.
    fn pop(
        &self,
        conn: &mut Conn,
        client: &str,
        (acked, seq): (i64, i64),
        max: usize,
    ) -> Result<Popped, postgres::Error> {
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        let statement = conn.prepared(&self.pop_sql())?;
        let client = client.to_string();
        let mut rows: Vec<(i64, Vec<u8>)> = conn
            .client
            .query(&statement, &[&client, &acked, &seq, &limit])?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, postgres::Error>>()?;
        let marked = rows.iter().position(|row| row.0 == EXPIRED_MARK);
        if let Some(at) = marked {
            rows.remove(at);
        }
        rows.sort_by_key(|row| std::cmp::Reverse(row.0));
        Ok(Popped {
            items: rows.into_iter().map(|(_, d)| d).collect(),
            expired_first: marked.is_some(),
        })
    }

    /// Every expired lease back on top, newest lease on top ([`Postgres::return_expired_sql`]).
    fn return_expired(&self, conn: &mut Conn) -> Result<(), postgres::Error> {
        let statement = conn.prepared(&self.return_expired_sql())?;
        conn.client.execute(&statement, &[]).map(drop)
    }

    /// Deletes the copies of pop `acked`, puts those of a lost later pop back into the table,
    /// and deletes the client's row.
    fn release(&self, conn: &mut Conn, client: &str, acked: i64) -> Result<(), postgres::Error> {
        let sql = format!(
            "WITH done AS (DELETE FROM {t}_taken WHERE client = $1 AND seq = $2), \
             lost AS (DELETE FROM {t}_taken WHERE client = $1 AND seq <> $2 \
               RETURNING id, data, pushed_at), \
             back AS (INSERT INTO {t} (id, data, pushed_at) SELECT * FROM lost) \
             DELETE FROM {t}_clients WHERE client = $1",
            t = self.table
        );
        let client = client.to_string();
        conn.client.execute(&sql, &[&client, &acked]).map(drop)
    }
}

impl Db for PostgresDb {
    fn push(&self, data: &[u8]) -> Result<(), DbError> {
        self.push_batch(&[data]).map_err(|e| e.source)
    }

    fn pop(&self) -> Result<Option<Vec<u8>>, DbError> {
        Ok(self.pop_batch(1)?.pop())
    }

    /// One statement, one transaction: on error nothing of this attempt is stored, unless
    /// the connection broke after the commit; then a retry of the same items stores only what
    /// is missing (see the type's docs).
    fn push_batch(&self, items: &[&[u8]]) -> Result<(), PushBatchError> {
        refuse_oversize(items, MAX_ITEM_LEN)?;
        self.client.push_batch(items)
    }

    /// One statement, newest first. Items of an earlier pop whose reply was lost come first
    /// (see the type's docs).
    fn pop_batch(&self, max: usize) -> Result<Vec<Vec<u8>>, DbError> {
        self.client.pop_batch(max)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
            .max_item_len(MAX_ITEM_LEN)
            .shared(true)
    }

    /// `SELECT count(*)` (see [`PostgresDb::len`]).
    fn item_count(&self) -> Result<Option<u64>, DbError> {
        PostgresDb::len(self).map(Some)
    }

    fn leases(&self) -> Option<&dyn DbLeases> {
        Some(self)
    }

    /// `LISTEN` on `<table>_wake` on its own connection (see `postgres_wake.rs`).
    fn watch(&self) -> Result<Option<Box<dyn DbWatch>>, DbError> {
        let pg = self.client.protocol();
        open_watch(&pg.config, &pg.table).map(Some)
    }
}

impl DbLeases for PostgresDb {
    /// One statement (see the type's docs, "Leases"): the newest unleased rows, `FOR UPDATE
    /// SKIP LOCKED`, get a lease id and a deadline; if an expired lease waits to come back on
    /// top, it goes back first and the statement runs again.
    fn pop_lease(&self, max: usize, ttl: Duration) -> Result<Vec<DbLease>, DbError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        let ttl_ms = ttl_millis(ttl) as f64;
        let mut rows: Vec<(i64, i64, Vec<u8>)> = self.client.run_after_expired(|pg, c| {
            let statement = c.prepared(&pg.lease_sql())?;
            let rows = c.client.query(&statement, &[&limit, &ttl_ms])?;
            let rows: Vec<(i64, i64, Vec<u8>)> = rows
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
                .collect::<Result<_, postgres::Error>>()?;
            // The mark alone: the statement took nothing, an expired lease goes back first.
            Ok((!rows.iter().any(|row| row.0 == EXPIRED_MARK)).then_some(rows))
        })?;
        if !rows.is_empty() {
            self.announce(&lease_payload(SystemTime::now() + ttl));
        }
        rows.sort_by_key(|row| std::cmp::Reverse(row.0));
        let leases = rows.into_iter().map(|(_, id, item)| DbLease {
            id: LeaseId(id as u64),
            item,
        });
        Ok(leases.collect())
    }

    /// One statement: deletes the rows whose lease is still held; a named lease that expired
    /// goes back on top in the same statement (and is reported as not held).
    fn ack(&self, ids: &[LeaseId]) -> Result<(), DbError> {
        let sql = "WITH back AS (UPDATE {t} SET id = nextval(pg_get_serial_sequence('{t}', 'id')), \
                     lease_id = NULL, leased_until = NULL \
                     WHERE lease_id = ANY($1) AND leased_until <= now()) \
                   DELETE FROM {t} WHERE lease_id = ANY($1) AND leased_until > now() RETURNING true";
        lease_result(self.end_leases(sql, ids)?)
    }

    /// One statement: clears the named leases, held or expired, and gives their rows new ids,
    /// oldest first, so they are back on top as they were.
    fn release(&self, leases: &[DbLease]) -> Result<(), DbError> {
        let sql = "WITH r AS (SELECT id, leased_until > now() AS held FROM {t} \
                     WHERE lease_id = ANY($1) ORDER BY id FOR UPDATE), \
                   n AS (SELECT id, held, nextval(pg_get_serial_sequence('{t}', 'id')) AS new \
                     FROM (SELECT id, held FROM r ORDER BY id) s) \
                   UPDATE {t} SET id = n.new, lease_id = NULL, leased_until = NULL \
                   FROM n WHERE {t}.id = n.id RETURNING n.held";
        let ids: Vec<LeaseId> = leases.iter().map(|l| l.id).collect();
        let missing = self.end_leases(sql, &ids)?;
        self.announce(STORED);
        lease_result(missing)
    }

    /// One statement, one transaction: the items are inserted as rows already leased (a lease
    /// id from `<table>_lseq` and `now() + ttl`), so no pop ever sees them unleased. A call
    /// whose reply was lost is remembered, and a later call of the same items gets the ids
    /// the lost one stored instead of storing them again (see the type's docs, "Leases").
    fn push_leased(
        &self,
        items: &[&[u8]],
        ttl: Duration,
        call: u64,
    ) -> Result<Vec<LeaseId>, DbError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        refuse_oversize(items, MAX_ITEM_LEN).map_err(|e| e.source)?;
        let ttl_ms = ttl_millis(ttl) as f64;
        let mark_ms = ttl_ms + MARK_MARGIN_MS;
        let values: Vec<&[u8]> = items.to_vec();
        let ids: Vec<i64> = self.client.push_leased(items, call, |pg, c, token| {
            let statement = c.prepared(&pg.push_leased_sql())?;
            let token = token.to_string();
            let row = c
                .client
                .query_one(&statement, &[&values, &ttl_ms, &token, &mark_ms])?;
            row.try_get(0)
        })?;
        if ids.len() != items.len() {
            return Err(DbError::msg(
                "postgres: the store-leased statement returned bad ids",
            ));
        }
        self.announce(&lease_payload(SystemTime::now() + ttl));
        Ok(ids.into_iter().map(|id| LeaseId(id as u64)).collect())
    }

    /// The deadlines of the leases held now, in the server's clock.
    fn held_deadlines(&self) -> Result<Vec<SystemTime>, DbError> {
        let ms: Vec<i64> = self.client.run(|pg, c| {
            let sql = format!(
                "SELECT (extract(epoch FROM leased_until) * 1000)::bigint FROM {} \
                 WHERE lease_id IS NOT NULL AND leased_until > now()",
                pg.table
            );
            c.client
                .query(&sql, &[])?
                .iter()
                .map(|r| r.try_get(0))
                .collect()
        })?;
        Ok(ms
            .into_iter()
            .map(|ms| system_time(ms.max(0) as u64))
            .collect())
    }
}
