//! `orders`: the order service. `orders --help` lists every flag, its default and its
//! environment variable; `bash services/orders/run` starts everything.

use std::process::ExitCode;

use clap::Parser;
use orders::config::{Args, Config};
use orders::error_chain::chain;

fn main() -> ExitCode {
    let config = match Config::try_from(Args::parse()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("orders: {}", chain(&e));
            return ExitCode::from(2);
        }
    };
    match orders::service::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("orders: {}", chain(&e));
            ExitCode::FAILURE
        }
    }
}
