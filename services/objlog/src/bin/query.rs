//! `query`: pages one object's log to stdout, oldest first, one entry a line:
//! `<ts> <seq> <log>` (`ts` in microseconds since the Unix epoch; `--json` for JSON lines).
//! `query --help` lists every flag, its default and its environment variable.

use std::io::Write;
use std::time::Duration;

use clap::Parser;
use objlog::Error;
use objlog::client::Client;
use objlog::error::chain;

/// Prints one object's log, paging through it with logs.query requests (the workers must be
/// running).
#[derive(Debug, Parser)]
#[command(name = "query", version)]
struct Args {
    /// The object whose log to print.
    #[arg(long, value_name = "ID", env = "OBJLOG_QUERY_ID")]
    id: u64,
    /// NATS URL (falls back to $LIFOSTORE_NATS_URL).
    #[arg(long, value_name = "URL", env = "OBJLOG_NATS_URL")]
    nats: Option<String>,
    /// Start after this cursor (`ts:seq`, as a previous page's `next`); from the start if not
    /// given.
    #[arg(long, value_name = "TS:SEQ", env = "OBJLOG_QUERY_AFTER")]
    after: Option<String>,
    /// Entries per page (1..=10000); pages are also cut to fit the server's max payload.
    #[arg(long, value_name = "N", env = "OBJLOG_QUERY_PAGE", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    page: u32,
    /// Stop after this many entries (default: the whole log).
    #[arg(long, value_name = "N", env = "OBJLOG_QUERY_MAX")]
    max: Option<u64>,
    /// Print each entry as a JSON line {"ts","seq","log"} instead of `ts seq log`.
    #[arg(long, env = "OBJLOG_QUERY_JSON")]
    json: bool,
    /// How long to wait for each page's answer.
    #[arg(
        long,
        value_name = "SECS",
        env = "OBJLOG_QUERY_TIMEOUT_S",
        default_value_t = 30
    )]
    timeout_s: u64,
}

fn run(a: Args) -> Result<u64, Error> {
    let url = a
        .nats
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("LIFOSTORE_NATS_URL").ok())
        .ok_or_else(|| Error::Config("missing --nats (or OBJLOG_NATS_URL)".into()))?;
    let client = Client::connect(&url)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let (mut after, mut printed) = (a.after, 0u64);
    let timeout = Duration::from_secs(a.timeout_s);
    let pid = std::process::id();
    for page in 0u64.. {
        let req = format!("query-{pid}-{}-{page}", a.id);
        let answer = client.query(a.id, after.as_deref(), a.page, &req, timeout)?;
        let r = answer.response;
        if !r.ok {
            let why = r.error.unwrap_or_default();
            return Err(Error::Config(format!("the query was refused: {why}")));
        }
        for e in r.entries.unwrap_or_default() {
            if a.max.is_some_and(|m| printed >= m) {
                return Ok(printed);
            }
            if a.json {
                let line = serde_json::json!({"ts": e.ts, "seq": e.seq, "log": e.log});
                writeln!(out, "{line}").map_err(Error::Output)?;
            } else {
                writeln!(out, "{} {} {}", e.ts, e.seq, e.log).map_err(Error::Output)?;
            }
            printed += 1;
        }
        if r.more != Some(true) {
            break;
        }
        after = r.next;
    }
    out.flush().map_err(Error::Output)?;
    Ok(printed)
}

fn main() {
    match run(Args::parse()) {
        Ok(n) => eprintln!("objlog query: {n} entries"),
        Err(e) => {
            eprintln!("objlog query: {}", chain(&e));
            std::process::exit(1);
        }
    }
}
