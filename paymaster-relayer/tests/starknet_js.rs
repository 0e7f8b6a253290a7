//! The relayer driven by the real starknet.js 10.8.0 client (installed by scripts/setup.sh):
//! `PaymasterRpc.isAvailable`, `getSupportedTokens`, `buildTransaction` (and a refusal read
//! as an `RpcError` with its SNIP-29 code), then `Account.executePaymasterTransaction`, whose
//! own safety checks (chain id, calls one for one, selectors) pass, whose signature the
//! relayer accepts, and whose transfer lands with the user paying no STRK; and the same for a
//! new account the relayer deploys with its first call (`deploy_and_invoke`).

#[path = "common/mod.rs"]
mod common;

use ciro_chain::starknet::core::types::Felt;
use ciro_paymaster_relayer::STRK;
use ciro_tests::Actor;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn starknet_js_builds_signs_and_executes_a_sponsored_transfer() {
    let dir = std::env::var("CIRO_STARKNET_JS_DIR").expect(
        "CIRO_STARKNET_JS_DIR is set by scripts/env.sh (scripts/setup.sh installs starknet.js)",
    );
    let fx = Fx::start(Options {
        sponsor_deployments: true,
        ..Options::default()
    })
    .await;
    let user = &fx.users[0];
    // A new account, not deployed, holding tokens sent to its address.
    let (newcomer, deployment) = new_account(0x0de9_0004);
    let admin = fx.s.net.account(Actor::Admin);
    ciro_chain::tx::send(
        &fx.s.net.provider,
        ciro_chain::bindings::test_token::TestToken::new(fx.s.token, &admin).mint(
            &ciro_chain::cainome::cairo_serde::ContractAddress(newcomer.address),
            &ciro_chain::clients::u256(USER_TOKENS),
        ),
    )
    .await
    .unwrap();
    let recipient = fx.s.net.address(Actor::Verifier);
    let before = fx.balance(fx.s.token, recipient).await;
    let deposit = fx.deposit().await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/js/starknet_js_client.cjs"
    );
    let output = tokio::process::Command::new("node")
        .arg(script)
        .env("CIRO_STARKNET_JS_DIR", &dir)
        .env("RELAYER_URL", &fx.url)
        .env("API_KEY", KEY)
        .env("RPC_URL", fx.s.net.rpc_url().as_str())
        .env("TOKEN", format!("{:#x}", fx.s.token))
        .env("RECIPIENT", format!("{recipient:#x}"))
        .env("AMOUNT", "77")
        .env("USER_ADDRESS", format!("{:#x}", user.address))
        .env("USER_KEY", format!("{:#x}", user.key.secret_scalar()))
        .env("NEW_ADDRESS", format!("{:#x}", newcomer.address))
        .env("NEW_KEY", format!("{:#x}", newcomer.key.secret_scalar()))
        .env("NEW_CLASS", format!("{:#x}", deployment.class_hash))
        .env("NEW_SALT", format!("{:#x}", deployment.salt))
        .env("NEW_PUBLIC_KEY", format!("{:#x}", deployment.calldata[0]))
        .output()
        .await
        .expect("running node");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "starknet.js failed:\n{stderr}");
    let out: serde_json::Value = serde_json::from_slice(&output.stdout).expect("the script's JSON");
    assert_eq!(out["version"], "10.8.0");
    assert_eq!(out["available"], true);
    let tokens = out["tokens"].as_array().expect("tokens");
    assert_eq!(tokens.len(), 2, "{tokens:?}");
    assert!(
        out["built"]["typed_data"]["message"]["Calls"].is_array(),
        "{}",
        out["built"]
    );
    assert_eq!(out["refused"]["code"], 163, "{}", out["refused"]);
    assert_eq!(out["refused"]["unknown"], true);
    let tx = Felt::from_hex(
        out["transaction_hash"]
            .as_str()
            .expect("a transaction hash"),
    )
    .unwrap();
    landed(&fx.s, tx).await;
    assert_eq!(fx.balance(fx.s.token, user.address).await, USER_TOKENS - 77);
    assert_eq!(
        fx.balance(STRK, user.address).await,
        0,
        "the user paid no gas"
    );
    assert!(fx.deposit().await < deposit, "the sponsor paid");
    // The new account was deployed by the relayer and its transfer ran, gasless.
    let deployed = Felt::from_hex(
        out["deploy_transaction_hash"]
            .as_str()
            .expect("the deployment's transaction hash"),
    )
    .unwrap();
    landed(&fx.s, deployed).await;
    assert_eq!(
        fx.class_at(newcomer.address).await,
        Some(ciro_paymaster_relayer::OPENZEPPELIN_ACCOUNT_1_0)
    );
    // Both transfers reached the recipient.
    assert_eq!(fx.balance(fx.s.token, recipient).await, before + 2 * 77);
    assert_eq!(
        fx.balance(fx.s.token, newcomer.address).await,
        USER_TOKENS - 77
    );
    assert_eq!(fx.balance(STRK, newcomer.address).await, 0);
}
