//! SNIP-9 v2 outside executions, signed as SNIP-12 revision 1 typed data (Poseidon).
//!
//! A user signs an [`OutsideExecution`] (calls, who may submit them, a nonce, a validity
//! window); anyone allowed by `caller` submits it through the user's account
//! `execute_from_outside_v2` and pays the fee. The relayer and the submitter CLI both build,
//! sign and verify through this module; [`OutsideExecution::to_binding`] gives the cainome
//! type to submit it with.
//!
//! The hash, per SNIP-12 revision 1:
//! `poseidon("StarkNet Message", hash(domain), account, hash(outside_execution))` with
//! domain `{name: "Account.execute_from_outside", version: 2, chainId, revision: 1}` and
//! the type strings below.

use starknet::core::types::{Call, Felt};
use starknet::core::utils::starknet_keccak;
use starknet::signers::SigningKey;
use starknet_crypto::poseidon_hash_many;

use crate::bindings::src9_account;

/// `caller` value that lets anyone submit the execution.
pub const ANY_CALLER: Felt = Felt::from_hex_unchecked("0x414e595f43414c4c4552"); // 'ANY_CALLER'
/// The SNIP-12 message prefix, `'StarkNet Message'`.
const STARKNET_MESSAGE: Felt = Felt::from_hex_unchecked("0x537461726b4e6574204d657373616765");
/// The domain name SNIP-9 v2 accounts use, `'Account.execute_from_outside'`.
const DOMAIN_NAME: Felt =
    Felt::from_hex_unchecked("0x4163636f756e742e657865637574655f66726f6d5f6f757473696465");
const DOMAIN_VERSION: Felt = Felt::TWO;
const REVISION: Felt = Felt::ONE;

const DOMAIN_TYPE: &str = r#""StarknetDomain"("name":"shortstring","version":"shortstring","chainId":"shortstring","revision":"shortstring")"#;
const OUTSIDE_EXECUTION_TYPE: &str = r#""OutsideExecution"("Caller":"ContractAddress","Nonce":"felt","Execute After":"u128","Execute Before":"u128","Calls":"Call*")"Call"("To":"ContractAddress","Selector":"selector","Calldata":"felt*")"#;
const CALL_TYPE: &str =
    r#""Call"("To":"ContractAddress","Selector":"selector","Calldata":"felt*")"#;

/// A SNIP-9 v2 outside execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutsideExecution {
    /// Who may submit it: an address, or [`ANY_CALLER`].
    pub caller: Felt,
    /// Any felt the account has not seen as an outside-execution nonce.
    pub nonce: Felt,
    /// Valid strictly after this timestamp...
    pub execute_after: u64,
    /// ...and strictly before this one.
    pub execute_before: u64,
    /// The calls the account makes, in order.
    pub calls: Vec<Call>,
}

/// The nonce of an execution built for `sponsor`'s sponsorship: the sponsor's tag (its
/// address's low 120 bits) above `random`. The Paymaster runs a sponsored execution only for
/// the sponsor its nonce names (`PM: nonce not for sponsor`).
pub fn sponsored_nonce(sponsor: Felt, random: u128) -> Felt {
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(&sponsor_tag(sponsor).to_be_bytes());
    bytes[16..].copy_from_slice(&random.to_be_bytes());
    Felt::from_bytes_be(&bytes)
}

/// A sponsor's nonce tag: its address's low 120 bits.
pub fn sponsor_tag(sponsor: Felt) -> u128 {
    let bytes = sponsor.to_bytes_be();
    let mut low = [0u8; 16];
    low.copy_from_slice(&bytes[16..]);
    u128::from_be_bytes(low) & ((1u128 << 120) - 1)
}

/// The tag `nonce` carries: its bits above the low 128.
pub fn nonce_tag(nonce: Felt) -> Felt {
    let bytes = nonce.to_bytes_be();
    let mut high = [0u8; 32];
    high[16..].copy_from_slice(&bytes[..16]);
    Felt::from_bytes_be(&high)
}

fn call_hash(call: &Call) -> Felt {
    poseidon_hash_many(&[
        starknet_keccak(CALL_TYPE.as_bytes()),
        call.to,
        call.selector,
        poseidon_hash_many(&call.calldata),
    ])
}

fn domain_hash(chain_id: Felt) -> Felt {
    poseidon_hash_many(&[
        starknet_keccak(DOMAIN_TYPE.as_bytes()),
        DOMAIN_NAME,
        DOMAIN_VERSION,
        chain_id,
        REVISION,
    ])
}

impl OutsideExecution {
    /// The struct hash of the execution (without domain and signer).
    pub fn struct_hash(&self) -> Felt {
        let calls: Vec<Felt> = self.calls.iter().map(call_hash).collect();
        poseidon_hash_many(&[
            starknet_keccak(OUTSIDE_EXECUTION_TYPE.as_bytes()),
            self.caller,
            self.nonce,
            Felt::from(self.execute_after),
            Felt::from(self.execute_before),
            poseidon_hash_many(&calls),
        ])
    }

    /// The message hash `account` signs on chain `chain_id`.
    pub fn message_hash(&self, account: Felt, chain_id: Felt) -> Felt {
        poseidon_hash_many(&[
            STARKNET_MESSAGE,
            domain_hash(chain_id),
            account,
            self.struct_hash(),
        ])
    }

    /// Signs for `account` with its key; the signature an OpenZeppelin (or Argent-style
    /// single-key) account checks: `[r, s]`.
    pub fn sign(
        &self,
        key: &SigningKey,
        account: Felt,
        chain_id: Felt,
    ) -> anyhow::Result<Vec<Felt>> {
        let signature = key.sign(&self.message_hash(account, chain_id))?;
        Ok(vec![signature.r, signature.s])
    }

    /// The SNIP-12 typed-data JSON of this execution (what a wallet shows the user, and what
    /// the SNIP-29 API exchanges). Selectors are given as hex felts, as starknet.js passes
    /// them through.
    pub fn typed_data_json(&self, chain_id: Felt) -> serde_json::Value {
        let calls: Vec<serde_json::Value> = self
            .calls
            .iter()
            .map(|call| {
                serde_json::json!({
                    "To": format!("{:#x}", call.to),
                    "Selector": format!("{:#x}", call.selector),
                    "Calldata": call.calldata.iter().map(|f| format!("{f:#x}")).collect::<Vec<_>>(),
                })
            })
            .collect();
        serde_json::json!({
            "types": {
                "StarknetDomain": [
                    {"name": "name", "type": "shortstring"},
                    {"name": "version", "type": "shortstring"},
                    {"name": "chainId", "type": "shortstring"},
                    {"name": "revision", "type": "shortstring"}
                ],
                "OutsideExecution": [
                    {"name": "Caller", "type": "ContractAddress"},
                    {"name": "Nonce", "type": "felt"},
                    {"name": "Execute After", "type": "u128"},
                    {"name": "Execute Before", "type": "u128"},
                    {"name": "Calls", "type": "Call*"}
                ],
                "Call": [
                    {"name": "To", "type": "ContractAddress"},
                    {"name": "Selector", "type": "selector"},
                    {"name": "Calldata", "type": "felt*"}
                ]
            },
            "primaryType": "OutsideExecution",
            "domain": {
                "name": "Account.execute_from_outside",
                "version": "2",
                "chainId": format!("{chain_id:#x}"),
                "revision": "1"
            },
            "message": {
                "Caller": format!("{:#x}", self.caller),
                "Nonce": format!("{:#x}", self.nonce),
                "Execute After": format!("{:#x}", self.execute_after),
                "Execute Before": format!("{:#x}", self.execute_before),
                "Calls": calls,
            }
        })
    }

    /// The Paymaster binding's type, for `execute_sponsored`.
    pub fn to_paymaster_binding(&self) -> crate::bindings::paymaster::OutsideExecution {
        crate::bindings::paymaster::OutsideExecution {
            caller: cainome::cairo_serde::ContractAddress(self.caller),
            nonce: self.nonce,
            execute_after: self.execute_after,
            execute_before: self.execute_before,
            calls: self
                .calls
                .iter()
                .map(|call| crate::bindings::paymaster::Call {
                    to: cainome::cairo_serde::ContractAddress(call.to),
                    selector: call.selector,
                    calldata: call.calldata.clone(),
                })
                .collect(),
        }
    }

    /// The cainome type, to submit with the account binding's `execute_from_outside_v2`.
    pub fn to_binding(&self) -> src9_account::OutsideExecution {
        src9_account::OutsideExecution {
            caller: cainome::cairo_serde::ContractAddress(self.caller),
            nonce: self.nonce,
            execute_after: self.execute_after,
            execute_before: self.execute_before,
            calls: self
                .calls
                .iter()
                .map(|call| src9_account::Call {
                    to: cainome::cairo_serde::ContractAddress(call.to),
                    selector: call.selector,
                    calldata: call.calldata.clone(),
                })
                .collect(),
        }
    }
}

/// Why typed data is not a SNIP-9 v2 outside execution this module can submit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid outside-execution typed data: {0}")]
pub struct TypedDataError(pub String);

/// A felt in typed data: a `0x`-hex or decimal string, or a JSON number.
fn felt_value(value: &serde_json::Value, what: &str) -> Result<Felt, TypedDataError> {
    let bad = || TypedDataError(format!("{what} is not a felt: {value}"));
    match value {
        serde_json::Value::String(text) => {
            let parsed = if text.starts_with("0x") || text.starts_with("0X") {
                Felt::from_hex(text)
            } else {
                Felt::from_dec_str(text)
            };
            parsed.map_err(|_| bad())
        }
        serde_json::Value::Number(number) => number.as_u64().map(Felt::from).ok_or_else(bad),
        _ => Err(bad()),
    }
}

fn u64_value(value: &serde_json::Value, what: &str) -> Result<u64, TypedDataError> {
    let felt = felt_value(value, what)?;
    u64::try_from(felt).map_err(|_| TypedDataError(format!("{what} does not fit in 64 bits")))
}

fn field<'a>(
    object: &'a serde_json::Value,
    name: &str,
) -> Result<&'a serde_json::Value, TypedDataError> {
    object
        .get(name)
        .ok_or_else(|| TypedDataError(format!("`{name}` is missing")))
}

impl OutsideExecution {
    /// Reads back the execution from typed data this module wrote (what a SNIP-29 client
    /// echoes), checking that it is SNIP-9 v2 under SNIP-12 revision 1 for `chain_id`: the
    /// exact types, primary type and domain. Values may be hex or decimal strings or numbers;
    /// selectors must be felts (not names). Nothing of the JSON is trusted beyond its values:
    /// the hash a caller verifies is recomputed from what this returns.
    pub fn from_typed_data(
        typed_data: &serde_json::Value,
        chain_id: Felt,
    ) -> Result<Self, TypedDataError> {
        let canonical = Self {
            caller: Felt::ZERO,
            nonce: Felt::ZERO,
            execute_after: 0,
            execute_before: 0,
            calls: vec![],
        }
        .typed_data_json(chain_id);
        if field(typed_data, "types")? != &canonical["types"] {
            return Err(TypedDataError(
                "`types` are not SNIP-9 v2's OutsideExecution types".into(),
            ));
        }
        if field(typed_data, "primaryType")? != "OutsideExecution" {
            return Err(TypedDataError(
                "`primaryType` is not OutsideExecution".into(),
            ));
        }
        let domain = field(typed_data, "domain")?;
        if field(domain, "name")? != "Account.execute_from_outside" {
            return Err(TypedDataError(
                "the domain name is not Account.execute_from_outside".into(),
            ));
        }
        if felt_value(field(domain, "version")?, "the domain version")? != DOMAIN_VERSION {
            return Err(TypedDataError("the domain version is not 2".into()));
        }
        if felt_value(field(domain, "revision")?, "the domain revision")? != REVISION {
            return Err(TypedDataError("the domain revision is not 1".into()));
        }
        let chain = match field(domain, "chainId")? {
            serde_json::Value::String(text)
                if !text.starts_with("0x") && !text.starts_with("0X") =>
            {
                starknet::core::utils::cairo_short_string_to_felt(text).map_err(|_| {
                    TypedDataError("the domain chainId is not a short string".into())
                })?
            }
            other => felt_value(other, "the domain chainId")?,
        };
        if chain != chain_id {
            return Err(TypedDataError(format!(
                "the domain chainId {chain:#x} is not this chain's ({chain_id:#x})"
            )));
        }
        let message = field(typed_data, "message")?;
        let calls = field(message, "Calls")?
            .as_array()
            .ok_or_else(|| TypedDataError("`Calls` is not an array".into()))?
            .iter()
            .enumerate()
            .map(|(i, call)| {
                let selector = field(call, "Selector")?;
                if !selector.as_str().is_some_and(|s| s.starts_with("0x")) {
                    return Err(TypedDataError(format!(
                        "call {i}: the selector is not a hex felt"
                    )));
                }
                Ok(Call {
                    to: felt_value(field(call, "To")?, "a call's To")?,
                    selector: felt_value(selector, "a call's Selector")?,
                    calldata: field(call, "Calldata")?
                        .as_array()
                        .ok_or_else(|| {
                            TypedDataError(format!("call {i}: `Calldata` is not an array"))
                        })?
                        .iter()
                        .map(|value| felt_value(value, "calldata"))
                        .collect::<Result<_, _>>()?,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            caller: felt_value(field(message, "Caller")?, "Caller")?,
            nonce: felt_value(field(message, "Nonce")?, "Nonce")?,
            execute_after: u64_value(field(message, "Execute After")?, "Execute After")?,
            execute_before: u64_value(field(message, "Execute Before")?, "Execute Before")?,
            calls,
        })
    }
}

/// The Poseidon hash of calls as the Paymaster's `SponsoredExecution` event carries it:
/// over `to, selector, calldata length, calldata...` of each call in order.
pub fn calls_hash(calls: &[Call]) -> Felt {
    let mut flat = Vec::new();
    for call in calls {
        flat.extend([call.to, call.selector, Felt::from(call.calldata.len())]);
        flat.extend(&call.calldata);
    }
    poseidon_hash_many(&flat)
}

/// Checks an `[r, s]` signature of `message_hash` against a Stark public key.
pub fn verify(public_key: Felt, message_hash: Felt, signature: &[Felt]) -> bool {
    match signature {
        [r, s] => starknet_crypto::verify(&public_key, &message_hash, r, s).unwrap_or(false),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use starknet::core::types::TypedData;
    use starknet::core::utils::cairo_short_string_to_felt;
    use starknet::macros::selector;

    #[test]
    fn a_sponsored_nonce_carries_its_sponsors_tag_above_the_random_part() {
        let sponsor =
            Felt::from_hex("0x0123456789abcdef0123456789abcdeffedcba9876543210fedcba9876543210")
                .unwrap();
        let nonce = sponsored_nonce(sponsor, 0x1234);
        // The address's low 120 bits, shifted up 128 bits, plus the random part.
        assert_eq!(
            nonce,
            Felt::from_hex("0x00dcba9876543210fedcba987654321000000000000000000000000000001234")
                .unwrap()
        );
        assert_eq!(nonce_tag(nonce), Felt::from(sponsor_tag(sponsor)));
        assert_ne!(
            nonce_tag(sponsored_nonce(sponsor + Felt::ONE, 0x1234)),
            nonce_tag(nonce)
        );
        assert_eq!(
            nonce_tag(Felt::from(u128::MAX)),
            Felt::ZERO,
            "an untagged nonce"
        );
    }

    fn sample() -> OutsideExecution {
        OutsideExecution {
            caller: ANY_CALLER,
            nonce: Felt::from(7u8),
            execute_after: 100,
            execute_before: 10_000,
            calls: vec![
                Call {
                    to: Felt::from(0x1234u32),
                    selector: selector!("transfer"),
                    calldata: vec![Felt::ONE, Felt::TWO, Felt::ZERO],
                },
                Call {
                    to: Felt::from(0x99u32),
                    selector: selector!("approve"),
                    calldata: vec![],
                },
            ],
        }
    }

    #[test]
    fn constants_are_the_short_strings_they_name() {
        assert_eq!(
            ANY_CALLER,
            cairo_short_string_to_felt("ANY_CALLER").unwrap()
        );
        assert_eq!(
            STARKNET_MESSAGE,
            cairo_short_string_to_felt("StarkNet Message").unwrap()
        );
        assert_eq!(
            DOMAIN_NAME,
            cairo_short_string_to_felt("Account.execute_from_outside").unwrap()
        );
    }

    #[test]
    fn message_hash_equals_starknet_rs_typed_data_hash() {
        // Two independent encoders of SNIP-12 revision 1 agree: this module's and starknet-rs'.
        let execution = sample();
        let chain_id = cairo_short_string_to_felt("SN_SEPOLIA").unwrap();
        let account = Felt::from(0xabcdefu32);
        let mut json = execution.typed_data_json(chain_id);
        // starknet-rs hashes a `selector` value as a function name (starknet.js also accepts
        // the hex selector, which is what the JSON carries): give it the names.
        for (call, name) in json["message"]["Calls"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .zip(["transfer", "approve"])
        {
            call["Selector"] = name.into();
        }
        let typed: TypedData = serde_json::from_value(json).unwrap();
        assert_eq!(
            typed.message_hash(account).unwrap(),
            execution.message_hash(account, chain_id)
        );
    }

    #[test]
    fn every_field_changes_the_hash() {
        let chain_id = Felt::from(1u8);
        let account = Felt::from(2u8);
        let base = sample().message_hash(account, chain_id);
        let mut changed = Vec::new();
        let mut e = sample();
        e.caller = Felt::from(5u8);
        changed.push(e.message_hash(account, chain_id));
        let mut e = sample();
        e.nonce += Felt::ONE;
        changed.push(e.message_hash(account, chain_id));
        let mut e = sample();
        e.execute_after += 1;
        changed.push(e.message_hash(account, chain_id));
        let mut e = sample();
        e.execute_before += 1;
        changed.push(e.message_hash(account, chain_id));
        let mut e = sample();
        e.calls[0].calldata[1] = Felt::THREE;
        changed.push(e.message_hash(account, chain_id));
        let mut e = sample();
        e.calls.pop();
        changed.push(e.message_hash(account, chain_id));
        changed.push(sample().message_hash(Felt::from(3u8), chain_id));
        changed.push(sample().message_hash(account, Felt::from(9u8)));
        for (i, hash) in changed.iter().enumerate() {
            assert_ne!(*hash, base, "change {i} left the hash unchanged");
        }
    }

    #[test]
    fn typed_data_reads_back_what_it_wrote_and_refuses_other_shapes() {
        let chain_id = cairo_short_string_to_felt("SN_SEPOLIA").unwrap();
        let execution = sample();
        let json = execution.typed_data_json(chain_id);
        assert_eq!(
            OutsideExecution::from_typed_data(&json, chain_id).unwrap(),
            execution
        );
        // starknet.js' forms: chain id as a short string, numbers for times.
        let mut js = json.clone();
        js["domain"]["chainId"] = "SN_SEPOLIA".into();
        js["message"]["Execute Before"] = 10_000.into();
        assert_eq!(
            OutsideExecution::from_typed_data(&js, chain_id).unwrap(),
            execution
        );
        let refused = |edit: &dyn Fn(&mut serde_json::Value), what: &str| {
            let mut bad = json.clone();
            edit(&mut bad);
            let error = OutsideExecution::from_typed_data(&bad, chain_id).unwrap_err();
            assert!(error.0.contains(what), "{what}: {error}");
        };
        refused(&|j| j["domain"]["chainId"] = "SN_MAIN".into(), "chainId");
        refused(&|j| j["types"]["Call"][0]["type"] = "felt".into(), "types");
        refused(&|j| j["primaryType"] = "Other".into(), "primaryType");
        refused(&|j| j["domain"]["revision"] = "0".into(), "revision");
        refused(
            &|j| j["message"]["Calls"][0]["Selector"] = "transfer".into(),
            "selector",
        );
        refused(&|j| j["message"]["Nonce"] = serde_json::json!([1]), "Nonce");
        refused(
            &|j| {
                j["message"].as_object_mut().unwrap().remove("Caller");
            },
            "Caller",
        );
        refused(
            &|j| j["message"]["Execute Before"] = "0x10000000000000000".into(),
            "64 bits",
        );
    }

    #[test]
    fn sign_then_verify_and_tampering_fails() {
        let key = SigningKey::from_secret_scalar(Felt::from(0x5eed_u32));
        let public = key.verifying_key().scalar();
        let execution = sample();
        let (account, chain_id) = (Felt::from(42u8), Felt::from(1u8));
        let signature = execution.sign(&key, account, chain_id).unwrap();
        assert!(verify(
            public,
            execution.message_hash(account, chain_id),
            &signature
        ));
        let mut tampered = execution.clone();
        tampered.calls[0].calldata[1] = Felt::from(1_000_000u32);
        assert!(!verify(
            public,
            tampered.message_hash(account, chain_id),
            &signature
        ));
        assert!(!verify(
            public,
            execution.message_hash(account, chain_id),
            &signature[..1]
        ));
    }
}
