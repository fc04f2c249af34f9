//! [`Args`]: `--name value` command-line flags with environment fallbacks.

use std::collections::HashMap;
use std::str::FromStr;

use crate::error::Error;

/// Parsed `--flag value` pairs.
#[derive(Debug, Default)]
pub struct Args {
    flags: HashMap<String, String>,
}

impl Args {
    /// Parses `--flag value` pairs (every argument must be one).
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Args, Error> {
        let mut flags = HashMap::new();
        let mut it = args.into_iter();
        while let Some(flag) = it.next() {
            let name = flag.strip_prefix("--").ok_or_else(|| {
                Error::Config(format!(
                    "unexpected argument {flag:?}; flags are --name value"
                ))
            })?;
            let value = it
                .next()
                .ok_or_else(|| Error::Config(format!("flag {flag} needs a value")))?;
            flags.insert(name.to_string(), value);
        }
        Ok(Args { flags })
    }

    /// The flag's value, else the first set environment variable of `env`.
    pub fn text(&self, name: &str, env: &[&str]) -> Option<String> {
        self.flags
            .get(name)
            .cloned()
            .or_else(|| env.iter().find_map(|v| std::env::var(v).ok()))
    }

    /// Like [`text`](Self::text), failing with a message naming the flag when missing.
    pub fn required(&self, name: &str, env: &[&str]) -> Result<String, Error> {
        self.text(name, env).ok_or_else(|| {
            Error::Config(format!(
                "missing --{name} (or environment {})",
                env.join(" / ")
            ))
        })
    }

    /// The flag parsed as `T`, or `default` when absent.
    pub fn number<T: FromStr>(&self, name: &str, default: T) -> Result<T, Error> {
        match self.flags.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| Error::Config(format!("--{name} {v:?} is not a valid number"))),
        }
    }

    /// Names of flags not in `known` (so typos fail loudly).
    pub fn reject_unknown(&self, known: &[&str]) -> Result<(), Error> {
        match self.flags.keys().find(|k| !known.contains(&k.as_str())) {
            Some(k) => Err(Error::Config(format!(
                "unknown flag --{k}; known: --{}",
                known.join(", --")
            ))),
            None => Ok(()),
        }
    }
}
