//! The publisher behind `orders-publish`: N random valid orders and M junk messages, shuffled,
//! published to JetStream with every publish acknowledged. Its own small tokio runtime.

use std::collections::VecDeque;
use std::io::Write;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, context::PublishAckFuture, stream};

use crate::generate::Generator;

/// What to publish.
#[derive(Debug, Clone)]
pub struct PublishPlan {
    /// NATS URL.
    pub url: String,
    /// Stream to create if missing.
    pub stream: String,
    /// Subject to publish on.
    pub subject: String,
    /// Valid orders.
    pub count: u64,
    /// Junk messages.
    pub junk: u64,
    /// Seed: order ids are `<seed hex>-<index>`.
    pub seed: u64,
    /// Messages per second, or as fast as acks come back.
    pub rate: Option<f64>,
}

/// Why publishing failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The runtime could not start.
    #[error("could not start the publisher runtime")]
    Runtime(#[source] std::io::Error),
    /// NATS refused a step.
    #[error("NATS failed while {doing}; check the URL and that JetStream is on")]
    Nats {
        /// What the publisher was doing.
        doing: &'static str,
        /// The client's error.
        #[source]
        source: async_nats::Error,
    },
    /// Writing the sent orders to the output failed.
    #[error("could not write the sent orders to the output file")]
    Output(#[source] std::io::Error),
}

fn nats<E: Into<async_nats::Error>>(doing: &'static str) -> impl FnOnce(E) -> PublishError {
    move |e| PublishError::Nats {
        doing,
        source: e.into(),
    }
}

/// Where the publisher reports what it sent: each valid order's JSON, one per line, and each
/// valid order's id, one per line.
pub struct Sent<'a> {
    /// JSON lines of the valid orders.
    pub orders: &'a mut dyn Write,
    /// Ids of the valid orders.
    pub ids: &'a mut dyn Write,
}

/// Publishes the plan and reports every valid order to `sent`.
/// Returns the time from the first publish to the last acknowledgement.
pub fn publish(plan: &PublishPlan, sent: Sent<'_>) -> Result<Duration, PublishError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(PublishError::Runtime)?;
    runtime.block_on(publish_all(plan, sent))
}

/// The message order: `true` for junk; seeded shuffle so junk is spread through the run.
fn shuffled_kinds(plan: &PublishPlan) -> Vec<bool> {
    let mut kinds: Vec<bool> = (0..plan.count)
        .map(|_| false)
        .chain((0..plan.junk).map(|_| true))
        .collect();
    fastrand::Rng::with_seed(plan.seed ^ 0x5eed).shuffle(&mut kinds);
    kinds
}

async fn publish_all(plan: &PublishPlan, sent: Sent<'_>) -> Result<Duration, PublishError> {
    let client = async_nats::connect(&plan.url)
        .await
        .map_err(nats("connecting"))?;
    let js = jetstream::new(client);
    js.get_or_create_stream(stream::Config {
        name: plan.stream.clone(),
        subjects: vec![plan.subject.clone()],
        ..Default::default()
    })
    .await
    .map_err(nats("creating the stream"))?;
    let mut generator = Generator::new(plan.seed);
    let (mut valid, mut junk) = (0u64, 0u64);
    let mut acks: VecDeque<PublishAckFuture> = VecDeque::new();
    let started = Instant::now();
    for (i, is_junk) in shuffled_kinds(plan).into_iter().enumerate() {
        let payload = if is_junk {
            junk += 1;
            generator.junk(junk - 1)
        } else {
            valid += 1;
            let order = generator.order(valid - 1);
            let json = serde_json::to_vec(&order).unwrap_or_default();
            let out = (|| {
                sent.orders.write_all(&json)?;
                sent.orders.write_all(b"\n")?;
                writeln!(sent.ids, "{}", order.order_uid)
            })();
            out.map_err(PublishError::Output)?;
            json
        };
        let ack = js
            .publish(plan.subject.clone(), payload.into())
            .await
            .map_err(nats("publishing"))?;
        acks.push_back(ack);
        while acks.len() > 256 {
            if let Some(ack) = acks.pop_front() {
                ack.await.map_err(nats("waiting for a publish ack"))?;
            }
        }
        pace(plan.rate, started, i as u64 + 1).await;
    }
    for ack in acks {
        ack.await.map_err(nats("waiting for a publish ack"))?;
    }
    sent.orders.flush().map_err(PublishError::Output)?;
    sent.ids.flush().map_err(PublishError::Output)?;
    Ok(started.elapsed())
}

/// Holds the publisher to `rate` messages per second, a sleep every 50 messages.
async fn pace(rate: Option<f64>, started: Instant, done: u64) {
    if let Some(rate) = rate.filter(|r| *r > 0.0)
        && done.is_multiple_of(50)
    {
        let due = started + Duration::from_secs_f64(done as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
    }
}
