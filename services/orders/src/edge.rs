//! The NATS edge: the only async code of the service, on a private single-thread tokio
//! runtime owned by this module.
//!
//! It fetches messages from the durable pull consumer, hands them in batches to blocking
//! worker threads over a bounded crossbeam channel, and takes back [`Settled`] batches (over a
//! bounded tokio channel) to publish invalid reasons to `<subject>.invalid` and ack.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::message::Acker;
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc;

use crate::error_chain::chain;
use crate::tail::{Tailed, tail_loop};

/// How long the fetcher waits for more messages before handing over a partial batch.
const LINGER: Duration = Duration::from_millis(5);

/// Where the edge connects and how the consumer is configured.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// NATS server URL.
    pub url: String,
    /// JetStream stream holding the orders.
    pub stream: String,
    /// Subject the orders are published on; invalid reasons go to `<subject>.invalid`.
    pub subject: String,
    /// Durable consumer name.
    pub consumer: String,
    /// How long JetStream waits for an ack before redelivering.
    pub ack_wait: Duration,
    /// Most unacked messages the consumer hands out.
    pub max_ack_pending: i64,
    /// Most messages per batch handed to a worker.
    pub batch: usize,
}

impl EdgeConfig {
    /// The subject invalid messages' reasons are published on.
    pub fn invalid_subject(&self) -> String {
        format!("{}.invalid", self.subject)
    }

    /// The stream that keeps the invalid reasons.
    pub fn invalid_stream(&self) -> String {
        format!("{}_INVALID", self.stream)
    }
}

/// Why the edge failed.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// The tokio runtime or the edge thread could not be started.
    #[error("could not start the NATS edge runtime; the system is out of threads or memory")]
    Runtime(#[source] std::io::Error),
    /// Connecting, or setting up the streams and the consumer, failed.
    #[error("NATS setup failed while {doing}; check that nats-server runs with JetStream (-js)")]
    Setup {
        /// What the edge was doing.
        doing: &'static str,
        /// The client's error.
        #[source]
        source: async_nats::Error,
    },
}

fn setup_error<E: Into<async_nats::Error>>(doing: &'static str) -> impl FnOnce(E) -> EdgeError {
    move |e| EdgeError::Setup {
        doing,
        source: e.into(),
    }
}

/// One fetched message: its payload, its stream sequence and the handle that acks it.
pub struct Delivery {
    /// Stream sequence number (stable across redeliveries).
    pub seq: u64,
    /// How many times JetStream has delivered it (1 the first time).
    pub delivered: i64,
    /// The message body.
    pub payload: Bytes,
    acker: Acker,
}

/// A batch the workers are done with: everything in it may be acked.
#[derive(Default)]
pub struct Settled {
    /// Valid orders, durable in PostgreSQL.
    pub valid: Vec<Delivery>,
    /// Invalid messages, with the reason to publish before the ack.
    pub invalid: Vec<(Delivery, String)>,
}

impl Settled {
    /// Messages in the batch.
    pub fn len(&self) -> usize {
        self.valid.len() + self.invalid.len()
    }

    /// Whether the batch holds no message.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Ensures the streams exist (creating them if missing) and returns the durable consumer.
async fn setup(cfg: &EdgeConfig) -> Result<Connected, EdgeError> {
    let client = async_nats::connect(&cfg.url)
        .await
        .map_err(setup_error("connecting"))?;
    let js = jetstream::new(client);
    js.get_or_create_stream(stream::Config {
        name: cfg.invalid_stream(),
        subjects: vec![cfg.invalid_subject()],
        duplicate_window: Duration::from_secs(600),
        ..Default::default()
    })
    .await
    .map_err(setup_error("creating the invalid-reasons stream"))?;
    let orders = js
        .get_or_create_stream(stream::Config {
            name: cfg.stream.clone(),
            subjects: vec![cfg.subject.clone()],
            ..Default::default()
        })
        .await
        .map_err(setup_error("creating the orders stream"))?;
    let consumer = orders
        .get_or_create_consumer(
            &cfg.consumer,
            pull::Config {
                durable_name: Some(cfg.consumer.clone()),
                ack_policy: AckPolicy::Explicit,
                deliver_policy: DeliverPolicy::All,
                ack_wait: cfg.ack_wait,
                max_ack_pending: cfg.max_ack_pending,
                ..Default::default()
            },
        )
        .await
        .map_err(setup_error("creating the durable consumer"))?;
    let mut consumer = consumer;
    let floor = consumer
        .info()
        .await
        .map_err(setup_error("reading the durable consumer's ack floor"))?
        .ack_floor
        .stream_sequence;
    Ok(Connected {
        js,
        consumer,
        floor,
    })
}

/// The NATS side set up: the durable consumer, and its ack floor when the service started
/// (every message up to it was acked, so every valid order up to it is in PostgreSQL).
pub struct Connected {
    js: jetstream::Context,
    consumer: PullConsumer,
    floor: u64,
}

impl Connected {
    /// The durable consumer's ack floor at start.
    pub fn floor(&self) -> u64 {
        self.floor
    }
}

/// The edge's private runtime, connected to NATS (what [`Edge::start`] takes).
pub struct ConnectedRuntime {
    edge: EdgeRuntime,
    connected: Connected,
}

impl ConnectedRuntime {
    /// The durable consumer's ack floor at start.
    pub fn floor(&self) -> u64 {
        self.connected.floor()
    }
}

/// The running edge: a thread driving the private runtime.
pub struct Edge {
    thread: std::thread::JoinHandle<()>,
}

/// The edge's private runtime, made first thing at start so that SIGINT/SIGTERM are caught
/// from then on (a signal during the cache rebuild is kept and acted on once ingest starts).
pub struct EdgeRuntime {
    runtime: tokio::runtime::Runtime,
    signals: [Signal; 2],
}

impl EdgeRuntime {
    /// Builds the runtime and registers the signal handlers.
    pub fn new() -> Result<EdgeRuntime, EdgeError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(EdgeError::Runtime)?;
        let _entered = runtime.enter();
        let watch = |kind| signal(kind).map_err(EdgeError::Runtime);
        let signals = [
            watch(SignalKind::terminate())?,
            watch(SignalKind::interrupt())?,
        ];
        drop(_entered);
        Ok(EdgeRuntime { runtime, signals })
    }

    /// Connects and sets up JetStream (errors surface here).
    pub fn connect(self, cfg: &EdgeConfig) -> Result<ConnectedRuntime, EdgeError> {
        let connected = self.runtime.block_on(setup(cfg))?;
        Ok(ConnectedRuntime {
            edge: self,
            connected,
        })
    }
}

impl Edge {
    /// Starts the edge thread: fetching for the workers, settling, and the tail that reads
    /// the whole stream after the ack floor for the view, in `tail` batches.
    ///
    /// The edge stops fetching on SIGINT/SIGTERM and drops `deliveries` and `stopping` (which
    /// ends the workers' and committer's retry waits); it returns once every sender of
    /// `settled` is gone and what they sent is acked.
    pub fn start(
        edge: ConnectedRuntime,
        cfg: EdgeConfig,
        deliveries: crossbeam_channel::Sender<Vec<Delivery>>,
        settled: mpsc::Receiver<Settled>,
        (stopping, tail): (
            crossbeam_channel::Sender<()>,
            crossbeam_channel::Sender<Vec<Tailed>>,
        ),
    ) -> Result<Edge, EdgeError> {
        let ConnectedRuntime { edge, connected } = edge;
        let EdgeRuntime { runtime, signals } = edge;
        let Connected {
            js,
            consumer,
            floor,
        } = connected;
        let thread = std::thread::Builder::new()
            .name("orders-nats-edge".into())
            .spawn(move || {
                runtime.block_on(async {
                    let tailing = tokio::spawn(tail_loop(cfg.clone(), js.clone(), floor, tail));
                    let fetching = fetch_loop(&cfg, consumer, deliveries, (stopping, signals));
                    let settling = settle_loop(&cfg, &js, settled);
                    tokio::join!(fetching, settling);
                    tailing.abort();
                })
            })
            .map_err(EdgeError::Runtime)?;
        Ok(Edge { thread })
    }

    /// Waits for the edge to finish (after a shutdown signal).
    pub fn join(self) {
        if self.thread.join().is_err() {
            eprintln!("orders: the NATS edge thread panicked");
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal(signals: [Signal; 2]) {
    let [mut term, mut int] = signals;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

async fn fetch_loop(
    cfg: &EdgeConfig,
    consumer: PullConsumer,
    deliveries: crossbeam_channel::Sender<Vec<Delivery>>,
    (stopping, signals): (crossbeam_channel::Sender<()>, [Signal; 2]),
) {
    let fetching = async {
        loop {
            let messages = consumer
                .stream()
                .max_messages_per_batch(cfg.batch)
                .messages()
                .await;
            match messages {
                Ok(messages) => {
                    if !pump(cfg, messages, &deliveries).await {
                        return;
                    }
                }
                Err(e) => eprintln!(
                    "orders: pulling from JetStream failed: {}; retrying",
                    chain(&e)
                ),
            }
            // A timed pause between attempts on a failing server, not a poll for an event.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    };
    tokio::select! {
        _ = shutdown_signal(signals) => eprintln!("orders: shutdown signal; draining"),
        _ = fetching => {}
    }
    // Dropping `deliveries` lets the workers finish and hang up; dropping `stopping` ends
    // their retry waits, so a PostgreSQL outage cannot hold the shutdown.
    drop(stopping);
}

/// Moves batches from the pull stream to the workers. Returns `false` once the workers are
/// gone, `true` when the stream ended and should be re-opened.
async fn pump(
    cfg: &EdgeConfig,
    mut messages: pull::Stream,
    deliveries: &crossbeam_channel::Sender<Vec<Delivery>>,
) -> bool {
    loop {
        let mut batch = Vec::with_capacity(cfg.batch);
        let Some(first) = messages.next().await else {
            return true;
        };
        take(first, &mut batch);
        while batch.len() < cfg.batch {
            match tokio::time::timeout(LINGER, messages.next()).await {
                Ok(Some(next)) => take(next, &mut batch),
                Ok(None) => return hand_over(batch, deliveries).await,
                Err(_) => break,
            }
        }
        if !batch.is_empty() && !hand_over(batch, deliveries).await {
            return false;
        }
    }
}

fn take(message: Result<jetstream::Message, pull::MessagesError>, batch: &mut Vec<Delivery>) {
    let message = match message {
        Ok(m) => m,
        Err(e) => return eprintln!("orders: JetStream pull: {}", chain(&e)),
    };
    let (seq, delivered) = match message.info() {
        Ok(info) => (info.stream_sequence, info.delivered),
        Err(e) => return eprintln!("orders: message without JetStream metadata: {}", chain(&*e)),
    };
    let (message, acker) = message.split();
    batch.push(Delivery {
        seq,
        delivered,
        payload: message.payload,
        acker,
    });
}

/// Blocking send on the bounded channel, off the runtime's thread. `false` once the workers
/// are gone.
pub(crate) async fn hand_over<T: Send + 'static>(
    batch: Vec<T>,
    deliveries: &crossbeam_channel::Sender<Vec<T>>,
) -> bool {
    let tx = deliveries.clone();
    matches!(
        tokio::task::spawn_blocking(move || tx.send(batch)).await,
        Ok(Ok(()))
    )
}

async fn settle_loop(
    cfg: &EdgeConfig,
    js: &jetstream::Context,
    mut settled: mpsc::Receiver<Settled>,
) {
    let subject = cfg.invalid_subject();
    while let Some(batch) = settled.recv().await {
        settle(&subject, js, batch).await;
    }
}

/// Publishes each invalid reason (deduplicated by the original's stream sequence, so a
/// redelivered junk message is recorded once) and acks what may be acked. A message whose
/// reason could not be published is not acked: JetStream redelivers it.
async fn settle(subject: &str, js: &jetstream::Context, batch: Settled) {
    let mut acks: Vec<Delivery> = batch.valid;
    let mut pending = Vec::with_capacity(batch.invalid.len());
    for (delivery, reason) in batch.invalid {
        let mut headers = HeaderMap::new();
        headers.insert(
            NATS_MESSAGE_ID,
            format!("orders-invalid-{}", delivery.seq).as_str(),
        );
        let body = serde_json::json!({
            "stream_sequence": delivery.seq,
            "bytes": delivery.payload.len(),
            "reason": reason,
        });
        let sent = js
            .publish_with_headers(subject.to_string(), headers, body.to_string().into())
            .await;
        pending.push((delivery, sent));
    }
    for (delivery, sent) in pending {
        match sent {
            Ok(ack) => match ack.await {
                Ok(_) => acks.push(delivery),
                Err(e) => eprintln!(
                    "orders: invalid reason not stored ({}); will retry",
                    chain(&e)
                ),
            },
            Err(e) => eprintln!(
                "orders: invalid reason not published ({}); will retry",
                chain(&e)
            ),
        }
    }
    for delivery in acks {
        if let Err(e) = delivery.acker.ack().await {
            eprintln!(
                "orders: ack of message {} failed ({}); it will be redelivered",
                delivery.seq,
                chain(&*e)
            );
        }
    }
}
