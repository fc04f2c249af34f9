//! [`Edge`]: the worker's NATS JetStream edge, on a private tokio runtime.
//!
//! The edge pulls requests from the shared consumer and hands them, a batch at a time, to
//! blocking handler threads through a bounded channel. Handlers hand back [`Outgoing`]
//! answers through another bounded channel; for each, the edge publishes the response to the
//! `RESPONSES` stream (de-duplicated by request sequence) and to the client's reply subject,
//! and only then acks the request. Nothing async leaks out of this module.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, Context, context::Publish, message::Message};
use bytes::Bytes;
use futures::StreamExt;
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::error::{Error, chain};
use crate::metrics::{Latency, Op};
use crate::topology::{ensure_consumer, ensure_streams};
use crate::wire::{REPLY_HEADER, REQUEST_ID_HEADER, RESPONSE_SUBJECT, Response};

/// Produces the worker's counters as one JSON line, for `logs.stats`.
pub type StatsFn = Arc<dyn Fn() -> String + Send + Sync>;

/// How the edge connects and fetches.
#[derive(Clone)]
pub struct EdgeConfig {
    /// NATS URL.
    pub nats_url: String,
    /// Consumer AckWait: a request not acked within it is redelivered to some worker.
    pub ack_wait: Duration,
    /// Most requests in one batch handed to a handler.
    pub max_batch: usize,
    /// Batches waiting for a handler (the bound of the hand-over channel).
    pub queued_batches: usize,
    /// Answers `logs.stats`.
    pub stats: StatsFn,
    /// Fault injection for tests: exit the process as soon as a batch's responses are
    /// stored in `RESPONSES`, before its requests are acked (a crash in that window).
    pub exit_before_ack: bool,
    /// Request latency, observed at each ack.
    pub latency: Latency,
}

/// A request pulled from the stream, waiting for its answer.
pub struct Incoming {
    /// `logs.append` or `logs.query`.
    pub subject: String,
    /// The body.
    pub payload: Bytes,
    /// Stream sequence: the request's identity.
    pub seq: u64,
    /// Delivery attempt (1 for the first).
    pub delivered: i64,
    /// The client's request id (`Nats-Msg-Id`), if any.
    pub req: Option<String>,
    /// When the edge pulled it (the start of its latency).
    pub received: Instant,
    ack: Message,
    reply: Option<String>,
}

/// A handled request: its response, published and then acked by the edge.
pub struct Outgoing {
    incoming: Incoming,
    response: Response,
}

impl Outgoing {
    /// Answers `incoming` with `response`.
    pub fn new(incoming: Incoming, response: Response) -> Outgoing {
        Outgoing { incoming, response }
    }
}

/// The running edge. Blocking methods only; drop or [`finish`](Edge::finish) to stop.
pub struct Edge {
    runtime: Runtime,
    batches: Mutex<mpsc::Receiver<Vec<Incoming>>>,
    done: Option<mpsc::Sender<Vec<Outgoing>>>,
    stop: watch::Sender<bool>,
    answering: Option<JoinHandle<()>>,
    max_payload: usize,
}

struct Links {
    client: async_nats::Client,
    js: Context,
    consumer: jetstream::consumer::PullConsumer,
}

async fn connect(cfg: &EdgeConfig) -> Result<Links, Error> {
    let client = async_nats::ConnectOptions::new()
        .name("objlog-worker")
        .connect(&cfg.nats_url)
        .await
        .map_err(|e| Error::nats("connect", e))?;
    let js = jetstream::new(client.clone());
    let (requests, _) = ensure_streams(&js).await?;
    let pending = i64::try_from(cfg.max_batch * 20).unwrap_or(i64::MAX);
    let consumer = ensure_consumer(&requests, cfg.ack_wait, pending).await?;
    Ok(Links {
        client,
        js,
        consumer,
    })
}

impl Edge {
    /// Connects, creates the streams and the consumer if missing, and starts fetching.
    pub fn start(cfg: EdgeConfig) -> Result<Edge, Error> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("objlog-edge")
            .enable_all()
            .build()?;
        let links = runtime.block_on(connect(&cfg))?;
        let max_payload = links.client.server_info().max_payload;
        let (batch_tx, batch_rx) = mpsc::channel(cfg.queued_batches.max(1));
        let (done_tx, done_rx) = mpsc::channel(cfg.queued_batches.max(1) * 2);
        let (stop, stop_rx) = watch::channel(false);
        runtime.spawn(fetch(
            links.consumer,
            batch_tx,
            cfg.max_batch,
            stop_rx.clone(),
        ));
        runtime.spawn(serve_stats(
            links.client.clone(),
            cfg.stats.clone(),
            stop_rx.clone(),
        ));
        runtime.spawn(stop_on_signal(stop.clone()));
        let answering = runtime.spawn(answer(
            links.client,
            links.js,
            done_rx,
            (cfg.exit_before_ack, cfg.latency.clone()),
        ));
        Ok(Edge {
            runtime,
            batches: Mutex::new(batch_rx),
            done: Some(done_tx),
            stop,
            answering: Some(answering),
            max_payload,
        })
    }

    /// The server's largest accepted message, in bytes.
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// Blocks for the next batch; `None` once the edge stopped fetching (shutdown).
    pub fn next_batch(&self) -> Option<Vec<Incoming>> {
        let mut batches = self.batches.lock().ok()?;
        batches.blocking_recv()
    }

    /// Hands answers to the edge (blocks while it is behind).
    pub fn complete(&self, answers: Vec<Outgoing>) -> Result<(), Error> {
        let done = self.done.as_ref().ok_or(Error::EdgeStopped)?;
        done.blocking_send(answers).map_err(|_| Error::EdgeStopped)
    }

    /// Stops fetching; handlers then see `None` from [`next_batch`](Edge::next_batch).
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Stops fetching, publishes and acks every answer already handed over, and shuts the
    /// runtime down.
    pub fn finish(mut self) {
        self.stop();
        self.done = None;
        if let Some(answering) = self.answering.take() {
            let _ = self.runtime.block_on(answering);
        }
    }
}

fn incoming(ack: Message) -> Option<Incoming> {
    let (seq, delivered) = match ack.info() {
        Ok(info) => (info.stream_sequence, info.delivered),
        Err(e) => {
            eprintln!(
                "objlog edge: skipping a message without JetStream metadata: {}",
                chain(&*e)
            );
            return None;
        }
    };
    let header = |name: &str| {
        let headers = ack.message.headers.as_ref()?;
        Some(headers.get(name)?.as_str().to_string())
    };
    Some(Incoming {
        subject: ack.message.subject.to_string(),
        payload: ack.message.payload.clone(),
        seq,
        delivered,
        req: header(REQUEST_ID_HEADER),
        reply: header(REPLY_HEADER),
        received: Instant::now(),
        ack,
    })
}

async fn fetch(
    consumer: jetstream::consumer::PullConsumer,
    batches: mpsc::Sender<Vec<Incoming>>,
    max_batch: usize,
    mut stop: watch::Receiver<bool>,
) {
    while !*stop.borrow() {
        let messages = consumer
            .stream()
            .max_messages_per_batch(max_batch)
            .messages()
            .await;
        let mut chunks = match messages {
            Ok(m) => m.ready_chunks(max_batch),
            Err(e) => {
                eprintln!("objlog edge: pull failed ({}); retrying in 1 s", chain(&e));
                tokio::select! { _ = stop.changed() => return, _ = tokio::time::sleep(Duration::from_secs(1)) => continue }
            }
        };
        loop {
            let chunk = tokio::select! { _ = stop.changed() => return, c = chunks.next() => c };
            let Some(chunk) = chunk else { break };
            let batch: Vec<Incoming> = chunk
                .into_iter()
                .filter_map(|m| {
                    m.map_err(|e| eprintln!("objlog edge: pull error: {}", chain(&e)))
                        .ok()
                })
                .filter_map(incoming)
                .collect();
            if batch.is_empty() {
                continue;
            }
            tokio::select! {
                _ = stop.changed() => return,
                sent = batches.send(batch) => if sent.is_err() { return },
            }
        }
    }
}

async fn answer(
    client: async_nats::Client,
    js: Context,
    mut done: mpsc::Receiver<Vec<Outgoing>>,
    (exit_before_ack, latency): (bool, Latency),
) {
    let mut running = tokio::task::JoinSet::new();
    while let Some(answers) = done.recv().await {
        running.spawn(answer_batch(
            client.clone(),
            js.clone(),
            answers,
            (exit_before_ack, latency.clone()),
        ));
        while running.len() > 16 {
            running.join_next().await;
        }
    }
    while running.join_next().await.is_some() {}
    let _ = client.flush().await;
}

/// Publishes each response to the `RESPONSES` stream (de-duplicated by request sequence)
/// and returns those the stream confirmed storing, with their encoded bodies. A request
/// whose response was not stored stays unacked and is redelivered.
async fn store_responses(js: &Context, answers: Vec<Outgoing>) -> Vec<(Incoming, Bytes)> {
    let mut pending = Vec::with_capacity(answers.len());
    for out in answers {
        let seq = out.incoming.seq;
        let body = match serde_json::to_vec(&out.response) {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                eprintln!(
                    "objlog edge: cannot encode the response to {seq}: {}",
                    chain(&e)
                );
                continue;
            }
        };
        let publish = Publish::build()
            .payload(body.clone())
            .message_id(format!("objlog-{seq}"));
        match js.send_publish(RESPONSE_SUBJECT, publish).await {
            Ok(ack) => pending.push((out.incoming, body, ack)),
            Err(e) => eprintln!(
                "objlog edge: response to {seq} not published: {}",
                chain(&e)
            ),
        }
    }
    let mut stored = Vec::with_capacity(pending.len());
    for (incoming, body, ack) in pending {
        match ack.await {
            Ok(_) => stored.push((incoming, body)),
            Err(e) => eprintln!(
                "objlog edge: response to {} not stored ({}); request will be redelivered",
                incoming.seq,
                chain(&e)
            ),
        }
    }
    stored
}

/// Stores the responses, then sends each to its reply subject and acks its request.
async fn answer_batch(
    client: async_nats::Client,
    js: Context,
    answers: Vec<Outgoing>,
    (exit_before_ack, latency): (bool, Latency),
) {
    let stored = store_responses(&js, answers).await;
    if exit_before_ack && !stored.is_empty() {
        eprintln!(
            "objlog edge: fault injection: exiting with {} answers stored, unacked",
            stored.len()
        );
        std::process::exit(3);
    }
    for (incoming, body) in stored {
        if let Some(reply) = incoming.reply {
            let _ = client.publish(reply, body).await;
        }
        match incoming.ack.ack().await {
            Ok(()) => latency
                .get_or_create(&Op::of(&incoming.subject))
                .observe(incoming.received.elapsed().as_secs_f64()),
            Err(e) => eprintln!(
                "objlog edge: ack of {} failed ({}); it will be redelivered",
                incoming.seq,
                chain(&*e)
            ),
        }
    }
}

async fn serve_stats(client: async_nats::Client, stats: StatsFn, mut stop: watch::Receiver<bool>) {
    let mut sub = match client.subscribe(crate::wire::STATS_SUBJECT).await {
        Ok(s) => s,
        Err(e) => return eprintln!("objlog edge: cannot serve logs.stats: {}", chain(&e)),
    };
    loop {
        let msg = tokio::select! { _ = stop.changed() => return, m = sub.next() => m };
        let Some(msg) = msg else { return };
        if let Some(reply) = msg.reply {
            let _ = client.publish(reply, stats().into()).await;
        }
    }
}

async fn stop_on_signal(stop: watch::Sender<bool>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return eprintln!("objlog edge: cannot install signal handlers; stop with SIGKILL");
    };
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    eprintln!("objlog edge: signal received; finishing the batches in hand");
    stop.send_replace(true);
}
