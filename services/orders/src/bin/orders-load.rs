//! `orders-load`: an open-loop HTTP load generator at a fixed request rate (what wrk2 does;
//! wrk2 is not in Debian).
//!
//! ```text
//! orders-load --addr 127.0.0.1:8080 --ids ids.txt [--rate 10000] [--secs 20] [--connections 16]
//! ```
//! Each keep-alive connection sends `GET /orders/{id}` on its own fixed schedule (connection
//! `i` of `C` at `t0 + (k*C + i) / rate`). Latency is measured from the *scheduled* send time,
//! so a stall counts for every request it delays (no coordinated omission). Prints the
//! achieved rate and the latency percentiles.

use std::error::Error;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Open-loop HTTP load at a fixed rate: GET /orders/{id} over keep-alive connections.
#[derive(Debug, clap::Parser)]
#[command(name = "orders-load", version)]
struct Args {
    /// The service's HTTP address.
    #[arg(
        long,
        value_name = "ADDR",
        env = "ORDERS_LOAD_ADDR",
        default_value = "127.0.0.1:8080"
    )]
    addr: String,
    /// File of order ids to ask for, one per line (e.g. what `orders-publish --print-ids` printed).
    #[arg(long, value_name = "FILE", env = "ORDERS_LOAD_IDS")]
    ids: std::path::PathBuf,
    /// Requests per second over all connections.
    #[arg(
        long,
        value_name = "N",
        env = "ORDERS_LOAD_RATE",
        default_value_t = 10_000.0
    )]
    rate: f64,
    /// How long to run, in seconds.
    #[arg(
        long,
        value_name = "SECS",
        env = "ORDERS_LOAD_SECS",
        default_value_t = 20.0
    )]
    secs: f64,
    /// Keep-alive connections, each on its own thread and schedule.
    #[arg(
        long,
        value_name = "N",
        env = "ORDERS_LOAD_CONNECTIONS",
        default_value_t = 16
    )]
    connections: usize,
}

struct Plan {
    addr: String,
    ids: Vec<String>,
    rate: f64,
    secs: f64,
    connections: usize,
}

fn parse() -> Result<Plan, Box<dyn Error>> {
    let args = <Args as clap::Parser>::parse();
    let text = std::fs::read_to_string(&args.ids)
        .map_err(|e| format!("cannot read --ids {}: {e}", args.ids.display()))?;
    let plan = Plan {
        addr: args.addr,
        ids: text.lines().map(str::to_string).collect(),
        rate: args.rate,
        secs: args.secs,
        connections: args.connections,
    };
    if plan.ids.is_empty() || plan.rate <= 0.0 || plan.connections == 0 {
        return Err(
            "need --ids FILE (one order_uid per line), --rate > 0, --connections > 0".into(),
        );
    }
    Ok(plan)
}

/// Reads one HTTP/1.1 response with a Content-Length body; returns the status.
fn read_response(reader: &mut BufReader<TcpStream>, body: &mut Vec<u8>) -> std::io::Result<u16> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut len = 0;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            len = value.trim().parse().unwrap_or(0);
        }
    }
    body.resize(len, 0);
    reader.read_exact(body)?;
    Ok(status)
}

/// One connection's schedule; returns each request's latency in µs and the failures.
fn connection(plan: &Plan, index: usize, t0: Instant) -> std::io::Result<(Vec<u32>, u64)> {
    let stream = TcpStream::connect(&plan.addr)?;
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let period = plan.connections as f64 / plan.rate;
    let total = (plan.secs * plan.rate / plan.connections as f64) as usize;
    let (mut latencies, mut failures, mut body) = (Vec::with_capacity(total), 0, Vec::new());
    let mut rng = fastrand::Rng::with_seed(index as u64);
    for k in 0..total {
        let due = t0 + Duration::from_secs_f64(k as f64 * period + index as f64 / plan.rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait); // the schedule itself: open-loop pacing
        }
        let id = &plan.ids[rng.usize(..plan.ids.len())];
        write!(writer, "GET /orders/{id} HTTP/1.1\r\nHost: load\r\n\r\n")?;
        if read_response(&mut reader, &mut body)? != 200 {
            failures += 1;
        }
        latencies.push(due.elapsed().as_micros().min(u32::MAX as u128) as u32);
    }
    Ok((latencies, failures))
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    f64::from(sorted[i]) / 1000.0
}

fn run() -> Result<(), Box<dyn Error>> {
    let plan = parse()?;
    let t0 = Instant::now() + Duration::from_millis(200);
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..plan.connections)
            .map(|i| {
                s.spawn({
                    let plan = &plan;
                    move || connection(plan, i, t0)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join()).collect()
    });
    let elapsed = t0.elapsed().as_secs_f64();
    let (mut all, mut failures) = (Vec::new(), 0);
    for result in results {
        let (latencies, failed) = result.map_err(|_| "a load thread panicked")??;
        all.extend(latencies);
        failures += failed;
    }
    if all.is_empty() {
        return Err("no request completed".into());
    }
    all.sort_unstable();
    println!(
        "target {:.0} req/s, achieved {:.0} req/s over {:.1} s, {} requests, {} non-200",
        plan.rate,
        all.len() as f64 / elapsed,
        elapsed,
        all.len(),
        failures
    );
    println!(
        "latency from scheduled send (ms): p50 {:.3} p90 {:.3} p99 {:.3} p99.9 {:.3} max {:.3}",
        percentile(&all, 0.50),
        percentile(&all, 0.90),
        percentile(&all, 0.99),
        percentile(&all, 0.999),
        percentile(&all, 1.0)
    );
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("orders-load: {}", orders::error_chain::chain(&*e));
            ExitCode::FAILURE
        }
    }
}
