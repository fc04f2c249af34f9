//! `worker`: one objlog worker process. `worker --help` lists every flag, its default and its
//! environment variable.

use std::time::Duration;

use clap::{Parser, ValueEnum};
use objlog::error::chain;
use objlog::handler::Mode;
use objlog::worker::{WorkerConfig, run};

/// How appends reach PostgreSQL.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum ModeArg {
    /// Through lifostore: one flush per batch, multi-row INSERTs.
    Batched,
    /// The baseline: one single-row INSERT transaction per append.
    PerInsert,
}

/// Test-only fault injection.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Fault {
    /// Exit once a batch's responses are stored in RESPONSES, before acking them.
    ExitBeforeAck,
}

/// An objlog worker: takes append and query requests from the shared JetStream consumer,
/// writes appends behind to PostgreSQL through lifostore, answers on logs.response.
#[derive(Debug, Parser)]
#[command(name = "worker", version)]
struct Args {
    /// NATS URL; the server must run JetStream (falls back to $LIFOSTORE_NATS_URL).
    #[arg(long, value_name = "URL", env = "OBJLOG_NATS_URL")]
    nats: Option<String>,
    /// PostgreSQL URL, or several comma-separated: shards on a hash ring, listed in the same
    /// order by every worker (falls back to $LIFOSTORE_POSTGRES_URL).
    #[arg(long, value_name = "URL[,URL...]", env = "OBJLOG_PG_URL")]
    pg: Option<String>,
    /// Name in logs and stats (default: w<pid>).
    #[arg(long, env = "OBJLOG_NAME")]
    name: Option<String>,
    /// lifostore window: the longest an append waits unflushed if no flush comes.
    #[arg(
        long,
        value_name = "MS",
        env = "OBJLOG_WINDOW_MS",
        default_value_t = 50
    )]
    window_ms: u64,
    /// Handler threads.
    #[arg(long, value_name = "N", env = "OBJLOG_HANDLERS", default_value_t = 2,
          value_parser = clap::value_parser!(u64).range(1..))]
    handlers: u64,
    /// Most requests per batch handed to a handler.
    #[arg(long, value_name = "N", env = "OBJLOG_BATCH", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..))]
    batch: u64,
    /// Consumer AckWait (set by the worker that creates the shared consumer).
    #[arg(long, value_name = "MS", env = "OBJLOG_ACK_WAIT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    ack_wait_ms: u64,
    /// How appends reach PostgreSQL.
    #[arg(long, value_enum, env = "OBJLOG_MODE", default_value = "batched")]
    mode: ModeArg,
    /// How often a stats line goes to stderr.
    #[arg(long, value_name = "MS", env = "OBJLOG_STATS_EVERY_MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(1..))]
    stats_every_ms: u64,
    /// Serve Prometheus /metrics on this address (e.g. 127.0.0.1:9101); off when not given.
    #[arg(long, value_name = "ADDR", env = "OBJLOG_METRICS")]
    metrics: Option<String>,
    /// For tests only: crash at a chosen point.
    #[arg(long, value_enum, env = "OBJLOG_FAULT")]
    fault: Option<Fault>,
}

fn or_env(given: Option<String>, fallback: &str, what: &str) -> Result<String, String> {
    given
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var(fallback).ok().filter(|s| !s.is_empty()))
        .ok_or_else(|| {
            format!(
                "no {what} URL: pass --{what} or set OBJLOG_{}_URL",
                what.to_uppercase()
            )
        })
}

fn config(a: Args) -> Result<WorkerConfig, String> {
    let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    Ok(WorkerConfig {
        name: a.name.unwrap_or_else(|| format!("w{}", std::process::id())),
        nats_url: or_env(a.nats, "LIFOSTORE_NATS_URL", "nats")?,
        pg_urls: or_env(a.pg, "LIFOSTORE_POSTGRES_URL", "pg")?
            .split(',')
            .map(str::to_string)
            .collect(),
        window: Duration::from_millis(a.window_ms),
        handlers: size(a.handlers),
        max_batch: size(a.batch),
        ack_wait: Duration::from_millis(a.ack_wait_ms),
        mode: match a.mode {
            ModeArg::Batched => Mode::Batched,
            ModeArg::PerInsert => Mode::PerInsert,
        },
        stats_every: Duration::from_millis(a.stats_every_ms),
        exit_before_ack: matches!(a.fault, Some(Fault::ExitBeforeAck)),
        metrics: a.metrics,
    })
}

fn main() {
    let cfg = match config(Args::parse()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("objlog worker: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(cfg) {
        eprintln!("objlog worker: {}", chain(&e));
        std::process::exit(1);
    }
}
