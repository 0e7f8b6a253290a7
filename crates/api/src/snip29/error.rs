//! SNIP-29 errors (codes 150 to 163, as starknet.js knows them) and the JSON-RPC error object.

use serde::{Deserialize, Serialize};

/// A SNIP-29 error. The numbers are the spec's (152, 161 and 162 are not defined);
/// [`PaymasterError::name`] is what starknet.js' `RpcError.isType(...)` matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PaymasterError {
    /// 150: an address is not a deployed contract.
    InvalidAddress,
    /// 151: the gas token is not supported.
    TokenNotSupported,
    /// 153: the signature is invalid.
    InvalidSignature,
    /// 154: the signed fee transfer is below the fee now required.
    MaxAmountTooLow,
    /// 155: the account class is not supported.
    ClassHashNotSupported,
    /// 156: simulation or execution failed; `data` is `{"execution_error": ...}`.
    TransactionExecutionError,
    /// 157: the time bounds are invalid.
    InvalidTimeBounds,
    /// 158: the deployment data is invalid.
    InvalidDeploymentData,
    /// 159: the class hash is invalid.
    InvalidClassHash,
    /// 160: unknown tracking id.
    InvalidId,
    /// 163: anything else; `data` is a string saying what.
    UnknownError,
}

impl PaymasterError {
    /// Every SNIP-29 error, by code.
    pub const ALL: [Self; 11] = [
        Self::InvalidAddress,
        Self::TokenNotSupported,
        Self::InvalidSignature,
        Self::MaxAmountTooLow,
        Self::ClassHashNotSupported,
        Self::TransactionExecutionError,
        Self::InvalidTimeBounds,
        Self::InvalidDeploymentData,
        Self::InvalidClassHash,
        Self::InvalidId,
        Self::UnknownError,
    ];

    /// The JSON-RPC error code.
    pub const fn code(self) -> i64 {
        match self {
            Self::InvalidAddress => 150,
            Self::TokenNotSupported => 151,
            Self::InvalidSignature => 153,
            Self::MaxAmountTooLow => 154,
            Self::ClassHashNotSupported => 155,
            Self::TransactionExecutionError => 156,
            Self::InvalidTimeBounds => 157,
            Self::InvalidDeploymentData => 158,
            Self::InvalidClassHash => 159,
            Self::InvalidId => 160,
            Self::UnknownError => 163,
        }
    }

    /// The error of a code, if it is a SNIP-29 one.
    pub fn from_code(code: i64) -> Option<Self> {
        Self::ALL.into_iter().find(|error| error.code() == code)
    }

    /// starknet.js' name of the error (`RpcError.isType(name)`).
    pub const fn name(self) -> &'static str {
        match self {
            Self::InvalidAddress => "INVALID_ADDRESS",
            Self::TokenNotSupported => "TOKEN_NOT_SUPPORTED",
            Self::InvalidSignature => "INVALID_SIGNATURE",
            Self::MaxAmountTooLow => "MAX_AMOUNT_TOO_LOW",
            Self::ClassHashNotSupported => "CLASS_HASH_NOT_SUPPORTED",
            Self::TransactionExecutionError => "PAYMASTER_TRANSACTION_EXECUTION_ERROR",
            Self::InvalidTimeBounds => "INVALID_TIME_BOUNDS",
            Self::InvalidDeploymentData => "INVALID_DEPLOYMENT_DATA",
            Self::InvalidClassHash => "INVALID_CLASS_HASH",
            Self::InvalidId => "INVALID_ID",
            Self::UnknownError => "UNKNOWN_ERROR",
        }
    }

    /// The spec's message.
    pub const fn message(self) -> &'static str {
        match self {
            Self::InvalidAddress => "An error occurred (INVALID_ADDRESS)",
            Self::TokenNotSupported => "An error occurred (TOKEN_NOT_SUPPORTED)",
            Self::InvalidSignature => "An error occurred (INVALID_SIGNATURE)",
            Self::MaxAmountTooLow => "An error occurred (MAX_AMOUNT_TOO_LOW)",
            Self::ClassHashNotSupported => "An error occurred (CLASS_HASH_NOT_SUPPORTED)",
            Self::TransactionExecutionError => "An error occurred (TRANSACTION_EXECUTION_ERROR)",
            Self::InvalidTimeBounds => "An error occurred (INVALID_TIME_BOUNDS)",
            Self::InvalidDeploymentData => "An error occurred (INVALID_DEPLOYMENT_DATA)",
            // The spec's JSON says INVALID_ADDRESS here, a copy-paste slip.
            Self::InvalidClassHash => "An error occurred (INVALID_CLASS_HASH)",
            Self::InvalidId => "An error occurred (INVALID_ID)",
            Self::UnknownError => "An error occurred (UNKNOWN_ERROR)",
        }
    }
}

/// JSON-RPC 2.0's own error codes.
pub mod codes {
    /// The body is not JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// The JSON is not a request.
    pub const INVALID_REQUEST: i64 = -32600;
    /// No such method.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// The params do not fit the method.
    pub const INVALID_PARAMS: i64 = -32602;
    /// The server failed.
    pub const INTERNAL_ERROR: i64 = -32603;
}

/// A JSON-RPC error object: `{code, message, data?}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("JSON-RPC error {code}: {message}")]
pub struct ErrorObject {
    /// The code.
    pub code: i64,
    /// The message.
    pub message: String,
    /// Details; for SNIP-29 errors a string (163) or `{"execution_error": ...}` (156).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

impl ErrorObject {
    /// A SNIP-29 error with the spec's message and no data.
    pub fn paymaster(error: PaymasterError) -> Self {
        Self {
            code: error.code(),
            message: error.message().to_owned(),
            data: None,
        }
    }

    /// 156 with `data: {"execution_error": ...}`.
    pub fn transaction_execution_error(execution_error: impl Into<String>) -> Self {
        Self {
            data: Some(serde_json::json!({ "execution_error": execution_error.into() })),
            ..Self::paymaster(PaymasterError::TransactionExecutionError)
        }
    }

    /// 163 with `data` saying what (e.g. `"x-paymaster-api-key is invalid"`).
    pub fn unknown_error(reason: impl Into<String>) -> Self {
        Self {
            data: Some(serde_json::Value::String(reason.into())),
            ..Self::paymaster(PaymasterError::UnknownError)
        }
    }

    /// A JSON-RPC error of the protocol itself (see [`codes`]).
    pub fn protocol(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// The SNIP-29 error this is, if it is one.
    pub fn paymaster_error(&self) -> Option<PaymasterError> {
        PaymasterError::from_code(self.code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_spec_numbers_and_names_match_starknet_js() {
        // starknet.js 10.8.0 `rpc_default` (dist/index.mjs 1917-1927).
        let starknet_js = [
            ("INVALID_ADDRESS", 150),
            ("TOKEN_NOT_SUPPORTED", 151),
            ("INVALID_SIGNATURE", 153),
            ("MAX_AMOUNT_TOO_LOW", 154),
            ("CLASS_HASH_NOT_SUPPORTED", 155),
            ("PAYMASTER_TRANSACTION_EXECUTION_ERROR", 156),
            ("INVALID_TIME_BOUNDS", 157),
            ("INVALID_DEPLOYMENT_DATA", 158),
            ("INVALID_CLASS_HASH", 159),
            ("INVALID_ID", 160),
            ("UNKNOWN_ERROR", 163),
        ];
        assert_eq!(PaymasterError::ALL.len(), starknet_js.len());
        for (error, (name, code)) in PaymasterError::ALL.into_iter().zip(starknet_js) {
            assert_eq!((error.name(), error.code()), (name, code));
            assert_eq!(PaymasterError::from_code(code), Some(error));
            assert!(error.message().starts_with("An error occurred ("));
        }
        for undefined in [152, 161, 162, 164, -32603] {
            assert_eq!(PaymasterError::from_code(undefined), None);
        }
    }

    #[test]
    fn error_objects_carry_the_data_the_spec_gives_them() {
        assert_eq!(
            serde_json::to_value(ErrorObject::transaction_execution_error("reverted")).unwrap(),
            serde_json::json!({
                "code": 156,
                "message": "An error occurred (TRANSACTION_EXECUTION_ERROR)",
                "data": {"execution_error": "reverted"}
            })
        );
        assert_eq!(
            serde_json::to_value(ErrorObject::unknown_error("blacklisted calls")).unwrap(),
            serde_json::json!({
                "code": 163,
                "message": "An error occurred (UNKNOWN_ERROR)",
                "data": "blacklisted calls"
            })
        );
        assert_eq!(
            serde_json::to_value(ErrorObject::paymaster(PaymasterError::TokenNotSupported))
                .unwrap(),
            serde_json::json!({"code": 151, "message": "An error occurred (TOKEN_NOT_SUPPORTED)"})
        );
    }
}
