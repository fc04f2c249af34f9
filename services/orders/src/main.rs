//! `orders`: the order service. See the README; `bash services/orders/run` starts everything.

use std::error::Error;
use std::process::ExitCode;

use orders::config::Config;

fn main() -> ExitCode {
    let result = Config::parse(std::env::args().skip(1))
        .map_err(|e| Box::new(e) as Box<dyn Error>)
        .and_then(|cfg| orders::service::run(cfg).map_err(|e| Box::new(e) as Box<dyn Error>));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut message = format!("orders: {e}");
            let mut source = e.source();
            while let Some(cause) = source {
                // Some errors (lifostore's among them) already quote their source.
                let text = cause.to_string();
                if !message.contains(&text) {
                    message.push_str(&format!(": {text}"));
                }
                source = cause.source();
            }
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}
