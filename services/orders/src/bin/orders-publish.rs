//! `orders-publish`: publishes N random valid orders and M junk messages to JetStream.
//!
//! ```text
//! orders-publish [--nats URL] [--stream ORDERS] [--subject orders] [--count 10000]
//!                [--junk 1000] [--seed 1] [--rate MSGS_PER_SEC] [--out sent.jsonl]
//! ```
//! The valid orders are written, one JSON per line, to `--out` (or nowhere).

use std::error::Error;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::process::ExitCode;

use orders::publish::{PublishPlan, publish};

fn parse() -> Result<(PublishPlan, Option<String>), String> {
    let mut plan = PublishPlan {
        url: std::env::var("ORDERS_NATS_URL")
            .or_else(|_| std::env::var("LIFOSTORE_NATS_URL"))
            .unwrap_or_default(),
        stream: "ORDERS".into(),
        subject: "orders".into(),
        count: 10_000,
        junk: 1_000,
        seed: 1,
        rate: None,
    };
    let mut out = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let bad = || format!("{flag} needs a number, got {value:?}");
        match flag.as_str() {
            "--nats" => plan.url = value,
            "--stream" => plan.stream = value,
            "--subject" => plan.subject = value,
            "--count" => plan.count = value.parse().map_err(|_| bad())?,
            "--junk" => plan.junk = value.parse().map_err(|_| bad())?,
            "--seed" => plan.seed = value.parse().map_err(|_| bad())?,
            "--rate" => plan.rate = Some(value.parse().map_err(|_| bad())?),
            "--out" => out = Some(value),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if plan.url.is_empty() {
        return Err("no NATS URL: pass --nats or set ORDERS_NATS_URL".into());
    }
    Ok((plan, out))
}

fn run() -> Result<(), Box<dyn Error>> {
    let (plan, out) = parse()?;
    let mut sink: Box<dyn Write> = match &out {
        Some(path) => Box::new(BufWriter::new(File::create(path)?)),
        None => Box::new(std::io::sink()),
    };
    let took = publish(&plan, &mut sink)?;
    let total = plan.count + plan.junk;
    println!(
        "published {} valid + {} junk in {:.3} s ({:.0} msg/s)",
        plan.count,
        plan.junk,
        took.as_secs_f64(),
        total as f64 / took.as_secs_f64().max(1e-9)
    );
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("orders-publish: {e}");
            ExitCode::FAILURE
        }
    }
}
