//! [`FileDbError`]: the ways a file can be unfit for a [`FileDb`](super::FileDb), carried by
//! [`DbError::File`](crate::DbError::File).

use std::path::PathBuf;

/// Why a [`FileDb`](super::FileDb) refuses a file: it is damaged, not a lifostore database, or
/// of a newer format. Every variant names the file.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum FileDbError {
    /// The file at `path` is damaged at byte `offset`.
    #[error(
        "database file {path} is damaged at byte {offset}: {detail}; open it with salvage \
         (FileDbOptions::salvage, or StorageBuilder::open_with) to keep the intact items"
    )]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset of the damage.
        offset: u64,
        /// What is wrong.
        detail: String,
    },
    /// The file at `path` is not a lifostore database: it does not start with lifostore's
    /// magic, or it is not a regular file at all (a FIFO, a device, a socket, ...). lifostore
    /// never writes to such a file, salvage included.
    #[error(
        "{path} is not a lifostore database ({detail}) and was left untouched; pass the path of \
         a lifostore file, or of a new file to create"
    )]
    NotADatabase {
        /// The foreign file.
        path: PathBuf,
        /// What was found instead.
        detail: String,
    },
    /// The file uses a format version this build cannot read.
    #[error(
        "database file {path} has format version {found}, this build reads up to {supported}; \
         upgrade lifostore"
    )]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
}
