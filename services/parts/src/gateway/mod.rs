//! The gateway: the REST API ([`api`]), uploads ([`upload`]), downloads ([`download`]), the
//! S3 subset ([`s3`]), plus the job workers and the rebalancer it runs in the background.

pub mod api;
pub mod cluster;
pub mod dates;
pub mod download;
pub mod names;
pub mod range;
pub mod s3;
pub mod s3_list;
pub mod upload;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::counters::Counters;
use crate::health::Health;
use crate::http::{Limits, Server};
use crate::jobs::{JobConfig, JobContext, Jobs};
use crate::meta::{Meta, MetaError};
use crate::node_client::NodeClient;
use crate::rebalance::{self, RebalanceConfig, Rebalancer};

/// How a gateway runs.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Its name: uploads it leaves unfinished are aborted when a gateway of this name starts.
    /// Gateways sharing a database need distinct names.
    pub name: String,
    /// Address of the REST API.
    pub listen: String,
    /// Address of the S3-compatible API, if wanted.
    pub s3_listen: Option<String>,
    /// PostgreSQL URL (metadata and job queue).
    pub postgres: String,
    /// A node is down this long after its last heartbeat.
    pub heartbeat_timeout: Duration,
    /// A node that missed a part deadline gets no new parts for this long.
    pub slow_penalty: Duration,
    /// A node call may stall this long; also the fixed part of a part's deadline.
    pub part_timeout: Duration,
    /// The slowest a node may take a part (bytes/s): a part of `len` bytes must be durable
    /// within `part_timeout + len / min_node_rate` of node-side time.
    pub min_node_rate: u64,
    /// Where parts larger than 1 MiB are spooled while in flight.
    pub spool_dir: PathBuf,
    /// Cleanup jobs.
    pub jobs: JobConfig,
    /// The rebalancer.
    pub rebalance: RebalanceConfig,
    /// Most open HTTP connections.
    pub max_connections: usize,
    /// Most PostgreSQL connections.
    pub db_connections: usize,
}

/// Why a gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The metadata could not be opened.
    #[error("metadata: {0}")]
    Meta(#[from] MetaError),
    /// The job queue could not be opened.
    #[error("job queue: {0}")]
    Jobs(#[from] lifostore::Error),
    /// An address could not be bound.
    #[error("listening on {addr}: {source}")]
    Listen {
        /// The address.
        addr: String,
        /// What failed.
        source: std::io::Error,
    },
}

/// Everything a request needs.
pub struct Gateway {
    /// The configuration.
    pub config: GatewayConfig,
    /// The metadata.
    pub meta: Arc<Meta>,
    /// Node liveness.
    pub health: Arc<Health>,
    /// Calls to nodes.
    pub nodes: NodeClient,
    /// The cleanup job queue.
    pub jobs: Arc<Jobs>,
    /// Counters.
    pub counters: Arc<Counters>,
    /// The rebalancer's switch and figures.
    pub rebalancer: Arc<Rebalancer>,
}

impl Gateway {
    /// Opens the metadata and the job queue, aborts the uploads a previous process of the
    /// same name left unfinished, and enqueues all pending cleanups.
    pub fn open(config: GatewayConfig) -> Result<Arc<Gateway>, GatewayError> {
        let meta = Arc::new(Meta::open(&config.postgres, config.db_connections)?);
        let counters = Arc::new(Counters::default());
        let jobs = Jobs::open(
            &config.postgres,
            config.jobs.clone(),
            Arc::clone(&meta),
            Arc::clone(&counters),
        )?;
        let health = Arc::new(Health::new(config.heartbeat_timeout, config.slow_penalty));
        let gateway = Arc::new(Gateway {
            nodes: NodeClient::new(config.part_timeout),
            rebalancer: Arc::new(Rebalancer::new(config.rebalance.clone())),
            jobs: Arc::new(jobs),
            config,
            meta,
            health,
            counters,
        });
        let stale = gateway.meta.abort_stale_uploads(&gateway.config.name)?;
        if !stale.is_empty() {
            eprintln!(
                "parts-gateway: aborted the unfinished uploads of a previous run ({} copies to clean up)",
                stale.len()
            );
        }
        gateway.jobs.enqueue(&gateway.meta.pending_garbage()?)?;
        Ok(gateway)
    }

    /// The part deadline (node-side time) for a part of `len` bytes.
    pub fn part_budget(&self, len: u64) -> Duration {
        let rate = self.config.min_node_rate.max(1) as f64;
        self.config.part_timeout + Duration::from_secs_f64(len as f64 / rate)
    }

    /// Describes the nodes that are not live (for 503 reasons).
    pub fn why_down(&self) -> String {
        match self.meta.nodes() {
            Ok(nodes) => {
                let ids: Vec<String> = nodes.into_iter().map(|n| n.id).collect();
                self.health.describe_down(&ids)
            }
            Err(e) => format!("; node list unavailable: {e}"),
        }
    }
}

/// Runs a gateway until the process ends.
pub fn run(config: GatewayConfig) -> Result<(), GatewayError> {
    let gateway = Gateway::open(config)?;
    gateway.jobs.spawn_workers(Arc::new(JobContext {
        meta: Arc::clone(&gateway.meta),
        health: Arc::clone(&gateway.health),
        nodes: gateway.nodes.clone(),
        counters: Arc::clone(&gateway.counters),
    }));
    rebalance::spawn(Arc::clone(&gateway));
    let limits = Limits {
        max_connections: gateway.config.max_connections,
        ..Limits::default()
    };
    let bind = |addr: &str, handler: Arc<dyn crate::http::Handler>| {
        Server::bind(addr, handler, limits).map_err(|source| GatewayError::Listen {
            addr: addr.to_string(),
            source,
        })
    };
    if let Some(addr) = gateway.config.s3_listen.clone() {
        let s3 = bind(&addr, Arc::new(s3::S3Api::new(Arc::clone(&gateway))))?;
        let bound = s3
            .spawn()
            .map_err(|source| GatewayError::Listen { addr, source })?;
        println!("parts-gateway: S3 API on http://{bound}");
    }
    let server = bind(
        &gateway.config.listen,
        Arc::new(api::Api::new(Arc::clone(&gateway))),
    )?;
    let addr = server.local_addr().map_err(|source| GatewayError::Listen {
        addr: gateway.config.listen.clone(),
        source,
    })?;
    println!(
        "parts-gateway: {} listening on http://{addr}",
        gateway.config.name
    );
    server.run();
    Ok(())
}
