//! Wire encodings shared by every API type: SHA-256 digests as 64 hex digits, felts and u256
//! amounts as `0x`-prefixed minimal lowercase hex strings.
//!
//! The adapters ([`FeltHex`], [`U256Hex`], [`LenientU64`]) are `serde_with` types, named at
//! each field (`#[serde_as(as = "FeltHex")]`), so every field says how it is encoded. They
//! write one canonical form and read leniently: hex or decimal strings, or JSON numbers (what
//! starknet.js sends in places, see `../shared/SNIP29.md`). A felt at or above the field prime
//! is an error, never silently reduced.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};
use serde_with::{DeserializeAs, SerializeAs};

pub use starknet::core::types::{Felt, U256};

pub use ciro_protocol::{Digest, DigestParseError};

/// The chain's u256 form of a [`Digest`] (Cairo's `u256` of the 32 big-endian bytes, as
/// `model_hash`, `input_hash` and `output_hash` are stored).
pub trait DigestU256 {
    /// The digest as the chain's u256: the high 16 bytes and the low 16 bytes, big-endian.
    fn to_u256(&self) -> U256;
    /// The digest of a u256 read from the chain (the inverse of [`DigestU256::to_u256`]).
    fn from_u256(value: U256) -> Self;
}

impl DigestU256 for Digest {
    fn to_u256(&self) -> U256 {
        let (high, low) = self.halves();
        U256::from_words(low, high)
    }

    fn from_u256(value: U256) -> Self {
        Digest::from_halves(value.high(), value.low())
    }
}

/// A string or number that is not the felt or integer it should be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {text:?}")]
pub struct NumberParseError {
    /// What was expected.
    pub what: &'static str,
    /// The text that was read.
    pub text: String,
}

impl NumberParseError {
    fn new(what: &'static str, text: &str) -> Self {
        Self {
            what,
            text: text.to_owned(),
        }
    }
}

/// Parses a felt from `0x`-hex (at most 64 digits) or decimal; values at or above the field
/// prime are refused.
pub fn parse_felt(text: &str) -> Result<Felt, NumberParseError> {
    const WHAT: &str = "not a felt (0x-hex or decimal, below the field prime)";
    let felt = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => {
            let bytes = hex_to_32_bytes(hex).ok_or_else(|| NumberParseError::new(WHAT, text))?;
            let felt = Felt::from_bytes_be(&bytes);
            // `from_bytes_be` reduces modulo the prime: a value that does not come back whole
            // was out of range.
            if felt.to_bytes_be() != bytes {
                return Err(NumberParseError::new(WHAT, text));
            }
            felt
        }
        None => {
            if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                return Err(NumberParseError::new(WHAT, text));
            }
            let felt = Felt::from_dec_str(text).map_err(|_| NumberParseError::new(WHAT, text))?;
            let canonical = text.trim_start_matches('0');
            if felt.to_string() != if canonical.is_empty() { "0" } else { canonical } {
                return Err(NumberParseError::new(WHAT, text));
            }
            felt
        }
    };
    Ok(felt)
}

/// Parses a u256 from `0x`-hex (at most 64 digits), or from decimal below the field prime
/// (larger amounts must be written in hex).
pub fn parse_u256(text: &str) -> Result<U256, NumberParseError> {
    const WHAT: &str = "not a u256 (0x-hex, or decimal below the field prime)";
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => {
            let bytes = hex_to_32_bytes(hex).ok_or_else(|| NumberParseError::new(WHAT, text))?;
            Ok(Digest(bytes).to_u256())
        }
        None => parse_felt(text)
            .map(U256::from)
            .map_err(|_| NumberParseError::new(WHAT, text)),
    }
}

/// Parses a u64 from decimal or `0x`-hex.
pub fn parse_u64(text: &str) -> Result<u64, NumberParseError> {
    const WHAT: &str = "not a u64 (decimal or 0x-hex)";
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) if !hex.is_empty() => u64::from_str_radix(hex, 16),
        Some(_) => return Err(NumberParseError::new(WHAT, text)),
        None => text.parse(),
    }
    .map_err(|_| NumberParseError::new(WHAT, text))
}

/// 1 to 64 hex digits as 32 big-endian bytes.
fn hex_to_32_bytes(hex: &str) -> Option<[u8; 32]> {
    if hex.is_empty() || hex.len() > 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let padded = format!("{hex:0>64}");
    let mut bytes = [0u8; 32];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&padded[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(bytes)
}

/// A felt as a `0x`-prefixed minimal lowercase hex string (reads hex, decimal or a JSON
/// number).
pub struct FeltHex;

impl SerializeAs<Felt> for FeltHex {
    fn serialize_as<S: Serializer>(value: &Felt, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format!("{value:#x}"))
    }
}

impl<'de> DeserializeAs<'de, Felt> for FeltHex {
    fn deserialize_as<D: Deserializer<'de>>(deserializer: D) -> Result<Felt, D::Error> {
        deserializer.deserialize_any(LenientVisitor {
            what: "a felt as a hex or decimal string, or a non-negative integer",
            parse: parse_felt,
            from_u64: Felt::from,
        })
    }
}

/// A u256 amount as a `0x`-prefixed minimal lowercase hex string (reads hex, decimal or a
/// JSON number).
pub struct U256Hex;

impl SerializeAs<U256> for U256Hex {
    fn serialize_as<S: Serializer>(value: &U256, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format!("{value:#x}"))
    }
}

impl<'de> DeserializeAs<'de, U256> for U256Hex {
    fn deserialize_as<D: Deserializer<'de>>(deserializer: D) -> Result<U256, D::Error> {
        deserializer.deserialize_any(LenientVisitor {
            what: "a u256 as a hex or decimal string, or a non-negative integer",
            parse: parse_u256,
            from_u64: U256::from,
        })
    }
}

/// A u64 written as a JSON number, read from a number or a decimal or hex string (SNIP-29's
/// schema says numeric strings where starknet.js sends numbers).
pub struct LenientU64;

impl SerializeAs<u64> for LenientU64 {
    fn serialize_as<S: Serializer>(value: &u64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(*value)
    }
}

impl<'de> DeserializeAs<'de, u64> for LenientU64 {
    fn deserialize_as<D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        deserializer.deserialize_any(LenientVisitor {
            what: "a u64 as a number or a decimal or hex string",
            parse: parse_u64,
            from_u64: |value| value,
        })
    }
}

/// Reads a value from a string (through `parse`) or a non-negative JSON integer.
struct LenientVisitor<T> {
    what: &'static str,
    parse: fn(&str) -> Result<T, NumberParseError>,
    from_u64: fn(u64) -> T,
}

impl<T> Visitor<'_> for LenientVisitor<T> {
    type Value = T;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.what)
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<T, E> {
        (self.parse)(value).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<T, E> {
        Ok((self.from_u64)(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<T, E> {
        u64::try_from(value)
            .map(self.from_u64)
            .map_err(|_| E::invalid_value(de::Unexpected::Signed(value), &self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};
    use serde_with::serde_as;

    #[serde_as]
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        #[serde_as(as = "FeltHex")]
        felt: Felt,
        #[serde_as(as = "U256Hex")]
        amount: U256,
        #[serde_as(as = "LenientU64")]
        time: u64,
    }

    #[test]
    fn digest_and_u256_convert_big_endian_both_ways() {
        let digest = Digest::of(b"abc");
        let value = digest.to_u256();
        assert_eq!(value.high(), 0xba7816bf8f01cfea414140de5dae2223);
        assert_eq!(value.low(), 0xb00361a396177a9cb410ff61f20015ad);
        assert_eq!(Digest::from_u256(value), digest);
    }

    #[test]
    fn felts_and_amounts_write_minimal_hex_and_read_leniently() {
        let sample = Sample {
            felt: Felt::from(0x1234u32),
            amount: U256::from_words(5, 1),
            time: 1_900_000_000,
        };
        let json = serde_json::to_value(&sample).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "felt": "0x1234",
                "amount": "0x100000000000000000000000000000005",
                "time": 1_900_000_000u64,
            })
        );
        assert_eq!(serde_json::from_value::<Sample>(json).unwrap(), sample);
        let lenient: Sample = serde_json::from_value(serde_json::json!({
            "felt": 4660, "amount": "5", "time": "0x713fb300",
        }))
        .unwrap();
        assert_eq!(lenient.felt, Felt::from(0x1234u32));
        assert_eq!(lenient.amount, U256::from(5u8));
        assert_eq!(lenient.time, 1_900_000_000);
    }

    #[test]
    fn felts_out_of_range_or_malformed_are_refused() {
        // The field prime itself, and one digit too many.
        assert!(
            parse_felt("0x800000000000011000000000000000000000000000000000000000000000001")
                .is_err()
        );
        assert!(parse_felt(&format!("0x{}", "1".repeat(65))).is_err());
        assert!(parse_felt("0x").is_err());
        assert!(parse_felt("12a").is_err());
        assert!(parse_felt("-1").is_err());
        assert!(parse_felt(
            "3618502788666131213697322783095070105623107215331596699973092056135872020481"
        )
        .is_err());
        assert_eq!(
            parse_felt("0x800000000000011000000000000000000000000000000000000000000000000"),
            Ok(Felt::MAX)
        );
        assert_eq!(parse_felt("007"), Ok(Felt::from(7u8)));
        assert_eq!(parse_felt("0"), Ok(Felt::ZERO));
        // A u256 may exceed the prime in hex.
        assert_eq!(
            parse_u256(&format!("0x{}", "f".repeat(64))),
            Ok(U256::from_words(u128::MAX, u128::MAX))
        );
        assert!(serde_json::from_value::<Sample>(serde_json::json!({
            "felt": -1, "amount": "0x1", "time": 1,
        }))
        .is_err());
    }
}
