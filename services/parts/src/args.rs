//! [`Args`]: `--name value` command-line flags for the binaries, and byte sizes (`10G`).

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

/// A bad command line; the message says which flag and why.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ArgError(String);

impl From<&str> for ArgError {
    fn from(s: &str) -> ArgError {
        ArgError(s.to_string())
    }
}

impl From<String> for ArgError {
    fn from(s: String) -> ArgError {
        ArgError(s)
    }
}

/// Parsed `--flag value` pairs; a flag given several times keeps every value.
#[derive(Debug, Default)]
pub struct Args {
    flags: HashMap<String, Vec<String>>,
}

impl Args {
    /// Parses `--flag value` pairs (every argument must be one), accepting only `known` flags.
    pub fn parse(args: impl IntoIterator<Item = String>, known: &[&str]) -> Result<Args, ArgError> {
        let mut flags: HashMap<String, Vec<String>> = HashMap::new();
        let mut it = args.into_iter();
        while let Some(flag) = it.next() {
            let name = flag.strip_prefix("--").ok_or_else(|| {
                ArgError(format!(
                    "unexpected argument {flag:?}; flags are --name value"
                ))
            })?;
            if !known.contains(&name) {
                return Err(ArgError(format!(
                    "unknown flag --{name}; known: --{}",
                    known.join(", --")
                )));
            }
            let value = it
                .next()
                .ok_or_else(|| ArgError(format!("flag {flag} needs a value")))?;
            flags.entry(name.to_string()).or_default().push(value);
        }
        Ok(Args { flags })
    }

    /// The flag's last value.
    pub fn text(&self, name: &str) -> Option<String> {
        self.flags.get(name).and_then(|v| v.last().cloned())
    }

    /// Every value given for the flag.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.flags.get(name).cloned().unwrap_or_default()
    }

    /// The flag's value, or an error naming it.
    pub fn required(&self, name: &str) -> Result<String, ArgError> {
        self.text(name)
            .ok_or_else(|| ArgError(format!("missing --{name}")))
    }

    /// The flag parsed as `T`, or `default`.
    pub fn number<T: FromStr>(&self, name: &str, default: T) -> Result<T, ArgError> {
        match self.text(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| ArgError(format!("--{name} {v:?} is not a valid number"))),
        }
    }

    /// The flag as milliseconds, or `default`.
    pub fn millis(&self, name: &str, default: Duration) -> Result<Duration, ArgError> {
        let ms = self.number(name, default.as_millis() as u64)?;
        Ok(Duration::from_millis(ms))
    }

    /// The flag as a byte size (see [`parse_size`]).
    pub fn size(&self, name: &str) -> Result<Option<u64>, ArgError> {
        self.text(name)
            .map(|v| parse_size(&v).map_err(|e| ArgError(format!("--{name}: {e}"))))
            .transpose()
    }
}

/// A binary's `main`: prints `help` for `--help`; builds the configuration with `config`
/// (exit status 2 and the help on a bad command line) and runs it with `run` (exit status 1
/// and the error if it fails).
pub fn main_with<C, E: std::fmt::Display>(
    program: &str,
    help: &str,
    config: impl FnOnce() -> Result<C, ArgError>,
    run: impl FnOnce(C) -> Result<(), E>,
) {
    if std::env::args().any(|a| a == "--help" || a == "-h") {
        println!("{help}");
        return;
    }
    let config = match config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{program}: {e}\n{help}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(config) {
        eprintln!("{program}: {e}");
        std::process::exit(1);
    }
}

/// Parses a byte size: a number with an optional binary suffix `K`, `M`, `G`, `T`
/// (`10G` = 10 GiB).
///
/// ```
/// assert_eq!(parts::args::parse_size("10G"), Ok(10 << 30));
/// assert_eq!(parts::args::parse_size("4096"), Ok(4096));
/// assert!(parts::args::parse_size("ten").is_err());
/// ```
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (digits, shift) = match t.char_indices().last() {
        Some((i, 'K' | 'k')) => (&t[..i], 10),
        Some((i, 'M' | 'm')) => (&t[..i], 20),
        Some((i, 'G' | 'g')) => (&t[..i], 30),
        Some((i, 'T' | 't')) => (&t[..i], 40),
        _ => (t, 0),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size (a number, optionally with K, M, G or T)"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}
