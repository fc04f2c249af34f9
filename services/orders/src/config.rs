//! [`Config`]: the service's settings, from flags (clap) with environment fallbacks.

use std::time::Duration;

use clap::Parser;

use crate::edge::EdgeConfig;
use crate::orders_db::InsertMode;

/// The `orders` command line. Every flag can also be set through its environment variable.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "orders",
    version,
    about = "Order service: NATS JetStream -> validate -> PostgreSQL (write-behind through \
             lifostore) -> cache -> HTTP lookup page and /metrics.",
    after_help = "The URLs fall back to LIFOSTORE_POSTGRES_URL and LIFOSTORE_NATS_URL (what \
                  .ci/with-servers sets); `bash services/orders/run` starts everything."
)]
pub struct Args {
    /// PostgreSQL URL (falls back to $LIFOSTORE_POSTGRES_URL).
    #[arg(long, value_name = "URL", env = "ORDERS_POSTGRES_URL")]
    pub postgres: Option<String>,
    /// NATS URL; the server must run JetStream (falls back to $LIFOSTORE_NATS_URL).
    #[arg(long, value_name = "URL", env = "ORDERS_NATS_URL")]
    pub nats: Option<String>,
    /// HTTP listen address (page, /orders, /stats, /health, /metrics).
    #[arg(
        long,
        value_name = "ADDR",
        env = "ORDERS_HTTP",
        default_value = "127.0.0.1:8080"
    )]
    pub http: String,
    /// JetStream stream holding the orders; invalid reasons are kept in `<stream>_INVALID`.
    #[arg(long, env = "ORDERS_STREAM", default_value = "ORDERS")]
    pub stream: String,
    /// Subject the orders are published on; invalid reasons go to `<subject>.invalid`.
    #[arg(long, env = "ORDERS_SUBJECT", default_value = "orders")]
    pub subject: String,
    /// Durable consumer name; replicas sharing it share the work.
    #[arg(long, env = "ORDERS_CONSUMER", default_value = "orders-service")]
    pub consumer: String,
    /// JetStream redelivery delay for an unacked message (applied when the durable consumer
    /// is created).
    #[arg(long, value_name = "SECS", env = "ORDERS_ACK_WAIT_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub ack_wait_secs: u64,
    /// Ingest threads (validate, push).
    #[arg(long, value_name = "N", env = "ORDERS_WORKERS", default_value_t = 2,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub workers: u64,
    /// Most messages handed to a worker at once.
    #[arg(long, value_name = "N", env = "ORDERS_BATCH", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub batch: u64,
    /// Most orders per INSERT statement.
    #[arg(long, value_name = "N", env = "ORDERS_DB_BATCH", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub db_batch: u64,
    /// lifostore capacity in orders; also the most messages held unacked while PostgreSQL is
    /// down, and the most orders the cache view waits on.
    #[arg(long, value_name = "N", env = "ORDERS_BUFFER", default_value_t = 50_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub buffer: u64,
    /// lifostore durability window.
    #[arg(long, value_name = "SECS", env = "ORDERS_WINDOW_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub window_secs: u64,
    /// HTTP worker threads.
    #[arg(long, value_name = "N", env = "ORDERS_HTTP_THREADS", default_value_t = 4,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub http_threads: u64,
    /// One INSERT per order: the baseline of the benchmark, not for production.
    #[arg(long, env = "ORDERS_ROW_BY_ROW")]
    pub row_by_row: bool,
    /// Fault injection for the tests: abort right after the N-th flush, before the ack.
    #[arg(long, value_name = "N", env = "ORDERS_ABORT_AFTER_FLUSHES")]
    pub abort_after_flushes: Option<u64>,
}

/// Every setting of the `orders` binary.
#[derive(Debug, Clone)]
pub struct Config {
    /// PostgreSQL URL.
    pub postgres_url: String,
    /// The NATS side.
    pub edge: EdgeConfig,
    /// HTTP listen address.
    pub http: String,
    /// HTTP worker threads.
    pub http_threads: usize,
    /// Ingest worker threads.
    pub workers: usize,
    /// One statement per batch, or per order (`--row-by-row`, the benchmark baseline).
    pub insert_mode: InsertMode,
    /// lifostore buffer capacity in orders.
    pub buffer_items: usize,
    /// Most orders per INSERT statement.
    pub db_batch: usize,
    /// lifostore durability window.
    pub window: Duration,
    /// Fault injection for the tests (`--abort-after-flushes N`): the process aborts right
    /// after its N-th successful flush, before acking, as a crash at the worst moment would.
    pub abort_after_flushes: Option<u64>,
}

/// A required URL given neither as a flag nor in the environment.
#[derive(Debug, thiserror::Error)]
#[error("no {what} URL: pass {flag} or set {env} (bash services/orders/run does it for you)")]
pub struct MissingUrl {
    /// Which server.
    pub what: &'static str,
    /// The flag.
    pub flag: &'static str,
    /// The environment variable.
    pub env: &'static str,
}

fn url_or_env(
    given: Option<String>,
    fallback: &str,
    missing: MissingUrl,
) -> Result<String, MissingUrl> {
    given
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var(fallback).ok().filter(|s| !s.is_empty()))
        .ok_or(missing)
}

fn size(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

impl TryFrom<Args> for Config {
    type Error = MissingUrl;

    fn try_from(a: Args) -> Result<Config, MissingUrl> {
        let postgres_url = url_or_env(
            a.postgres,
            "LIFOSTORE_POSTGRES_URL",
            MissingUrl {
                what: "PostgreSQL",
                flag: "--postgres",
                env: "ORDERS_POSTGRES_URL",
            },
        )?;
        let nats_url = url_or_env(
            a.nats,
            "LIFOSTORE_NATS_URL",
            MissingUrl {
                what: "NATS",
                flag: "--nats",
                env: "ORDERS_NATS_URL",
            },
        )?;
        Ok(Config {
            postgres_url,
            edge: EdgeConfig {
                url: nats_url,
                stream: a.stream,
                subject: a.subject,
                consumer: a.consumer,
                ack_wait: Duration::from_secs(a.ack_wait_secs),
                max_ack_pending: 100_000,
                batch: size(a.batch),
            },
            http: a.http,
            http_threads: size(a.http_threads),
            workers: size(a.workers),
            insert_mode: if a.row_by_row {
                InsertMode::RowByRow
            } else {
                InsertMode::Batched
            },
            buffer_items: size(a.buffer),
            db_batch: size(a.db_batch),
            window: Duration::from_secs(a.window_secs),
            abort_after_flushes: a.abort_after_flushes,
        })
    }
}
