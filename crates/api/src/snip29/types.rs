//! Params and results of the four SNIP-29 methods starknet.js calls (and of `paymaster_trackingIdToLatestHash`), with field names and
//! casing exactly as it sends and expects them (`../shared/SNIP29.md`, sections 1 and 2).
//!
//! Felts and amounts are written as minimal `0x`-hex strings and read leniently (hex, decimal,
//! or bare JSON numbers, which starknet.js lets through in `deployment`); timestamps are
//! written as JSON numbers and read from numbers or numeric strings. Optional fields
//! (`time_bounds`, `tip`, `sigdata`) are omitted when absent, as starknet.js omits them.

use serde::{Deserialize, Serialize};
use serde_with::serde_as;

use crate::wire::{Felt, FeltHex, LenientU64, U256Hex, U256};

/// A token the paymaster accepts as gas token (`paymaster_getSupportedTokens`).
#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenData {
    /// The token contract.
    #[serde_as(as = "FeltHex")]
    pub token_address: Felt,
    /// Its decimals.
    pub decimals: u8,
    /// Price of one whole token (10^decimals base units) in FRI (10^-18 STRK).
    #[serde_as(as = "U256Hex")]
    pub price_in_strk: U256,
}

/// A call of the user's (`{to, selector, calldata}`).
#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// The contract called.
    #[serde_as(as = "FeltHex")]
    pub to: Felt,
    /// The entry point selector (minimal lowercase hex, as starknet.js compares it).
    #[serde_as(as = "FeltHex")]
    pub selector: Felt,
    /// The calldata.
    #[serde_as(as = "Vec<FeltHex>")]
    pub calldata: Vec<Felt>,
}

/// The invoke part of a build request: who calls what.
#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvokeRequest {
    /// The user's account.
    #[serde_as(as = "FeltHex")]
    pub user_address: Felt,
    /// The calls, in order.
    pub calls: Vec<Call>,
}

/// An account to deploy (SNIP-29 `ACCOUNT_DEPLOYMENT_DATA`).
#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentData {
    /// The address it will have.
    #[serde_as(as = "FeltHex")]
    pub address: Felt,
    /// Its class.
    #[serde_as(as = "FeltHex")]
    pub class_hash: Felt,
    /// The deployment salt.
    #[serde_as(as = "FeltHex")]
    pub salt: Felt,
    /// Constructor calldata.
    #[serde_as(as = "Vec<FeltHex>")]
    pub calldata: Vec<Felt>,
    /// Extra signature data some account classes need.
    #[serde_as(as = "Option<Vec<FeltHex>>")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigdata: Option<Vec<Felt>>,
    /// The deployment data version (1).
    pub version: u8,
}

/// The transaction of `paymaster_buildTransaction`, by `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BuildTransaction {
    /// Calls from an existing account.
    Invoke {
        /// The calls.
        invoke: InvokeRequest,
    },
    /// Deploy an account, no calls.
    Deploy {
        /// The account to deploy.
        deployment: DeploymentData,
    },
    /// Deploy an account, then its calls.
    DeployAndInvoke {
        /// The calls.
        invoke: InvokeRequest,
        /// The account to deploy.
        deployment: DeploymentData,
    },
}

/// A tip (SNIP-29 since Sep. 2025; starknet.js never sends it and drops it from answers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tip {
    /// Slow.
    Slow,
    /// Normal.
    Normal,
    /// Fast.
    Fast,
    /// `{"custom": n}`.
    Custom(u64),
}

/// Who pays the fee, by `mode`.
#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum FeeMode {
    /// A sponsor pays.
    Sponsored {
        /// The tip.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tip: Option<Tip>,
    },
    /// The user pays in `gas_token`, through a transfer appended to its calls.
    Default {
        /// The token the user pays in.
        #[serde_as(as = "FeltHex")]
        gas_token: Felt,
        /// The tip.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tip: Option<Tip>,
    },
}

/// The window in which the outside execution is valid (unix seconds).
#[serde_as]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeBounds {
    /// Valid strictly after it (starknet.js sends 1 when the user gave none).
    #[serde_as(as = "LenientU64")]
    pub execute_after: u64,
    /// Valid strictly before it.
    #[serde_as(as = "LenientU64")]
    pub execute_before: u64,
}

/// The execution parameters, by `version` (only `"0x1"` exists).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "version")]
pub enum ExecutionParameters {
    /// Version `"0x1"`.
    #[serde(rename = "0x1")]
    V1 {
        /// Who pays.
        fee_mode: FeeMode,
        /// The validity window; absent when the user gave none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        time_bounds: Option<TimeBounds>,
    },
}

impl ExecutionParameters {
    /// Who pays.
    pub fn fee_mode(&self) -> &FeeMode {
        match self {
            Self::V1 { fee_mode, .. } => fee_mode,
        }
    }

    /// The validity window, if given.
    pub fn time_bounds(&self) -> Option<TimeBounds> {
        match self {
            Self::V1 { time_bounds, .. } => *time_bounds,
        }
    }
}

/// Params of `paymaster_buildTransaction`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildTransactionParams {
    /// What to build.
    pub transaction: BuildTransaction,
    /// How.
    pub parameters: ExecutionParameters,
}

/// The fee estimate of a built transaction: all five fields are required by starknet.js.
#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeEstimate {
    /// FRI price of one whole gas token.
    #[serde_as(as = "U256Hex")]
    pub gas_token_price_in_strk: U256,
    /// Estimated fee in FRI.
    #[serde_as(as = "U256Hex")]
    pub estimated_fee_in_strk: U256,
    /// Estimated fee in gas-token base units.
    #[serde_as(as = "U256Hex")]
    pub estimated_fee_in_gas_token: U256,
    /// Most the transaction may cost, in FRI.
    #[serde_as(as = "U256Hex")]
    pub suggested_max_fee_in_strk: U256,
    /// Most the transaction may cost in gas-token base units: in default mode, the amount of
    /// the fee transfer appended to the typed data (starknet.js checks they are equal).
    #[serde_as(as = "U256Hex")]
    pub suggested_max_fee_in_gas_token: U256,
}

/// Result of `paymaster_buildTransaction`, by `type`. `typed_data` is the SNIP-9 v2 outside
/// execution under SNIP-12 revision 1 the user signs; it comes back whole in
/// `paymaster_executeTransaction`, so it is kept as JSON, untouched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BuildTransactionResult {
    /// Calls from an existing account.
    Invoke {
        /// What the user signs.
        typed_data: serde_json::Value,
        /// The parameters the server will execute with (starknet.js echoes them).
        parameters: ExecutionParameters,
        /// The fee estimate.
        fee: FeeEstimate,
    },
    /// Deploy an account, no calls (sponsored: nothing to sign).
    Deploy {
        /// The account to deploy.
        deployment: DeploymentData,
        /// The parameters.
        parameters: ExecutionParameters,
        /// The fee estimate.
        fee: FeeEstimate,
    },
    /// Deploy an account, then its calls (also what a default-mode deploy becomes: its only
    /// call is the fee transfer).
    DeployAndInvoke {
        /// The account to deploy.
        deployment: DeploymentData,
        /// What the user signs.
        typed_data: serde_json::Value,
        /// The parameters.
        parameters: ExecutionParameters,
        /// The fee estimate.
        fee: FeeEstimate,
    },
}

impl BuildTransactionResult {
    /// The fee estimate.
    pub fn fee(&self) -> &FeeEstimate {
        match self {
            Self::Invoke { fee, .. }
            | Self::Deploy { fee, .. }
            | Self::DeployAndInvoke { fee, .. } => fee,
        }
    }

    /// The parameters.
    pub fn parameters(&self) -> &ExecutionParameters {
        match self {
            Self::Invoke { parameters, .. }
            | Self::Deploy { parameters, .. }
            | Self::DeployAndInvoke { parameters, .. } => parameters,
        }
    }

    /// The typed data to sign, if any.
    pub fn typed_data(&self) -> Option<&serde_json::Value> {
        match self {
            Self::Invoke { typed_data, .. } | Self::DeployAndInvoke { typed_data, .. } => {
                Some(typed_data)
            }
            Self::Deploy { .. } => None,
        }
    }
}

/// The signed invoke of `paymaster_executeTransaction`.
#[serde_as]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutableInvoke {
    /// The user's account.
    #[serde_as(as = "FeltHex")]
    pub user_address: Felt,
    /// The typed data of the build result, whole.
    pub typed_data: serde_json::Value,
    /// The account's signature of it (`[r, s]` for the default signer; opaque felts).
    #[serde_as(as = "Vec<FeltHex>")]
    pub signature: Vec<Felt>,
}

/// The transaction of `paymaster_executeTransaction`, by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ExecutableTransaction {
    /// Signed calls from an existing account.
    Invoke {
        /// The signed typed data.
        invoke: ExecutableInvoke,
    },
    /// Deploy an account.
    Deploy {
        /// The account to deploy.
        deployment: DeploymentData,
    },
    /// Deploy an account, then its signed calls.
    DeployAndInvoke {
        /// The signed typed data.
        invoke: ExecutableInvoke,
        /// The account to deploy.
        deployment: DeploymentData,
    },
}

/// Params of `paymaster_executeTransaction`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecuteTransactionParams {
    /// What to execute.
    pub transaction: ExecutableTransaction,
    /// The build result's parameters, as the client echoes them.
    pub parameters: ExecutionParameters,
}

/// Result of `paymaster_executeTransaction`.
#[serde_as]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecuteTransactionResult {
    /// The transaction the paymaster sent.
    #[serde_as(as = "FeltHex")]
    pub transaction_hash: Felt,
    /// Its tracking id (`0x0` when the server does not track).
    #[serde_as(as = "FeltHex")]
    pub tracking_id: Felt,
}

/// Params of `paymaster_trackingIdToLatestHash`.
#[serde_as]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackingIdParams {
    /// The id `paymaster_executeTransaction` returned.
    #[serde_as(as = "FeltHex")]
    pub tracking_id: Felt,
}

/// Where a tracked execution's transaction is (SNIP-29 `TRACKING_ID_STATUS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrackingStatus {
    /// Sent, no receipt yet.
    Active,
    /// In a block (succeeded or reverted: its receipt says which).
    Accepted,
    /// Not in a block, and it can no longer be: its execution's window is over.
    Dropped,
}

/// Result of `paymaster_trackingIdToLatestHash`.
#[serde_as]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackingIdResult {
    /// The latest transaction sent for the execution.
    #[serde_as(as = "FeltHex")]
    pub transaction_hash: Felt,
    /// Where it is.
    pub status: TrackingStatus,
}
