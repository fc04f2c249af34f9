//! The Db's learned write speed ([`WriteRate`]) and write time as a function of batch size
//! ([`WriteModel`]): what the capacity and the flush age are computed from.
//!
//! A leaf: pure arithmetic over recorded writes; it imports nothing of the engine.

use std::time::Duration;

/// How many recent writes the write-time model is fitted over: at ~1000 writes/s under full
/// load about 64 ms of memory, at a write per window (light load) 64 windows.
const MODEL_WRITES: usize = 64;

/// The Db's learned write speed: items stored over time spent writing (failed calls and their
/// backoff included), both summed with exponential decay, so it follows a Db whose speed
/// changes and is not inflated by fast calls between failures.
#[derive(Debug, Default, Clone)]
pub(crate) struct WriteRate {
    items: f64,
    secs: f64,
    rate: Option<f64>,
}

impl WriteRate {
    /// Items per second, once a write has been measured.
    pub(crate) fn get(&self) -> Option<f64> {
        self.rate
    }

    /// Records a write that stored `n` items in `elapsed`.
    pub(crate) fn learn(&mut self, n: usize, elapsed: Duration) {
        const DECAY: f64 = 0.8;
        self.items = self.items * DECAY + n as f64;
        self.secs = self.secs * DECAY + elapsed.as_secs_f64().max(1e-6);
        self.rate = Some(self.items / self.secs);
    }
}

/// The Db's write time as a function of batch size, learned from the last [`MODEL_WRITES`]
/// writes: a fixed cost per call (an `fdatasync`, a round trip) plus a cost per item, fitted by
/// least squares, times a tail margin (the slowest recent write relative to the fit).
///
/// Why a model and not just the slowest recent write: the schedule and the capacity must hold
/// for the writes that *will* happen, which under load are full batches. Small batches (slow
/// start, a few due items) write fast; their durations promise nothing about a full batch. The
/// model extrapolates to the batch size asked about, and when the recent writes do not tell the
/// fixed cost from the per-item cost (all of one size) it assumes the cost is all per item, so
/// a larger batch is never predicted cheaper than proportional: the safe side.
///
/// A write's cost also counts the gap before it while writes were overdue (see the state's
/// `Flow::write_cost`): a writer starved of CPU or of the lock drains the backlog as slowly as
/// a slow disk does, and the capacity must pace pushers for both.
#[derive(Debug, Clone)]
pub(crate) struct WriteModel {
    /// (items, seconds) of recent writes; `len` of them are valid.
    recent: [(f64, f64); MODEL_WRITES],
    len: usize,
    next: usize,
}

impl Default for WriteModel {
    fn default() -> Self {
        WriteModel {
            recent: [(0.0, 0.0); MODEL_WRITES],
            len: 0,
            next: 0,
        }
    }
}

impl WriteModel {
    /// Records a write (successful or not) of `n` items that cost `elapsed`.
    pub(crate) fn record(&mut self, n: usize, elapsed: Duration) {
        self.recent[self.next] = (n.max(1) as f64, elapsed.as_secs_f64());
        self.next = (self.next + 1) % MODEL_WRITES;
        self.len = (self.len + 1).min(MODEL_WRITES);
    }

    /// The largest batch among the recent writes (0 before the first): the size the writer
    /// has been writing, which the flush age plans for (see `Flow::learned`).
    pub(crate) fn largest_recent(&self) -> usize {
        self.recent[..self.len]
            .iter()
            .map(|&(items, _)| items as usize)
            .max()
            .unwrap_or(0)
    }

    /// The predicted tail time of a write of `n` items: the fit times the tail margin. Zero
    /// before the first write. (The engine predicts through [`fitted`](Self::fitted), which
    /// fits once for several sizes.)
    #[cfg(test)]
    pub(crate) fn predict(&self, n: usize) -> Duration {
        self.fitted().predict(n)
    }

    /// The model fitted over the recent writes, to predict several batch sizes at the cost of
    /// one fit (the capacity searches for the largest batch within a time).
    pub(crate) fn fitted(&self) -> Fitted {
        let samples = &self.recent[..self.len];
        let Some((fixed, per_item)) = fit(samples) else {
            return Fitted::default();
        };
        let line = Fitted {
            fixed,
            per_item,
            margin: 1.0,
        };
        // The slowest recent write relative to the fit: the fit is a mean, the bound needs
        // the tail. A jittery `fdatasync` widens the margin for every batch size.
        let margin = samples
            .iter()
            .map(|&(items, secs)| secs / line.secs(items).max(1e-9))
            .fold(1.0, f64::max);
        Fitted { margin, ..line }
    }
}

/// A fitted [`WriteModel`]: write time `fixed + per_item x n`, times the tail `margin`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Fitted {
    fixed: f64,
    per_item: f64,
    margin: f64,
}

impl Fitted {
    /// The predicted tail time of a write of `n` items (zero before the first write).
    pub(crate) fn predict(&self, n: usize) -> Duration {
        let secs = self.secs(n as f64) * self.margin;
        Duration::from_secs_f64(secs.min(MAX_PREDICTION))
    }

    /// The fit's mean time (seconds) of a write of `items` items, without the margin.
    fn secs(&self, items: f64) -> f64 {
        self.fixed + self.per_item * items
    }
}

/// Longest write time a prediction returns (seconds): far beyond any window a storage takes,
/// and small enough for `Duration::from_secs_f64`.
const MAX_PREDICTION: f64 = 1e7;

/// Least-squares fit of `secs = fixed + per_item * items` over `samples`, both terms kept
/// non-negative. Without spread in the batch sizes (below a tenth of the mean), the split
/// cannot be learned: it is then taken as all per item (a larger batch predicted
/// proportionally slower, never cheaper).
fn fit(samples: &[(f64, f64)]) -> Option<(f64, f64)> {
    if samples.is_empty() {
        return None;
    }
    let k = samples.len() as f64;
    let mean_n = samples.iter().map(|s| s.0).sum::<f64>() / k;
    let mean_t = samples.iter().map(|s| s.1).sum::<f64>() / k;
    let sxx: f64 = samples.iter().map(|s| (s.0 - mean_n).powi(2)).sum();
    let sxy: f64 = samples
        .iter()
        .map(|s| (s.0 - mean_n) * (s.1 - mean_t))
        .sum();
    let spread = (sxx / k).sqrt();
    if spread < mean_n * 0.1 {
        return Some((0.0, mean_t / mean_n));
    }
    let per_item = (sxy / sxx).max(0.0);
    let fixed = mean_t - per_item * mean_n;
    if fixed >= 0.0 {
        return Some((fixed, per_item));
    }
    // A negative intercept: the best fit through the origin (all per item).
    let snn: f64 = samples.iter().map(|s| s.0 * s.0).sum();
    let snt: f64 = samples.iter().map(|s| s.0 * s.1).sum();
    Some((0.0, snt / snn))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_model_learns_fixed_and_per_item_cost_and_keeps_the_slowest_as_margin() {
        let mut model = WriteModel::default();
        assert_eq!(model.predict(100), Duration::ZERO, "nothing learned yet");
        // 2 ms per call, 10 us per item, exactly.
        for n in [10usize, 100, 1000] {
            model.record(n, ms(2) + Duration::from_micros(10) * n as u32);
        }
        let at = |m: &WriteModel, n| m.predict(n).as_secs_f64() * 1e3;
        assert!((at(&model, 500) - 7.0).abs() < 1e-6, "{}", at(&model, 500));
        assert!((at(&model, 0) - 2.0).abs() < 1e-6, "the fixed cost");
        // One 100-item write twice as slow as the fit: every prediction gets that margin.
        model.record(100, ms(6));
        assert!(at(&model, 1000) > 12.0 * 1.5, "{}", at(&model, 1000));
        // It ages out after MODEL_WRITES more writes.
        for _ in 0..MODEL_WRITES / 2 {
            model.record(10, ms(2) + Duration::from_micros(100));
            model.record(1000, ms(12));
        }
        assert!(
            (at(&model, 1000) - 12.0).abs() < 1e-6,
            "{}",
            at(&model, 1000)
        );
    }

    #[test]
    fn a_negative_intercept_falls_back_to_a_fit_through_the_origin() {
        let mut model = WriteModel::default();
        model.record(100, ms(1));
        model.record(1000, ms(20));
        // Through the origin: (100 x 1 + 1000 x 20) / (100^2 + 1000^2) ms per item.
        let per_item = (100.0 * 1.0 + 1000.0 * 20.0) / (100.0f64 * 100.0 + 1000.0 * 1000.0);
        let margin = 20.0 / (1000.0 * per_item);
        let want = 1000.0 * per_item * margin;
        assert!((model.predict(1000).as_secs_f64() * 1e3 - want).abs() < 1e-6);
        assert_eq!(fit(&[]), None);
    }

    #[test]
    fn the_learned_rate_follows_a_changing_db() {
        let mut r = WriteRate::default();
        assert_eq!(r.get(), None);
        r.learn(100, Duration::from_secs(1));
        assert_eq!(r.get(), Some(100.0));
        for _ in 0..50 {
            r.learn(10, Duration::from_secs(1));
        }
        let rate = r.get().expect("measured");
        assert!(
            (rate - 10.0).abs() < 0.1,
            "rate {rate} did not follow the slower Db"
        );
    }
}
