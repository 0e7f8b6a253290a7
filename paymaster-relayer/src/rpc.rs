//! JSON-RPC 2.0 over `POST /` as starknet.js sends it: named-object params, integer ids,
//! `x-paymaster-api-key`, CORS for browser dapps. Every error is a JSON-RPC error object
//! (SNIP-29 codes 150-163 for the methods' own refusals) with a 4xx status (429 for rate
//! limits, 503 when the node is unreachable); starknet.js reads the body whatever the status.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use ciro_api::snip29::error::codes;
use ciro_api::snip29::{
    methods, ErrorObject, Id, PaymasterError, Response as RpcResponse, API_KEY_HEADER,
};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::relayer::Relayer;

/// The relayer once it has connected to the chain (empty until then: requests get 163
/// "service not available").
pub type Slot = Arc<OnceLock<Arc<Relayer>>>;

/// The relayer's JSON-RPC router (`POST /`), with CORS and a body limit.
pub fn router(relayer: Slot, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/", post(handle).options(preflight))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn(cors))
        .with_state(relayer)
}

async fn preflight() -> StatusCode {
    StatusCode::NO_CONTENT
}

/// Lets browser dapps on any origin call the API (it is authenticated by its API key, not by
/// cookies).
async fn cors(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("content-type, x-paymaster-api-key"),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    response
}

fn reply(status: StatusCode, id: Id, outcome: Result<Value, ErrorObject>) -> Response {
    let body = match outcome {
        Ok(result) => RpcResponse::result(id, result),
        Err(error) => RpcResponse::error(id, error),
    };
    (status, Json(body)).into_response()
}

fn status_of(error: &ErrorObject) -> StatusCode {
    match error.data.as_ref().and_then(Value::as_str) {
        Some("service not available") => StatusCode::SERVICE_UNAVAILABLE,
        Some(text) if text.starts_with("rate limit") => StatusCode::TOO_MANY_REQUESTS,
        _ if error.code == codes::INTERNAL_ERROR => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

fn params<P: DeserializeOwned>(params: Option<Value>) -> Result<P, ErrorObject> {
    let value = params
        .ok_or_else(|| ErrorObject::protocol(codes::INVALID_PARAMS, "params are required"))?;
    serde_json::from_value(value)
        .map_err(|e| ErrorObject::protocol(codes::INVALID_PARAMS, format!("invalid params: {e}")))
}

fn to_value<T: serde::Serialize>(value: T) -> Result<Value, ErrorObject> {
    serde_json::to_value(value).map_err(|e| {
        tracing::error!("serializing a result: {e}");
        ErrorObject::protocol(codes::INTERNAL_ERROR, "internal error")
    })
}

async fn handle(
    State(slot): State<Slot>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(relayer) = slot.get() else {
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            Id::Null,
            Err(ErrorObject::unknown_error("service not available")),
        );
    };
    // An IPv6 host counts once per /64: a client per address would get a full bucket for
    // each of its addresses.
    let client = ciro_service::limits::client_group(peer.ip());
    if !relayer.ips.allow(&client) {
        relayer.metrics.refused("ip_rate_limit");
        return reply(
            StatusCode::TOO_MANY_REQUESTS,
            Id::Null,
            Err(ErrorObject::unknown_error(format!(
                "rate limit: at most {} requests a minute per client",
                relayer.limits.per_ip_per_minute
            ))),
        );
    }
    let value: Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(e) => {
            return reply(
                StatusCode::BAD_REQUEST,
                Id::Null,
                Err(ErrorObject::protocol(
                    codes::PARSE_ERROR,
                    format!("the body is not JSON: {e}"),
                )),
            )
        }
    };
    let request: ciro_api::snip29::Request<Value> = match serde_json::from_value(value) {
        Ok(request) => request,
        Err(e) => {
            return reply(
                StatusCode::BAD_REQUEST,
                Id::Null,
                Err(ErrorObject::protocol(
                    codes::INVALID_REQUEST,
                    format!("not a JSON-RPC 2.0 request: {e}"),
                )),
            )
        }
    };
    let api_key = headers.get(API_KEY_HEADER).and_then(|v| v.to_str().ok());
    let method = request.method.as_str();
    let outcome = match method {
        methods::IS_AVAILABLE => to_value(relayer.is_available()),
        methods::GET_SUPPORTED_TOKENS => to_value(relayer.supported_tokens()),
        methods::BUILD_TRANSACTION => match params(request.params) {
            Ok(p) => relayer.build(p, api_key, client).await.and_then(to_value),
            Err(e) => Err(e),
        },
        methods::EXECUTE_TRANSACTION => match params(request.params) {
            Ok(p) => relayer.execute(p, api_key).await.and_then(to_value),
            Err(e) => Err(e),
        },
        // By name (`{"tracking_id": …}`) or by position (`[…]`, as starknet.go sends it):
        // serde reads a struct from either.
        methods::TRACKING_ID_TO_LATEST_HASH => match params(request.params) {
            Ok(p) => relayer
                .tracking_id_to_latest_hash(p)
                .await
                .and_then(to_value),
            Err(e) => Err(e),
        },
        _ => Err(ErrorObject::protocol(
            codes::METHOD_NOT_FOUND,
            format!(
                "no method {method:?}; this paymaster serves {:?}",
                methods::ALL
            ),
        )),
    };
    let label = if methods::ALL.contains(&method) {
        method
    } else {
        "other"
    };
    match &outcome {
        Ok(_) => relayer.metrics.request(label, "ok"),
        Err(error) => {
            let name = error
                .paymaster_error()
                .map(PaymasterError::name)
                .unwrap_or("protocol");
            relayer.metrics.request(label, name);
            tracing::info!(method = label, code = error.code, data = ?error.data, "refused");
        }
    }
    let status = match &outcome {
        Ok(_) => StatusCode::OK,
        Err(error) => status_of(error),
    };
    reply(status, request.id, outcome)
}
