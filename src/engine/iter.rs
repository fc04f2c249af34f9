//! Iterators over a storage ([`Storage::iter`], [`Storage::try_iter`]) and its sizes
//! ([`Storage::len_in_memory`], [`Storage::len`], [`Storage::is_empty`]).

use std::iter::FusedIterator;

use super::Storage;
use super::writer;
use crate::error::Error;
use crate::token::CancelToken;

/// A blocking iterator over popped items, newest first; from [`Storage::iter`].
///
/// Each `next` is one [`pop`](Storage::pop). The first error is yielded once, as
/// `Some(Err(e))`, and then the iterator ends (`None` for ever after): `e` says why
/// ([`Error::Cancelled`] or [`Error::DeadlineExceeded`]: the token ended;
/// [`Error::Closed`]: the storage closed; [`Error::Db`]: a Db pop failed, call `iter` again to
/// go on). It never pre-fetches: an item the iterator has not yielded is still in the storage.
#[derive(Debug)]
pub struct Iter<'a, D> {
    storage: &'a Storage<D>,
    token: &'a CancelToken,
    done: bool,
}

impl<D> Iterator for Iter<'_, D> {
    type Item = Result<Vec<u8>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let popped = self.storage.pop(self.token);
        self.done = popped.is_err();
        Some(popped)
    }
}

impl<D> FusedIterator for Iter<'_, D> {}

/// A non-blocking iterator that drains what the storage holds; from [`Storage::try_iter`].
///
/// Each `next` is one [`try_pop`](Storage::try_pop): `None` once the storage is empty; the
/// first error is yielded once, then the iterator ends.
#[derive(Debug)]
pub struct TryIter<'a, D> {
    storage: &'a Storage<D>,
    done: bool,
}

impl<D> Iterator for TryIter<'_, D> {
    type Item = Result<Vec<u8>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let popped = self.storage.try_pop().transpose();
        self.done = !matches!(popped, Some(Ok(_)));
        popped
    }
}

impl<D> FusedIterator for TryIter<'_, D> {}

impl<D> Storage<D> {
    /// A blocking iterator of popped items, newest first; see [`Iter`] for how it ends and how
    /// to tell why (the last item is `Err` with the reason: the token ended, or
    /// [`Error::Closed`]).
    ///
    /// There is no `pop_timeout`: `pop(&token.with_timeout(d))` (and `iter` over such a token)
    /// says the same and keeps the caller's cancellation, which a bare timeout would drop.
    ///
    /// ```
    /// use lifostore::{CancelToken, Error, MemDb, Storage};
    /// use std::time::Duration;
    /// # fn main() -> Result<(), lifostore::Error> {
    /// let storage = Storage::new(MemDb::new())?;
    /// let token = CancelToken::new();
    /// storage.push_batch(&token, ["a", "b"])?;
    /// let quick = token.with_timeout(Duration::from_millis(20));
    /// let mut got = Vec::new();
    /// for item in storage.iter(&quick) {
    ///     match item {
    ///         Ok(item) => got.push(item),
    ///         Err(Error::DeadlineExceeded) => break, // nothing more came within 20 ms
    ///         Err(e) => return Err(e),
    ///     }
    /// }
    /// assert_eq!(got, vec![b"b".to_vec(), b"a".to_vec()]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn iter<'a>(&'a self, token: &'a CancelToken) -> Iter<'a, D> {
        Iter {
            storage: self,
            token,
            done: false,
        }
    }

    /// An iterator that drains what the storage holds now, newest first, without waiting for
    /// pushes (each step is a [`try_pop`](Self::try_pop)).
    ///
    /// ```
    /// use lifostore::{CancelToken, MemDb, Storage};
    /// # fn main() -> Result<(), lifostore::Error> {
    /// let storage = Storage::new(MemDb::new())?;
    /// storage.push_batch(&CancelToken::new(), ["a", "b"])?;
    /// let all: Result<Vec<_>, _> = storage.try_iter().collect();
    /// assert_eq!(all?, vec![b"b".to_vec(), b"a".to_vec()]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn try_iter(&self) -> TryIter<'_, D> {
        TryIter {
            storage: self,
            done: false,
        }
    }

    /// Items held in memory now (buffered plus being written); one lock, no Db call.
    ///
    /// ```
    /// use lifostore::{CancelToken, MemDb, Storage};
    /// # fn main() -> Result<(), lifostore::Error> {
    /// let storage = Storage::new(MemDb::new())?;
    /// storage.push(&CancelToken::new(), "x")?;
    /// assert_eq!(storage.len_in_memory(), 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn len_in_memory(&self) -> usize {
        self.core.state.lock().len_in_memory()
    }

    /// Items the storage holds, memory plus Db, or `Ok(None)` when the Db cannot count
    /// ([`Db::item_count`](crate::Db::item_count)). Asks the Db (one call) unless the storage already knows
    /// its count exactly. Items moving between memory and the Db during that call may be
    /// counted twice or not at all; the answer is exact when no write or Db pop overlaps it
    /// (and then the storage keeps the count, so later calls and [`Stats::db_len`](
    /// crate::Stats::db_len) need no Db call). Errors: [`Error::Db`].
    ///
    /// ```
    /// use lifostore::{CancelToken, MemDb, Storage};
    /// # fn main() -> Result<(), lifostore::Error> {
    /// let storage = Storage::new(MemDb::new())?;
    /// let token = CancelToken::new();
    /// storage.push_batch(&token, ["a", "b"])?;
    /// storage.flush(&token)?;
    /// storage.push(&token, "c")?;
    /// assert_eq!(storage.len()?, Some(3));
    /// assert_eq!(storage.is_empty()?, Some(false));
    /// # Ok(())
    /// # }
    /// ```
    pub fn len(&self) -> Result<Option<u64>, Error> {
        let state = self.core.state.lock();
        if let Some(n) = state.known_len() {
            return Ok(Some(n));
        }
        let probe = state.begin_len_probe();
        drop(state);
        let Some(db_len) = writer::call_db(|| self.core.db.item_count())? else {
            return Ok(None);
        };
        let shared = self.core.shared;
        Ok(Some(
            self.core.state.lock().end_len_probe(probe, db_len, shared),
        ))
    }

    /// Whether the storage holds no item, memory and Db; `Ok(None)` when memory is empty and
    /// the Db cannot count. See [`len`](Self::len).
    pub fn is_empty(&self) -> Result<Option<bool>, Error> {
        if self.len_in_memory() > 0 {
            return Ok(Some(false));
        }
        Ok(self.len()?.map(|n| n == 0))
    }
}
