//! The SNIP-29 paymaster API, exactly as starknet.js 10.8.0 speaks it
//! (`../shared/SNIP29.md`): JSON-RPC 2.0 over one `POST` URL, named-object params, the four
//! methods starknet.js calls, SNIP-29 error codes 150 to 163; and a [`PaymasterClient`].
//!
//! The paymaster relayer serves these types; the worker and the submitter CLI use the client
//! for gasless transactions.

pub mod client;
pub mod error;
pub mod jsonrpc;
pub mod types;

pub use client::{PaymasterClient, PaymasterClientError, API_KEY_HEADER};
pub use error::{ErrorObject, PaymasterError};
pub use jsonrpc::{Id, Outcome, Request, Response, Version2};
pub use types::*;

/// The method names.
pub mod methods {
    /// Whether the service works: no params, result `bool`.
    pub const IS_AVAILABLE: &str = "paymaster_isAvailable";
    /// The gas tokens: no params, result `[TokenData]`.
    pub const GET_SUPPORTED_TOKENS: &str = "paymaster_getSupportedTokens";
    /// Build the typed data to sign: `BuildTransactionParams` → `BuildTransactionResult`.
    pub const BUILD_TRANSACTION: &str = "paymaster_buildTransaction";
    /// Execute the signed typed data: `ExecuteTransactionParams` →
    /// `ExecuteTransactionResult`.
    pub const EXECUTE_TRANSACTION: &str = "paymaster_executeTransaction";
    /// Where an execution is now: `TrackingIdParams` → `TrackingIdResult` (SNIP-29; starknet.js
    /// does not call it, starknet.go and others do).
    pub const TRACKING_ID_TO_LATEST_HASH: &str = "paymaster_trackingIdToLatestHash";
    /// Every method served: the four starknet.js calls, and the tracking lookup.
    pub const ALL: [&str; 5] = [
        IS_AVAILABLE,
        GET_SUPPORTED_TOKENS,
        BUILD_TRANSACTION,
        EXECUTE_TRANSACTION,
        TRACKING_ID_TO_LATEST_HASH,
    ];
}
