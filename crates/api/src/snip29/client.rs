//! A SNIP-29 client: JSON-RPC 2.0 `POST`s to the paymaster's URL, as starknet.js'
//! `PaymasterRpc` sends them (integer ids counting up from 1, no `params` key for methods
//! without params, the optional `x-paymaster-api-key` header on every call).

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use url::Url;

use super::error::ErrorObject;
use super::jsonrpc::{Id, Outcome, Request, Response};
use super::methods;
use super::types::{
    BuildTransactionParams, BuildTransactionResult, ExecuteTransactionParams,
    ExecuteTransactionResult, TokenData, TrackingIdParams, TrackingIdResult,
};
use crate::wire::Felt;

/// The header carrying the API key that selects a sponsor.
pub const API_KEY_HEADER: &str = "x-paymaster-api-key";

/// A failed paymaster call.
#[derive(Debug, thiserror::Error)]
pub enum PaymasterClientError {
    /// The paymaster answered with a JSON-RPC error (see `paymaster_error()` for the SNIP-29
    /// code). Whether to retry depends on it: 156 and 163 may clear, the others will not.
    #[error("{method}: {error}")]
    Rpc {
        /// The method called.
        method: &'static str,
        /// The error object.
        error: ErrorObject,
    },
    /// The request could not be sent or its answer not read. Retryable.
    #[error("{method}: request to the paymaster failed")]
    Transport {
        /// The method called.
        method: &'static str,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The answer is not a JSON-RPC response of the method's result (the HTTP status is
    /// ignored, as starknet.js does, unless the body is not a response). Not retryable.
    #[error("{method}: answer (HTTP {status}) is not a JSON-RPC response of the expected result")]
    Decode {
        /// The method called.
        method: &'static str,
        /// The HTTP status.
        status: StatusCode,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The answer's id is not the request's. Not retryable.
    #[error("{method}: answer id {got} does not match request id {sent}")]
    IdMismatch {
        /// The method called.
        method: &'static str,
        /// The request's id.
        sent: Id,
        /// The answer's id.
        got: Id,
    },
    /// The URL or the HTTP client is unusable. Not retryable.
    #[error("invalid paymaster client configuration: {0}")]
    Config(String),
}

impl PaymasterClientError {
    /// The JSON-RPC error, when the paymaster answered with one.
    pub fn rpc_error(&self) -> Option<&ErrorObject> {
        match self {
            Self::Rpc { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// A SNIP-29 paymaster client.
pub struct PaymasterClient {
    http: reqwest::Client,
    url: Url,
    api_key: Option<String>,
    next_id: AtomicI64,
}

impl std::fmt::Debug for PaymasterClient {
    /// The URL, and whether an API key is set (never the key).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymasterClient")
            .field("url", &self.url.as_str())
            .field("api_key", &self.api_key.as_ref().map(|_| "(set)"))
            .finish_non_exhaustive()
    }
}

impl PaymasterClient {
    /// A client of the paymaster at `url` (posted to as given), with a 30 s timeout per call.
    pub fn new(url: &str) -> Result<Self, PaymasterClientError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| PaymasterClientError::Config(format!("HTTP client: {e}")))?;
        Self::with_http_client(url, http)
    }

    /// As [`PaymasterClient::new`] with a given HTTP client.
    pub fn with_http_client(
        url: &str,
        http: reqwest::Client,
    ) -> Result<Self, PaymasterClientError> {
        let url = Url::parse(url)
            .map_err(|e| PaymasterClientError::Config(format!("URL {url:?}: {e}")))?;
        Ok(Self {
            http,
            url,
            api_key: None,
            next_id: AtomicI64::new(1),
        })
    }

    /// Sends `key` in [`API_KEY_HEADER`] on every call.
    pub fn with_api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// `paymaster_isAvailable`.
    pub async fn is_available(&self) -> Result<bool, PaymasterClientError> {
        self.call::<(), _>(methods::IS_AVAILABLE, None).await
    }

    /// `paymaster_getSupportedTokens`.
    pub async fn get_supported_tokens(&self) -> Result<Vec<TokenData>, PaymasterClientError> {
        self.call::<(), _>(methods::GET_SUPPORTED_TOKENS, None)
            .await
    }

    /// `paymaster_buildTransaction`.
    pub async fn build_transaction(
        &self,
        params: &BuildTransactionParams,
    ) -> Result<BuildTransactionResult, PaymasterClientError> {
        self.call(methods::BUILD_TRANSACTION, Some(params)).await
    }

    /// `paymaster_executeTransaction`.
    pub async fn execute_transaction(
        &self,
        params: &ExecuteTransactionParams,
    ) -> Result<ExecuteTransactionResult, PaymasterClientError> {
        self.call(methods::EXECUTE_TRANSACTION, Some(params)).await
    }

    /// `paymaster_trackingIdToLatestHash`.
    pub async fn tracking_id_to_latest_hash(
        &self,
        tracking_id: Felt,
    ) -> Result<TrackingIdResult, PaymasterClientError> {
        self.call(
            methods::TRACKING_ID_TO_LATEST_HASH,
            Some(&TrackingIdParams { tracking_id }),
        )
        .await
    }

    async fn call<P: Serialize, R: DeserializeOwned>(
        &self,
        method: &'static str,
        params: Option<&P>,
    ) -> Result<R, PaymasterClientError> {
        let id = Id::Number(self.next_id.fetch_add(1, Ordering::Relaxed));
        let mut request = self
            .http
            .post(self.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .json(&Request::new(id.clone(), method, params));
        if let Some(key) = &self.api_key {
            request = request.header(API_KEY_HEADER, key);
        }
        let transport = |source| PaymasterClientError::Transport { method, source };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let body = response.bytes().await.map_err(transport)?;
        let response: Response<R> =
            serde_json::from_slice(&body).map_err(|source| PaymasterClientError::Decode {
                method,
                status,
                source,
            })?;
        match response.outcome {
            // An error may carry a null id (a request the server could not read).
            Outcome::Error(error) => Err(PaymasterClientError::Rpc { method, error }),
            Outcome::Result(result) if response.id == id => Ok(result),
            Outcome::Result(_) => Err(PaymasterClientError::IdMismatch {
                method,
                sent: id,
                got: response.id,
            }),
        }
    }
}
