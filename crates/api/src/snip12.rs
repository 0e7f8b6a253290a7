//! SNIP-12 revision 1 (Poseidon) encoding of the few value kinds CIRO's signed messages use:
//! the domain, short strings, strings (Cairo `ByteArray`), u256 and the message hash.
//!
//! `poseidon("StarkNet Message", hash(domain), account, hash(message))`, where a struct's hash
//! is `poseidon(starknet_keccak(encoded type), encoded fields...)`. The encoding of the
//! coordinator's request ([`crate::coordinator::auth`]) and the worker's receipt
//! ([`crate::coordinator::receipt`]) are checked in their tests against starknet-rs'
//! `TypedData` and against vectors computed by starknet.js.

use starknet::core::utils::{cairo_short_string_to_felt, starknet_keccak};
use starknet_crypto::poseidon_hash_many;

use crate::wire::{Felt, U256};

/// `'StarkNet Message'`, the prefix of every SNIP-12 message hash.
const STARKNET_MESSAGE: Felt = Felt::from_hex_unchecked("0x537461726b4e6574204d657373616765");
/// SNIP-12 revision 1.
const REVISION: Felt = Felt::ONE;
const DOMAIN_TYPE: &str = r#""StarknetDomain"("name":"shortstring","version":"shortstring","chainId":"shortstring","revision":"shortstring")"#;
/// The encoded type of the `u256` preset: appended to the type of any struct that uses it.
pub(crate) const U256_TYPE: &str = r#""u256"("low":"u128","high":"u128")"#;

/// A text that cannot be a Cairo short string (over 31 characters, or not ASCII).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Cairo short string (at most 31 ASCII characters): {0:?}")]
pub struct ShortStringError(pub String);

/// A short string as a felt.
pub(crate) fn short_string(text: &str) -> Result<Felt, ShortStringError> {
    cairo_short_string_to_felt(text).map_err(|_| ShortStringError(text.to_owned()))
}

/// The hash of a struct type from its encoded type string.
pub(crate) fn type_hash(encoded_type: &str) -> Felt {
    starknet_keccak(encoded_type.as_bytes())
}

/// A `string` value: the Poseidon hash of its Cairo `ByteArray` serialization (full 31-byte
/// words count, the words, the pending word, its length).
pub(crate) fn string_hash(text: &str) -> Felt {
    let bytes = text.as_bytes();
    let full = bytes.chunks_exact(31);
    let pending = full.remainder();
    let mut encoded = vec![Felt::from(bytes.len() / 31)];
    encoded.extend(full.map(Felt::from_bytes_be_slice));
    encoded.push(Felt::from_bytes_be_slice(pending));
    encoded.push(Felt::from(pending.len()));
    poseidon_hash_many(&encoded)
}

/// A `u256` value: the struct hash of the `u256` preset.
pub(crate) fn u256_hash(value: U256) -> Felt {
    poseidon_hash_many(&[
        type_hash(U256_TYPE),
        Felt::from(value.low()),
        Felt::from(value.high()),
    ])
}

/// A SNIP-12 revision 1 domain. `version` is the felt the version's short string encodes to
/// (starknet.js reads a short string of digits such as `"1"` as the number 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Domain {
    /// The name's short string.
    pub name: Felt,
    /// The version's felt.
    pub version: Felt,
}

impl Domain {
    fn hash(&self, chain_id: Felt) -> Felt {
        poseidon_hash_many(&[
            type_hash(DOMAIN_TYPE),
            self.name,
            self.version,
            chain_id,
            REVISION,
        ])
    }

    /// The hash `account` signs for a message whose struct hash is `struct_hash`.
    pub fn message_hash(&self, chain_id: Felt, account: Felt, struct_hash: Felt) -> Felt {
        poseidon_hash_many(&[STARKNET_MESSAGE, self.hash(chain_id), account, struct_hash])
    }

    /// The domain object of the typed-data JSON.
    pub fn json(&self, name: &str, chain_id: Felt) -> serde_json::Value {
        serde_json::json!({
            "name": name,
            "version": format!("{}", self.version),
            "chainId": format!("{chain_id:#x}"),
            "revision": "1",
        })
    }
}

/// The `StarknetDomain` and `u256` type definitions of the typed-data JSON.
pub(crate) fn domain_type_json() -> serde_json::Value {
    serde_json::json!([
        {"name": "name", "type": "shortstring"},
        {"name": "version", "type": "shortstring"},
        {"name": "chainId", "type": "shortstring"},
        {"name": "revision", "type": "shortstring"}
    ])
}

/// A u256 value in typed-data JSON.
pub(crate) fn u256_json(value: U256) -> serde_json::Value {
    serde_json::json!({
        "low": format!("{:#x}", value.low()),
        "high": format!("{:#x}", value.high()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_prefix_is_the_short_string() {
        assert_eq!(short_string("StarkNet Message").unwrap(), STARKNET_MESSAGE);
        assert!(short_string(&"x".repeat(32)).is_err());
    }

    #[test]
    fn string_hash_is_the_poseidon_of_the_byte_array_serialization() {
        // 31 bytes fill one word and leave an empty pending word.
        let text = "abcdefghijklmnopqrstuvwxyz01234";
        assert_eq!(
            string_hash(text),
            poseidon_hash_many(&[
                Felt::ONE,
                short_string(text).unwrap(),
                Felt::ZERO,
                Felt::ZERO
            ])
        );
        assert_eq!(
            string_hash("GET"),
            poseidon_hash_many(&[Felt::ZERO, short_string("GET").unwrap(), Felt::THREE])
        );
    }
}
