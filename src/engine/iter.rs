//! The iterators over a storage: [`Iter`] (blocking, each step a `pop`) and [`TryIter`]
//! (each step a `try_pop`).

use std::iter::FusedIterator;
use std::marker::PhantomData;
use std::sync::Arc;

use super::core::Core;
use super::ops::take::{One, take};
use super::waiter::Wait;
use crate::error::Error;
use crate::token::CancelToken;

/// A blocking iterator over popped items, newest first; from [`Storage::iter`](crate::Storage::iter).
///
/// Each `next` is one [`pop`](crate::Storage::pop). The first error is yielded once, as
/// `Some(Err(e))`, and then the iterator ends (`None` for ever after): `e` says why
/// ([`Error::Cancelled`] or [`Error::DeadlineExceeded`]: the token ended;
/// [`Error::Closed`]: the storage closed; [`Error::Db`]: a Db pop failed, call `iter` again to
/// go on). It never pre-fetches: an item the iterator has not yielded is still in the storage.
pub struct Iter<'a, D> {
    core: &'a Arc<Core>,
    token: &'a CancelToken,
    done: bool,
    /// The storage's Db type: an iterator borrows its `Storage<D>`.
    db: PhantomData<&'a D>,
}

impl<'a, D> Iter<'a, D> {
    pub(crate) fn new(core: &'a Arc<Core>, token: &'a CancelToken) -> Self {
        Iter {
            core,
            token,
            done: false,
            db: PhantomData,
        }
    }
}

impl<D> std::fmt::Debug for Iter<'_, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Iter").field("done", &self.done).finish()
    }
}

impl<D> Iterator for Iter<'_, D> {
    type Item = Result<Vec<u8>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let popped = take(self.core, Wait::Until(self.token), &One, |item| {
            item.ok_or_else(|| Error::Closed)
        });
        self.done = popped.is_err();
        Some(popped)
    }
}

impl<D> FusedIterator for Iter<'_, D> {}

/// A non-blocking iterator that drains what the storage holds; from [`Storage::try_iter`](crate::Storage::try_iter).
///
/// Each `next` is one [`try_pop`](crate::Storage::try_pop): `None` once the storage is empty; the
/// first error is yielded once, then the iterator ends.
pub struct TryIter<'a, D> {
    core: &'a Arc<Core>,
    done: bool,
    db: PhantomData<&'a D>,
}

impl<'a, D> TryIter<'a, D> {
    pub(crate) fn new(core: &'a Arc<Core>) -> Self {
        TryIter {
            core,
            done: false,
            db: PhantomData,
        }
    }
}

impl<D> std::fmt::Debug for TryIter<'_, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TryIter").field("done", &self.done).finish()
    }
}

impl<D> Iterator for TryIter<'_, D> {
    type Item = Result<Vec<u8>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let popped = take(self.core, Wait::UnderWay, &One, Ok).transpose();
        self.done = !matches!(popped, Some(Ok(_)));
        popped
    }
}

impl<D> FusedIterator for TryIter<'_, D> {}
