//! [`Client`]: a blocking objlog client on a private tokio runtime (used by `load` and tests).

use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::{self, Context, context::Publish};
use futures::StreamExt;
use tokio::runtime::{Handle, Runtime};

use crate::error::Error;
use crate::topology::{CONSUMER, REQUEST_STREAM, RESPONSE_STREAM, ensure_streams};
use crate::wire::{
    APPEND_SUBJECT, QUERY_SUBJECT, REPLY_HEADER, REQUEST_ID_HEADER, Response, STATS_SUBJECT,
};

/// A connection to NATS with the objlog streams in place.
pub struct Client {
    runtime: Runtime,
    nats: async_nats::Client,
    js: Context,
}

/// A response with the size of its encoded payload.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The decoded response.
    pub response: Response,
    /// Its size on the wire, in bytes.
    pub bytes: usize,
}

impl Client {
    /// Connects and creates the streams if missing.
    pub fn connect(url: &str) -> Result<Client, Error> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("objlog-client")
            .enable_all()
            .build()?;
        let (nats, js) = runtime.block_on(async {
            let nats = async_nats::connect(url)
                .await
                .map_err(|e| Error::nats("connect", e))?;
            let js = jetstream::new(nats.clone());
            ensure_streams(&js).await?;
            Ok::<_, Error>((nats, js))
        })?;
        Ok(Client { runtime, nats, js })
    }

    /// The runtime, for callers that drive their own async work on it.
    pub fn handle(&self) -> Handle {
        self.runtime.handle().clone()
    }

    /// The NATS connection.
    pub fn nats(&self) -> &async_nats::Client {
        &self.nats
    }

    /// The JetStream context.
    pub fn jetstream(&self) -> &Context {
        &self.js
    }

    /// The server's largest accepted message, in bytes.
    pub fn max_payload(&self) -> usize {
        self.nats.server_info().max_payload
    }

    /// Publishes a raw request body to `subject` through the stream with request id `req`
    /// (and `reply` as the reply subject, if given); returns its stream sequence once the
    /// stream stored it, without waiting for a worker.
    pub fn publish(
        &self,
        subject: &str,
        body: Vec<u8>,
        req: &str,
        reply: Option<&str>,
    ) -> Result<u64, Error> {
        self.runtime
            .block_on(self.publish_async(subject, body, req, reply))
    }

    async fn publish_async(
        &self,
        subject: &str,
        body: Vec<u8>,
        req: &str,
        reply: Option<&str>,
    ) -> Result<u64, Error> {
        let mut publish = Publish::build()
            .payload(body.into())
            .message_id(req)
            .header(REQUEST_ID_HEADER, req);
        if let Some(reply) = reply {
            publish = publish.header(REPLY_HEADER, reply);
        }
        let ack = self
            .js
            .send_publish(subject.to_string(), publish)
            .await
            .map_err(|e| Error::nats("publish", e))?;
        Ok(ack
            .await
            .map_err(|e| Error::nats("publish ack", e))?
            .sequence)
    }

    /// Publishes a raw request body to `subject` through the stream, with request id `req`
    /// and this client's reply subject in the header, and waits up to `timeout` for the answer.
    pub fn request(
        &self,
        subject: &str,
        body: Vec<u8>,
        req: &str,
        timeout: Duration,
    ) -> Result<Answer, Error> {
        self.runtime.block_on(async {
            let inbox = self.nats.new_inbox();
            let mut sub = self
                .nats
                .subscribe(inbox.clone())
                .await
                .map_err(|e| Error::nats("subscribe", e))?;
            self.publish_async(subject, body, req, Some(&inbox)).await?;
            let msg = tokio::time::timeout(timeout, sub.next())
                .await
                .ok()
                .flatten()
                .ok_or_else(|| Error::Timeout(format!("{subject} request {req}")))?;
            let response = serde_json::from_slice(&msg.payload)
                .map_err(|e| Error::nats("decoding a response", e))?;
            Ok(Answer {
                response,
                bytes: msg.payload.len(),
            })
        })
    }

    /// Asks every worker for its counters on `logs.stats`; gathers the answers that arrive
    /// within `wait` (one JSON line per worker).
    pub fn stats(&self, wait: Duration) -> Result<Vec<String>, Error> {
        self.runtime.block_on(async {
            let inbox = self.nats.new_inbox();
            let mut sub = self
                .nats
                .subscribe(inbox.clone())
                .await
                .map_err(|e| Error::nats("subscribe", e))?;
            self.nats
                .publish_with_reply(STATS_SUBJECT, inbox, "".into())
                .await
                .map_err(|e| Error::nats("publish", e))?;
            let mut lines = Vec::new();
            let deadline = tokio::time::Instant::now() + wait;
            while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, sub.next()).await {
                lines.push(String::from_utf8_lossy(&msg.payload).into_owned());
            }
            Ok(lines)
        })
    }

    /// The last sequence stored in the `RESPONSES` stream.
    pub fn last_response_seq(&self) -> Result<u64, Error> {
        self.runtime.block_on(async {
            let mut stream = self
                .js
                .get_stream(RESPONSE_STREAM)
                .await
                .map_err(|e| Error::nats("opening RESPONSES", e))?;
            let info = stream
                .info()
                .await
                .map_err(|e| Error::nats("reading RESPONSES info", e))?;
            Ok(info.state.last_sequence)
        })
    }

    /// The shared consumer's backlog: (requests not yet delivered, delivered but unacked).
    pub fn backlog(&self) -> Result<(u64, usize), Error> {
        self.runtime.block_on(async {
            let stream = self
                .js
                .get_stream(REQUEST_STREAM)
                .await
                .map_err(|e| Error::nats("opening LOGS", e))?;
            let mut consumer: PullConsumer = stream
                .get_consumer(CONSUMER)
                .await
                .map_err(|e| Error::nats("opening the consumer", e))?;
            let info = consumer
                .info()
                .await
                .map_err(|e| Error::nats("reading consumer info", e))?;
            Ok((info.num_pending, info.num_ack_pending))
        })
    }

    /// Appends `log` to `object`'s log and waits for the answer.
    pub fn append(
        &self,
        object: u64,
        log: &str,
        req: &str,
        timeout: Duration,
    ) -> Result<Answer, Error> {
        let body = serde_json::json!({ "id": object, "log": log })
            .to_string()
            .into_bytes();
        self.request(APPEND_SUBJECT, body, req, timeout)
    }

    /// Reads one page of `object`'s log after `after` and waits for the answer.
    pub fn query(
        &self,
        object: u64,
        after: Option<&str>,
        limit: u32,
        req: &str,
        timeout: Duration,
    ) -> Result<Answer, Error> {
        let body = serde_json::json!({ "id": object, "after": after, "limit": limit });
        self.request(QUERY_SUBJECT, body.to_string().into_bytes(), req, timeout)
    }
}
