//! `PaymasterClient` against a local JSON-RPC server: it sends exactly the bodies starknet.js
//! 10.8.0 sends (the recorded fixtures, ids aside), with the API key header, and reads the
//! answers and the SNIP-29 errors whatever the HTTP status.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use ciro_api::snip29::{
    BuildTransactionParams, ExecuteTransactionParams, PaymasterClient, PaymasterClientError,
    PaymasterError, API_KEY_HEADER,
};
use ciro_api::wire::Felt;
use serde_json::Value;

macro_rules! fixture {
    ($name:literal) => {
        serde_json::from_str::<Value>(include_str!(concat!("fixtures/snip29/", $name, ".json")))
            .expect(concat!($name, " is JSON"))
    };
}

/// What the server received: each body and its API key header.
type Received = Arc<Mutex<Vec<(Value, Option<String>)>>>;

/// Answers each method with its recorded response (id set to the request's); a request with
/// API key `revoked` gets SNIP-29 error 163 with HTTP 401, as AVNU answers; `garbage` gets a
/// body that is not JSON.
async fn paymaster(
    State(received): State<Received>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, String) {
    let request: Value = serde_json::from_str(&body).expect("the client sends JSON");
    let key = headers
        .get(API_KEY_HEADER)
        .map(|value| value.to_str().unwrap().to_owned());
    received
        .lock()
        .unwrap()
        .push((request.clone(), key.clone()));
    match key.as_deref() {
        Some("revoked") => {
            let error = serde_json::json!({"jsonrpc": "2.0", "id": request["id"], "error": {
                "code": 163, "message": "An error occurred (UNKNOWN_ERROR)",
                "data": "x-paymaster-api-key is invalid"}});
            return (StatusCode::UNAUTHORIZED, error.to_string());
        }
        Some("garbage") => return (StatusCode::BAD_GATEWAY, "<html>bad gateway</html>".into()),
        _ => {}
    }
    let mut response = match request["method"].as_str().unwrap() {
        "paymaster_isAvailable" => fixture!("is_available.response"),
        "paymaster_getSupportedTokens" => fixture!("get_supported_tokens.response"),
        "paymaster_buildTransaction" => fixture!("build_default_invoke.response"),
        "paymaster_executeTransaction" => fixture!("execute_sponsored_invoke.response"),
        other => panic!("unexpected method {other}"),
    };
    response["id"] = request["id"].clone();
    (StatusCode::OK, response.to_string())
}

async fn start() -> (String, Received) {
    let received = Received::default();
    let app = Router::new()
        .route("/rpc", post(paymaster))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/rpc", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

/// `json` without its `id`.
fn without_id(mut json: Value) -> Value {
    json.as_object_mut().unwrap().remove("id");
    json
}

#[tokio::test]
async fn sends_what_starknet_js_sends_and_reads_the_answers() {
    let (url, received) = start().await;
    let client = PaymasterClient::new(&url)
        .unwrap()
        .with_api_key("paymaster_demo_key");

    assert!(client.is_available().await.unwrap());
    let tokens = client.get_supported_tokens().await.unwrap();
    assert_eq!(tokens.len(), 2);
    assert_eq!(tokens[1].decimals, 6);

    let build_request = fixture!("build_default_invoke.request");
    let params: BuildTransactionParams =
        serde_json::from_value(build_request["params"].clone()).unwrap();
    let built = client.build_transaction(&params).await.unwrap();
    assert_eq!(built.fee().suggested_max_fee_in_gas_token, 0xea60u32.into());

    let execute_request = fixture!("execute_sponsored_invoke.request");
    let params: ExecuteTransactionParams =
        serde_json::from_value(execute_request["params"].clone()).unwrap();
    let executed = client.execute_transaction(&params).await.unwrap();
    assert_eq!(executed.tracking_id, Felt::ZERO);

    let received = received.lock().unwrap().clone();
    let expected = [
        fixture!("is_available.request"),
        fixture!("get_supported_tokens.request"),
        build_request,
        execute_request,
    ];
    assert_eq!(received.len(), expected.len());
    for (i, ((body, key), expected)) in received.into_iter().zip(expected).enumerate() {
        // Ids count up from 1, as starknet.js' do.
        assert_eq!(body["id"], i as u64 + 1);
        assert_eq!(without_id(body), without_id(expected), "request {i}");
        assert_eq!(key.as_deref(), Some("paymaster_demo_key"));
    }
}

#[tokio::test]
async fn rpc_errors_are_typed_whatever_the_http_status() {
    let (url, received) = start().await;
    let revoked = PaymasterClient::new(&url).unwrap().with_api_key("revoked");
    let error = revoked.is_available().await.unwrap_err();
    let rpc = error.rpc_error().expect("a JSON-RPC error");
    assert_eq!(rpc.paymaster_error(), Some(PaymasterError::UnknownError));
    assert_eq!(
        rpc.data,
        Some(Value::from("x-paymaster-api-key is invalid"))
    );

    let garbage = PaymasterClient::new(&url).unwrap().with_api_key("garbage");
    let error = garbage.is_available().await.unwrap_err();
    assert!(
        matches!(error, PaymasterClientError::Decode { status, .. } if status == StatusCode::BAD_GATEWAY),
        "{error:?}"
    );

    // No key configured: no header sent.
    let anonymous = PaymasterClient::new(&url).unwrap();
    assert!(anonymous.is_available().await.unwrap());
    assert_eq!(received.lock().unwrap().last().unwrap().1, None);
}
