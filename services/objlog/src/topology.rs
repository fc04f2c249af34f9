//! The JetStream topology shared by workers and clients: the `LOGS` work queue, the
//! `RESPONSES` stream and the one durable pull consumer all workers share.

use std::time::Duration;

use async_nats::jetstream::Context;
use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::stream::{Config, DiscardPolicy, RetentionPolicy, Stream};

use crate::error::Error;
use crate::wire::{APPEND_SUBJECT, QUERY_SUBJECT, RESPONSE_SUBJECT};

/// The work-queue stream holding requests until a worker acks them.
pub const REQUEST_STREAM: &str = "LOGS";
/// The stream capturing every response (`logs.response`): the response queue.
pub const RESPONSE_STREAM: &str = "RESPONSES";
/// The durable pull consumer every worker fetches from.
pub const CONSUMER: &str = "workers";
/// De-duplication window of the response stream: a redelivered request answered again
/// within it (same `Nats-Msg-Id` = `objlog-<request seq>`) is stored once.
pub const RESPONSE_DEDUP_WINDOW: Duration = Duration::from_secs(600);

fn request_stream() -> Config {
    Config {
        name: REQUEST_STREAM.to_string(),
        subjects: vec![APPEND_SUBJECT.to_string(), QUERY_SUBJECT.to_string()],
        retention: RetentionPolicy::WorkQueue,
        max_bytes: 4 << 30,
        discard: DiscardPolicy::New,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    }
}

fn response_stream() -> Config {
    Config {
        name: RESPONSE_STREAM.to_string(),
        subjects: vec![RESPONSE_SUBJECT.to_string()],
        retention: RetentionPolicy::Limits,
        max_bytes: 1 << 30,
        max_age: Duration::from_secs(3600),
        discard: DiscardPolicy::Old,
        duplicate_window: RESPONSE_DEDUP_WINDOW,
        ..Default::default()
    }
}

/// Creates both streams if missing and returns them (requests, responses).
pub async fn ensure_streams(js: &Context) -> Result<(Stream, Stream), Error> {
    let requests = js
        .get_or_create_stream(request_stream())
        .await
        .map_err(|e| Error::nats("creating the LOGS stream", e))?;
    let responses = js
        .get_or_create_stream(response_stream())
        .await
        .map_err(|e| Error::nats("creating the RESPONSES stream", e))?;
    Ok((requests, responses))
}

/// Creates the shared durable pull consumer if missing (an existing one keeps its settings).
pub async fn ensure_consumer(
    requests: &Stream,
    ack_wait: Duration,
    max_ack_pending: i64,
) -> Result<PullConsumer, Error> {
    let config = pull::Config {
        durable_name: Some(CONSUMER.to_string()),
        ack_policy: AckPolicy::Explicit,
        ack_wait,
        max_ack_pending,
        ..Default::default()
    };
    requests
        .get_or_create_consumer(CONSUMER, config)
        .await
        .map_err(|e| Error::nats("creating the shared consumer", e))
}
