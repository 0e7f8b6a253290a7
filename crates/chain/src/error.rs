//! Errors of the chain layer, and the decoding of a revert into the contract's error string.

use starknet::core::types::Felt;

/// What went wrong talking to the chain.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The transaction reverted (in fee estimation or on chain). `reason` is the contract's
    /// own error string (the first panic-data short string); not retryable as is.
    #[error("transaction reverted: {reason}")]
    Reverted {
        /// The contract's error string, e.g. `ERC20: insufficient balance`.
        reason: String,
        /// Every short string of the panic data, innermost first.
        panic_data: Vec<String>,
        /// The node's full message.
        raw: String,
    },
    /// The node could not be reached or answered with a transport error; retryable.
    #[error("RPC transport error: {0}")]
    Transport(String),
    /// The node rejected the request (bad nonce, insufficient fee, unknown class, ...).
    #[error("rejected by the node: {0}")]
    Rejected(String),
    /// A transaction was sent but no receipt arrived in time; retry by awaiting again.
    #[error("no receipt for transaction {tx_hash:#x} after {waited_ms} ms")]
    ReceiptTimeout { tx_hash: Felt, waited_ms: u64 },
    /// A local error (artifact, serialization); not retryable.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ChainError {
    /// Classifies an error message from starknet-rs (provider or account error): a revert
    /// with decodable panic data becomes [`ChainError::Reverted`].
    pub fn from_node_message(message: String) -> Self {
        match decode_revert(&message) {
            Some((reason, panic_data)) => ChainError::Reverted {
                reason,
                panic_data,
                raw: message,
            },
            None if is_transport(&message) => ChainError::Transport(message),
            None => ChainError::Rejected(message),
        }
    }

    /// The contract's error string if this is a revert.
    pub fn revert_reason(&self) -> Option<&str> {
        match self {
            ChainError::Reverted { reason, .. } => Some(reason),
            _ => None,
        }
    }
}

fn is_transport(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    [
        "connection",
        "timed out",
        "timeout",
        "transport",
        "error sending request",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
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
    fn from_node_message_classifies() {
        assert!(matches!(
            ChainError::from_node_message("error sending request for url".into()),
            ChainError::Transport(_)
        ));
        assert!(matches!(
            ChainError::from_node_message("InvalidTransactionNonce".into()),
            ChainError::Rejected(_)
        ));
    }

    #[test]
    fn short_string_rejects_non_text() {
        assert_eq!(short_string("414243").as_deref(), Some("ABC"));
        assert_eq!(short_string("0001ff"), None);
        assert_eq!(short_string("0"), None);
    }
}
