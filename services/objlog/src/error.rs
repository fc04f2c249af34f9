//! [`Error`]: why a worker, the load tool or the client could not go on.

/// Why an objlog component failed. Each message says what to check.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A NATS or JetStream call failed.
    #[error(
        "NATS {what} failed: {detail}; check that nats-server runs with JetStream (-js) at the given URL"
    )]
    Nats {
        /// Which call.
        what: &'static str,
        /// What the client said.
        detail: String,
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
    /// A command-line argument or environment variable is wrong.
    #[error("bad configuration: {0}")]
    Config(String),
    /// The edge stopped: the worker is shutting down.
    #[error("the NATS edge has stopped; the worker is shutting down")]
    EdgeStopped,
}

impl Error {
    /// A NATS failure of the call `what`.
    pub fn nats(what: &'static str, err: impl std::fmt::Display) -> Error {
        Error::Nats {
            what,
            detail: err.to_string(),
        }
    }
}
