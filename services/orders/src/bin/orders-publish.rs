//! `orders-publish`: publishes N random valid orders and M junk messages to JetStream, and
//! prints the ids of the valid orders it sent (`--print-ids`) or writes them whole (`--out`).
//! `orders-publish --help` lists every flag, its default and its environment variable.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::process::ExitCode;

use clap::Parser;
use orders::error_chain::chain;
use orders::publish::{PublishPlan, Sent, publish};

/// Publishes random valid orders and junk messages to the orders stream, every publish
/// acknowledged by JetStream.
#[derive(Debug, Parser)]
#[command(name = "orders-publish", version)]
struct Args {
    /// NATS URL (falls back to $LIFOSTORE_NATS_URL).
    #[arg(long, value_name = "URL", env = "ORDERS_NATS_URL")]
    nats: Option<String>,
    /// Stream to create if missing.
    #[arg(long, env = "ORDERS_STREAM", default_value = "ORDERS")]
    stream: String,
    /// Subject to publish on.
    #[arg(long, env = "ORDERS_SUBJECT", default_value = "orders")]
    subject: String,
    /// Valid orders to publish.
    #[arg(
        long,
        value_name = "N",
        env = "ORDERS_PUBLISH_COUNT",
        default_value_t = 10_000
    )]
    count: u64,
    /// Junk messages to publish, shuffled among the orders.
    #[arg(
        long,
        value_name = "N",
        env = "ORDERS_PUBLISH_JUNK",
        default_value_t = 1_000
    )]
    junk: u64,
    /// Seed: the order ids are `<seed hex>-<index>`.
    #[arg(long, env = "ORDERS_PUBLISH_SEED", default_value_t = 1)]
    seed: u64,
    /// Messages per second (default: as fast as the acks come back).
    #[arg(long, value_name = "MSGS_PER_SEC", env = "ORDERS_PUBLISH_RATE")]
    rate: Option<f64>,
    /// Write every valid order sent, one JSON per line, to this file.
    #[arg(long, value_name = "FILE", env = "ORDERS_PUBLISH_OUT")]
    out: Option<std::path::PathBuf>,
    /// Print the id of every valid order sent, one per line, on stdout (the summary goes to
    /// stderr).
    #[arg(long, env = "ORDERS_PUBLISH_PRINT_IDS")]
    print_ids: bool,
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let url = args
        .nats
        .filter(|u| !u.is_empty())
        .or_else(|| std::env::var("LIFOSTORE_NATS_URL").ok())
        .ok_or("no NATS URL: pass --nats or set ORDERS_NATS_URL")?;
    let plan = PublishPlan {
        url,
        stream: args.stream,
        subject: args.subject,
        count: args.count,
        junk: args.junk,
        seed: args.seed,
        rate: args.rate,
    };
    let mut orders: Box<dyn Write> = match &args.out {
        Some(path) => {
            Box::new(BufWriter::new(File::create(path).map_err(|e| {
                format!("cannot create --out {}: {e}", path.display())
            })?))
        }
        None => Box::new(std::io::sink()),
    };
    let stdout = std::io::stdout();
    let mut ids: Box<dyn Write> = if args.print_ids {
        Box::new(BufWriter::new(stdout.lock()))
    } else {
        Box::new(std::io::sink())
    };
    let sent = Sent {
        orders: &mut *orders,
        ids: &mut *ids,
    };
    let took = publish(&plan, sent)?;
    let total = plan.count + plan.junk;
    eprintln!(
        "published {} valid + {} junk in {:.3} s ({:.0} msg/s)",
        plan.count,
        plan.junk,
        took.as_secs_f64(),
        total as f64 / took.as_secs_f64().max(1e-9)
    );
    Ok(())
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("orders-publish: {}", chain(&*e));
            ExitCode::FAILURE
        }
    }
}
