//! Errors of the chain layer: starknet-rs's typed errors mapped to what a caller acts on
//! (revert with the contract's error string, retryable transport failure, a rejected nonce, a
//! node rejection, a missing event), and the decoding of a revert's panic data.
//!
//! The mapping matches on starknet-rs's types ([`ProviderError`], [`StarknetError`],
//! [`AccountError`], the JSON-RPC client's transport error), never on their text. Only panic
//! data, which the node renders as text inside a typed revert, is decoded from a string.

use starknet::accounts::AccountError;
use starknet::core::types::{ContractExecutionError, Felt, StarknetError};
use starknet::providers::jsonrpc::{HttpTransportError, JsonRpcClientError};
use starknet::providers::ProviderError;

/// What went wrong talking to the chain.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The transaction reverted (in fee estimation or on chain), or a view panicked. `reason`
    /// is the contract's own error string (the first panic-data short string); not retryable
    /// as is.
    #[error("transaction reverted: {reason}")]
    Reverted {
        /// The contract's error string, e.g. `ERC20: insufficient balance`.
        reason: String,
        /// Every short string of the panic data, innermost first.
        panic_data: Vec<String>,
        /// The node's full message.
        raw: String,
    },
    /// The node could not be reached, timed out or rate-limited us; retryable.
    #[error("RPC transport error: {0}")]
    Transport(String),
    /// The node refused the transaction's nonce (another transaction of the account used it);
    /// re-read the nonce and send again.
    #[error("nonce rejected by the node: {0}")]
    NonceRejected(String),
    /// The node rejected the request for another reason (insufficient fee or balance, unknown
    /// class or contract, validation failure, ...).
    #[error("rejected by the node: {0}")]
    Rejected(#[source] StarknetError),
    /// The node answered with a JSON-RPC error that is not a Starknet error.
    #[error("node error {code}: {message}")]
    Node { code: i64, message: String },
    /// A paymaster relayer refused to send the transaction (a SNIP-29 error: `code`), answered
    /// with something that is not SNIP-29, or built an execution the user would not sign.
    /// Nothing was sent; paying the gas directly may still work.
    #[error("the paymaster relayer did not send it: {message}")]
    Paymaster { code: Option<i64>, message: String },
    /// A transaction was sent but no receipt arrived in time; retry by awaiting again.
    #[error("no receipt for transaction {tx_hash:#x} after {waited_ms} ms")]
    ReceiptTimeout { tx_hash: Felt, waited_ms: u64 },
    /// A transaction succeeded but lacks the event it must have emitted.
    #[error("transaction {tx_hash:#x} lacks the expected {event} event of {contract:#x}")]
    MissingEvent {
        tx_hash: Felt,
        contract: Felt,
        event: &'static str,
    },
    /// A local error (signing, serialization, an undecodable answer). Its cause is logged when
    /// it is made ([`ChainError::internal`]); its text is fixed, so no detail of the
    /// process reaches an API user. Not retryable.
    #[error("internal error in the chain layer")]
    Internal(#[source] anyhow::Error),
}

impl From<anyhow::Error> for ChainError {
    fn from(error: anyhow::Error) -> Self {
        ChainError::internal(error)
    }
}

impl ChainError {
    /// An internal error: logs its whole cause chain, keeps it as the source.
    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        let error = error.into();
        tracing::error!(error = format!("{error:#}"), "internal chain-layer error");
        ChainError::Internal(error)
    }

    /// The contract's error string if this is a revert.
    pub fn revert_reason(&self) -> Option<&str> {
        match self {
            ChainError::Reverted { reason, .. } => Some(reason),
            _ => None,
        }
    }

    /// Whether sending the same request again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ChainError::Transport(_) | ChainError::ReceiptTimeout { .. }
        )
    }

    /// A revert from the node's rendering of it (a receipt's `revert_reason`, a contract
    /// error's message): the decoded panic data when there is some, else the text itself.
    pub fn reverted(message: String) -> Self {
        match decode_revert(&message) {
            Some((reason, panic_data)) => ChainError::Reverted {
                reason,
                panic_data,
                raw: message,
            },
            None => ChainError::Reverted {
                reason: message.clone(),
                panic_data: vec![],
                raw: message,
            },
        }
    }
}

/// The terminal message of a (possibly nested) contract execution error.
fn innermost(error: &ContractExecutionError) -> &str {
    match error {
        ContractExecutionError::Message(message) => message,
        ContractExecutionError::Nested(inner) => innermost(&inner.error),
    }
}

impl From<StarknetError> for ChainError {
    fn from(error: StarknetError) -> Self {
        match error {
            StarknetError::ContractError(data) => {
                ChainError::reverted(innermost(&data.revert_error).to_owned())
            }
            StarknetError::TransactionExecutionError(data) => {
                ChainError::reverted(innermost(&data.execution_error).to_owned())
            }
            StarknetError::InvalidTransactionNonce(message) => ChainError::NonceRejected(message),
            // An account's `__validate__` that panics (e.g. a bad signature) is a revert of
            // the account contract: its reason is in the text.
            StarknetError::ValidationFailure(ref message) => match decode_revert(message) {
                Some((reason, panic_data)) => ChainError::Reverted {
                    reason,
                    panic_data,
                    raw: message.clone(),
                },
                None => ChainError::Rejected(error),
            },
            other => ChainError::Rejected(other),
        }
    }
}

impl From<ProviderError> for ChainError {
    fn from(error: ProviderError) -> Self {
        match error {
            ProviderError::StarknetError(e) => e.into(),
            ProviderError::RateLimited => ChainError::Transport("rate limited by the node".into()),
            ProviderError::ArrayLengthMismatch => ChainError::internal(anyhow::anyhow!(
                "the node answered for a different number of transactions"
            )),
            ProviderError::Other(other) => {
                match other
                    .as_any()
                    .downcast_ref::<JsonRpcClientError<HttpTransportError>>()
                {
                    Some(JsonRpcClientError::TransportError(e)) => {
                        ChainError::Transport(e.to_string())
                    }
                    Some(JsonRpcClientError::JsonRpcError(e)) => ChainError::Node {
                        code: e.code,
                        message: e.message.clone(),
                    },
                    // A malformed answer: the node (or a proxy) is not well; retryable.
                    Some(JsonRpcClientError::JsonError(e)) => {
                        ChainError::Transport(format!("malformed answer: {e}"))
                    }
                    None => ChainError::internal(anyhow::anyhow!("provider error: {other}")),
                }
            }
        }
    }
}

impl<S: std::fmt::Display> From<AccountError<S>> for ChainError {
    fn from(error: AccountError<S>) -> Self {
        match error {
            AccountError::Provider(e) => e.into(),
            AccountError::Signing(e) => ChainError::internal(anyhow::anyhow!("signing: {e}")),
            AccountError::ClassHashCalculation(e) => {
                ChainError::internal(anyhow::Error::new(e).context("computing a class hash"))
            }
            AccountError::FeeOutOfRange => {
                ChainError::internal(anyhow::anyhow!("the fee calculation overflowed"))
            }
        }
    }
}

impl From<cainome::cairo_serde::Error> for ChainError {
    fn from(error: cainome::cairo_serde::Error) -> Self {
        match error {
            cainome::cairo_serde::Error::Provider(e) => e.into(),
            other => ChainError::internal(anyhow::anyhow!("Cairo (de)serialization: {other}")),
        }
    }
}

/// Felts the VM adds while unwinding through calls: not the contract's reason.
const UNWIND_MARKERS: &[&str] = &["ENTRYPOINT_FAILED", "ENTRYPOINT_NOT_FOUND"];

/// Finds the panic data of a revert in a node's message and decodes its short strings.
///
/// Nodes render panic data two ways: transaction execution errors print each felt as
/// `0x<hex> ('<short string>')`; a failed `starknet_call` gives the list as JSON,
/// `["0x<hex>", ...]` (escaped when nested in a debug string). A felt counts as panic data in
/// either form, never when it is a bare address or selector of the trace. The first one that
/// is not an unwinding marker is the contract's `assert(.., 'reason')`.
pub fn decode_revert(message: &str) -> Option<(String, Vec<String>)> {
    let mut decoded = Vec::new();
    let mut at = 0;
    while let Some(found) = message[at..].find("0x") {
        let start = at + found;
        let hex_start = start + 2;
        let hex_len = message[hex_start..]
            .chars()
            .take_while(|c| c.is_ascii_hexdigit())
            .count();
        let hex = &message[hex_start..hex_start + hex_len];
        at = hex_start + hex_len;
        if hex.is_empty() || hex.len() > 62 {
            continue;
        }
        let rendered_as_text = message[at..].trim_start().starts_with("('");
        let quoted = message[..start].ends_with('"') && message[at..].starts_with(['"', '\\']);
        if !(rendered_as_text || quoted) {
            continue;
        }
        if let Some(text) = short_string(hex) {
            decoded.push(text);
        }
    }
    let reason = decoded
        .iter()
        .find(|s| !UNWIND_MARKERS.contains(&s.as_str()))?
        .clone();
    Some((reason, decoded))
}

/// Decodes a felt (hex digits) as a Cairo short string, if it is printable ASCII.
pub fn short_string(hex: &str) -> Option<String> {
    let felt = Felt::from_hex(&format!("0x{hex}")).ok()?;
    let bytes = felt.to_bytes_be();
    let start = bytes.iter().position(|b| *b != 0)?;
    let text = &bytes[start..];
    text.iter()
        .all(|b| (0x20..0x7f).contains(b))
        .then(|| String::from_utf8_lossy(text).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_revert_takes_first_reason_and_skips_unwind_markers() {
        let message = "Transaction execution has failed:\n0: Error in the called contract \
            (contract address: 0x0123, class hash: 0x0456, selector: 0x0789):\nExecution failed. \
            Failure reason:\n(0x45524332303a20696e73756666696369656e742062616c616e6365 \
            ('ERC20: insufficient balance'), 0x454e545259504f494e545f4641494c4544 \
            ('ENTRYPOINT_FAILED')).";
        let (reason, all) = decode_revert(message).expect("a revert");
        assert_eq!(reason, "ERC20: insufficient balance");
        assert_eq!(
            all,
            vec!["ERC20: insufficient balance", "ENTRYPOINT_FAILED"]
        );
    }

    #[test]
    fn decode_revert_reads_the_json_panic_data_of_a_failed_call() {
        // What devnet answers to a `starknet_call` whose view panics, as starknet-rs prints it.
        let message = r#"Provider(StarknetError(ContractError(ContractErrorData { revert_error: Nested(InnerContractExecutionError { contract_address: 0x4842ba6c53a0725d474de20f974374227297e723e57876a5521901fd20a2af3, class_hash: 0x47b2, selector: 0x2767188d, error: Message("[\"0x504d3a20756e6b6e6f776e20706f6c696379\"]") }) })))"#;
        let (reason, all) = decode_revert(message).expect("a revert");
        assert_eq!(reason, "PM: unknown policy");
        assert_eq!(all, vec!["PM: unknown policy"]);
        let unescaped =
            r#"["0x454e545259504f494e545f4641494c4544", "0x504d3a20756e6b6e6f776e20706f6c696379"]"#;
        assert_eq!(
            decode_revert(unescaped).map(|(r, _)| r).as_deref(),
            Some("PM: unknown policy")
        );
    }

    #[test]
    fn decode_revert_ignores_addresses_and_plain_messages() {
        assert_eq!(
            decode_revert("contract address: 0x4718f5a0fc34, selector: 0x83afd3f4"),
            None
        );
        assert_eq!(decode_revert("Account: invalid nonce"), None);
    }

    #[test]
    fn typed_node_errors_map_to_their_variants() {
        use starknet::core::types::{ContractErrorData, InnerContractExecutionError};
        let nested = StarknetError::ContractError(ContractErrorData {
            revert_error: ContractExecutionError::Nested(InnerContractExecutionError {
                contract_address: Felt::ONE,
                class_hash: Felt::TWO,
                selector: Felt::THREE,
                error: std::sync::Arc::new(ContractExecutionError::Message(
                    r#"["0x504d3a20756e6b6e6f776e20706f6c696379"]"#.into(),
                )),
            }),
        });
        let error = ChainError::from(ProviderError::StarknetError(nested));
        assert_eq!(error.revert_reason(), Some("PM: unknown policy"));
        assert!(matches!(
            ChainError::from(StarknetError::InvalidTransactionNonce("nonce 3 < 4".into())),
            ChainError::NonceRejected(_)
        ));
        assert!(matches!(
            ChainError::from(StarknetError::InsufficientAccountBalance),
            ChainError::Rejected(StarknetError::InsufficientAccountBalance)
        ));
        let limited = ChainError::from(ProviderError::RateLimited);
        assert!(limited.is_retryable(), "{limited}");
    }

    #[test]
    fn internal_errors_show_a_fixed_message_and_keep_their_cause() {
        let error = ChainError::internal(anyhow::anyhow!("secret path /home/op/key.json"));
        assert_eq!(error.to_string(), "internal error in the chain layer");
        let source = std::error::Error::source(&error).expect("the cause");
        assert!(source.to_string().contains("key.json"));
    }

    #[tokio::test]
    async fn an_unreachable_node_is_a_retryable_transport_error() {
        use starknet::providers::jsonrpc::HttpTransport;
        use starknet::providers::{JsonRpcClient, Provider};
        // A port nobody listens on (bound, then released).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let url = url::Url::parse(&format!("http://127.0.0.1:{port}/rpc")).expect("url");
        let provider = JsonRpcClient::new(HttpTransport::new(url));
        let error = ChainError::from(provider.chain_id().await.expect_err("nobody listens"));
        assert!(matches!(error, ChainError::Transport(_)), "{error:?}");
    }

    #[test]
    fn short_string_rejects_non_text() {
        assert_eq!(short_string("414243").as_deref(), Some("ABC"));
        assert_eq!(short_string("0001ff"), None);
        assert_eq!(short_string("0"), None);
    }
}
