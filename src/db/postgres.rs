//! [`PostgresDb`]: a PostgreSQL table as the stack (feature `postgres`).

use std::time::Duration;

use crate::db::{Db, DbError, PushBatchError};
use crate::sync::Mutex;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A [`Db`] over a PostgreSQL table `(id bigserial primary key, data bytea not null,
/// pushed_at timestamptz not null default now())`, created if missing.
///
/// A batch push is one `INSERT ... SELECT FROM unnest($1) WITH ORDINALITY` statement (one
/// transaction; ids grow oldest to newest). A batch pop is one
/// `DELETE ... WHERE id IN (SELECT id ... ORDER BY id DESC LIMIT n FOR UPDATE SKIP LOCKED)
/// RETURNING`, so concurrent workers never take the same row: every item is popped by exactly
/// one process. (`SKIP LOCKED` means a pop that races another may take the next-newest rows
/// instead of waiting: order across processes is newest-first up to rows in flight elsewhere.)
///
/// One connection per `PostgresDb`, opened by [`open`](Self::open) (a bad URL or unreachable
/// server fails there) and re-opened lazily after it breaks, so a restarted server is picked
/// up by the next call. A commit whose reply is lost to a broken connection may have stored its
/// batch; it is reported as not stored, so the storage may write it twice, never lose it.
///
/// ```no_run
/// use lifostore::{PostgresDb, Storage};
///
/// let db = PostgresDb::open("postgres://app@127.0.0.1/app")?.with_table("jobs_lifo")?;
/// let storage = Storage::new(db);
/// # Ok::<(), lifostore::DbError>(())
/// ```
pub struct PostgresDb {
    config: postgres::Config,
    table: String,
    client: Mutex<Option<postgres::Client>>,
}

impl std::fmt::Debug for PostgresDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresDb")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("postgres ({context}): {source}")]
struct PgFailure {
    context: String,
    #[source]
    source: postgres::Error,
}

fn db_error(context: &str, err: postgres::Error) -> DbError {
    DbError::Other(std::sync::Arc::new(PgFailure {
        context: context.to_string(),
        source: err,
    }))
}

/// Accepts plain SQL identifiers only: a letter or `_`, then letters, digits or `_`, at most
/// 63 bytes. The table name is spliced into SQL, so nothing else may pass.
fn valid_table(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 63
}

impl PostgresDb {
    /// Connects to `url` (`postgres://user[:password]@host[:port]/dbname`) and creates the
    /// table `lifostore` if missing.
    pub fn open(url: &str) -> Result<Self, DbError> {
        let mut config: postgres::Config =
            url.parse().map_err(|e| db_error("parsing the URL", e))?;
        config.connect_timeout(CONNECT_TIMEOUT);
        let db = PostgresDb {
            config,
            table: "lifostore".to_string(),
            client: Mutex::new(None),
        };
        db.create_table()?;
        Ok(db)
    }

    /// Uses (and creates if missing) the table `table` instead.
    ///
    /// Errors with a clear message for a name that is not a plain SQL identifier.
    pub fn with_table(mut self, table: &str) -> Result<Self, DbError> {
        if !valid_table(table) {
            return Err(DbError::msg(format!(
                "{table:?} is not a valid table name: use letters, digits and _ (starting with a \
                 letter or _), at most 63 bytes"
            )));
        }
        self.table = table.to_string();
        self.create_table()?;
        Ok(self)
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Number of rows in the table.
    pub fn len(&self) -> Result<u64, DbError> {
        let sql = format!("SELECT count(*) FROM {}", self.table);
        let n: i64 = self.call(|c| c.query_one(&sql, &[])?.try_get(0))?;
        Ok(n.max(0) as u64)
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> Result<bool, DbError> {
        Ok(self.len()? == 0)
    }

    fn create_table(&self) -> Result<(), DbError> {
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {} (id bigserial PRIMARY KEY, data bytea NOT NULL, \
             pushed_at timestamptz NOT NULL DEFAULT now())",
            self.table
        );
        self.call(|c| match c.batch_execute(&sql) {
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
        })
    }

    /// Runs `f` on the connection, connecting first if there is none or the last one broke.
    fn call<T>(
        &self,
        f: impl FnOnce(&mut postgres::Client) -> Result<T, postgres::Error>,
    ) -> Result<T, DbError> {
        let mut slot = self.client.lock();
        if slot.as_ref().is_none_or(|c| c.is_closed()) {
            *slot = None;
            let client = self
                .config
                .connect(postgres::NoTls)
                .map_err(|e| db_error("connecting", e))?;
            *slot = Some(client);
        }
        let Some(client) = slot.as_mut() else {
            return Err(DbError::msg("postgres: no connection"));
        };
        let result = f(client);
        if result.is_err() && client.is_closed() {
            *slot = None;
        }
        result.map_err(|e| db_error(&self.table, e))
    }
}

impl Db for PostgresDb {
    fn push(&self, data: &[u8]) -> Result<(), DbError> {
        self.push_batch(&[data]).map_err(|e| e.source)
    }

    fn pop(&self) -> Result<Option<Vec<u8>>, DbError> {
        Ok(self.pop_batch(1)?.pop())
    }

    /// One statement, one transaction: on error nothing is stored.
    fn push_batch(&self, items: &[&[u8]]) -> Result<(), PushBatchError> {
        if items.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "INSERT INTO {} (data) SELECT d FROM unnest($1::bytea[]) WITH ORDINALITY AS u(d, n) \
             ORDER BY n",
            self.table
        );
        let values: Vec<&[u8]> = items.to_vec();
        self.call(|c| c.execute(&sql, &[&values]).map(|_| ()))
            .map_err(|source| PushBatchError { stored: 0, source })
    }

    /// One `DELETE ... FOR UPDATE SKIP LOCKED ... RETURNING`, newest first.
    fn pop_batch(&self, max: usize) -> Result<Vec<Vec<u8>>, DbError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let sql = format!(
            "DELETE FROM {t} WHERE id IN (SELECT id FROM {t} ORDER BY id DESC LIMIT $1 \
             FOR UPDATE SKIP LOCKED) RETURNING id, data",
            t = self.table
        );
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        let mut rows: Vec<(i64, Vec<u8>)> = self.call(|c| {
            c.query(&sql, &[&limit])?
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect()
        })?;
        rows.sort_by_key(|row| std::cmp::Reverse(row.0));
        Ok(rows.into_iter().map(|(_, d)| d).collect())
    }

    fn is_shared(&self) -> bool {
        true
    }
}
