//! [`RedisDb`]: a Redis list as the stack (feature `redis`).

use std::time::Duration;

use crate::db::{Db, DbError, PushBatchError};
use crate::sync::Mutex;

/// How long connecting, reading and writing may take before a call fails.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A [`Db`] over a Redis list: `LPUSH` to push (a batch is one `LPUSH` of many values, oldest
/// first, so the newest ends at the head), `LPOP` to pop (a batch is one `LPOP key count`).
///
/// Any number of processes may share one key: Redis runs each command atomically, so every
/// item is popped by exactly one of them. Durability is Redis's: run it with
/// `appendonly yes` and `appendfsync always` (or `everysec`, accepting a second of loss) if
/// items that reached the Db must survive a server crash.
///
/// One connection per `RedisDb`, opened eagerly by [`open`](Self::open) (so a bad URL or an
/// unreachable server fails there, clearly) and re-opened lazily after a connection error, so a
/// restarted server is picked up by the next call.
///
/// A connection that breaks after `LPUSH` was sent but before its reply leaves it unknown
/// whether the items were stored; `push_batch` then reports `stored: 0` and the storage writes
/// them again: an item may be duplicated in that case, never lost.
///
/// ```no_run
/// use lifostore::{RedisDb, Storage};
///
/// let db = RedisDb::open("redis://127.0.0.1:6379/")?.with_key("jobs:lifo");
/// let storage = Storage::new(db);
/// # Ok::<(), lifostore::DbError>(())
/// ```
pub struct RedisDb {
    client: redis::Client,
    key: String,
    conn: Mutex<Option<redis::Connection>>,
}

impl std::fmt::Debug for RedisDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisDb")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

fn db_error(url_or_key: &str, err: redis::RedisError) -> DbError {
    DbError::Other(std::sync::Arc::new(RedisFailure {
        context: url_or_key.to_string(),
        source: err,
    }))
}

#[derive(Debug, thiserror::Error)]
#[error("redis ({context}): {source}")]
struct RedisFailure {
    context: String,
    #[source]
    source: redis::RedisError,
}

impl RedisDb {
    /// Connects to the server at `url` (`redis://host:port/db`); the list key is `lifostore`.
    pub fn open(url: &str) -> Result<Self, DbError> {
        let client = redis::Client::open(url).map_err(|e| db_error(url, e))?;
        let conn = connect(&client).map_err(|e| db_error(url, e))?;
        Ok(RedisDb {
            client,
            key: "lifostore".to_string(),
            conn: Mutex::new(Some(conn)),
        })
    }

    /// Uses `key` as the list's key.
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = key.into();
        self
    }

    /// The list's key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Number of items in the list (`LLEN`).
    pub fn len(&self) -> Result<u64, DbError> {
        self.call(|c, key| redis::cmd("LLEN").arg(key).query(c))
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> Result<bool, DbError> {
        Ok(self.len()? == 0)
    }

    /// Runs a command on the connection, reconnecting first if the last call broke it.
    fn call<T>(
        &self,
        f: impl FnOnce(&mut redis::Connection, &str) -> redis::RedisResult<T>,
    ) -> Result<T, DbError> {
        let mut slot = self.conn.lock();
        let conn = match slot.as_mut() {
            Some(c) => c,
            None => slot.insert(connect(&self.client).map_err(|e| db_error(&self.key, e))?),
        };
        match f(conn, &self.key) {
            Ok(v) => Ok(v),
            Err(e) => {
                if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
                    *slot = None; // reconnect on the next call
                }
                Err(db_error(&self.key, e))
            }
        }
    }
}

fn connect(client: &redis::Client) -> redis::RedisResult<redis::Connection> {
    let conn = client.get_connection_with_timeout(IO_TIMEOUT)?;
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(conn)
}

impl Db for RedisDb {
    fn push(&self, data: &[u8]) -> Result<(), DbError> {
        self.push_batch(&[data]).map_err(|e| e.source)
    }

    fn pop(&self) -> Result<Option<Vec<u8>>, DbError> {
        self.call(|c, key| redis::cmd("LPOP").arg(key).query(c))
    }

    /// One `LPUSH` of all items: atomic, so on error nothing is stored (see the type's docs
    /// for a connection broken mid-call).
    fn push_batch(&self, items: &[&[u8]]) -> Result<(), PushBatchError> {
        if items.is_empty() {
            return Ok(());
        }
        self.call(|c, key| {
            let mut cmd = redis::cmd("LPUSH");
            cmd.arg(key);
            for item in items {
                cmd.arg(*item);
            }
            cmd.query::<i64>(c).map(|_| ())
        })
        .map_err(|source| PushBatchError { stored: 0, source })
    }

    /// One `LPOP key count`, newest first.
    fn pop_batch(&self, max: usize) -> Result<Vec<Vec<u8>>, DbError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let got: Option<Vec<Vec<u8>>> =
            self.call(|c, key| redis::cmd("LPOP").arg(key).arg(max).query(c))?;
        Ok(got.unwrap_or_default())
    }

    fn is_shared(&self) -> bool {
        true
    }
}
