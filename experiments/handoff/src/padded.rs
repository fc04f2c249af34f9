//! [`Padded`]: one value per 128 bytes (two cache lines: the adjacent-line prefetcher pairs
//! them), so counters written by different threads do not share a line.

/// A value alone on its 128 bytes.
#[repr(align(128))]
#[derive(Debug, Default)]
pub struct Padded<T>(pub T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        &self.0
    }
}
