//! `parts-node`: a storage node. See `--help`.

use std::path::PathBuf;
use std::time::Duration;

use parts::args::{ArgError, Args};
use parts::node::{NodeConfig, run};

const HELP: &str = "parts-node --dir DIR --gateway URL [--gateway URL ...] [--listen 127.0.0.1:0]
           [--advertise HOST:PORT] [--capacity SIZE (e.g. 10G; default: free disk space)]
           [--heartbeat-ms 500]
Stores parts under DIR and registers with each gateway (POST /nodes), then heartbeats.";

const FLAGS: &[&str] = &[
    "dir",
    "gateway",
    "listen",
    "advertise",
    "capacity",
    "heartbeat-ms",
];

fn config() -> Result<NodeConfig, ArgError> {
    let args = Args::parse(std::env::args().skip(1), FLAGS)?;
    let gateways = args.all("gateway");
    if gateways.is_empty() {
        return Err(ArgError::from("missing --gateway URL (at least one)"));
    }
    Ok(NodeConfig {
        dir: PathBuf::from(args.required("dir")?),
        listen: args.text("listen").unwrap_or_else(|| "127.0.0.1:0".into()),
        advertise: args.text("advertise"),
        capacity: args.size("capacity")?,
        gateways,
        heartbeat: args.millis("heartbeat-ms", Duration::from_millis(500))?,
    })
}

fn main() {
    parts::args::main_with("parts-node", HELP, config, run);
}
