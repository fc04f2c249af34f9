//! Poison items: [`DeadLetter`], the hook they go to, and [`DeadLetters`], the ones kept aside
//! when there is no hook.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::error::DbError;

/// An item the Db refused for good, with the reason. Handed to the hook set with
/// [`StorageBuilder::dead_letter`](crate::StorageBuilder::dead_letter), or kept aside for
/// [`Storage::take_dead_letters`](crate::Storage::take_dead_letters).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The item, as it was pushed.
    pub item: Vec<u8>,
    /// Why the Db refused it (a permanent error: [`DbError::is_permanent`] is `true`).
    pub error: DbError,
}

/// The dead-letter hook: called once per poison item, on the thread that wrote its batch.
pub(crate) type DeadLetterHook = Arc<dyn Fn(DeadLetter) + Send + Sync>;

/// Poison items kept aside (no hook set, or the hook panicked), oldest first, at most
/// `max_dead_letters`: when full, the oldest is dropped and counted.
#[derive(Default)]
pub(crate) struct DeadLetters {
    kept: VecDeque<DeadLetter>,
    /// Poison items so far, hooked or kept.
    seen: u64,
    dropped: u64,
}

impl DeadLetters {
    /// Keeps `letters` aside, dropping (and counting) the oldest beyond `max`.
    pub(crate) fn set_aside(&mut self, max: usize, letters: Vec<DeadLetter>) {
        for letter in letters {
            self.seen += 1;
            self.kept.push_back(letter);
        }
        while self.kept.len() > max {
            self.kept.pop_front();
            self.dropped += 1;
        }
    }

    /// Counts poison items a dead-letter hook took.
    pub(crate) fn count_hooked(&mut self, n: usize) {
        self.seen += n as u64;
    }

    /// Hands over the poison items kept aside, oldest first.
    pub(crate) fn take(&mut self) -> Vec<DeadLetter> {
        self.kept.drain(..).collect()
    }

    /// For [`Stats`](crate::Stats): poison items seen, kept now, dropped.
    pub(crate) fn counts(&self) -> (u64, usize, u64) {
        (self.seen, self.kept.len(), self.dropped)
    }
}
