//! The S3-compatible subset (path style): placeholder until the REST API is complete.

use std::sync::Arc;

use super::Gateway;
use crate::http::{Exchange, Handler, Response};

/// The S3 API.
pub struct S3Api {
    _gw: Arc<Gateway>,
}

impl S3Api {
    /// The S3 API of `gw`.
    pub fn new(gw: Arc<Gateway>) -> S3Api {
        S3Api { _gw: gw }
    }
}

impl Handler for S3Api {
    fn handle(&self, ex: &mut Exchange<'_>) {
        ex.respond(Response::empty(501));
    }
}
