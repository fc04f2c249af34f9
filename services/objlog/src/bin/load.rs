//! `load`: publishes appends through NATS, collects the responses and checks the result.
//!
//! Flags (environment fallback in brackets): `--nats URL` [OBJLOG_NATS_URL,
//! LIFOSTORE_NATS_URL], `--pg URL[,URL...]` (the workers' shards, same order) [OBJLOG_PG_URL,
//! LIFOSTORE_POSTGRES_URL] (for `--check`),
//! `--total 100000`, `--objects 100`, `--threads 8`, `--in-flight 256`, `--log-bytes 40`,
//! `--timeout-s 300`, `--progress-every 10000`, `--check 0|1`, `--query-limit 1000`,
//! `--rate 0` (appends/s over all threads; 0 = as fast as the stream takes them).
//! `--stats 1` instead prints every running worker's counters (`logs.stats`) and exits.
//! Prints `progress N` lines while running and one `objlog load:` summary line; exits 1 when
//! the check fails.

use std::time::Duration;

use objlog::Error;
use objlog::args::Args;
use objlog::client::Client;
use objlog::load::{LoadConfig, RunId, check, run};

const FLAGS: &[&str] = &[
    "nats",
    "pg",
    "total",
    "objects",
    "threads",
    "in-flight",
    "log-bytes",
    "timeout-s",
    "progress-every",
    "check",
    "query-limit",
    "rate",
    "stats",
];

fn main_result() -> Result<bool, Error> {
    let args = Args::parse(std::env::args().skip(1))?;
    args.reject_unknown(FLAGS)?;
    let cfg = LoadConfig {
        total: args.number("total", 100_000)?,
        objects: args.number("objects", 100)?,
        threads: args.number("threads", 8)?,
        in_flight: args.number("in-flight", 256)?,
        log_bytes: args.number("log-bytes", 40)?,
        timeout: Duration::from_secs(args.number("timeout-s", 300)?),
        progress_every: args.number("progress-every", 10_000)?,
        rate: args.number("rate", 0)?,
    };
    let client =
        Client::connect(&args.required("nats", &["OBJLOG_NATS_URL", "LIFOSTORE_NATS_URL"])?)?;
    if args.number("stats", 0u8)? == 1 {
        let lines = client.stats(Duration::from_millis(500))?;
        lines.iter().for_each(|l| println!("{l}"));
        return Ok(!lines.is_empty());
    }
    let id = RunId::fresh();
    let (report, tracker) = run(&client, &cfg, id)?;
    println!("{report}");
    if args.number("check", 0u8)? == 0 {
        return Ok(report.answered == report.published);
    }
    let pg = args.required("pg", &["OBJLOG_PG_URL", "LIFOSTORE_POSTGRES_URL"])?;
    let shards: Vec<&str> = pg.split(',').collect();
    let c = check(
        &client,
        &shards,
        &cfg,
        id,
        &tracker,
        args.number("query-limit", 1000)?,
    )?;
    println!("{c}");
    Ok(c.passed())
}

fn main() {
    match main_result() {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("objlog load: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            std::process::exit(2);
        }
    }
}
