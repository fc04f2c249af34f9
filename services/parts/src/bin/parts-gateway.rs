//! `parts-gateway`: the REST gateway. See `--help`.

use std::path::PathBuf;
use std::time::Duration;

use parts::args::{ArgError, Args};
use parts::gateway::{GatewayConfig, run};
use parts::jobs::JobConfig;
use parts::rebalance::RebalanceConfig;

const HELP: &str = "parts-gateway --postgres URL [--listen 127.0.0.1:8070] [--s3 HOST:PORT]
    [--name gw1] [--heartbeat-timeout-ms 2000] [--slow-penalty-ms 30000]
    [--part-timeout-ms 20000] [--min-node-rate SIZE (per second, default 2M)]
    [--spool-dir DIR] [--job-workers 2] [--job-retry-ms 5000] [--job-max-attempts 10]
    [--garbage-grace-ms 5000] [--rebalance on|off] [--rebalance-interval-ms 5000]
    [--rebalance-trigger 0.03] [--rebalance-min-bytes SIZE (default 64M)]
    [--rebalance-concurrency 2] [--max-connections 512] [--db-connections 32]
Environment: LIFOSTORE_POSTGRES_URL stands for --postgres.";

const FLAGS: &[&str] = &[
    "postgres",
    "listen",
    "s3",
    "name",
    "heartbeat-timeout-ms",
    "slow-penalty-ms",
    "part-timeout-ms",
    "min-node-rate",
    "spool-dir",
    "job-workers",
    "job-retry-ms",
    "job-max-attempts",
    "garbage-grace-ms",
    "rebalance",
    "rebalance-interval-ms",
    "rebalance-trigger",
    "rebalance-min-bytes",
    "rebalance-concurrency",
    "max-connections",
    "db-connections",
    "jobs-table",
];

fn config() -> Result<GatewayConfig, ArgError> {
    let a = Args::parse(std::env::args().skip(1), FLAGS)?;
    let postgres = a
        .text("postgres")
        .or_else(|| std::env::var("LIFOSTORE_POSTGRES_URL").ok())
        .ok_or_else(|| ArgError::from("missing --postgres URL (or LIFOSTORE_POSTGRES_URL)"))?;
    let rebalance = match a.text("rebalance").as_deref() {
        None | Some("on") => true,
        Some("off") => false,
        Some(other) => {
            return Err(ArgError::from(format!(
                "--rebalance {other:?}: use on or off"
            )));
        }
    };
    Ok(GatewayConfig {
        name: a.text("name").unwrap_or_else(|| "gw1".into()),
        listen: a.text("listen").unwrap_or_else(|| "127.0.0.1:8070".into()),
        s3_listen: a.text("s3"),
        postgres,
        heartbeat_timeout: a.millis("heartbeat-timeout-ms", Duration::from_secs(2))?,
        slow_penalty: a.millis("slow-penalty-ms", Duration::from_secs(30))?,
        part_timeout: a.millis("part-timeout-ms", Duration::from_secs(20))?,
        min_node_rate: a.size("min-node-rate")?.unwrap_or(2 << 20),
        spool_dir: a
            .text("spool-dir")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir),
        jobs: JobConfig {
            table: a.text("jobs-table").unwrap_or_else(|| "parts_jobs".into()),
            workers: a.number("job-workers", 2)?,
            retry: a.millis("job-retry-ms", Duration::from_secs(5))?,
            max_attempts: a.number("job-max-attempts", 10)?,
            grace: a.millis("garbage-grace-ms", Duration::from_secs(5))?,
        },
        rebalance: RebalanceConfig {
            enabled: rebalance,
            interval: a.millis("rebalance-interval-ms", Duration::from_secs(5))?,
            trigger: a.number("rebalance-trigger", 0.03)?,
            min_bytes: a.size("rebalance-min-bytes")?.unwrap_or(64 << 20),
            concurrency: a.number("rebalance-concurrency", 2)?,
            batch: 256,
        },
        max_connections: a.number("max-connections", 512)?,
        db_connections: a.number("db-connections", 32)?,
    })
}

fn main() {
    parts::args::main_with("parts-gateway", HELP, config, run);
}
