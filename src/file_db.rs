//! [`FileDb`]: the embedded durable default (placeholder until the file format lands).

use std::path::{Path, PathBuf};

use crate::db::{Db, DbError};
use crate::sync::Mutex;

/// Options for [`FileDb::open_with`].
#[derive(Debug, Clone)]
pub struct FileDbOptions {
    /// Largest item accepted, in bytes.
    pub max_item_len: usize,
}

impl Default for FileDbOptions {
    fn default() -> Self {
        FileDbOptions {
            max_item_len: 64 << 20,
        }
    }
}

/// A durable [`Db`] in one file.
#[derive(Debug)]
pub struct FileDb {
    path: PathBuf,
    items: Mutex<Vec<Vec<u8>>>,
}

impl FileDb {
    /// Opens or creates the database at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, DbError> {
        Self::open_with(path, FileDbOptions::default())
    }

    /// Opens or creates the database at `path` with `options`.
    pub fn open_with(path: impl AsRef<Path>, _options: FileDbOptions) -> Result<Self, DbError> {
        Ok(FileDb {
            path: path.as_ref().to_path_buf(),
            items: Mutex::new(Vec::new()),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Db for FileDb {
    fn push(&self, data: &[u8]) -> Result<(), DbError> {
        self.items.lock().push(data.to_vec());
        Ok(())
    }

    fn pop(&self) -> Result<Option<Vec<u8>>, DbError> {
        Ok(self.items.lock().pop())
    }
}
