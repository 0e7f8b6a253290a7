//! A batch's items in one body ([`super::routes::JOB_INPUTS`], [`super::routes::JOB_OUTPUTS`]):
//! each item, in its manifest's order, as its length in 8 big-endian bytes followed by its
//! bytes; nothing before, between or after. The manifest says what each item must hash to, so
//! the body carries no digests: a reader checks each item against the digest its manifest
//! lists at that position, and an upload's body is signed as a whole (its SHA-256).
//!
//! One signed request moves a whole batch: the per-request cost (the signer's account
//! contract asked through the node) is paid once, not once per item.

use sha2::{Digest as _, Sha256};

use crate::wire::Digest;

/// The content type of an items body: bytes, framed as this module says (a type of its own
/// would be more telling, but generic HTTP tooling, the API's fuzzer among it, sends and
/// checks only the types it knows).
pub const CONTENT_TYPE: &str = "application/octet-stream";

/// Bytes of an item's length prefix.
pub const PREFIX_BYTES: u64 = 8;

/// The prefix of an item of `len` bytes.
pub fn prefix(len: u64) -> [u8; PREFIX_BYTES as usize] {
    len.to_be_bytes()
}

/// A body's SHA-256 and length, built item by item.
#[derive(Debug, Clone, Default)]
pub struct BodyHasher {
    hasher: Sha256,
    len: u64,
}

impl BodyHasher {
    /// Adds the next item.
    pub fn item(&mut self, bytes: &[u8]) {
        self.hasher.update(prefix(bytes.len() as u64));
        self.hasher.update(bytes);
        self.len = self
            .len
            .saturating_add(PREFIX_BYTES)
            .saturating_add(bytes.len() as u64);
    }

    /// The body's SHA-256 and length.
    pub fn finish(self) -> (Digest, u64) {
        (Digest(self.hasher.finalize().into()), self.len)
    }
}

/// The body of `items`, in order (tests and small batches; a worker streams its own).
pub fn encode<'a>(items: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut body = Vec::new();
    for item in items {
        body.extend_from_slice(&prefix(item.len() as u64));
        body.extend_from_slice(item);
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_each_item_after_its_length_and_hashes_as_built() {
        let body = encode([&b"ab"[..], b"", b"xyz"]);
        assert_eq!(
            body,
            [
                &[0, 0, 0, 0, 0, 0, 0, 2][..],
                b"ab",
                &[0; 8],
                &[0, 0, 0, 0, 0, 0, 0, 3],
                b"xyz"
            ]
            .concat()
        );
        let mut hasher = BodyHasher::default();
        for item in [&b"ab"[..], b"", b"xyz"] {
            hasher.item(item);
        }
        assert_eq!(hasher.finish(), (Digest::of(&body), body.len() as u64));
    }
}
