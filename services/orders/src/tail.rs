//! The tail: every replica reads the whole orders stream, in stream order, from just after
//! the ack floor it started with, and hands the messages to the [`View`](crate::view::View)
//! thread. An ordered consumer: ephemeral, no acks, re-created by the client on a gap; this
//! loop re-opens it after an error from the next sequence it has not handed over.

use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use async_nats::jetstream::{self, Message};
use bytes::Bytes;
use futures_util::StreamExt;

use crate::edge::{EdgeConfig, hand_over};
use crate::error_chain::chain;

/// How long the tail waits for more messages before handing over a partial batch.
const LINGER: Duration = Duration::from_millis(2);

/// One message of the stream: its sequence and body.
pub struct Tailed {
    /// Stream sequence.
    pub seq: u64,
    /// The message body.
    pub payload: Bytes,
}

/// Reads the stream from `floor + 1` on, forever (the runtime drops it at shutdown).
pub async fn tail_loop(
    cfg: EdgeConfig,
    js: jetstream::Context,
    floor: u64,
    out: crossbeam_channel::Sender<Vec<Tailed>>,
) {
    let mut next = floor + 1;
    loop {
        match read_from(&cfg, &js, &mut next, &out).await {
            Ok(false) => return, // the view is gone: shutting down
            Ok(true) => {}
            Err(e) => eprintln!(
                "orders: reading the stream for the cache failed at {next} ({}); re-opening",
                chain(&*e)
            ),
        }
        // A pause between attempts on a failing server, not a poll for an event.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Reads until the consumer ends (`Ok(true)`) or the view hangs up (`Ok(false)`).
async fn read_from(
    cfg: &EdgeConfig,
    js: &jetstream::Context,
    next: &mut u64,
    out: &crossbeam_channel::Sender<Vec<Tailed>>,
) -> Result<bool, async_nats::Error> {
    let stream = js.get_stream(&cfg.stream).await?;
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: cfg.subject.clone(),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: *next,
            },
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    loop {
        let Some(first) = messages.next().await else {
            return Ok(true);
        };
        let mut batch = vec![tailed(first?)?];
        while batch.len() < cfg.batch {
            match tokio::time::timeout(LINGER, messages.next()).await {
                Ok(Some(m)) => batch.push(tailed(m?)?),
                Ok(None) | Err(_) => break,
            }
        }
        if let Some(last) = batch.last() {
            *next = last.seq + 1;
        }
        if !hand_over(batch, out).await {
            return Ok(false);
        }
    }
}

fn tailed(message: Message) -> Result<Tailed, async_nats::Error> {
    let seq = message.info()?.stream_sequence;
    Ok(Tailed {
        seq,
        payload: message.payload.clone(),
    })
}
