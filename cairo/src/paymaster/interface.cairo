use starknet::ContractAddress;
use ciro::paymaster::types::{AllowedCall, Policy, PolicyParams};

/// Sponsors' deposits: what sponsored execution spends from.
#[starknet::interface]
trait IPaymasterSponsor<TContractState> {
    /// Moves `amount` of the payment token from the caller into its deposit.
    /// Requires: not paused, amount > 0, the caller approved the Paymaster for `amount`, and
    /// the token really moved `amount` (balance checked before and after).
    /// Emits `Deposited`.
    fn deposit(ref self: TContractState, amount: u256);
    /// Pays `amount` of the caller's deposit back to it. Works while paused.
    /// Requires: amount > 0, amount <= the caller's deposit. Emits `Withdrawn`.
    fn withdraw(ref self: TContractState, amount: u256);
    /// What `sponsor` has deposited and not spent or withdrawn.
    fn sponsor_balance(self: @TContractState, sponsor: ContractAddress) -> u256;
    /// The payment token.
    fn token(self: @TContractState) -> ContractAddress;
}

/// What a sponsor sponsors, for whom, and through which relayers.
#[starknet::interface]
trait IPaymasterPolicy<TContractState> {
    /// Lets `relayer` spend the caller's deposit on sponsored executions.
    /// Requires: relayer not zero. Emits `RelayerSet` (when it changes).
    fn add_relayer(ref self: TContractState, relayer: ContractAddress);
    /// Stops `relayer` spending the caller's deposit. Emits `RelayerSet` (when it changes).
    fn remove_relayer(ref self: TContractState, relayer: ContractAddress);
    /// Whether `relayer` may spend `sponsor`'s deposit.
    fn is_relayer(
        self: @TContractState, sponsor: ContractAddress, relayer: ContractAddress
    ) -> bool;
    /// Puts `user` on or off the caller's allowlist. Emits `UserListed`.
    fn set_allowlisted(ref self: TContractState, user: ContractAddress, listed: bool);
    /// Puts `user` on or off the caller's blocklist (blocked users are never sponsored).
    /// Emits `UserListed`.
    fn set_blocklisted(ref self: TContractState, user: ContractAddress, listed: bool);
    /// Whether `user` is on `sponsor`'s allowlist and on its blocklist.
    fn user_status(
        self: @TContractState, sponsor: ContractAddress, user: ContractAddress
    ) -> (bool, bool);
    /// Creates a policy of the caller's, active at once; returns its id (from 1).
    /// Requires: not paused; 1 to 16 allowed calls; daily limit > 0; 0 < max charge <= daily
    /// limit; 1 <= rate count, 60 s <= rate window <= 7 days; expiry in the future.
    /// Emits `PolicySet`.
    fn create_policy(
        ref self: TContractState, calls: Array<AllowedCall>, params: PolicyParams
    ) -> u64;
    /// Replaces a policy's calls and parameters (it stays active or inactive). Requires: the
    /// caller is its sponsor, the same bounds as `create_policy`. Emits `PolicySet`.
    fn update_policy(
        ref self: TContractState, policy_id: u64, calls: Array<AllowedCall>, params: PolicyParams
    );
    /// Turns a policy on or off. Requires: the caller is its sponsor. Emits `PolicyActive`.
    fn set_policy_active(ref self: TContractState, policy_id: u64, active: bool);
    /// A policy and its allowed calls. Requires: the policy exists.
    fn get_policy(self: @TContractState, policy_id: u64) -> (Policy, Array<AllowedCall>);
}
