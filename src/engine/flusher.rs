//! The flusher thread's loop: sleep until the policy says write, take the writer role, repeat.
//! It also ticks the coarse clock pushes stamp items with, while pushes come, and returns
//! leases past their deadline. It returns when
//! the storage closes (`close` drains the rest on its own thread).

use std::sync::Arc;
use std::time::Instant;

use super::policy::Next;
use super::state::Core;
use super::writer::write_batch;

/// The background flusher's loop.
pub(crate) fn run(core: Arc<Core>) {
    let mut state = core.state.lock();
    loop {
        if state.is_closed() {
            return;
        }
        let now = Instant::now();
        let tick = super::lease::sweep_and_tick(&core, &mut state, now);
        match state.next(&core.cfg, now) {
            // A failure is recorded in the state (with its retry time) and reported to pushers
            // by `State::refusing`; the loop simply goes on.
            Next::Write(n) => state = write_batch(&core, state, n).0,
            Next::Sleep(until) => {
                let until = match (until, tick) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                state = core.flusher.wait_until(state, until);
            }
        }
    }
}
