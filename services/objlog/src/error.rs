//! [`Error`]: why a worker, the load tool or the client could not go on.

/// Why an objlog component failed. Each message says what to check.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A NATS or JetStream call failed.
    #[error(
        "NATS {what} failed; check that nats-server runs with JetStream (-js) at the given URL"
    )]
    Nats {
        /// Which call.
        what: &'static str,
        /// What the client said.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The `--metrics` listener could not start.
    #[error("cannot serve /metrics on {addr}; pick a free address with --metrics")]
    Metrics {
        /// The address asked for.
        addr: String,
        /// The server's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A PostgreSQL call failed.
    #[error("PostgreSQL failed; check that the server runs at the given URL and accepts the user")]
    Postgres(#[from] postgres::Error),
    /// The worker's lifostore buffer refused an append or could not flush it.
    #[error("the write-behind buffer could not store the batch; its requests will be redelivered")]
    Storage(#[from] lifostore::Error),
    /// A direct write to the log table failed.
    #[error("writing to the log table failed; its requests will be redelivered")]
    Db(#[from] lifostore::DbError),
    /// The private async runtime or a thread could not be started.
    #[error("could not start a runtime or thread; the system is out of threads or memory")]
    Runtime(#[from] std::io::Error),
    /// A response did not arrive in time.
    #[error("no response to {0} in time; check that workers are running (services/objlog/run)")]
    Timeout(String),
    /// Writing the output (stdout) failed.
    #[error("could not write the output")]
    Output(#[source] std::io::Error),
    /// A command-line argument or environment variable is wrong.
    #[error("bad configuration: {0}")]
    Config(String),
    /// The edge stopped: the worker is shutting down.
    #[error("the NATS edge has stopped; the worker is shutting down")]
    EdgeStopped,
}

impl Error {
    /// A NATS failure of the call `what`.
    pub fn nats(
        what: &'static str,
        err: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Error {
        Error::Nats {
            what,
            source: err.into(),
        }
    }
}

/// `error: cause: cause's cause ...`, for log lines and exit messages. A cause whose text
/// the message already quotes (some errors repeat their source) is not repeated.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}
