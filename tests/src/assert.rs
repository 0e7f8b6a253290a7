//! Assertions of the specification suite.

use std::fmt::Debug;

use ciro_chain::starknet::core::types::{Event, Felt};
use ciro_chain::tx::TxOutcome;
use ciro_chain::ChainError;

/// Asserts that `result` is a revert whose contract error string is exactly `expected`.
#[track_caller]
pub fn assert_reverts<T: Debug>(result: Result<T, ChainError>, expected: &str) {
    match result {
        Err(ChainError::Reverted { reason, .. }) if reason == expected => {}
        Err(ChainError::Reverted { reason, raw, .. }) => {
            panic!("expected revert {expected:?}, got revert {reason:?}\nnode said: {raw}")
        }
        Err(other) => panic!("expected revert {expected:?}, got another error: {other}"),
        Ok(value) => panic!("expected revert {expected:?}, but it succeeded: {value:?}"),
    }
}

/// Decodes the events `contract` emitted in the transaction into the binding's event type.
#[track_caller]
pub fn decoded_events<E>(outcome: &TxOutcome, contract: Felt) -> Vec<E>
where
    E: for<'a> TryFrom<&'a Event, Error = String>,
{
    outcome
        .events_from(contract)
        .into_iter()
        .map(|event| {
            E::try_from(event)
                .unwrap_or_else(|e| panic!("undecodable event from {contract:#x}: {e}: {event:?}"))
        })
        .collect()
}

/// Asserts that `contract` emitted exactly `expected` in the transaction, in order.
#[track_caller]
pub fn assert_events<E>(outcome: &TxOutcome, contract: Felt, expected: &[E])
where
    E: for<'a> TryFrom<&'a Event, Error = String> + PartialEq + Debug,
{
    let actual: Vec<E> = decoded_events(outcome, contract);
    assert_eq!(
        actual, expected,
        "events emitted by {contract:#x} in tx {:#x}",
        outcome.tx_hash
    );
}
