//! The client side of gasless transactions (`TxSender::with_relay`, what `ciro-worker run
//! --relayer` uses) against a relayer that lies: a proxy in front of the real relayer on a
//! devnet forwards what it is told to and answers the rest itself. The sender must not believe
//! a transaction hash that does not run its execution, nor a revert its calls do not make, and
//! its fallback must pay directly only for what was never signed (a signed execution the
//! relayer refused may still be sent, and the calls would run twice).

mod common;

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use ciro_api::snip29::{PaymasterClient, API_KEY_HEADER};
use ciro_chain::gasless::{Payment, Relay};
use ciro_chain::sender::{SenderConfig, TxSender};
use ciro_chain::starknet::core::types::Felt;
use ciro_chain::{ChainError, RpcAccount};
use ciro_paymaster_relayer::STRK;
use common::*;
use serde_json::{json, Value};

/// What the proxy says instead of the relayer.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Lie {
    /// Nothing: everything goes to the relayer.
    None,
    /// `paymaster_executeTransaction` answers this (earlier, successful) transaction's hash
    /// without sending anything.
    OldHash(Felt),
    /// `paymaster_executeTransaction` answers 156 with a revert reason.
    FalseRevert,
    /// `paymaster_buildTransaction` answers 163: nothing is signed.
    RefuseBuild,
    /// `paymaster_executeTransaction` answers 163 once the user signed.
    RefuseExecute,
}

#[derive(Clone)]
struct Proxy {
    upstream: String,
    lie: Arc<Mutex<Lie>>,
    http: reqwest::Client,
}

async fn answer(
    State(p): State<Proxy>,
    headers: HeaderMap,
    body: String,
) -> axum::response::Response {
    let request: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let id = request["id"].clone();
    let method = request["method"].as_str().unwrap_or_default().to_owned();
    let lie = *p.lie.lock().unwrap();
    let error = |code: i64, data: Value| {
        axum::Json(json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": "lie", "data": data}}))
            .into_response()
    };
    match (method.as_str(), lie) {
        ("paymaster_buildTransaction", Lie::RefuseBuild) => {
            error(163, "service not available".into())
        }
        ("paymaster_executeTransaction", Lie::OldHash(hash)) => axum::Json(json!({
            "jsonrpc": "2.0",
            "id": id,
            "result": {"transaction_hash": format!("{hash:#x}"), "tracking_id": "0x0"},
        }))
        .into_response(),
        ("paymaster_executeTransaction", Lie::FalseRevert) => {
            error(156, json!({"execution_error": "JM: deadline passed"}))
        }
        ("paymaster_executeTransaction", Lie::RefuseExecute) => {
            error(163, "service not available".into())
        }
        _ => {
            let mut forward = p
                .http
                .post(&p.upstream)
                .header("content-type", "application/json")
                .body(body);
            if let Some(key) = headers.get(API_KEY_HEADER) {
                forward = forward.header(API_KEY_HEADER, key);
            }
            let text = forward.send().await.unwrap().text().await.unwrap();
            ([("content-type", "application/json")], text).into_response()
        }
    }
}

/// A lying proxy in front of `upstream`; its URL and its lie.
async fn proxy(upstream: &str) -> (String, Arc<Mutex<Lie>>) {
    let lie = Arc::new(Mutex::new(Lie::None));
    let state = Proxy {
        upstream: upstream.to_owned(),
        lie: lie.clone(),
        http: reqwest::Client::new(),
    };
    let app = axum::Router::new()
        .route("/", axum::routing::post(answer))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, lie)
}

fn relayed(fx: &Fx, url: &str, user: &User, fallback: bool) -> TxSender<RpcAccount> {
    let client = PaymasterClient::new(url).unwrap().with_api_key(KEY);
    let payment = Payment::Sponsored {
        paymaster: Some(fx.s.paymaster),
    };
    TxSender::new(
        account_of(&fx.s, user.address, &user.key),
        SenderConfig::default(),
    )
    .with_relay(Relay::new(client, user.key.clone(), fx.chain_id, payment).with_fallback(fallback))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_relayed_sender_believes_no_hash_and_no_revert_and_never_runs_calls_twice() {
    let fx = Fx::start(Options::default()).await;
    let (url, lie) = proxy(&fx.url).await;
    let user = fx.users[0].clone();
    let other = fx.users[1].address;
    let tell = |l: Lie| *lie.lock().unwrap() = l;

    // Honest: the transfer runs and the sponsor pays (the user holds no STRK).
    let honest = relayed(&fx, &url, &user, false)
        .execute(vec![fx.transfer(other, 5)])
        .await
        .expect("relayed");
    landed(&fx.s, honest.tx_hash).await;
    assert_eq!(fx.balance(fx.s.token, user.address).await, USER_TOKENS - 5);
    assert_eq!(fx.balance(STRK, user.address).await, 0);

    // The hash of an earlier successful transaction instead of sending: caught (the
    // execution's nonce is still unused), and nothing moved.
    tell(Lie::OldHash(honest.tx_hash));
    let caught = relayed(&fx, &url, &user, false)
        .execute(vec![fx.transfer(other, 5)])
        .await
        .expect_err("a stale hash passed for the execution");
    assert!(
        matches!(caught, ChainError::Paymaster { .. })
            && caught
                .to_string()
                .contains("did not run this account's execution"),
        "{caught:?}"
    );
    assert_eq!(fx.balance(fx.s.token, user.address).await, USER_TOKENS - 5);

    // A revert the calls do not make: simulated directly, it is the relayer's refusal
    // (retryable), never the calls' final revert (on which a worker would drop its job).
    tell(Lie::FalseRevert);
    let refused = relayed(&fx, &url, &user, false)
        .execute(vec![fx.transfer(other, 5)])
        .await
        .expect_err("the lie was not reported");
    assert!(
        matches!(refused, ChainError::Paymaster { .. }) && refused.revert_reason().is_none(),
        "{refused:?}"
    );

    // Calls that do revert: the token's own reason, whatever the relayer says.
    tell(Lie::None);
    let reverted = relayed(&fx, &url, &user, false)
        .execute(vec![fx.transfer(other, USER_TOKENS * 10)])
        .await
        .expect_err("an overdraft passed");
    assert!(
        reverted
            .revert_reason()
            .is_some_and(|r| r.contains("insufficient balance")),
        "{reverted:?}"
    );

    // Fallback, for a user that now holds STRK. Refused at build (nothing signed): sent
    // directly, the user pays.
    let strk = 1_000_000_000_000_000_000;
    fx.s.net.devnet.mint_strk(user.address, strk).await.unwrap();
    tell(Lie::RefuseBuild);
    relayed(&fx, &url, &user, true)
        .execute(vec![fx.transfer(other, 5)])
        .await
        .expect("the fallback sends it");
    assert_eq!(fx.balance(fx.s.token, user.address).await, USER_TOKENS - 10);
    let paid = fx.balance(STRK, user.address).await;
    assert!(paid < strk, "the direct send paid no gas");

    // Refused after signing: not sent directly (the signed execution may still land), so
    // nothing runs and nothing is paid.
    tell(Lie::RefuseExecute);
    let held = relayed(&fx, &url, &user, true)
        .execute(vec![fx.transfer(other, 5)])
        .await
        .expect_err("a signed execution's calls were sent again directly");
    assert!(matches!(held, ChainError::Paymaster { .. }), "{held:?}");
    assert_eq!(fx.balance(fx.s.token, user.address).await, USER_TOKENS - 10);
    assert_eq!(fx.balance(STRK, user.address).await, paid);
}
