//! The SNIP-12 encodings of a signed request and of a receipt against starknet.js 10.8.0: the
//! typed data a wallet is shown is the one `tests/vectors/starknet_js_vectors.mjs` built on its
//! own, its hash is the one starknet.js computed, and a signature starknet.js made verifies.

use ciro_api::coordinator::{Receipt, RequestAuth, RequestMessage};
use ciro_api::wire::{parse_felt, Digest, Felt};
use serde_json::Value;
use starknet::core::utils::cairo_short_string_to_felt;

fn vectors() -> Value {
    serde_json::from_str(include_str!("vectors/starknet_js.json")).expect("vectors parse")
}

fn felt(value: &Value) -> Felt {
    parse_felt(value.as_str().expect("a string")).expect("a felt")
}

fn sepolia() -> Felt {
    cairo_short_string_to_felt("SN_SEPOLIA").expect("short string")
}

fn request() -> RequestMessage<'static> {
    RequestMessage {
        job_manager: Felt::from_hex_unchecked(
            "0x4718f5a0fc34cc1af16a1cdee98ffb20c31f5cd61d6ab07201858f4287c938d",
        ),
        coordinator: "https://coordinator.ciro.example",
        method: "PUT",
        path_and_query:
            "/v1/jobs/42/output/9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        body_sha256: Digest::of(b"output bytes"),
        timestamp: 1_750_000_000,
        nonce: Felt::from_hex_unchecked("0x5f1e2d3c4b5a69788796a5b4c3d2e1f0"),
    }
}

fn receipt(worker: Felt) -> Receipt {
    Receipt {
        job_manager: Felt::from_hex_unchecked(
            "0x4718f5a0fc34cc1af16a1cdee98ffb20c31f5cd61d6ab07201858f4287c938d",
        ),
        job_id: 42,
        worker,
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
fn request_typed_data_and_hash_equal_starknet_js() {
    let vectors = vectors();
    let account = felt(&vectors["account"]);
    let expected: Value =
        serde_json::from_str(include_str!("vectors/request.typed_data.json")).unwrap();
    assert_eq!(request().typed_data(sepolia()), expected);
    assert_eq!(
        request().message_hash(account, sepolia()).unwrap(),
        felt(&vectors["request_hash"])
    );
}

#[test]
fn receipt_typed_data_and_hash_equal_starknet_js() {
    let vectors = vectors();
    let receipt = receipt(felt(&vectors["account"]));
    let expected: Value =
        serde_json::from_str(include_str!("vectors/receipt.typed_data.json")).unwrap();
    assert_eq!(receipt.typed_data(sepolia()), expected);
    assert_eq!(
        receipt.message_hash(sepolia()),
        felt(&vectors["receipt_hash"])
    );
}

#[test]
fn a_request_signed_by_starknet_js_verifies_from_its_headers() {
    // What a browser client sends: the starknet.js signature in the headers, parsed and checked
    // the way the server does.
    let vectors = vectors();
    let signature: Vec<Felt> = vectors["request_signature"]
        .as_array()
        .unwrap()
        .iter()
        .map(felt)
        .collect();
    let message = request();
    let sent = RequestAuth {
        account: felt(&vectors["account"]),
        coordinator: message.coordinator.to_owned(),
        timestamp: message.timestamp,
        nonce: message.nonce,
        body_sha256: message.body_sha256,
        signature,
    };
    let received = RequestAuth::from_headers(&sent.to_headers())
        .unwrap()
        .unwrap();
    let hash = received
        .message(message.job_manager, message.method, message.path_and_query)
        .message_hash(received.account, sepolia())
        .unwrap();
    let public_key = felt(&vectors["public_key"]);
    let [r, s] = received.signature[..] else {
        panic!("two felts")
    };
    assert!(starknet_crypto::verify(&public_key, &hash, &r, &s).unwrap());
    // The same signature over another chain's hash does not verify.
    let other_chain = received
        .message(message.job_manager, message.method, message.path_and_query)
        .message_hash(received.account, Felt::ONE)
        .unwrap();
    assert!(!starknet_crypto::verify(&public_key, &other_chain, &r, &s).unwrap());
}
