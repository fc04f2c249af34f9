//! `load`: publishes appends through NATS, collects the responses and checks the result.
//! `load --help` lists every flag, its default and its environment variable. Prints
//! `progress N` lines while running and one `objlog load:` summary line; exits 1 when the
//! check fails.

use std::time::Duration;

use clap::Parser;
use objlog::Error;
use objlog::client::Client;
use objlog::error::chain;
use objlog::load::{LoadConfig, RunId, check, run};

/// Load and check tool: publishes appends over objects, waits for every response, and with
/// --check 1 verifies the responses, the table and the paged logs.
#[derive(Debug, Parser)]
#[command(name = "load", version)]
struct Args {
    /// NATS URL (falls back to $LIFOSTORE_NATS_URL).
    #[arg(long, value_name = "URL", env = "OBJLOG_NATS_URL")]
    nats: Option<String>,
    /// The workers' PostgreSQL shards, same order, for --check (falls back to
    /// $LIFOSTORE_POSTGRES_URL).
    #[arg(long, value_name = "URL[,URL...]", env = "OBJLOG_PG_URL")]
    pg: Option<String>,
    /// Appends to publish.
    #[arg(
        long,
        value_name = "N",
        env = "OBJLOG_LOAD_TOTAL",
        default_value_t = 100_000
    )]
    total: usize,
    /// Objects the appends are spread over (1..=1000).
    #[arg(
        long,
        value_name = "N",
        env = "OBJLOG_LOAD_OBJECTS",
        default_value_t = 100
    )]
    objects: u64,
    /// Publisher threads.
    #[arg(
        long,
        value_name = "N",
        env = "OBJLOG_LOAD_THREADS",
        default_value_t = 8
    )]
    threads: usize,
    /// Publishes each thread keeps waiting for their stream ack.
    #[arg(
        long,
        value_name = "N",
        env = "OBJLOG_LOAD_IN_FLIGHT",
        default_value_t = 256
    )]
    in_flight: usize,
    /// Length of each log message.
    #[arg(
        long,
        value_name = "BYTES",
        env = "OBJLOG_LOAD_LOG_BYTES",
        default_value_t = 40
    )]
    log_bytes: usize,
    /// Longest the run waits for all responses.
    #[arg(
        long,
        value_name = "SECS",
        env = "OBJLOG_LOAD_TIMEOUT_S",
        default_value_t = 300
    )]
    timeout_s: u64,
    /// A `progress N` line every this many responses.
    #[arg(
        long,
        value_name = "N",
        env = "OBJLOG_LOAD_PROGRESS_EVERY",
        default_value_t = 10_000
    )]
    progress_every: usize,
    /// 1: check responses, rows and paged logs after the run.
    #[arg(
        long,
        value_name = "0|1",
        env = "OBJLOG_LOAD_CHECK",
        default_value_t = 0
    )]
    check: u8,
    /// Page size of the check's queries.
    #[arg(
        long,
        value_name = "N",
        env = "OBJLOG_LOAD_QUERY_LIMIT",
        default_value_t = 1000
    )]
    query_limit: u32,
    /// Appends per second over all threads; 0 = as fast as the stream takes them.
    #[arg(long, value_name = "N", env = "OBJLOG_LOAD_RATE", default_value_t = 0)]
    rate: u64,
    /// 1: instead of a load, print every running worker's counters (logs.stats) and exit.
    #[arg(
        long,
        value_name = "0|1",
        env = "OBJLOG_LOAD_STATS",
        default_value_t = 0
    )]
    stats: u8,
}

fn or_env(given: Option<String>, fallback: &str, flag: &str) -> Result<String, Error> {
    given
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var(fallback).ok().filter(|s| !s.is_empty()))
        .ok_or_else(|| Error::Config(format!("missing --{flag} (or {fallback})")))
}

fn main_result(a: Args) -> Result<bool, Error> {
    let cfg = LoadConfig {
        total: a.total,
        objects: a.objects,
        threads: a.threads,
        in_flight: a.in_flight,
        log_bytes: a.log_bytes,
        timeout: Duration::from_secs(a.timeout_s),
        progress_every: a.progress_every,
        rate: a.rate,
    };
    let client = Client::connect(&or_env(a.nats, "LIFOSTORE_NATS_URL", "nats")?)?;
    if a.stats == 1 {
        let lines = client.stats(Duration::from_millis(500))?;
        lines.iter().for_each(|l| println!("{l}"));
        return Ok(!lines.is_empty());
    }
    let id = RunId::fresh();
    let (report, tracker) = run(&client, &cfg, id)?;
    println!("{report}");
    if a.check == 0 {
        return Ok(report.answered == report.published);
    }
    let pg = or_env(a.pg, "LIFOSTORE_POSTGRES_URL", "pg")?;
    let shards: Vec<&str> = pg.split(',').collect();
    let c = check(&client, &shards, &cfg, id, &tracker, a.query_limit)?;
    println!("{c}");
    Ok(c.passed())
}

fn main() {
    match main_result(Args::parse()) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("objlog load: {}", chain(&e));
            std::process::exit(2);
        }
    }
}
