use starknet::ContractAddress;

/// A call a policy sponsors: this selector on this contract.
#[derive(Copy, Drop, Serde, PartialEq, starknet::Store)]
struct AllowedCall {
    target: ContractAddress,
    selector: felt252,
}

/// What a sponsor pays for, and how much, per user.
#[derive(Copy, Drop, Serde, PartialEq, starknet::Store)]
struct PolicyParams {
    /// Most a user may be charged per day (day = block timestamp / 86400).
    daily_limit: u256,
    /// Most one sponsored transaction may charge.
    max_charge: u256,
    /// Most sponsored transactions per user per rate window.
    rate_limit_count: u32,
    /// The rate window, in seconds.
    rate_limit_window: u64,
    /// The policy stops after this timestamp.
    expiry: u64,
    /// Whether only the sponsor's allowlisted users may use it.
    allowlist_only: bool,
}

/// A stored policy.
#[derive(Copy, Drop, Serde, PartialEq, starknet::Store)]
struct Policy {
    sponsor: ContractAddress,
    active: bool,
    params: PolicyParams,
}

/// A SNIP-9 v2 outside execution, as the user's account receives it in
/// `execute_from_outside_v2` (serialized like OpenZeppelin's, whose `Span`s are `Array`s
/// here).
#[derive(Drop, Serde)]
struct OutsideExecution {
    caller: ContractAddress,
    nonce: felt252,
    execute_after: u64,
    execute_before: u64,
    calls: Array<starknet::account::Call>,
}

/// A subscription tier a sponsor sells: `price` buys `daily_limit` per day for `duration`.
#[derive(Copy, Drop, Serde, PartialEq, starknet::Store)]
struct Tier {
    price: u256,
    duration: u64,
    daily_limit: u256,
    active: bool,
}

/// A user's subscription with a sponsor, and what it paid that has not vested to the sponsor
/// yet: `unvested` vests linearly from `vested_at` until `expires_at` (then all of it).
#[derive(Copy, Drop, Serde, PartialEq, starknet::Store)]
struct Subscription {
    tier_id: u32,
    daily_limit: u256,
    expires_at: u64,
    /// Paid for this subscription, held by the Paymaster, not yet the sponsor's.
    unvested: u256,
    /// When `unvested` last vested (or was last paid into).
    vested_at: u64,
}
