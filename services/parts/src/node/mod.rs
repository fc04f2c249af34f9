//! The storage node: a directory of part copies behind a small HTTP API, registering itself
//! with its gateways and telling them it is alive.
//!
//! * [`store`]: the copies on disk (temp file, fsync, rename, fsync of the directory).
//! * [`api`]: the HTTP API gateways call.
//! * [`heartbeat`]: registration (`POST /nodes` on every gateway), repeated as a heartbeat.

pub mod api;
pub mod heartbeat;
pub mod store;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::http::{Limits, Server};

/// How a node runs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Its directory.
    pub dir: PathBuf,
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    pub listen: String,
    /// Address gateways should use, if not the listening one.
    pub advertise: Option<String>,
    /// Bytes it offers; `None`: its filesystem's free space at start plus what it stores.
    pub capacity: Option<u64>,
    /// Gateway base URLs (`http://host:port`) it registers with.
    pub gateways: Vec<String>,
    /// How often it tells the gateways it is alive.
    pub heartbeat: Duration,
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The directory could not be opened or prepared.
    #[error("node directory {dir}: {source}")]
    Store {
        /// The directory.
        dir: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The listening address could not be bound.
    #[error("listening on {addr}: {source}")]
    Listen {
        /// The address.
        addr: String,
        /// What failed.
        source: std::io::Error,
    },
}

/// Runs a node until the process ends: opens the store, serves the API, heartbeats.
pub fn run(config: NodeConfig) -> Result<(), NodeError> {
    let store_err = |source| NodeError::Store {
        dir: config.dir.clone(),
        source,
    };
    let store = Arc::new(store::Store::open(&config.dir).map_err(store_err)?);
    let capacity = match config.capacity {
        Some(c) => c,
        None => free_space(&config.dir).map_err(store_err)? + store.used(),
    };
    let api = Arc::new(api::NodeApi::new(Arc::clone(&store), capacity));
    let listen_err = |source| NodeError::Listen {
        addr: config.listen.clone(),
        source,
    };
    let server = Server::bind(&config.listen, api, Limits::default()).map_err(listen_err)?;
    let addr = server.spawn().map_err(listen_err)?;
    let advertised = config.advertise.clone().unwrap_or_else(|| addr.to_string());
    println!(
        "parts-node: id {} at {advertised}, dir {}, capacity {capacity} bytes, {} bytes stored",
        store.id(),
        config.dir.display(),
        store.used()
    );
    let beat = heartbeat::Beat {
        id: store.id().to_string(),
        addr: advertised,
        capacity,
    };
    heartbeat::run(&config.gateways, &beat, &store, config.heartbeat);
    Ok(())
}

/// Free bytes for an unprivileged user on the filesystem holding `dir`.
fn free_space(dir: &std::path::Path) -> std::io::Result<u64> {
    let stat = rustix::fs::statvfs(dir)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}
