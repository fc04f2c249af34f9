//! Publisher threads: each sends its share of the appends through JetStream, keeping a
//! bounded number of publishes waiting for their stream ack, retrying a failed one with the
//! same `Nats-Msg-Id` (so the stream stores it once).

use async_nats::jetstream::context::Publish;
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};

use super::{LoadConfig, RunId, Tracker};
use crate::client::Client;
use crate::error::Error;
use crate::wire::{APPEND_SUBJECT, REQUEST_ID_HEADER};

/// Retries of one publish before the run fails.
const RETRIES: usize = 5;

fn body(cfg: &LoadConfig, id: RunId, k: usize) -> Vec<u8> {
    let mut log = id.tag(k);
    log.push('.');
    while log.len() < cfg.log_bytes {
        log.push('.');
    }
    let object = id.object_base + k as u64 % cfg.objects;
    serde_json::json!({ "id": object, "log": log })
        .to_string()
        .into_bytes()
}

async fn publish_one(client: &Client, cfg: &LoadConfig, id: RunId, k: usize) -> Result<u64, Error> {
    let mut last = String::new();
    for _ in 0..RETRIES {
        let publish = Publish::build()
            .payload(body(cfg, id, k).into())
            .message_id(id.tag(k))
            .header(REQUEST_ID_HEADER, id.tag(k).as_str());
        match client
            .jetstream()
            .send_publish(APPEND_SUBJECT, publish)
            .await
        {
            Ok(ack) => match ack.await {
                Ok(ack) => return Ok(ack.sequence),
                Err(e) => last = e.to_string(),
            },
            Err(e) => last = e.to_string(),
        }
    }
    Err(Error::nats(
        "publishing an append",
        format!("{RETRIES} attempts failed, last: {last}"),
    ))
}

async fn publish_share(
    client: &Client,
    cfg: &LoadConfig,
    id: RunId,
    tracker: &Tracker,
    thread: usize,
) -> Result<(), Error> {
    let mut waiting = FuturesUnordered::new();
    let start = tokio::time::Instant::now();
    let per_thread = cfg.rate as f64 / cfg.threads.max(1) as f64;
    for (i, k) in (thread..cfg.total).step_by(cfg.threads.max(1)).enumerate() {
        if per_thread > 0.0 {
            // Pace, while still driving the publishes already under way.
            let due = start + Duration::from_secs_f64(i as f64 / per_thread);
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(due) => break,
                    Some((k, seq)) = waiting.next(), if !waiting.is_empty() => tracker.stored(k, seq?),
                }
            }
        }
        tracker.sent(k);
        waiting.push(async move { (k, publish_one(client, cfg, id, k).await) });
        // Poll once now, so this publish goes out at once rather than with a later one.
        while let Some(Some((k, seq))) = waiting.next().now_or_never() {
            tracker.stored(k, seq?);
        }
        while waiting.len() >= cfg.in_flight.max(1) {
            if let Some((k, seq)) = waiting.next().await {
                tracker.stored(k, seq?);
            }
        }
    }
    while let Some((k, seq)) = waiting.next().await {
        tracker.stored(k, seq?);
    }
    Ok(())
}

/// Publishes every append of the run from `cfg.threads` threads.
pub fn publish_all(
    client: &Client,
    cfg: &LoadConfig,
    id: RunId,
    tracker: &Tracker,
) -> Result<(), Error> {
    let handle = client.handle();
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..cfg.threads.max(1))
            .map(|t| {
                let handle = handle.clone();
                scope.spawn(move || handle.block_on(publish_share(client, cfg, id, tracker, t)))
            })
            .collect();
        threads
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|_| Err(Error::Config("a publisher thread panicked".into())))
            })
            .collect::<Result<Vec<()>, Error>>()
            .map(|_| ())
    })
}
