//! The SNIP-29 types read every payload recorded from starknet.js 10.8.0 (`fixtures/snip29/`,
//! copied from `../shared/SNIP29.md`) and write it back unchanged, and the fields land where
//! the server needs them.

use ciro_api::snip29::{
    methods, BuildTransaction, BuildTransactionParams, BuildTransactionResult,
    ExecutableTransaction, ExecuteTransactionParams, ExecuteTransactionResult, ExecutionParameters,
    FeeMode, Id, Request, Response, TimeBounds, Tip, TokenData,
};
use ciro_api::wire::{Felt, U256};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

macro_rules! fixture {
    ($name:literal) => {
        serde_json::from_str::<Value>(include_str!(concat!("fixtures/snip29/", $name, ".json")))
            .expect(concat!($name, " is JSON"))
    };
}

/// Reads `json` as `T`, checks that writing it back gives the same JSON, and returns it.
fn round_trip<T: Serialize + DeserializeOwned>(json: &Value) -> T {
    let typed: T = serde_json::from_value(json.clone()).expect("the fixture reads");
    assert_eq!(
        &serde_json::to_value(&typed).unwrap(),
        json,
        "written back differently"
    );
    typed
}

const USER: Felt =
    Felt::from_hex_unchecked("0x5a6f4bd3f4f2b3c5c1f7a1a6e0b6d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c");
const STRK: Felt =
    Felt::from_hex_unchecked("0x4718f5a0fc34cc1af16a1cdee98ffb20c31f5cd61d6ab07201858f4287c938d");
const USDC: Felt =
    Felt::from_hex_unchecked("0x53b40a647cedfca6ca84f542a0fe36736031905a9639a7f19a3c1e66bfd5080");
const TRANSFER: Felt =
    Felt::from_hex_unchecked("0x83afd3f4caedc6eebf44246fe54e38c95e3179a5ec9ea81740eca5b482d12e");

#[test]
fn methods_without_params_have_no_params_key() {
    for (json, method) in [
        (fixture!("is_available.request"), methods::IS_AVAILABLE),
        (
            fixture!("get_supported_tokens.request"),
            methods::GET_SUPPORTED_TOKENS,
        ),
    ] {
        let request: Request<Value> = round_trip(&json);
        assert_eq!(request.method, method);
        assert_eq!(request.params, None);
        assert!(matches!(request.id, Id::Number(1 | 2)));
    }
    let available: Response<bool> = round_trip(&fixture!("is_available.response"));
    assert_eq!(available.into_result(), Ok(true));
}

#[test]
fn supported_tokens_carry_decimals_and_prices() {
    let response: Response<Vec<TokenData>> = round_trip(&fixture!("get_supported_tokens.response"));
    assert_eq!(response.id, Id::Number(2));
    let tokens = response.into_result().unwrap();
    assert_eq!(
        tokens,
        vec![
            TokenData {
                token_address: STRK,
                decimals: 18,
                price_in_strk: U256::from(10u128.pow(18)),
            },
            TokenData {
                token_address: USDC,
                decimals: 6,
                price_in_strk: U256::from(0x1d7b0dc8ab4a2c34a0u128),
            },
        ]
    );
}

#[test]
fn sponsored_invoke_build_and_execute() {
    let build: Request<BuildTransactionParams> =
        round_trip(&fixture!("build_sponsored_invoke.request"));
    assert_eq!(build.method, methods::BUILD_TRANSACTION);
    let params = build.params.unwrap();
    let BuildTransaction::Invoke { invoke } = &params.transaction else {
        panic!("an invoke: {:?}", params.transaction)
    };
    assert_eq!(invoke.user_address, USER);
    assert_eq!(invoke.calls.len(), 1);
    assert_eq!(invoke.calls[0].to, STRK);
    assert_eq!(invoke.calls[0].selector, TRANSFER);
    assert_eq!(invoke.calls[0].calldata[1], Felt::from(10u128.pow(18)));
    assert_eq!(
        params.parameters,
        ExecutionParameters::V1 {
            fee_mode: FeeMode::Sponsored { tip: None },
            time_bounds: None,
        }
    );

    let execute: Request<ExecuteTransactionParams> =
        round_trip(&fixture!("execute_sponsored_invoke.request"));
    assert_eq!(execute.method, methods::EXECUTE_TRANSACTION);
    let params = execute.params.unwrap();
    let ExecutableTransaction::Invoke { invoke } = &params.transaction else {
        panic!("an invoke")
    };
    assert_eq!(invoke.user_address, USER);
    assert_eq!(invoke.signature.len(), 2);
    assert_eq!(invoke.typed_data["primaryType"], "OutsideExecution");
    assert_eq!(invoke.typed_data["domain"]["chainId"], "SN_SEPOLIA");

    let result: Response<ExecuteTransactionResult> =
        round_trip(&fixture!("execute_sponsored_invoke.response"));
    assert_eq!(
        result.into_result().unwrap(),
        ExecuteTransactionResult {
            transaction_hash: Felt::from_hex_unchecked(
                "0x3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2"
            ),
            tracking_id: Felt::ZERO,
        }
    );
}

#[test]
fn default_invoke_with_time_bounds_and_its_fee_estimate() {
    let build: Request<BuildTransactionParams> =
        round_trip(&fixture!("build_default_invoke.request"));
    let parameters = build.params.unwrap().parameters;
    assert_eq!(
        parameters.fee_mode(),
        &FeeMode::Default {
            gas_token: USDC,
            tip: None
        }
    );
    assert_eq!(
        parameters.time_bounds(),
        Some(TimeBounds {
            execute_after: 1,
            execute_before: 1_900_000_000
        })
    );

    // The server's answer echoes a tip, which starknet.js drops from what it executes with.
    let response: Response<BuildTransactionResult> =
        round_trip(&fixture!("build_default_invoke.response"));
    let result = response.into_result().unwrap();
    assert_eq!(
        result.parameters().fee_mode(),
        &FeeMode::Default {
            gas_token: USDC,
            tip: Some(Tip::Normal)
        }
    );
    let fee = result.fee();
    assert_eq!(fee.suggested_max_fee_in_gas_token, U256::from(0xea60u32));
    assert_eq!(fee.estimated_fee_in_gas_token, U256::from(0x4e20u32));
    assert_eq!(
        fee.gas_token_price_in_strk,
        U256::from(0x1d7b0dc8ab4a2c34a0u128)
    );
    // The appended fee transfer moves exactly the suggested maximum (starknet.js checks it).
    let calls = result.typed_data().unwrap()["message"]["Calls"]
        .as_array()
        .unwrap();
    let fee_call = calls.last().unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(fee_call["To"], format!("{USDC:#x}"));
    assert_eq!(fee_call["Calldata"][1], "0xea60");

    let execute: Request<ExecuteTransactionParams> =
        round_trip(&fixture!("execute_default_invoke.request"));
    let params = execute.params.unwrap();
    assert_eq!(
        params.parameters.time_bounds().unwrap().execute_before,
        1_900_000_000
    );
    assert_eq!(
        params.parameters.fee_mode(),
        &FeeMode::Default {
            gas_token: USDC,
            tip: None
        }
    );
}

#[test]
fn direct_build_with_two_calls_and_explicit_execute_after() {
    let build: Request<BuildTransactionParams> =
        round_trip(&fixture!("build_default_two_calls.request"));
    let params = build.params.unwrap();
    let BuildTransaction::Invoke { invoke } = &params.transaction else {
        panic!("an invoke")
    };
    assert_eq!(invoke.calls.len(), 2);
    assert_eq!(invoke.calls[1].to, USDC);
    assert_eq!(invoke.calls[1].calldata[1], Felt::from(5_000u32));
    assert_eq!(
        params.parameters.time_bounds().unwrap().execute_after,
        1_700_000_000
    );
}

#[test]
fn deployments_sponsored_and_with_calls() {
    let build: Request<BuildTransactionParams> =
        round_trip(&fixture!("build_sponsored_deploy.request"));
    let BuildTransaction::Deploy { deployment } = build.params.unwrap().transaction else {
        panic!("a deploy")
    };
    assert_eq!(deployment.address, USER);
    assert_eq!(deployment.salt, Felt::from(0x3b1c2du32));
    assert_eq!(deployment.calldata.len(), 3);
    assert_eq!(deployment.sigdata, None);
    assert_eq!(deployment.version, 1);

    let execute: Request<ExecuteTransactionParams> =
        round_trip(&fixture!("execute_sponsored_deploy.request"));
    assert!(matches!(
        execute.params.unwrap().transaction,
        ExecutableTransaction::Deploy { .. }
    ));

    let build: Request<BuildTransactionParams> =
        round_trip(&fixture!("build_default_deploy_and_invoke.request"));
    let params = build.params.unwrap();
    let BuildTransaction::DeployAndInvoke { invoke, deployment } = params.transaction else {
        panic!("a deploy_and_invoke")
    };
    assert_eq!(invoke.user_address, deployment.address);
    assert_eq!(
        params.parameters.fee_mode(),
        &FeeMode::Default {
            gas_token: STRK,
            tip: None
        }
    );
}

#[test]
fn lenient_inputs_starknet_js_may_send_are_read() {
    // Bare numbers in `deployment` (starknet.js passes user values through), numeric strings
    // for time bounds (what the SNIP schema says), and a custom tip.
    let params: BuildTransactionParams = serde_json::from_value(serde_json::json!({
        "transaction": {"type": "deploy", "deployment": {
            "address": "0x5a6f", "class_hash": "0x36", "salt": 3873837,
            "calldata": [0, "12", "0x1"], "sigdata": ["0x9"], "version": 1
        }},
        "parameters": {"version": "0x1",
            "fee_mode": {"mode": "sponsored", "tip": {"custom": 5}},
            "time_bounds": {"execute_after": "1", "execute_before": "1900000000"}}
    }))
    .unwrap();
    let BuildTransaction::Deploy { deployment } = &params.transaction else {
        panic!("a deploy")
    };
    assert_eq!(deployment.salt, Felt::from(0x3b1c2du32));
    assert_eq!(
        deployment.calldata,
        vec![Felt::ZERO, Felt::from(12u8), Felt::ONE]
    );
    assert_eq!(deployment.sigdata, Some(vec![Felt::from(9u8)]));
    assert_eq!(
        params.parameters,
        ExecutionParameters::V1 {
            fee_mode: FeeMode::Sponsored {
                tip: Some(Tip::Custom(5))
            },
            time_bounds: Some(TimeBounds {
                execute_after: 1,
                execute_before: 1_900_000_000
            }),
        }
    );
    // Written back canonically: hex felts, numeric time bounds.
    let json = serde_json::to_value(&params).unwrap();
    assert_eq!(json["transaction"]["deployment"]["salt"], "0x3b1c2d");
    assert_eq!(
        json["parameters"]["time_bounds"]["execute_before"],
        1_900_000_000
    );
}

#[test]
fn unsupported_versions_and_modes_are_refused() {
    let with = |parameters: Value| {
        serde_json::from_value::<BuildTransactionParams>(serde_json::json!({
            "transaction": {"type": "invoke", "invoke": {"user_address": "0x1", "calls": []}},
            "parameters": parameters,
        }))
    };
    assert!(with(serde_json::json!({"version": "0x1", "fee_mode": {"mode": "sponsored"}})).is_ok());
    assert!(
        with(serde_json::json!({"version": "0x2", "fee_mode": {"mode": "sponsored"}})).is_err()
    );
    assert!(with(serde_json::json!({"version": "0x1", "fee_mode": {"mode": "free"}})).is_err());
    assert!(with(serde_json::json!({"version": "0x1", "fee_mode": {"mode": "default"}})).is_err());
}
