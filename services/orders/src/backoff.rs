//! [`Backoff`]: waits between retries of a failing PostgreSQL, cut short by shutdown.

use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};

const FIRST: Duration = Duration::from_millis(50);
const LONGEST: Duration = Duration::from_secs(2);

/// Doubling waits from 50 ms to 2 s. The wait is a timed backoff between attempts on a
/// failing server; the only event worth waking for, shutdown, ends it at once.
pub struct Backoff {
    next: Duration,
    shutdown: Receiver<()>,
}

impl Backoff {
    /// A backoff that ends early once every sender of `shutdown` is dropped.
    pub fn new(shutdown: Receiver<()>) -> Self {
        Backoff {
            next: FIRST,
            shutdown,
        }
    }

    /// Waits the next interval. Returns `false` if the service is shutting down instead.
    pub fn wait(&mut self) -> bool {
        let waited = self.shutdown.recv_timeout(self.next);
        self.next = (self.next * 2).min(LONGEST);
        matches!(waited, Err(RecvTimeoutError::Timeout))
    }

    /// Back to the shortest wait after a success.
    pub fn reset(&mut self) {
        self.next = FIRST;
    }
}
