//! The flusher thread's loop: sleep until the policy says write, take the writer role, repeat.
//! At every wake-up it also returns the leases past their deadline (native Db leases with Db
//! calls, `ops::lease_return`) and ticks the coarse clock
//! pushes stamp items with. It returns when the storage closes (`close` drains the rest on its
//! own thread).

use std::sync::Arc;
use std::time::Instant;

use crate::engine::core::{Core, Signal};
use crate::engine::ops::lease_return::return_native;
use crate::engine::ops::lease_to_db::write_due_leases;
use crate::engine::ops::write::write_batch;
use crate::engine::policy::{Next, earliest};

/// The background flusher's loop.
pub(crate) fn run(core: Arc<Core>) {
    let mut state = core.state.lock();
    loop {
        if state.is_closed() {
            return;
        }
        let now = Instant::now();
        let (expired, native) = state.expire_leases(now);
        core.wake_up(&mut state, expired);
        if !native.is_empty() {
            // Native Db leases past their deadline: back on top, which takes Db calls.
            state = return_native(&core, state, &native);
            continue;
        }
        if state.lease_due() {
            // Items leased from memory whose window came due: to the Db, still leased. Their
            // earliest time counts in the lease deadline the flusher sleeps until below.
            let (guard, released) = write_due_leases(&core, state);
            state = guard;
            if released {
                // The lock was let go (a write, or a wait for one): a `close`, a full buffer
                // or a flush asked for meanwhile notified the flusher while it was not waiting
                // for it, so look at everything again rather than go to sleep.
                continue;
            }
        }
        let tick = state.tick(&core.cfg, now);
        let duties = earliest(tick, state.next_lease_deadline());
        match state.next(&core.cfg, now) {
            // A failure is recorded in the state (with its retry time) and reported to pushers
            // by `State::refusing`; the loop simply goes on.
            Next::Write(n) => state = write_batch(&core, state, n).0,
            Next::Sleep(until) => {
                state = core.sleep(Signal::Flusher, state, earliest(until, duties));
            }
        }
    }
}
