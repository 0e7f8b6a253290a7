//! CIRO's Starknet contracts (Cairo 2.1).
//!
//! Each contract lives in its own folder: the contract module, its `interface.cairo` (the
//! external traits and their docs), its `errors.cairo` (every revert string, once) and, where
//! it has them, its `types.cairo`.

/// What every CIRO contract shares: the ERC-20 interface it pays through, and governance
/// (roles, two-step admin transfer, pause, timelocked upgrade).
mod common;

/// JobMgr: model registry, jobs and escrow, results, payment and disputes.
mod job_mgr;

/// The CDC Pool: worker registry, stake and delegation, rewards, reputation and slashing.
mod cdc_pool;

/// The Paymaster: sponsors' deposits, relayers, policies, tiers and sponsored SNIP-9 execution.
mod paymaster;

/// A minimal ERC-20 used by the specification suite and the local network. Test-only: its
/// `mint` is open to anyone, so it must never be deployed where it could hold real value.
mod test_token;

/// A contract posing as a SNIP-9 account (it executes nothing and checks nothing), with which
/// the specification suite attacks the Paymaster. Test-only.
mod fake_account;
