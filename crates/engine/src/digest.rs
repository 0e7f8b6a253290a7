//! SHA-256 digests, the content addresses of models, inputs and outputs: the one
//! [`ciro_protocol::Digest`] the API types and services use too.

pub use ciro_protocol::{Digest, DigestParseError};
