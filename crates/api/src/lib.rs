//! What crosses the wire between CIRO's services and their clients, so that server and client
//! compile against the same types:
//!
//! - [`coordinator`]: the coordinator's REST API (routes, bodies, the error body, SNIP-12
//!   request signing, the worker's signed receipt) and its typed client, the Rust SDK of
//!   submitters and workers;
//! - [`snip29`]: the SNIP-29 paymaster JSON-RPC API as starknet.js speaks it, and a client;
//! - [`wire`]: the encodings they share (SHA-256 digests, felts and u256 amounts as hex).

#![warn(missing_docs)]

pub mod coordinator;
mod snip12;
pub mod snip29;
pub mod wire;
