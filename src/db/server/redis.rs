//! [`RedisDb`]: a Redis list as the stack (feature `redis`): its Lua scripts, and the
//! [`Protocol`] that runs them for the client core, which makes a lost reply harmless.

use std::time::{Duration, SystemTime};

use super::client::{Popped, Protocol, ServerClient};
use super::redis_wake::{RedisChannel, channel_of};
use super::wake::ServerWatch;
use crate::db::interface::{Capabilities, Db, DbLeases, refuse_oversize};
use crate::db::lease::{DbLease, LeaseId, lease_result, system_time, ttl_millis};
use crate::db::watch::DbWatch;
use crate::error::{DbError, PushBatchError};

/// How long connecting, reading and writing may take before a call fails.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Redis's largest bulk string by default (`proto-max-bulk-len`, 512 MB): the item limit when
/// the server does not tell its own (`CONFIG GET` may be disabled).
const DEFAULT_MAX_ITEM_LEN: usize = 512 << 20;

/// How long the server keeps a client's markers and its last popped batch after its last call:
/// a retry after a lost reply must come within this time to be recognised.
const MARKER_TTL_SECS: u64 = 24 * 3600;

/// How long a `push_leased` call's mark outlives its leases' ttl. Past the deadline the items
/// come back on top anyway (a retry then gets ids that ack as expired); the margin only covers
/// a retry racing the deadline. After it the mark is gone, so marks do not pile up.
const MARK_MARGIN_MS: u64 = 60_000;

/// The longest a mark lives (ten years): `PEXPIRE` refuses a time that overflows the server's
/// clock, and a script that fails after its writes does not roll them back.
const MAX_MARK_MS: u64 = 10 * 365 * 24 * 3600 * 1000;

/// Push: `LPUSH` the items, skipping the leading ones an earlier attempt of this client already
/// stored. KEYS: list, client hash. ARGV: batch id, ttl, attempt count, (attempt id, stored)
/// pairs, items. The client hash's `batch` field names the last batch this client stored.
const PUSH_SCRIPT: &str = r"
local last = redis.call('HGET', KEYS[2], 'batch')
local n = tonumber(ARGV[3])
local skip = 0
for i = 0, n - 1 do
  if last == ARGV[4 + 2 * i] then skip = tonumber(ARGV[5 + 2 * i]) end
end
for i = 4 + 2 * n + skip, #ARGV, 4096 do
  redis.call('LPUSH', KEYS[1], unpack(ARGV, i, math.min(i + 4095, #ARGV)))
end
redis.call('HSET', KEYS[2], 'batch', ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('PUBLISH', KEYS[1] .. ':wake', 's')
return skip
";

/// The start of every script that takes or ends leases: puts the leases whose deadline (server
/// time, ms) has passed back on top of the list, oldest lease first. KEYS[1] is the list,
/// KEYS[4] the lease hash (id -> item), KEYS[5] the deadlines (a sorted set of ids). Leaves
/// the server's time in `now`.
macro_rules! return_expired {
    () => {
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expired = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now)
table.sort(expired, function(a, b) return tonumber(a) < tonumber(b) end)
for _, id in ipairs(expired) do
  local item = redis.call('HGET', KEYS[4], id)
  if item then redis.call('LPUSH', KEYS[1], item) end
  redis.call('HDEL', KEYS[4], id)
  redis.call('ZREM', KEYS[5], id)
end
"
    };
}

/// Lease: return expired leases, `LPOP` up to max items, and hold each in the lease hash under
/// a new id (from `INCRBY` on KEYS[3]; the newest item gets the largest) with its deadline.
/// KEYS: list, -, id counter, lease hash, deadlines. ARGV: max, ttl in ms. Returns id, item
/// pairs, newest first.
const LEASE_SCRIPT: &str = concat!(
    return_expired!(),
    r"
local items = redis.call('LPOP', KEYS[1], tonumber(ARGV[1]))
if not items then return {} end
local last = redis.call('INCRBY', KEYS[3], #items)
local out = {}
for i, item in ipairs(items) do
  local id = last - i + 1
  redis.call('HSET', KEYS[4], id, item)
  redis.call('ZADD', KEYS[5], now + tonumber(ARGV[2]), id)
  out[#out + 1] = tostring(id)
  out[#out + 1] = item
end
redis.call('PUBLISH', KEYS[1] .. ':wake', 'l ' .. (now + tonumber(ARGV[2])))
return out
"
);

/// Store leased: return expired leases; then, if the call's mark KEYS[6] (a list of ids) exists,
/// an earlier attempt of this call landed: answer its ids and store nothing. Otherwise hold each
/// of ARGV[3..] (items, oldest first) in the lease hash under a new id (from `INCRBY` on
/// KEYS[3]; the oldest gets the smallest) with its deadline, and record the ids in the mark,
/// which expires by itself (`PEXPIRE` ARGV[2] ms); the list is not touched. KEYS as for the
/// lease script, then the mark. ARGV: ttl in ms, the mark's lifetime in ms, items. Returns the
/// ids, in the order of the items.
const STORE_LEASED_SCRIPT: &str = concat!(
    return_expired!(),
    r"
local done = redis.call('LRANGE', KEYS[6], 0, -1)
if #done > 0 then
  local ids = {}
  for i, id in ipairs(done) do ids[i] = tonumber(id) end
  return ids
end
local n = #ARGV - 2
if n == 0 then return {} end
local last = redis.call('INCRBY', KEYS[3], n)
local out = {}
for i = 1, n do
  local id = last - n + i
  redis.call('HSET', KEYS[4], id, ARGV[i + 2])
  redis.call('ZADD', KEYS[5], now + tonumber(ARGV[1]), id)
  out[#out + 1] = id
end
for i = 1, n, 4096 do
  redis.call('RPUSH', KEYS[6], unpack(out, i, math.min(i + 4095, n)))
end
redis.call('PEXPIRE', KEYS[6], ARGV[2])
redis.call('PUBLISH', KEYS[1] .. ':wake', 'l ' .. (now + tonumber(ARGV[1])))
return out
"
);

/// Ack or release: return expired leases, then end the held ones of ARGV[2..] (ids); a
/// release (ARGV[1] = 'release') puts their items back on top, oldest lease first. KEYS as
/// for the lease script. Returns how many ids were not held.
const END_SCRIPT: &str = concat!(
    return_expired!(),
    r"
local ids = {}
for i = 2, #ARGV do ids[#ids + 1] = tonumber(ARGV[i]) end
table.sort(ids)
local missing = 0
for _, id in ipairs(ids) do
  local item = redis.call('HGET', KEYS[4], id)
  if item then
    if ARGV[1] == 'release' then redis.call('LPUSH', KEYS[1], item) end
    redis.call('HDEL', KEYS[4], id)
    redis.call('ZREM', KEYS[5], id)
  else
    missing = missing + 1
  end
end
if ARGV[1] == 'release' and missing < #ids then redis.call('PUBLISH', KEYS[1] .. ':wake', 's') end
return missing
"
);

/// Pop: first settle the client's previous pop (its reply arrived: forget its items; it did
/// not: put them back on top), then `LPOP` and keep a copy of what was taken until the next
/// call says the reply arrived; expired leases go back on top before anything. KEYS: list,
/// client hash, taken list, lease hash, deadlines. ARGV: acknowledged pop sequence, this pop's
/// sequence, max, ttl, "release" (drop the client's keys when max is 0).
const POP_SCRIPT: &str = concat!(
    return_expired!(),
    r"
local seq = redis.call('HGET', KEYS[2], 'pop')
if seq then
  if seq ~= ARGV[1] then
    local lost = redis.call('LRANGE', KEYS[3], 0, -1)
    for i = #lost, 1, -1 do redis.call('LPUSH', KEYS[1], lost[i]) end
  end
  redis.call('DEL', KEYS[3])
  redis.call('HDEL', KEYS[2], 'pop')
end
local max = tonumber(ARGV[3])
if max == 0 then
  if ARGV[5] == 'release' then redis.call('DEL', KEYS[2]) end
  return {}
end
local items = redis.call('LPOP', KEYS[1], max)
if not items then return {} end
for i = 1, #items, 4096 do
  redis.call('RPUSH', KEYS[3], unpack(items, i, math.min(i + 4095, #items)))
end
redis.call('HSET', KEYS[2], 'pop', ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('EXPIRE', KEYS[3], ARGV[4])
return items
"
);

/// A [`Db`] over a Redis list: a batch push is one `LPUSH` of many values, oldest first, so the
/// newest ends at the head; a batch pop is one `LPOP key count`. Both run inside a Lua script
/// (`EVAL`, one round trip, atomic) that makes a lost reply harmless, see below.
///
/// Any number of processes may share one key: Redis runs each script atomically, so every
/// item is popped by exactly one of them. Durability is Redis's: run it with
/// `appendonly yes` and `appendfsync always` (or `everysec`, accepting a second of loss) if
/// items that reached the Db must survive a server crash.
///
/// One connection per `RedisDb`, opened eagerly by [`open`](Self::open) (so a bad URL or an
/// unreachable server fails there, clearly) and re-opened lazily after a connection error, so a
/// restarted server is picked up by the next call.
///
/// # When the connection breaks after the server executed a call
///
/// Each `RedisDb` is a client with a random id and two keys of its own next to the list:
/// `<key>:client:<id>` (a hash) and `<key>:taken:<id>` (a list).
///
/// * **Push.** Every batch carries a batch id; the script stores the id of the last batch it
///   stored in the client's hash. When a push fails after its request may have reached the
///   server, the `RedisDb` keeps the batch's id and items. If the next push starts with the
///   same items (the storage retries a failed batch first), the script skips the ones that
///   batch already stored. So a retried batch is stored **once**, not twice. Left over: if the
///   retry no longer contains some items of the lost batch (a `pop` took them from memory in
///   between), those items exist twice: in the Db and in the caller's hands.
/// * **Pop.** The script keeps a copy of what it took in the client's taken list, and every
///   call says which pop's reply arrived. The next call forgets the copy when the reply
///   arrived and puts the items back on top of the list when it did not, then pops. So an
///   item whose reply was lost is **not lost**: the next pop (of any process, once it is back
///   on the list) returns it. Left over: back on top means above items other processes pushed
///   in between; until this client calls again other processes do not see them; dropping
///   the `RedisDb` settles them (reconnecting if the lost reply broke the connection), but a
///   process that dies first leaves them in the taken list until its keys expire, 24 h after
///   its last call: then they are dropped, as they would have been without the copy.
/// * A retry more than 24 h after the lost reply, or after more than 16 in-doubt attempts in a
///   row, is not recognised: its items are stored twice.
///
/// # Leases
///
/// [`pop_lease`](DbLeases::pop_lease) moves items from the list into `<key>:leases` (a hash: id ->
/// item) and stamps each id's deadline, in the server's clock, into `<key>:lease_deadlines` (a
/// sorted set); ids come from `INCRBY <key>:lease_seq`, so they never repeat for a key. Every
/// lease, ack, release and pop script first moves the expired leases back on top of the list
/// (oldest lease first), so a lease whose holder died comes back at its deadline, for any
/// client of the key: the server's clock decides, not the clients'. One round trip per call.
/// A lease whose reply was lost is not lost: it comes back at its deadline.
/// [`push_leased`](DbLeases::push_leased) records the ids it stored under the call's token in
/// `<key>:lmark:<client>:<n>` (a list expiring a minute after the leases' ttl); a call whose
/// reply was lost is retried by the storage with the same items and token, and the script
/// answers the recorded ids instead of storing the items a second time. An ack whose reply
/// was lost and is retried reports the ids it acked as [`DbError::LeaseExpired`]. Durable as
/// the list is (`appendfsync`).
///
/// Cost: one hash write per push; per pop, a copy of the popped items into the taken list and
/// its deletion by the next call; about 5 to 10 times the server CPU per call, small next to
/// an `appendfsync always` write (the README's backend section has the figures).
///
/// ```no_run
/// use lifostore::{RedisDb, Storage};
///
/// let db = RedisDb::open("redis://127.0.0.1:6379/")?.with_key("jobs:lifo");
/// let storage = Storage::new(db)?;
/// # Ok::<(), lifostore::Error>(())
/// ```
pub struct RedisDb {
    client: ServerClient<Redis>,
}

/// The server, the list's key and what the server told at open.
struct Redis {
    client: redis::Client,
    key: String,
    /// The server's `proto-max-bulk-len`, read at open.
    max_item_len: usize,
}

impl std::fmt::Debug for RedisDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisDb")
            .field("key", &self.client.protocol().key)
            .field("client", &self.client.id())
            .finish_non_exhaustive()
    }
}

fn db_error(context: &str, err: redis::RedisError) -> DbError {
    if err.code() == Some("WRONGTYPE") {
        return DbError::Rejected {
            reason: format!("redis: {context}: the key holds a value that is not a list ({err})"),
        };
    }
    DbError::Other(std::sync::Arc::new(RedisFailure {
        context: context.to_string(),
        source: err,
    }))
}

#[derive(Debug, thiserror::Error)]
#[error("redis: {context}")]
struct RedisFailure {
    context: String,
    #[source]
    source: redis::RedisError,
}

impl RedisDb {
    /// Connects to the server at `url` (`redis://host:port/db`); the list key is `lifostore`.
    pub fn open(url: &str) -> Result<Self, DbError> {
        let client =
            redis::Client::open(url).map_err(|e| db_error(&format!("opening {url}"), e))?;
        let mut conn =
            connect(&client).map_err(|e| db_error(&format!("connecting to {url}"), e))?;
        let redis = Redis {
            client,
            key: "lifostore".to_string(),
            max_item_len: server_max_item_len(&mut conn),
        };
        Ok(RedisDb {
            client: ServerClient::new(redis, Some(conn)),
        })
    }

    /// Uses `key` as the list's key.
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.client.protocol_mut().key = key.into();
        self
    }

    /// The list's key.
    pub fn key(&self) -> &str {
        &self.client.protocol().key
    }

    /// Number of items in the list (`LLEN`). Items a client popped and has not yet
    /// acknowledged (see the type's docs) are not counted, nor are leased items (expired
    /// leases count again once a call has moved them back).
    pub fn len(&self) -> Result<u64, DbError> {
        self.client
            .run(|redis, c| redis::cmd("LLEN").arg(&redis.key).query(c))
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> Result<bool, DbError> {
        Ok(self.len()? == 0)
    }

    /// One `EVAL` of the end script: ack or release the held ones of `ids`; returns how many
    /// were not held.
    fn end_leases(&self, ids: &[LeaseId], release: bool) -> Result<usize, DbError> {
        self.client.run(|redis, c| {
            let mut cmd = redis.lease_eval(END_SCRIPT, 0);
            cmd.arg(if release { "release" } else { "ack" });
            for id in ids {
                cmd.arg(id.0);
            }
            cmd.query::<usize>(c)
        })
    }
}

impl Redis {
    /// The client's hash and taken list: `<key>:client:<id>`, `<key>:taken:<id>`.
    fn client_keys(&self, client: &str) -> (String, String) {
        (
            format!("{}:client:{client}", self.key),
            format!("{}:taken:{client}", self.key),
        )
    }

    /// The id counter, the lease hash and the deadlines: `<key>:lease_seq`, `<key>:leases`,
    /// `<key>:lease_deadlines`.
    fn lease_keys(&self) -> [String; 3] {
        ["lease_seq", "leases", "lease_deadlines"].map(|k| format!("{}:{k}", self.key))
    }

    /// An `EVAL` of a lease `script` with the KEYS every lease script takes (the list, an
    /// unused slot, the lease sequence, hash and deadline set), then `extra` keys the caller
    /// adds next; the caller adds the ARGV after them.
    fn lease_eval(&self, script: &str, extra: usize) -> redis::Cmd {
        let [seq, leases, deadlines] = self.lease_keys();
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(script)
            .arg(5 + extra)
            .arg(&self.key)
            .arg("-")
            .arg(seq);
        cmd.arg(leases).arg(deadlines);
        cmd
    }

    /// One `EVAL` of the pop script taking up to `max` items (0: only settle the last pop,
    /// and with `release`, forget the client).
    fn pop_script(
        &self,
        conn: &mut redis::Connection,
        client: &str,
        (acked, seq): (i64, i64),
        (max, release): (usize, bool),
    ) -> redis::RedisResult<Vec<Vec<u8>>> {
        let (hash, taken) = self.client_keys(client);
        let [_, leases, deadlines] = self.lease_keys();
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(POP_SCRIPT)
            .arg(5)
            .arg(&self.key)
            .arg(&hash)
            .arg(&taken)
            .arg(&leases)
            .arg(&deadlines)
            .arg(acked)
            .arg(seq)
            .arg(max)
            .arg(MARKER_TTL_SECS)
            .arg(if release { "release" } else { "" });
        cmd.query(conn)
    }
}

impl Protocol for Redis {
    type Conn = redis::Connection;
    type Error = redis::RedisError;

    fn connect(&self) -> Result<redis::Connection, DbError> {
        connect(&self.client)
            .map_err(|e| db_error(&format!("reconnecting for key {}", self.key), e))
    }

    fn is_closed(_: &redis::Connection) -> bool {
        false // a broken connection is noticed by its error (`broke`)
    }

    fn broke(_: &redis::Connection, e: &redis::RedisError) -> bool {
        e.is_io_error() || e.is_connection_dropped() || e.is_timeout()
    }

    /// Every failure but a refused connection may come after the server ran the script.
    fn in_doubt(_: &redis::RedisError) -> bool {
        true
    }

    fn error(&self, e: redis::RedisError) -> DbError {
        db_error(&format!("a call on key {}", self.key), e)
    }

    /// One `EVAL` of the push script: atomic.
    fn push(
        &self,
        conn: &mut redis::Connection,
        client: &str,
        batch: i64,
        attempts: &[(i64, i64)],
        items: &[&[u8]],
    ) -> redis::RedisResult<()> {
        let (hash, _) = self.client_keys(client);
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(PUSH_SCRIPT).arg(2).arg(&self.key).arg(&hash);
        cmd.arg(batch).arg(MARKER_TTL_SECS).arg(attempts.len());
        for (attempt, stored) in attempts {
            cmd.arg(attempt).arg(stored);
        }
        for item in items {
            cmd.arg(*item);
        }
        cmd.query::<i64>(conn).map(drop)
    }

    /// The pop script returns expired leases on top itself, before it pops.
    fn pop(
        &self,
        conn: &mut redis::Connection,
        client: &str,
        seqs: (i64, i64),
        max: usize,
    ) -> redis::RedisResult<Popped> {
        let items = self.pop_script(conn, client, seqs, (max, false))?;
        Ok(Popped {
            items,
            expired_first: false,
        })
    }

    fn release(
        &self,
        conn: &mut redis::Connection,
        client: &str,
        acked: i64,
    ) -> redis::RedisResult<()> {
        self.pop_script(conn, client, (acked, acked + 1), (0, true))
            .map(drop)
    }
}

/// The server's largest bulk string, or Redis's default when `CONFIG GET` is not allowed.
fn server_max_item_len(conn: &mut redis::Connection) -> usize {
    let reply: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("proto-max-bulk-len")
        .query(conn);
    reply
        .ok()
        .and_then(|pair| pair.get(1).and_then(|v| v.parse().ok()))
        .unwrap_or(DEFAULT_MAX_ITEM_LEN)
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
        Ok(self.pop_batch(1)?.pop())
    }

    /// One `EVAL` of the push script: atomic, so on error nothing of this attempt is stored,
    /// unless the reply was lost; then a retry of the same items stores only what is missing
    /// (see the type's docs).
    fn push_batch(&self, items: &[&[u8]]) -> Result<(), PushBatchError> {
        refuse_oversize(items, self.client.protocol().max_item_len)?;
        self.client.push_batch(items)
    }

    /// One `EVAL` of the pop script (`LPOP key count` inside), newest first. Items of an
    /// earlier pop whose reply was lost are put back on top first (see the type's docs).
    fn pop_batch(&self, max: usize) -> Result<Vec<Vec<u8>>, DbError> {
        self.client.pop_batch(max)
    }

    /// Shared; the item limit is the server's `proto-max-bulk-len` as read at open (512 MB
    /// unless configured): Redis refuses a longer value, and closes the connection.
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
            .max_item_len(self.client.protocol().max_item_len)
            .shared(true)
    }

    /// `LLEN` (see [`RedisDb::len`]).
    fn item_count(&self) -> Result<Option<u64>, DbError> {
        RedisDb::len(self).map(Some)
    }

    fn leases(&self) -> Option<&dyn DbLeases> {
        Some(self)
    }

    /// Pub/sub on `<key>:wake` over a connection of the watch's own; the push, lease and
    /// release scripts `PUBLISH` inside the script.
    fn watch(&self) -> Result<Option<Box<dyn DbWatch>>, DbError> {
        let redis = self.client.protocol();
        let channel = RedisChannel {
            client: redis.client.clone(),
            channel: channel_of(&redis.key),
        };
        Ok(Some(Box::new(ServerWatch::open(channel)?)))
    }
}

impl DbLeases for RedisDb {
    /// One `EVAL` (see the type's docs, "Leases"): expired leases go back on top, then up to
    /// `max` items move from the list into the lease hash.
    fn pop_lease(&self, max: usize, ttl: Duration) -> Result<Vec<DbLease>, DbError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let ttl_ms = ttl_millis(ttl);
        let flat: Vec<Vec<u8>> = self.client.run(|redis, c| {
            let mut cmd = redis.lease_eval(LEASE_SCRIPT, 0);
            cmd.arg(max).arg(ttl_ms);
            cmd.query(c)
        })?;
        let mut out = Vec::with_capacity(flat.len() / 2);
        for pair in flat.chunks_exact(2) {
            let id = std::str::from_utf8(&pair[0])
                .ok()
                .and_then(|s| s.parse().ok());
            let id = id.ok_or_else(|| DbError::msg("redis: the lease script returned a bad id"))?;
            out.push(DbLease {
                id: LeaseId(id),
                item: pair[1].clone(),
            });
        }
        Ok(out)
    }

    /// One `EVAL`. A retry after a lost reply reports the ids the lost call acked as
    /// [`DbError::LeaseExpired`].
    fn ack(&self, ids: &[LeaseId]) -> Result<(), DbError> {
        lease_result(self.end_leases(ids, false)?)
    }

    /// One `EVAL`; the items go back on top, oldest lease first.
    fn release(&self, leases: &[DbLease]) -> Result<(), DbError> {
        let ids: Vec<LeaseId> = leases.iter().map(|l| l.id).collect();
        lease_result(self.end_leases(&ids, true)?)
    }

    /// One `EVAL` (one script: atomic): the items go into the lease hash with their deadline,
    /// never into the list. A call whose reply was lost is remembered, and a later call of
    /// the same items gets the ids the lost one stored instead of storing them again (see the
    /// type's docs, "Leases").
    fn push_leased(
        &self,
        items: &[&[u8]],
        ttl: Duration,
        call: u64,
    ) -> Result<Vec<LeaseId>, DbError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        refuse_oversize(items, self.client.protocol().max_item_len).map_err(|e| e.source)?;
        let ttl_ms = ttl_millis(ttl);
        let mark_ms = ttl_ms.saturating_add(MARK_MARGIN_MS).min(MAX_MARK_MS);
        let ids: Vec<u64> = self.client.push_leased(items, call, |redis, c, token| {
            let mut cmd = redis.lease_eval(STORE_LEASED_SCRIPT, 1);
            cmd.arg(format!("{}:lmark:{token}", redis.key));
            cmd.arg(ttl_ms).arg(mark_ms);
            for item in items {
                cmd.arg(*item);
            }
            cmd.query(c)
        })?;
        if ids.len() != items.len() {
            return Err(DbError::msg(
                "redis: the store-leased script returned bad ids",
            ));
        }
        Ok(ids.into_iter().map(LeaseId).collect())
    }

    /// The deadlines in the lease deadline set (`ZRANGE ... WITHSCORES`), in the server's
    /// clock.
    fn held_deadlines(&self) -> Result<Vec<SystemTime>, DbError> {
        let scored: Vec<(String, f64)> = self.client.run(|redis, c| {
            let [_, _, deadlines] = redis.lease_keys();
            redis::cmd("ZRANGE")
                .arg(deadlines)
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .query(c)
        })?;
        Ok(scored
            .into_iter()
            .map(|(_, ms)| system_time(ms.max(0.0) as u64))
            .collect())
    }
}
