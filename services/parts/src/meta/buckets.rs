//! Buckets of the S3 API: names only. An object `key` of bucket `b` is the file `b/key`.

use super::{Meta, MetaError};

impl Meta {
    /// Creates bucket `name`; `false` if it existed.
    pub fn create_bucket(&self, name: &str) -> Result<bool, MetaError> {
        let mut conn = self.pool().get()?;
        let n = conn
            .execute(
                "INSERT INTO buckets (name) VALUES ($1) ON CONFLICT DO NOTHING",
                &[&name],
            )
            .map_err(MetaError::db("creating a bucket"))?;
        Ok(n == 1)
    }

    /// Whether bucket `name` exists.
    pub fn bucket_exists(&self, name: &str) -> Result<bool, MetaError> {
        let mut conn = self.pool().get()?;
        let row = conn
            .query_opt("SELECT 1 FROM buckets WHERE name = $1", &[&name])
            .map_err(MetaError::db("reading a bucket"))?;
        Ok(row.is_some())
    }

    /// Every bucket with its creation time (seconds since the epoch), by name.
    pub fn buckets(&self) -> Result<Vec<(String, f64)>, MetaError> {
        let mut conn = self.pool().get()?;
        let rows = conn
            .query(
                "SELECT name, extract(epoch FROM created_at)::float8 FROM buckets ORDER BY name",
                &[],
            )
            .map_err(MetaError::db("listing buckets"))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Deletes bucket `name` if it holds no object: `Ok(Some(true))` deleted, `Ok(Some(false))`
    /// not empty, `Ok(None)` no such bucket. (Under the write lock, so no upload commits into
    /// it in between.)
    pub fn delete_bucket(&self, name: &str) -> Result<Option<bool>, MetaError> {
        let prefix = format!("{}/%", super::files::like_escape(name));
        self.write("deleting a bucket", |tx| {
            let used = tx
                .query_opt(
                    "SELECT 1 FROM files WHERE state = 'committed' AND name LIKE $1 LIMIT 1",
                    &[&prefix],
                )
                .map_err(MetaError::db("checking the bucket is empty"))?
                .is_some();
            if used {
                return Ok(Some(false));
            }
            let n = tx
                .execute("DELETE FROM buckets WHERE name = $1", &[&name])
                .map_err(MetaError::db("deleting a bucket"))?;
            Ok((n == 1).then_some(true))
        })
    }
}
