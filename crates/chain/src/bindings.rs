//! Typed bindings generated at build time by cainome from the ABI files committed in `abi/`
//! (see `build.rs`). Each contract has its own module so that type names (`Event`, ...) of
//! different contracts never clash.
//!
//! Each binding also carries a `constructor_getcall(..)`: build-time sugar that makes cainome
//! serialize constructor arguments (see [`constructor_calldata`]). Its sibling
//! `constructor(..)` execution is an artifact of that trick: contracts have no `constructor`
//! entry point to invoke, so never send it.

use starknet::core::types::{Call, Felt};

/// The constructor calldata out of a binding's `constructor_getcall(..)`.
pub fn constructor_calldata(call: Call) -> Vec<Felt> {
    call.calldata
}

/// The governance library every contract hosts: decode its events (`RoleGranted`, `Paused`,
/// `UpgradeScheduled`, ...) from any of them with `governance::Event`.
#[allow(warnings, clippy::all)]
pub mod governance {
    include!(concat!(env!("OUT_DIR"), "/governance.rs"));
}

/// JobMgr: models, jobs, escrow, results, disputes.
#[allow(warnings, clippy::all)]
pub mod job_mgr {
    include!(concat!(env!("OUT_DIR"), "/job_mgr.rs"));
}

/// The CDC Pool: workers, stake, delegation, rewards, reputation, slashing.
#[allow(warnings, clippy::all)]
pub mod cdc_pool {
    include!(concat!(env!("OUT_DIR"), "/cdc_pool.rs"));
}

/// The Paymaster.
#[allow(warnings, clippy::all)]
pub mod paymaster {
    include!(concat!(env!("OUT_DIR"), "/paymaster.rs"));
}

/// The project's test ERC-20 (test-only; `mint` is open).
#[allow(warnings, clippy::all)]
pub mod test_token {
    include!(concat!(env!("OUT_DIR"), "/test_token.rs"));
}

/// SNIP-9 v2 (`execute_from_outside_v2`) of an account contract, as OpenZeppelin's accounts
/// (and devnet's predeployed ones) implement it; from `abi/src9_account.abi.json`.
#[allow(warnings, clippy::all)]
pub mod src9_account {
    include!(concat!(env!("OUT_DIR"), "/src9_account.rs"));
}

/// The standard ERC-20 interface (`erc20.abi.json`: `IERC20` as STRK and OpenZeppelin's tokens
/// serve it): the payment token's client whatever token it is.
#[allow(warnings, clippy::all)]
pub mod erc20 {
    include!(concat!(env!("OUT_DIR"), "/erc20.rs"));
}
