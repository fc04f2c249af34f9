//! [`Pool`]: a bounded pool of PostgreSQL connections for the gateway's request threads.

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::MetaError;

/// How long a request waits for a free connection before it fails.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(30);

/// A bounded set of connections, opened on demand.
pub struct Pool {
    config: postgres::Config,
    state: Mutex<PoolState>,
    freed: Condvar,
    max: usize,
}

struct PoolState {
    idle: Vec<postgres::Client>,
    open: usize,
}

impl Pool {
    /// A pool of at most `max` connections to `url` (none opened yet).
    pub fn new(url: &str, max: usize) -> Result<Pool, MetaError> {
        let mut config: postgres::Config = url.parse().map_err(|e| MetaError::Db {
            context: "parsing the PostgreSQL URL",
            source: e,
        })?;
        config.connect_timeout(Duration::from_secs(5));
        Ok(Pool {
            config,
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
            max: max.max(1),
        })
    }

    /// A connection: an idle one, a new one if fewer than `max` are open, else the first
    /// one returned (waiting up to 30 s).
    pub fn get(&self) -> Result<Conn<'_>, MetaError> {
        let mut state = self.state.lock();
        loop {
            if let Some(client) = state.idle.pop() {
                if client.is_closed() {
                    state.open -= 1;
                    continue;
                }
                return Ok(Conn {
                    pool: self,
                    client: Some(client),
                });
            }
            if state.open < self.max {
                state.open += 1;
                drop(state);
                return self.connect();
            }
            if self
                .freed
                .wait_for(&mut state, CHECKOUT_TIMEOUT)
                .timed_out()
            {
                return Err(MetaError::Busy(format!(
                    "all {} PostgreSQL connections stayed busy for {CHECKOUT_TIMEOUT:?}",
                    self.max
                )));
            }
        }
    }

    fn connect(&self) -> Result<Conn<'_>, MetaError> {
        match self.config.connect(postgres::NoTls) {
            Ok(client) => Ok(Conn {
                pool: self,
                client: Some(client),
            }),
            Err(source) => {
                self.state.lock().open -= 1;
                self.freed.notify_one();
                Err(MetaError::Db {
                    context: "connecting to PostgreSQL",
                    source,
                })
            }
        }
    }
}

/// A connection checked out of a [`Pool`]; goes back on drop (a broken one is closed).
pub struct Conn<'p> {
    pool: &'p Pool,
    client: Option<postgres::Client>,
}

impl Deref for Conn<'_> {
    type Target = postgres::Client;
    fn deref(&self) -> &postgres::Client {
        self.client.as_ref().expect("present until drop")
    }
}

impl DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut postgres::Client {
        self.client.as_mut().expect("present until drop")
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        let mut state = self.pool.state.lock();
        match self.client.take() {
            Some(client) if !client.is_closed() => state.idle.push(client),
            _ => state.open -= 1,
        }
        drop(state);
        self.pool.freed.notify_one();
    }
}
