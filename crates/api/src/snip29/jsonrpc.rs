//! The JSON-RPC 2.0 envelope, as starknet.js frames it: `{"id", "jsonrpc": "2.0", "method",
//! "params"?}` with no `params` key at all for methods without parameters, and integer ids.

use std::fmt;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

use super::error::ErrorObject;

/// The `"jsonrpc": "2.0"` marker: written as `"2.0"`, and any other value is refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Version2;

impl Serialize for Version2 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("2.0")
    }
}

impl<'de> Deserialize<'de> for Version2 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text == "2.0" {
            Ok(Self)
        } else {
            Err(de::Error::invalid_value(
                de::Unexpected::Str(&text),
                &"\"2.0\"",
            ))
        }
    }
}

/// A request id: starknet.js counts integers up from 1; strings and `null` are valid
/// JSON-RPC too.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Id {
    /// An integer id.
    Number(i64),
    /// A string id.
    String(String),
    /// `null` (the id of an answer to a request whose id could not be read).
    Null,
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Number(n) => write!(f, "{n}"),
            Self::String(s) => write!(f, "{s:?}"),
            Self::Null => f.write_str("null"),
        }
    }
}

/// A request. A server reads `Request<serde_json::Value>` and then the method's params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request<P> {
    /// Always `"2.0"`.
    pub jsonrpc: Version2,
    /// The request id, echoed in the response.
    pub id: Id,
    /// The method name ([`super::methods`]).
    pub method: String,
    /// Named-object params; absent (no key at all) for methods without parameters. (A
    /// missing `Option` field reads as `None`; `default` is not needed, and would ask
    /// `P: Default`.)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub params: Option<P>,
}

impl<P> Request<P> {
    /// A request of `method` with `params`.
    pub fn new(id: Id, method: &str, params: Option<P>) -> Self {
        Self {
            jsonrpc: Version2,
            id,
            method: method.to_owned(),
            params,
        }
    }
}

/// A response: the request's id and either its result or an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response<R> {
    /// Always `"2.0"`.
    pub jsonrpc: Version2,
    /// The request's id.
    pub id: Id,
    /// The result or the error.
    #[serde(flatten)]
    pub outcome: Outcome<R>,
}

/// What a response carries: exactly one of `result` and `error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Outcome<R> {
    /// The method's result.
    #[serde(rename = "result")]
    Result(R),
    /// The error.
    #[serde(rename = "error")]
    Error(ErrorObject),
}

impl<R> Response<R> {
    /// A successful response.
    pub fn result(id: Id, result: R) -> Self {
        Self {
            jsonrpc: Version2,
            id,
            outcome: Outcome::Result(result),
        }
    }

    /// An error response.
    pub fn error(id: Id, error: ErrorObject) -> Self {
        Self {
            jsonrpc: Version2,
            id,
            outcome: Outcome::Error(error),
        }
    }

    /// The result, or the error.
    pub fn into_result(self) -> Result<R, ErrorObject> {
        match self.outcome {
            Outcome::Result(result) => Ok(result),
            Outcome::Error(error) => Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_without_params_has_no_params_key() {
        let request = Request::<()>::new(Id::Number(1), "paymaster_isAvailable", None);
        assert_eq!(
            serde_json::to_string(&request).unwrap(),
            r#"{"jsonrpc":"2.0","id":1,"method":"paymaster_isAvailable"}"#
        );
    }

    #[test]
    fn version_other_than_2_0_is_refused() {
        let error = serde_json::from_str::<Request<serde_json::Value>>(
            r#"{"jsonrpc":"1.0","id":1,"method":"m"}"#,
        )
        .unwrap_err();
        assert!(error.to_string().contains("2.0"), "{error}");
    }

    #[test]
    fn response_needs_a_result_or_an_error() {
        let ok: Response<bool> =
            serde_json::from_str(r#"{"jsonrpc":"2.0","id":"a","result":false}"#).unwrap();
        assert_eq!(ok.id, Id::String("a".into()));
        assert_eq!(ok.into_result(), Ok(false));
        assert!(serde_json::from_str::<Response<bool>>(r#"{"jsonrpc":"2.0","id":1}"#).is_err());
        let null_id: Response<bool> = serde_json::from_str(
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}"#,
        )
        .unwrap();
        assert_eq!(null_id.id, Id::Null);
        assert_eq!(null_id.into_result().unwrap_err().code, -32700);
    }
}
