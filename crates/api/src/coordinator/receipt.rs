//! The receipt a worker signs for each job it runs (issue 12, item 4): what it ran, on what,
//! and what came out. It is uploaded beside the output and is the evidence a dispute needs:
//! anyone can recompute its hash and check the signature with the worker's account contract
//! (`is_valid_signature`).
//!
//! Signed as SNIP-12 revision 1 typed data, by the worker's account:
//!
//! ```text
//! domain  {name: "CIRO Receipt", version: "1", chainId, revision: "1"}
//! "Receipt"("Job Manager":"ContractAddress","Job Id":"u128","Model Hash":"u256",
//!   "Input Hash":"u256","Output Hash":"u256","Device":"string","Libtorch":"string",
//!   "CUDA":"string","Deterministic":"bool","Seed":"u128","Started At":"timestamp",
//!   "Finished At":"timestamp","Model Load Ms":"u128","Inference Ms":"u128")
//! ```

use serde::{Deserialize, Serialize};
use serde_with::serde_as;
use starknet::signers::SigningKey;
use starknet_crypto::poseidon_hash_many;

use crate::snip12::{self, Domain};
use crate::wire::{Digest, DigestU256, Felt, FeltHex};

/// `'CIRO Receipt'`, the domain name of receipts.
const DOMAIN: Domain = Domain {
    name: Felt::from_hex_unchecked("0x4349524f2052656365697074"),
    version: Felt::ONE,
};
const DOMAIN_NAME: &str = "CIRO Receipt";
const RECEIPT_TYPE_NAME: &str = "Receipt";
/// The encoded type: the struct, then the `u256` preset it uses.
const RECEIPT_TYPE: &str = concat!(
    r#""Receipt"("Job Manager":"ContractAddress","Job Id":"u128","Model Hash":"u256","Input Hash":"u256","Output Hash":"u256","Device":"string","Libtorch":"string","CUDA":"string","Deterministic":"bool","Seed":"u128","Started At":"timestamp","Finished At":"timestamp","Model Load Ms":"u128","Inference Ms":"u128")"#,
    r#""u256"("low":"u128","high":"u128")"#
);

/// What a worker attests about one job.
#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Receipt {
    /// The JobMgr contract the job lives in.
    #[serde_as(as = "FeltHex")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^0x[0-9a-fA-F]{1,64}$"))]
    pub job_manager: Felt,
    /// The job.
    pub job_id: u64,
    /// The worker's account (the signer).
    #[serde_as(as = "FeltHex")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^0x[0-9a-fA-F]{1,64}$"))]
    pub worker: Felt,
    /// SHA-256 of the model file it ran.
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^[0-9a-fA-F]{64}$"))]
    pub model_hash: Digest,
    /// SHA-256 of the input it read.
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^[0-9a-fA-F]{64}$"))]
    pub input_hash: Digest,
    /// SHA-256 of the output it produced.
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^[0-9a-fA-F]{64}$"))]
    pub output_hash: Digest,
    /// The device it ran on (e.g. `NVIDIA H100 80GB HBM3`, or `cpu`).
    pub device: String,
    /// The libtorch version.
    pub libtorch_version: String,
    /// The CUDA version; empty on CPU.
    pub cuda_version: String,
    /// Whether it ran in deterministic mode.
    pub deterministic: bool,
    /// The random seed it set.
    pub seed: u64,
    /// When it started the job (unix seconds).
    pub started_at: u64,
    /// When it finished (unix seconds).
    pub finished_at: u64,
    /// Time to load the model, in milliseconds (0 when it was already loaded).
    pub model_load_ms: u64,
    /// Time of the forward pass, in milliseconds.
    pub inference_ms: u64,
}

impl Receipt {
    /// The SNIP-12 struct hash.
    pub fn struct_hash(&self) -> Felt {
        poseidon_hash_many(&[
            snip12::type_hash(RECEIPT_TYPE),
            self.job_manager,
            Felt::from(self.job_id),
            snip12::u256_hash(self.model_hash.to_u256()),
            snip12::u256_hash(self.input_hash.to_u256()),
            snip12::u256_hash(self.output_hash.to_u256()),
            snip12::string_hash(&self.device),
            snip12::string_hash(&self.libtorch_version),
            snip12::string_hash(&self.cuda_version),
            if self.deterministic {
                Felt::ONE
            } else {
                Felt::ZERO
            },
            Felt::from(self.seed),
            Felt::from(self.started_at),
            Felt::from(self.finished_at),
            Felt::from(self.model_load_ms),
            Felt::from(self.inference_ms),
        ])
    }

    /// The hash the worker's account signs on chain `chain_id`.
    pub fn message_hash(&self, chain_id: Felt) -> Felt {
        DOMAIN.message_hash(chain_id, self.worker, self.struct_hash())
    }

    /// Signs with the worker's key (a single-key account: `[r, s]`).
    pub fn sign(self, key: &SigningKey, chain_id: Felt) -> Result<SignedReceipt, ReceiptError> {
        let signature = key
            .sign(&self.message_hash(chain_id))
            .map_err(|e| ReceiptError(e.to_string()))?;
        Ok(SignedReceipt {
            receipt: self,
            signature: vec![signature.r, signature.s],
        })
    }

    /// The typed-data JSON of the receipt (what a wallet or starknet.js signs).
    pub fn typed_data(&self, chain_id: Felt) -> serde_json::Value {
        let field = |name: &str, kind: &str| serde_json::json!({"name": name, "type": kind});
        serde_json::json!({
            "types": {
                "StarknetDomain": snip12::domain_type_json(),
                RECEIPT_TYPE_NAME: [
                    field("Job Manager", "ContractAddress"),
                    field("Job Id", "u128"),
                    field("Model Hash", "u256"),
                    field("Input Hash", "u256"),
                    field("Output Hash", "u256"),
                    field("Device", "string"),
                    field("Libtorch", "string"),
                    field("CUDA", "string"),
                    field("Deterministic", "bool"),
                    field("Seed", "u128"),
                    field("Started At", "timestamp"),
                    field("Finished At", "timestamp"),
                    field("Model Load Ms", "u128"),
                    field("Inference Ms", "u128"),
                ]
            },
            "primaryType": RECEIPT_TYPE_NAME,
            "domain": DOMAIN.json(DOMAIN_NAME, chain_id),
            "message": {
                "Job Manager": format!("{:#x}", self.job_manager),
                "Job Id": self.job_id,
                "Model Hash": snip12::u256_json(self.model_hash.to_u256()),
                "Input Hash": snip12::u256_json(self.input_hash.to_u256()),
                "Output Hash": snip12::u256_json(self.output_hash.to_u256()),
                "Device": self.device,
                "Libtorch": self.libtorch_version,
                "CUDA": self.cuda_version,
                "Deterministic": self.deterministic,
                "Seed": self.seed,
                "Started At": self.started_at,
                "Finished At": self.finished_at,
                "Model Load Ms": self.model_load_ms,
                "Inference Ms": self.inference_ms,
            }
        })
    }
}

/// Signing a receipt failed (the ECDSA step).
#[derive(Debug, thiserror::Error)]
#[error("signing the receipt failed: {0}")]
pub struct ReceiptError(String);

/// A receipt with the worker's signature (body of `PUT /v1/jobs/{job_id}/receipt`).
#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SignedReceipt {
    /// The receipt.
    pub receipt: Receipt,
    /// The worker account's signature of [`Receipt::message_hash`] (`[r, s]` for a
    /// single-key account; opaque felts for others).
    #[serde_as(as = "Vec<FeltHex>")]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub signature: Vec<Felt>,
}

impl SignedReceipt {
    /// Whether the signature is a valid `[r, s]` of the receipt by `public_key` (the
    /// off-chain check for single-key accounts; other accounts are asked on-chain).
    pub fn is_signed_by_key(&self, public_key: Felt, chain_id: Felt) -> bool {
        match self.signature.as_slice() {
            [r, s] => {
                starknet_crypto::verify(&public_key, &self.receipt.message_hash(chain_id), r, s)
                    .unwrap_or(false)
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use starknet::core::types::TypedData;
    use starknet::core::utils::cairo_short_string_to_felt;

    fn sample() -> Receipt {
        Receipt {
            job_manager: Felt::from_hex_unchecked(
                "0x4718f5a0fc34cc1af16a1cdee98ffb20c31f5cd61d6ab07201858f4287c938d",
            ),
            job_id: 42,
            worker: Felt::from_hex_unchecked(
                "0x5a6f4bd3f4f2b3c5c1f7a1a6e0b6d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c",
            ),
            model_hash: Digest::of(b"model"),
            input_hash: Digest::of(b"input"),
            output_hash: Digest::of(b"output"),
            device: "NVIDIA H100 80GB HBM3 (compute capability 9.0)".into(),
            libtorch_version: "2.11.0".into(),
            cuda_version: "12.8".into(),
            deterministic: true,
            seed: 1234,
            started_at: 1_750_000_000,
            finished_at: 1_750_000_003,
            model_load_ms: 850,
            inference_ms: 1_234,
        }
    }

    #[test]
    fn constants_are_the_strings_they_name() {
        assert_eq!(
            DOMAIN.name,
            cairo_short_string_to_felt(DOMAIN_NAME).unwrap()
        );
    }

    #[test]
    fn message_hash_equals_starknet_rs_typed_data_hash() {
        let receipt = sample();
        let chain_id = cairo_short_string_to_felt("SN_SEPOLIA").unwrap();
        let typed: TypedData = serde_json::from_value(receipt.typed_data(chain_id)).unwrap();
        assert_eq!(
            typed.message_hash(receipt.worker).unwrap(),
            receipt.message_hash(chain_id)
        );
    }

    #[test]
    fn signed_receipt_verifies_and_any_change_breaks_it() {
        let key = SigningKey::from_secret_scalar(Felt::from(0x5eedu32));
        let public = key.verifying_key().scalar();
        let chain_id = Felt::ONE;
        let signed = sample().sign(&key, chain_id).unwrap();
        assert!(signed.is_signed_by_key(public, chain_id));
        assert!(!signed.is_signed_by_key(public, Felt::TWO));

        let json = serde_json::to_value(&signed).unwrap();
        assert_eq!(
            json["receipt"]["job_manager"],
            "0x4718f5a0fc34cc1af16a1cdee98ffb20c31f5cd61d6ab07201858f4287c938d"
        );
        assert_eq!(
            json["receipt"]["output_hash"],
            Digest::of(b"output").to_string()
        );
        assert_eq!(
            serde_json::from_value::<SignedReceipt>(json).unwrap(),
            signed
        );

        let tamperings: [fn(&mut Receipt); 6] = [
            |r| r.output_hash = Digest::of(b"forged"),
            |r| r.job_id += 1,
            |r| r.device.push('!'),
            |r| r.cuda_version.clear(),
            |r| r.deterministic = false,
            |r| r.inference_ms += 1,
        ];
        for (i, tamper) in tamperings.iter().enumerate() {
            let mut forged = signed.clone();
            tamper(&mut forged.receipt);
            assert!(
                !forged.is_signed_by_key(public, chain_id),
                "tampering {i} still verifies"
            );
        }
    }
}
