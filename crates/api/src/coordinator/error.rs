//! The one error body every endpoint answers with: `{"code": "<stable code>", "message": "..."}`.
//!
//! The code is for programs (stable, snake_case, never reworded); the message is for people
//! and may change. Each code has one HTTP status ([`ErrorCode::status`]) so the server maps
//! them in one place, and says whether retrying the same request can succeed
//! ([`ErrorCode::is_retryable`]).

use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

/// A stable, machine-readable error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Malformed JSON, path or query parameter (e.g. a digest that is not 64 hex digits).
    BadRequest,
    /// The uploaded bytes do not hash to the digest in the path.
    DigestMismatch,
    /// The body exceeds the server's size limit.
    PayloadTooLarge,
    /// No such route.
    NotFound,
    /// The route exists but not with this method.
    MethodNotAllowed,
    /// No blob with this digest.
    BlobNotFound,
    /// No model with this id.
    ModelNotFound,
    /// No job with this id (not on chain, or not indexed yet: retry).
    JobNotFound,
    /// No worker with this address.
    WorkerNotFound,
    /// No receipt uploaded for this job.
    ReceiptNotFound,
    /// The route needs a signed request and the signature headers are missing.
    Unauthenticated,
    /// The signature headers are malformed, or the account rejected the signature.
    InvalidSignature,
    /// The request's timestamp is outside the server's window.
    StaleRequest,
    /// The request's nonce was already used by this account (a replay).
    ReplayedNonce,
    /// The signer may not do this (e.g. a stranger reading a job's output, a worker polling
    /// for another worker).
    Forbidden,
    /// The signer is not the job's assigned worker.
    NotAssigned,
    /// The job is not in a state that accepts this (e.g. an output after finalization).
    InvalidState,
    /// Something different is already recorded (e.g. another output for the job).
    Conflict,
    /// The request's body came too slowly and the request was abandoned; retry (on a better
    /// link: an upload must average the server's minimum rate).
    RequestTimeout,
    /// Too many requests; retry later.
    RateLimited,
    /// A dependency (chain node, database, indexer) is unavailable or behind; retry later.
    Unavailable,
    /// The server failed; the details are in its log, not in the message.
    Internal,
    /// A code this client does not know (a newer server); look at the HTTP status.
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The HTTP status the server answers with.
    pub fn status(self) -> StatusCode {
        match self {
            Self::BadRequest | Self::DigestMismatch => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NotFound
            | Self::BlobNotFound
            | Self::ModelNotFound
            | Self::JobNotFound
            | Self::WorkerNotFound
            | Self::ReceiptNotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unauthenticated
            | Self::InvalidSignature
            | Self::StaleRequest
            | Self::ReplayedNonce => StatusCode::UNAUTHORIZED,
            Self::Forbidden | Self::NotAssigned => StatusCode::FORBIDDEN,
            Self::InvalidState | Self::Conflict => StatusCode::CONFLICT,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal | Self::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Whether the same request may succeed later: the server was busy or behind, or (for a
    /// job) the indexer has not caught up yet. A stale timestamp or replayed nonce is not
    /// retryable as is: the client signs a fresh request.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            Self::RequestTimeout
                | Self::RateLimited
                | Self::Unavailable
                | Self::Internal
                | Self::JobNotFound
        )
    }

    /// The code as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::DigestMismatch => "digest_mismatch",
            Self::PayloadTooLarge => "payload_too_large",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::BlobNotFound => "blob_not_found",
            Self::ModelNotFound => "model_not_found",
            Self::JobNotFound => "job_not_found",
            Self::WorkerNotFound => "worker_not_found",
            Self::ReceiptNotFound => "receipt_not_found",
            Self::Unauthenticated => "unauthenticated",
            Self::InvalidSignature => "invalid_signature",
            Self::StaleRequest => "stale_request",
            Self::ReplayedNonce => "replayed_nonce",
            Self::Forbidden => "forbidden",
            Self::NotAssigned => "not_assigned",
            Self::InvalidState => "invalid_state",
            Self::Conflict => "conflict",
            Self::RequestTimeout => "request_timeout",
            Self::RateLimited => "rate_limited",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
            Self::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// What went wrong, for programs.
    pub code: ErrorCode,
    /// What went wrong, for people.
    pub message: String,
}

impl ErrorBody {
    /// An error body.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [ErrorCode; 22] = [
        ErrorCode::BadRequest,
        ErrorCode::DigestMismatch,
        ErrorCode::PayloadTooLarge,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::BlobNotFound,
        ErrorCode::ModelNotFound,
        ErrorCode::JobNotFound,
        ErrorCode::WorkerNotFound,
        ErrorCode::ReceiptNotFound,
        ErrorCode::Unauthenticated,
        ErrorCode::InvalidSignature,
        ErrorCode::StaleRequest,
        ErrorCode::ReplayedNonce,
        ErrorCode::Forbidden,
        ErrorCode::NotAssigned,
        ErrorCode::InvalidState,
        ErrorCode::Conflict,
        ErrorCode::RequestTimeout,
        ErrorCode::RateLimited,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];

    #[test]
    fn codes_serialize_as_their_snake_case_name_and_map_to_4xx_or_5xx() {
        for code in ALL {
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json, code.as_str(), "{code:?}");
            assert_eq!(serde_json::from_value::<ErrorCode>(json).unwrap(), code);
            let status = code.status();
            assert!(status.is_client_error() || status.is_server_error());
            // Client errors are the caller's to fix, except those that clear with time.
            if status.is_server_error() {
                assert!(code.is_retryable(), "{code:?}");
            }
        }
        assert_eq!(ErrorCode::DigestMismatch.status(), StatusCode::BAD_REQUEST);
        assert_eq!(ErrorCode::ReplayedNonce.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(ErrorCode::NotAssigned.status(), StatusCode::FORBIDDEN);
        assert!(!ErrorCode::StaleRequest.is_retryable());
    }

    #[test]
    fn body_round_trips_and_unknown_codes_still_parse() {
        let body = ErrorBody::new(ErrorCode::NotAssigned, "job 7 is assigned to 0x2");
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"code": "not_assigned", "message": "job 7 is assigned to 0x2"})
        );
        assert_eq!(serde_json::from_value::<ErrorBody>(json).unwrap(), body);
        let newer: ErrorBody =
            serde_json::from_str(r#"{"code":"quota_exceeded","message":"later"}"#).unwrap();
        assert_eq!(newer.code, ErrorCode::Unknown);
    }
}
