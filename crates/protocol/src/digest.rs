//! SHA-256 digests: the content addresses of models, inputs and outputs, one type for the
//! engine, the API types and the services.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// A SHA-256 digest: how blobs (models, inputs, outputs) are addressed, and what the chain
/// records as a model's `model_hash` and a job's `input_hash` / `output_hash` (as the u256 of
/// the 32 big-endian bytes, see [`Digest::halves`]).
///
/// Written as 64 lowercase hex digits without prefix; parsed from 64 hex digits in either case,
/// with or without `0x`.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(into = "String", try_from = "String")]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The SHA-256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// The digest of Cairo's u256 halves (the inverse of [`Digest::halves`]).
    pub fn from_halves(high: u128, low: u128) -> Self {
        let mut bytes = [0u8; 32];
        bytes[..16].copy_from_slice(&high.to_be_bytes());
        bytes[16..].copy_from_slice(&low.to_be_bytes());
        Self(bytes)
    }

    /// `(high, low)`: the two u128 halves of the big-endian digest, as Cairo's u256 holds them.
    pub fn halves(&self) -> (u128, u128) {
        let mut high = [0u8; 16];
        let mut low = [0u8; 16];
        high.copy_from_slice(&self.0[..16]);
        low.copy_from_slice(&self.0[16..]);
        (u128::from_be_bytes(high), u128::from_be_bytes(low))
    }
}

/// A batch's manifest (JobMgr's `submit_batch`): its inputs' (or outputs') digests, 32 bytes
/// each, in order, with nothing else. The chain records its SHA-256.
pub fn manifest_of(digests: &[Digest]) -> Vec<u8> {
    digests.iter().flat_map(|d| d.0).collect()
}

/// The digests a manifest of `items` lists, or `None` when its length is not `32 × items`.
pub fn parse_manifest(bytes: &[u8], items: u64) -> Option<Vec<Digest>> {
    if bytes.len() as u64 != items.checked_mul(32)? {
        return None;
    }
    Some(
        bytes
            .chunks_exact(32)
            .map(|c| {
                let mut d = [0u8; 32];
                d.copy_from_slice(c);
                Digest(d)
            })
            .collect(),
    )
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

/// A string that is not a SHA-256 hex digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a SHA-256 digest (64 hex digits): {0:?}")]
pub struct DigestParseError(pub String);

impl FromStr for Digest {
    type Err = DigestParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let hex = text.strip_prefix("0x").unwrap_or(text);
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(DigestParseError(text.to_owned()));
        }
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                .map_err(|_| DigestParseError(text.to_owned()))?;
        }
        Ok(Self(bytes))
    }
}

impl From<Digest> for String {
    fn from(digest: Digest) -> Self {
        digest.to_string()
    }
}

impl TryFrom<String> for Digest {
    type Error = DigestParseError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_abc_is_the_known_vector() {
        assert_eq!(
            Digest::of(b"abc").to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn digest_parses_with_or_without_prefix_and_rejects_garbage() {
        let digest = Digest::of(b"x");
        assert_eq!(digest.to_string().parse::<Digest>(), Ok(digest));
        assert_eq!(format!("0x{digest}").parse::<Digest>(), Ok(digest));
        assert_eq!(
            digest.to_string().to_uppercase().parse::<Digest>(),
            Ok(digest)
        );
        assert!("abc".parse::<Digest>().is_err());
        assert!(format!("{digest}0").parse::<Digest>().is_err());
        assert!(format!("{}g", &digest.to_string()[1..])
            .parse::<Digest>()
            .is_err());
        assert_eq!(
            serde_json::to_string(&digest).unwrap(),
            format!("\"{digest}\"")
        );
    }

    #[test]
    fn halves_are_the_big_endian_u128s_both_ways() {
        let digest = Digest::of(b"abc");
        let (high, low) = digest.halves();
        assert_eq!(high, 0xba7816bf8f01cfea414140de5dae2223);
        assert_eq!(low, 0xb00361a396177a9cb410ff61f20015ad);
        assert_eq!(Digest::from_halves(high, low), digest);
    }
}
