//! A small blocking HTTP/1.1 server (one thread per connection) built on `httparse`, shared by
//! the gateway and the nodes.
//!
//! Why not `tiny_http`: once a response head is out, `tiny_http` cannot abort the connection
//! when its body fails; it keeps the connection open, and the client waits for bytes that
//! never come. Here a failed streaming body resets the connection ([`Exchange::respond_stream`]),
//! which is what a checksum mismatch found after the head went out must do.
//!
//! Supported: `Content-Length` request bodies (chunked ones are refused with a reason),
//! `Expect: 100-continue`, keep-alive, `HEAD`. Limits: a 16 KiB head, 64 headers, idle and
//! per-operation timeouts, a cap on open connections ([`Limits`]).

mod conn;
mod exchange;
mod server;

pub use exchange::{Exchange, Head, Response};
pub use server::{Handler, Limits, Server};
