//! `worker`: one objlog worker process. Flags (environment fallback in brackets):
//! `--nats URL` [OBJLOG_NATS_URL, LIFOSTORE_NATS_URL], `--pg URL[,URL...]` (several = shards
//! on a hash ring, listed in the same order by every worker) [OBJLOG_PG_URL,
//! LIFOSTORE_POSTGRES_URL], `--name`, `--window-ms 50`, `--handlers 2`, `--batch 1000`,
//! `--ack-wait-ms 10000`, `--mode batched|per-insert`, `--stats-every-ms 5000`;
//! for tests only: `--fault exit-before-ack` (exit once a batch's responses are stored,
//! before acking them).

use std::time::Duration;

use objlog::Error;
use objlog::args::Args;
use objlog::handler::Mode;
use objlog::worker::{WorkerConfig, run};

const FLAGS: &[&str] = &[
    "nats",
    "pg",
    "name",
    "window-ms",
    "handlers",
    "batch",
    "ack-wait-ms",
    "mode",
    "stats-every-ms",
    "fault",
];

fn config() -> Result<WorkerConfig, Error> {
    let args = Args::parse(std::env::args().skip(1))?;
    args.reject_unknown(FLAGS)?;
    let mode = match args.text("mode", &[]).as_deref() {
        None | Some("batched") => Mode::Batched,
        Some("per-insert") => Mode::PerInsert,
        Some(other) => {
            return Err(Error::Config(format!(
                "--mode {other:?}: use batched or per-insert"
            )));
        }
    };
    let ms = |name, default| args.number(name, default).map(Duration::from_millis);
    Ok(WorkerConfig {
        name: args
            .text("name", &[])
            .unwrap_or_else(|| format!("w{}", std::process::id())),
        nats_url: args.required("nats", &["OBJLOG_NATS_URL", "LIFOSTORE_NATS_URL"])?,
        pg_urls: args
            .required("pg", &["OBJLOG_PG_URL", "LIFOSTORE_POSTGRES_URL"])?
            .split(',')
            .map(str::to_string)
            .collect(),
        window: ms("window-ms", 50)?,
        handlers: args.number("handlers", 2)?,
        max_batch: args.number("batch", 1000)?,
        ack_wait: ms("ack-wait-ms", 10_000)?,
        mode,
        stats_every: ms("stats-every-ms", 5000)?,
        exit_before_ack: match args.text("fault", &[]).as_deref() {
            None => false,
            Some("exit-before-ack") => true,
            Some(other) => {
                return Err(Error::Config(format!(
                    "--fault {other:?}: only exit-before-ack"
                )));
            }
        },
    })
}

fn main() {
    let result = config().and_then(run);
    if let Err(e) = result {
        eprintln!("objlog worker: {e}");
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            eprintln!("  caused by: {s}");
            source = s.source();
        }
        std::process::exit(1);
    }
}
