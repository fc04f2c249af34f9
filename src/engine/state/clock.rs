//! [`CoarseClock`]: the instant pushes stamp their items with.
//!
//! Reading the system clock on every push costs more than the rest of a push. While pushes
//! keep coming, the flusher reads the clock once per tick ([`Config::clock_tick`]) and pushes
//! take that reading; once a whole tick passed without a push the clock goes idle, the next
//! push reads the system clock itself and wakes the flusher to tick again. A stamp is never
//! later than its push, so items are at most one tick early, never late.

use std::time::Instant;

use crate::engine::policy::Config;

/// The flusher's last reading of the system clock, while pushes keep coming.
pub(crate) struct CoarseClock {
    /// `None` once pushes stopped: the next push reads the system clock itself.
    now: Option<Instant>,
    /// The stack's next sequence number when the flusher last ticked: pushes since then are
    /// `next_seq - seq_at_tick`.
    seq_at_tick: u64,
}

impl CoarseClock {
    pub(crate) fn new() -> Self {
        CoarseClock {
            now: None,
            seq_at_tick: 1,
        }
    }

    /// The stamp for a push, and whether the clock was idle (the push read the system clock:
    /// the flusher must be woken to keep the clock ticking).
    #[inline]
    pub(crate) fn stamp(&mut self) -> (Instant, bool) {
        match self.now {
            Some(now) => (now, false),
            None => {
                let now = Instant::now();
                self.now = Some(now);
                (now, true)
            }
        }
    }

    /// The flusher's tick at `now`, `next_seq` being the stack's next sequence number: while
    /// pushes came within the last tick, the clock reads `now` and the next tick is due one
    /// tick later (returned); after a whole tick without a push the clock goes idle (`None`).
    pub(crate) fn tick(&mut self, cfg: &Config, now: Instant, next_seq: u64) -> Option<Instant> {
        let recent = self.now.is_some_and(|at| now < at + cfg.clock_tick());
        let pushed = next_seq != self.seq_at_tick;
        if pushed || recent {
            if pushed || self.now.is_none() {
                self.now = Some(now);
            }
            self.seq_at_tick = next_seq;
        } else {
            self.now = None;
        }
        self.now.map(|at| at + cfg.clock_tick())
    }
}
