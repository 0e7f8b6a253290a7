//! A user's calls sent through a SNIP-29 paymaster relayer (CIRO's `paymaster-relayer`, or
//! any SNIP-29 server): build, check, sign, execute.
//!
//! The relayer builds the SNIP-9 outside execution the user signs, so a user that signs what
//! it is given blindly lets the relayer spend its tokens. [`execute`] reads the execution back
//! from the typed data ([`OutsideExecution::from_typed_data`], which checks the types and the
//! domain) and signs only when its calls are exactly the user's, in order, plus, when the user
//! pays in a token, one `transfer` of that token no larger than the user's own limit. It also
//! asks for a short validity window and refuses a longer one, so an execution the relayer held
//! back instead of sending cannot land long after the user gave up on it (and retried).
//!
//! The window is on the chain's clock ([`chain_clock`]), which the account contract checks it
//! against: a devnet whose time was moved ahead is hours from the wall clock.
//!
//! [`Relay`] makes a [`TxSender`](crate::sender::TxSender) send every transaction this way
//! (the worker's gasless mode).

/// How long a signed execution may stay valid unless the caller says otherwise.
pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(300);
/// Clock difference tolerated between the user and the relayer.
const SKEW_SECS: u64 = 60;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ciro_api::snip29::{
    BuildTransaction, BuildTransactionParams, Call as ApiCall, ExecutableInvoke,
    ExecutableTransaction, ExecuteTransactionParams, ExecutionParameters, FeeMode, InvokeRequest,
    PaymasterClient, PaymasterClientError, PaymasterError, TimeBounds,
};
use starknet::core::types::{BlockId, BlockTag, Call, Felt};
use starknet::core::utils::get_selector_from_name;
use starknet::providers::Provider;
use starknet::signers::SigningKey;

use crate::snip9::OutsideExecution;
use crate::ChainError;

/// Now on the chain's clock, in unix seconds: the later of the wall clock and the timestamp
/// of the block the next transaction lands in (the wall clock alone when the node cannot say).
pub async fn chain_clock<P: Provider + Sync>(provider: &P) -> u64 {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let block = crate::tx::block_timestamp(provider, BlockId::Tag(BlockTag::PreConfirmed)).await;
    match block {
        Ok(chain) => wall.max(chain),
        Err(error) => {
            tracing::warn!(%error, "reading the chain's time; using the wall clock");
            wall
        }
    }
}

/// Who pays for a gasless transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payment {
    /// A sponsor (the relayer's API key, or its default policy, names which), through the
    /// Paymaster contract at `paymaster` when the user knows it: the only `Caller` the
    /// execution may name (any other could submit it at a moment of its choosing).
    Sponsored { paymaster: Option<Felt> },
    /// The user, in `gas_token`, at most `max_fee` base units (the relayer appends the
    /// transfer; a larger one is refused before signing).
    InToken { gas_token: Felt, max_fee: u128 },
}

/// Why a gasless transaction was not sent.
#[derive(Debug, thiserror::Error)]
pub enum GaslessError {
    /// The relayer answered with an error (a SNIP-29 error object carries its reason) or
    /// could not be reached.
    #[error("the paymaster relayer: {0}")]
    Relayer(#[from] PaymasterClientError),
    /// What the relayer asked the user to sign is not what the user asked for.
    #[error("refused to sign what the relayer built: {0}")]
    Unsafe(String),
    /// The key could not sign.
    #[error("signing the outside execution: {0}")]
    Sign(#[source] anyhow::Error),
}

impl GaslessError {
    /// Whether the user had signed the execution when this happened: the relayer refused or
    /// lost it at `paymaster_executeTransaction`, so it may still be sent within its window.
    /// Before that (building, checking, signing) nothing exists that could run.
    pub fn was_signed(&self) -> bool {
        use ciro_api::snip29::methods::EXECUTE_TRANSACTION;
        match self {
            GaslessError::Relayer(
                PaymasterClientError::Rpc { method, .. }
                | PaymasterClientError::Transport { method, .. }
                | PaymasterClientError::Decode { method, .. }
                | PaymasterClientError::IdMismatch { method, .. },
            ) => *method == EXECUTE_TRANSACTION,
            _ => false,
        }
    }
}

/// A gasless transaction the relayer sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The relayer's transaction.
    pub transaction_hash: Felt,
    /// The execution the user signed (its calls are the user's, then any fee transfer).
    pub execution: OutsideExecution,
}

/// `paymaster_buildTransaction`'s params for `user`'s invoke of `calls`.
pub fn build_params(
    user: Felt,
    calls: &[Call],
    parameters: ExecutionParameters,
) -> BuildTransactionParams {
    BuildTransactionParams {
        transaction: BuildTransaction::Invoke {
            invoke: InvokeRequest {
                user_address: user,
                calls: calls
                    .iter()
                    .map(|c| ApiCall {
                        to: c.to,
                        selector: c.selector,
                        calldata: c.calldata.clone(),
                    })
                    .collect(),
            },
        },
        parameters,
    }
}

/// Sends `calls` as `user` (whose account key is `key`) through the relayer `client`:
/// `paymaster_buildTransaction`, the checks above, the signature, then
/// `paymaster_executeTransaction`. The execution is valid for `validity` from `now` (the
/// chain's clock: [`chain_clock`]). The transaction may still be pending when this returns.
#[allow(clippy::too_many_arguments)]
pub async fn execute(
    client: &PaymasterClient,
    user: Felt,
    key: &SigningKey,
    chain_id: Felt,
    calls: &[Call],
    payment: Payment,
    now: u64,
    validity: Duration,
) -> Result<Sent, GaslessError> {
    let execute_before = now.saturating_add(validity.as_secs());
    let parameters = ExecutionParameters::V1 {
        fee_mode: match payment {
            Payment::Sponsored { .. } => FeeMode::Sponsored { tip: None },
            Payment::InToken { gas_token, .. } => FeeMode::Default {
                gas_token,
                tip: None,
            },
        },
        time_bounds: Some(TimeBounds {
            execute_after: 1,
            execute_before,
        }),
    };
    let built = client
        .build_transaction(&build_params(user, calls, parameters))
        .await?;
    let typed_data = built
        .typed_data()
        .ok_or_else(|| GaslessError::Unsafe("an invoke came back with nothing to sign".into()))?
        .clone();
    let execution = OutsideExecution::from_typed_data(&typed_data, chain_id)
        .map_err(|e| GaslessError::Unsafe(e.to_string()))?;
    check(
        &execution,
        calls,
        payment,
        execute_before.saturating_add(SKEW_SECS),
    )?;
    let signature = execution
        .sign(key, user, chain_id)
        .map_err(GaslessError::Sign)?;
    let executed = client
        .execute_transaction(&ExecuteTransactionParams {
            transaction: ExecutableTransaction::Invoke {
                invoke: ExecutableInvoke {
                    user_address: user,
                    typed_data,
                    signature,
                },
            },
            parameters: built.parameters().clone(),
        })
        .await?;
    Ok(Sent {
        transaction_hash: executed.transaction_hash,
        execution,
    })
}

/// A relayer a [`TxSender`](crate::sender::TxSender) sends through instead of paying gas
/// itself ([`TxSender::with_relay`](crate::sender::TxSender::with_relay)): every
/// transaction becomes a signed outside execution ([`execute`]) the relayer submits.
#[derive(Clone)]
pub struct Relay {
    client: Arc<PaymasterClient>,
    key: SigningKey,
    chain_id: Felt,
    payment: Payment,
    validity: Duration,
    fallback: bool,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("client", &self.client)
            .field("payment", &self.payment)
            .field("validity", &self.validity)
            .field("fallback", &self.fallback)
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// Through `client`, signing with the account's `key`, paid as `payment`; executions
    /// valid for [`DEFAULT_VALIDITY`]; no fallback.
    pub fn new(client: PaymasterClient, key: SigningKey, chain_id: Felt, payment: Payment) -> Self {
        Self {
            client: Arc::new(client),
            key,
            chain_id,
            payment,
            validity: DEFAULT_VALIDITY,
            fallback: false,
        }
    }

    /// With `fallback`, a transaction the relayer refuses or cannot take
    /// ([`ChainError::Paymaster`], [`ChainError::Transport`]) is sent and paid directly; one
    /// whose calls revert is not.
    pub fn with_fallback(mut self, fallback: bool) -> Self {
        self.fallback = fallback;
        self
    }

    /// Whether a refused transaction is sent directly.
    pub fn fallback(&self) -> bool {
        self.fallback
    }

    /// Sends `calls` as `user` at `now` (the chain's clock).
    pub async fn send(&self, user: Felt, calls: &[Call], now: u64) -> Result<Sent, GaslessError> {
        execute(
            &self.client,
            user,
            &self.key,
            self.chain_id,
            calls,
            self.payment,
            now,
            self.validity,
        )
        .await
    }
}

impl From<GaslessError> for ChainError {
    /// A simulation that reverted (SNIP-29 156) is a revert with the contract's string; a
    /// relayer out of reach is a transport error; any other refusal is
    /// [`ChainError::Paymaster`].
    fn from(error: GaslessError) -> Self {
        match error {
            GaslessError::Relayer(PaymasterClientError::Rpc { error, .. })
                if error.paymaster_error() == Some(PaymasterError::TransactionExecutionError) =>
            {
                let reason = error
                    .data
                    .as_ref()
                    .and_then(|d| d.get("execution_error"))
                    .and_then(|e| e.as_str())
                    .map_or_else(|| error.message.clone(), str::to_owned);
                let mut reverted = ChainError::reverted(reason);
                if let ChainError::Reverted { raw, .. } = &mut reverted {
                    *raw = format!("{error} {}", error.data.clone().unwrap_or_default());
                }
                reverted
            }
            GaslessError::Relayer(PaymasterClientError::Rpc { error, .. }) => {
                let detail = match &error.data {
                    Some(serde_json::Value::String(s)) => format!("{}: {s}", error.message),
                    Some(other) => format!("{}: {other}", error.message),
                    None => error.message.clone(),
                };
                ChainError::Paymaster {
                    code: Some(error.code),
                    message: detail,
                }
            }
            GaslessError::Relayer(error @ PaymasterClientError::Transport { .. }) => {
                ChainError::Transport(format!("{:#}", anyhow::Error::new(error)))
            }
            GaslessError::Relayer(other) => ChainError::Paymaster {
                code: None,
                message: other.to_string(),
            },
            GaslessError::Unsafe(why) => ChainError::Paymaster {
                code: None,
                message: format!("refused to sign what it built: {why}"),
            },
            GaslessError::Sign(error) => ChainError::internal(error),
        }
    }
}

/// Whether `execution` makes exactly `calls` and, when the user pays, one transfer of its
/// gas token of at most its limit; and expires by `valid_until` (unix seconds).
pub fn check(
    execution: &OutsideExecution,
    calls: &[Call],
    payment: Payment,
    valid_until: u64,
) -> Result<(), GaslessError> {
    let unsafe_ = |what: String| Err(GaslessError::Unsafe(what));
    if execution.execute_before > valid_until {
        return unsafe_(format!(
            "it stays valid until {}, later than the {valid_until} asked for",
            execution.execute_before
        ));
    }
    if execution.calls.len() < calls.len() || execution.calls[..calls.len()] != *calls {
        return unsafe_("its calls are not the ones asked for".into());
    }
    let extra = &execution.calls[calls.len()..];
    match (payment, extra) {
        (
            Payment::Sponsored {
                paymaster: Some(paymaster),
            },
            [],
        ) if execution.caller != paymaster => unsafe_(format!(
            "its Caller {:#x} is not the Paymaster {paymaster:#x}",
            execution.caller
        )),
        (Payment::Sponsored { .. }, []) => Ok(()),
        (Payment::Sponsored { .. }, _) => unsafe_(format!(
            "a sponsored transaction adds {} call(s)",
            extra.len()
        )),
        (Payment::InToken { gas_token, max_fee }, [fee]) => {
            let transfer = get_selector_from_name("transfer")
                .map_err(|e| GaslessError::Unsafe(format!("selector: {e}")))?;
            if fee.to != gas_token || fee.selector != transfer || fee.calldata.len() != 3 {
                return unsafe_("the added call is not a transfer of the gas token".into());
            }
            let (low, high) = (fee.calldata[1], fee.calldata[2]);
            let amount = u128::try_from(low).ok().filter(|_| high == Felt::ZERO);
            match amount {
                Some(amount) if amount <= max_fee => Ok(()),
                _ => unsafe_(format!(
                    "the fee transfer ({low:#x}, {high:#x}) exceeds the limit of {max_fee}"
                )),
            }
        }
        (Payment::InToken { .. }, _) => unsafe_(format!(
            "a user-paid transaction must add exactly one fee transfer, not {}",
            extra.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(to: u64, name: &str, calldata: &[u64]) -> Call {
        Call {
            to: Felt::from(to),
            selector: get_selector_from_name(name).unwrap(),
            calldata: calldata.iter().map(|&c| Felt::from(c)).collect(),
        }
    }

    /// The window the tests' executions must end by.
    const UNTIL: u64 = 2_000_000_000;

    fn execution(calls: Vec<Call>) -> OutsideExecution {
        OutsideExecution {
            caller: Felt::from(0x9au64),
            nonce: Felt::from(7u64),
            execute_after: 1,
            execute_before: 2_000_000_000,
            calls,
        }
    }

    #[test]
    fn sponsored_signs_only_the_users_calls() {
        let mine = vec![call(1, "approve", &[2, 10, 0]), call(2, "submit_job", &[1])];
        assert!(check(
            &execution(mine.clone()),
            &mine,
            Payment::Sponsored { paymaster: None },
            UNTIL
        )
        .is_ok());
        // An added call (a transfer to the relayer), a dropped one, a changed argument and a
        // reordering are each refused.
        let mut added = mine.clone();
        added.push(call(1, "transfer", &[9, 10, 0]));
        let mut changed = mine.clone();
        changed[0].calldata[1] = Felt::from(11u64);
        for bad in [
            added,
            mine[..1].to_vec(),
            changed,
            vec![mine[1].clone(), mine[0].clone()],
        ] {
            let refused = check(
                &execution(bad),
                &mine,
                Payment::Sponsored { paymaster: None },
                UNTIL,
            );
            assert!(
                matches!(refused, Err(GaslessError::Unsafe(_))),
                "{refused:?}"
            );
        }
    }

    #[test]
    fn a_user_paid_fee_is_one_transfer_of_the_gas_token_within_the_limit() {
        let mine = vec![call(2, "submit_job", &[1])];
        let payment = Payment::InToken {
            gas_token: Felt::from(5u64),
            max_fee: 100,
        };
        let with = |fee: Call| {
            let mut calls = mine.clone();
            calls.push(fee);
            execution(calls)
        };
        assert!(check(
            &with(call(5, "transfer", &[9, 100, 0])),
            &mine,
            payment,
            UNTIL
        )
        .is_ok());
        for bad in [
            with(call(5, "transfer", &[9, 101, 0])),
            with(call(5, "transfer", &[9, 1, 1])),
            with(call(6, "transfer", &[9, 1, 0])),
            with(call(5, "approve", &[9, 1, 0])),
            execution(mine.clone()),
        ] {
            let refused = check(&bad, &mine, payment, UNTIL);
            assert!(
                matches!(refused, Err(GaslessError::Unsafe(_))),
                "{refused:?}"
            );
        }
    }

    #[test]
    fn a_sponsored_execution_must_name_the_paymaster_as_its_caller() {
        let mine = vec![call(2, "submit_job", &[1])];
        let paymaster = |p: u64| Payment::Sponsored {
            paymaster: Some(Felt::from(p)),
        };
        // The tests' executions name 0x9a.
        assert!(check(&execution(mine.clone()), &mine, paymaster(0x9a), UNTIL).is_ok());
        let refused = check(&execution(mine.clone()), &mine, paymaster(0x9b), UNTIL);
        assert!(
            matches!(refused, Err(GaslessError::Unsafe(ref why)) if why.contains("Caller")),
            "{refused:?}"
        );
    }

    #[test]
    fn an_execution_valid_longer_than_asked_is_refused() {
        let mine = vec![call(2, "submit_job", &[1])];
        let refused = check(
            &execution(mine.clone()),
            &mine,
            Payment::Sponsored { paymaster: None },
            UNTIL - 1,
        );
        assert!(
            matches!(refused, Err(GaslessError::Unsafe(_))),
            "{refused:?}"
        );
    }
}
