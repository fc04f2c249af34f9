//! [`Tracker`]: which appends of a run were published and answered, and when.

use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use async_nats::jetstream::{Context, consumer::DeliverPolicy, consumer::pull::OrderedConfig};
use futures::StreamExt;
use tokio::task::JoinHandle;

use super::{LoadReport, RunId};
use crate::error::Error;
use crate::topology::RESPONSE_STREAM;
use crate::wire::Response;

/// What is known about one append.
#[derive(Debug, Clone, Default)]
pub struct Slot {
    /// Stream sequence from the publish ack.
    pub seq: u64,
    /// Successful responses seen.
    pub ok: u32,
    /// Error responses seen.
    pub errors: u32,
    /// Timestamp in the first successful response.
    pub ts: Option<i64>,
    /// Publish-to-first-response latency.
    pub latency: Option<Duration>,
}

#[derive(Default)]
struct State {
    slots: Vec<Slot>,
    answered: usize,
    last_answer: Option<Instant>,
    /// Highest `RESPONSES` stream sequence processed.
    followed: u64,
}

/// The run's bookkeeping, shared by publishers and the response follower.
pub struct Tracker {
    id: RunId,
    sent_at: Vec<AtomicU64>,
    origin: Instant,
    state: Mutex<State>,
    changed: std::sync::Condvar,
    progress_every: usize,
    follower: Mutex<Option<JoinHandle<()>>>,
}

impl Tracker {
    /// Bookkeeping for `total` appends of run `id`.
    pub fn new(id: RunId, total: usize, progress_every: usize) -> Tracker {
        let state = State {
            slots: vec![Slot::default(); total],
            ..State::default()
        };
        Tracker {
            id,
            sent_at: (0..total).map(|_| AtomicU64::new(0)).collect(),
            origin: Instant::now(),
            state: Mutex::new(state),
            changed: std::sync::Condvar::new(),
            progress_every: progress_every.max(1),
            follower: Mutex::new(None),
        }
    }

    /// Append `k` is being published now.
    pub fn sent(&self, k: usize) {
        let nanos = self.origin.elapsed().as_nanos().max(1) as u64;
        self.sent_at[k].store(nanos, Relaxed);
    }

    /// The stream acked append `k` as sequence `seq`.
    pub fn stored(&self, k: usize, seq: u64) {
        if let Ok(mut s) = self.state.lock() {
            s.slots[k].seq = seq;
        }
    }

    fn answered(&self, r: &Response) {
        let Some(k) = r.req.as_deref().and_then(|q| self.id.index_of(q)) else {
            return;
        };
        let Ok(mut s) = self.state.lock() else { return };
        let Some(slot) = s.slots.get_mut(k) else {
            return;
        };
        let first = slot.ok + slot.errors == 0;
        if r.ok {
            slot.ok += 1;
            slot.ts = slot.ts.or(r.ts);
        } else {
            slot.errors += 1;
        }
        if !first {
            return;
        }
        let sent = self.sent_at[k].load(Relaxed);
        let now = self.origin.elapsed();
        slot.latency = Some(now.saturating_sub(Duration::from_nanos(sent)));
        s.answered += 1;
        s.last_answer = Some(Instant::now());
        if s.answered % self.progress_every == 0 {
            println!("progress {}", s.answered);
            let _ = std::io::stdout().flush();
        }
        if s.answered == s.slots.len() {
            self.changed.notify_all();
        }
    }

    /// The follower processed `RESPONSES` up to stream sequence `seq`.
    fn followed(&self, seq: u64) {
        if let Ok(mut s) = self.state.lock() {
            s.followed = s.followed.max(seq);
            self.changed.notify_all();
        }
    }

    /// Waits until the follower processed `RESPONSES` up to `seq`; `false` on timeout.
    pub fn wait_followed(&self, seq: u64, timeout: Duration) -> bool {
        let Ok(s) = self.state.lock() else {
            return false;
        };
        let waited = self
            .changed
            .wait_timeout_while(s, timeout, |s| s.followed < seq);
        waited.map(|(s, _)| s.followed >= seq).unwrap_or(false)
    }

    /// Waits until every append has an answer; `false` on timeout.
    pub fn wait_all(&self, timeout: Duration) -> bool {
        let Ok(s) = self.state.lock() else {
            return false;
        };
        let waited = self
            .changed
            .wait_timeout_while(s, timeout, |s| s.answered < s.slots.len());
        waited
            .map(|(s, _)| s.answered == s.slots.len())
            .unwrap_or(false)
    }

    /// Throughput and latency so far, measured from `start`.
    pub fn report(&self, start: Instant) -> LoadReport {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut lat: Vec<Duration> = s.slots.iter().filter_map(|x| x.latency).collect();
        lat.sort();
        let pct = |p: f64| {
            lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
                .copied()
                .unwrap_or_default()
        };
        LoadReport {
            published: s.slots.len(),
            answered: s.answered,
            elapsed: s
                .last_answer
                .unwrap_or_else(Instant::now)
                .saturating_duration_since(start),
            p50: pct(0.50),
            p99: pct(0.99),
        }
    }

    /// A copy of every slot.
    pub fn slots(&self) -> Vec<Slot> {
        self.state
            .lock()
            .map(|s| s.slots.clone())
            .unwrap_or_default()
    }

    /// Keeps the follower running (so late duplicates are still counted) until dropped.
    pub fn keep_following(&self, follower: JoinHandle<()>) {
        if let Ok(mut f) = self.follower.lock() {
            *f = Some(follower);
        }
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        if let Ok(Some(f)) = self.follower.get_mut().map(Option::take) {
            f.abort();
        }
    }
}

/// Follows the `RESPONSES` stream from its current end, feeding every response to `tracker`.
pub async fn follow_responses(
    js: &Context,
    tracker: std::sync::Arc<Tracker>,
) -> Result<JoinHandle<()>, Error> {
    let mut stream = js
        .get_stream(RESPONSE_STREAM)
        .await
        .map_err(|e| Error::nats("opening RESPONSES", e))?;
    let last = stream
        .info()
        .await
        .map_err(|e| Error::nats("reading RESPONSES info", e))?
        .state
        .last_sequence;
    let config = OrderedConfig {
        deliver_policy: DeliverPolicy::ByStartSequence {
            start_sequence: last + 1,
        },
        ..Default::default()
    };
    let consumer = stream
        .create_consumer(config)
        .await
        .map_err(|e| Error::nats("following RESPONSES", e))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| Error::nats("following RESPONSES", e))?;
    Ok(tokio::spawn(async move {
        while let Some(msg) = messages.next().await {
            let msg = match msg {
                Ok(m) => m,
                Err(e) => {
                    eprintln!("objlog load: following responses: {e}");
                    continue;
                }
            };
            match serde_json::from_slice::<Response>(&msg.payload) {
                Ok(r) => tracker.answered(&r),
                Err(e) => eprintln!("objlog load: undecodable response: {e}"),
            }
            if let Ok(info) = msg.info() {
                tracker.followed(info.stream_sequence);
            }
        }
    }))
}
