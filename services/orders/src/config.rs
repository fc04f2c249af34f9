//! [`Config`]: the service's settings, from flags with environment fallbacks.

use std::time::Duration;

use crate::edge::EdgeConfig;
use crate::orders_db::InsertMode;

/// Every setting of the `orders` binary.
#[derive(Debug, Clone)]
pub struct Config {
    /// PostgreSQL URL (`--postgres`, `ORDERS_POSTGRES_URL`, `LIFOSTORE_POSTGRES_URL`).
    pub postgres_url: String,
    /// The NATS side.
    pub edge: EdgeConfig,
    /// HTTP listen address (`--http`, default 127.0.0.1:8080).
    pub http: String,
    /// HTTP worker threads (`--http-threads`, default 4).
    pub http_threads: usize,
    /// Ingest worker threads (`--workers`, default 2).
    pub workers: usize,
    /// One statement per batch, or per order (`--row-by-row`, the benchmark baseline).
    pub insert_mode: InsertMode,
    /// lifostore buffer capacity in orders (`--buffer`, default 50 000).
    pub buffer_items: usize,
    /// Most orders per INSERT statement (`--db-batch`, default 1000).
    pub db_batch: usize,
    /// lifostore durability window (`--window-secs`, default 60).
    pub window: Duration,
    /// Fault injection for the tests (`--abort-after-flushes N`): the process aborts right
    /// after its N-th successful flush, before acking, as a crash at the worst moment would.
    pub abort_after_flushes: Option<u64>,
}

/// A bad command line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A flag this binary does not know.
    #[error("unknown argument {0:?}; see the README for the flags")]
    Unknown(String),
    /// A flag without its value, or with one that does not parse.
    #[error("{flag} needs {wanted}")]
    BadValue {
        /// The flag.
        flag: String,
        /// What it takes.
        wanted: &'static str,
    },
    /// A required URL given neither as a flag nor in the environment.
    #[error("no {what} URL: pass {flag} or set {env} (bash services/orders/run does it for you)")]
    Missing {
        /// Which server.
        what: &'static str,
        /// The flag.
        flag: &'static str,
        /// The environment variable.
        env: &'static str,
    },
}

fn env_url(vars: [&str; 2]) -> Option<String> {
    vars.iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
}

fn number<T: std::str::FromStr>(flag: &str, value: Option<String>) -> Result<T, ConfigError> {
    value
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| ConfigError::BadValue {
            flag: flag.to_string(),
            wanted: "a positive number",
        })
}

impl Config {
    /// Parses `args` (without the program name).
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Config, ConfigError> {
        let mut cfg = Config::defaults();
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            let text = |v: Option<String>| {
                v.ok_or_else(|| ConfigError::BadValue {
                    flag: flag.clone(),
                    wanted: "a value",
                })
            };
            match flag.as_str() {
                "--postgres" => cfg.postgres_url = text(args.next())?,
                "--nats" => cfg.edge.url = text(args.next())?,
                "--http" => cfg.http = text(args.next())?,
                "--stream" => cfg.edge.stream = text(args.next())?,
                "--subject" => cfg.edge.subject = text(args.next())?,
                "--consumer" => cfg.edge.consumer = text(args.next())?,
                "--http-threads" => cfg.http_threads = number(&flag, args.next())?,
                "--workers" => cfg.workers = number(&flag, args.next())?,
                "--batch" => cfg.edge.batch = number(&flag, args.next())?,
                "--buffer" => cfg.buffer_items = number(&flag, args.next())?,
                "--db-batch" => cfg.db_batch = number(&flag, args.next())?,
                "--ack-wait-secs" => cfg.edge.ack_wait = secs(number(&flag, args.next())?),
                "--window-secs" => cfg.window = secs(number(&flag, args.next())?),
                "--row-by-row" => cfg.insert_mode = InsertMode::RowByRow,
                "--abort-after-flushes" => {
                    cfg.abort_after_flushes = Some(number(&flag, args.next())?)
                }
                _ => return Err(ConfigError::Unknown(flag)),
            }
        }
        cfg.check()
    }

    fn defaults() -> Config {
        Config {
            postgres_url: env_url(["ORDERS_POSTGRES_URL", "LIFOSTORE_POSTGRES_URL"])
                .unwrap_or_default(),
            edge: EdgeConfig {
                url: env_url(["ORDERS_NATS_URL", "LIFOSTORE_NATS_URL"]).unwrap_or_default(),
                stream: "ORDERS".into(),
                subject: "orders".into(),
                consumer: "orders-service".into(),
                ack_wait: Duration::from_secs(30),
                max_ack_pending: 100_000,
                batch: 1000,
            },
            http: "127.0.0.1:8080".into(),
            http_threads: 4,
            workers: 2,
            insert_mode: InsertMode::Batched,
            buffer_items: 50_000,
            db_batch: 1000,
            window: Duration::from_secs(60),
            abort_after_flushes: None,
        }
    }

    fn check(mut self) -> Result<Config, ConfigError> {
        self.http_threads = self.http_threads.max(1);
        self.workers = self.workers.max(1);
        self.edge.batch = self.edge.batch.max(1);
        self.buffer_items = self.buffer_items.max(1);
        self.db_batch = self.db_batch.max(1);
        if self.postgres_url.is_empty() {
            return Err(ConfigError::Missing {
                what: "PostgreSQL",
                flag: "--postgres",
                env: "ORDERS_POSTGRES_URL",
            });
        }
        if self.edge.url.is_empty() {
            return Err(ConfigError::Missing {
                what: "NATS",
                flag: "--nats",
                env: "ORDERS_NATS_URL",
            });
        }
        Ok(self)
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n.max(1))
}
