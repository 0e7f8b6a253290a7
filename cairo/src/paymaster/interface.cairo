use starknet::ContractAddress;
use ciro::paymaster::types::{
    AllowedCall, OutsideExecution, Policy, PolicyParams, Subscription, Tier
};

/// Sponsors' deposits: what sponsored execution spends from.
#[starknet::interface]
trait IPaymasterSponsor<TContractState> {
    /// Moves `amount` of the payment token from the caller into its deposit.
    /// Requires: not paused, amount > 0, the caller approved the Paymaster for `amount`, and
    /// the token really moved `amount` (balance checked before and after).
    /// Emits `Deposited`.
    fn deposit(ref self: TContractState, amount: u256);
    /// Pays `amount` of the caller's deposit back to it. Works while paused. Subscription
    /// payments count only once vested (see `vest`).
    /// Requires: amount > 0, amount <= the caller's deposit. Emits `Withdrawn`.
    fn withdraw(ref self: TContractState, amount: u256);
    /// What `sponsor` has deposited, plus the subscription payments vested to it, less what
    /// was spent or withdrawn: what it may withdraw and what sponsored execution spends.
    fn sponsor_balance(self: @TContractState, sponsor: ContractAddress) -> u256;
    /// The sum of every sponsor's deposit and the sum of every subscription's unvested
    /// payment. The Paymaster's token balance is exactly their sum.
    fn totals(self: @TContractState) -> (u256, u256);
    /// The payment token.
    fn token(self: @TContractState) -> ContractAddress;
}

/// What a sponsor sponsors, for whom, and through which relayers.
#[starknet::interface]
trait IPaymasterPolicy<TContractState> {
    /// Lets `relayer` spend up to `daily_budget` of the caller's deposit per day (day =
    /// block timestamp / 86400) on sponsored executions; for a relayer already named, sets
    /// its budget. A budget of 0 lets it relay only free (charge 0) executions.
    /// Requires: relayer not zero. Emits `RelayerSet` (when it changes).
    fn add_relayer(ref self: TContractState, relayer: ContractAddress, daily_budget: u256);
    /// Stops `relayer` spending the caller's deposit and clears its budget (its spend today
    /// is kept: naming it again the same day does not refill it).
    /// Emits `RelayerSet` (when it changes).
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

/// What a sponsor's relayers may spend of its deposit per day, each and together.
#[starknet::interface]
trait IPaymasterBudget<TContractState> {
    /// Sets the daily budget of `relayer`, one of the caller's relayers (a budget cut takes
    /// effect at once, against what it already spent today). Unlike `add_relayer`, never
    /// names a relayer that was removed. Requires: `relayer` is one of the caller's relayers.
    /// Emits `RelayerSet` (when it changes).
    fn set_relayer_budget(ref self: TContractState, relayer: ContractAddress, daily_budget: u256);
    /// Sets the most all of the caller's relayers together may charge its deposit per day.
    /// 0 (the default) allows only free executions. Works while paused.
    /// Emits `SponsorBudgetSet` (when it changes).
    fn set_sponsor_budget(ref self: TContractState, daily_budget: u256);
    /// `relayer`'s daily budget with `sponsor`, and what it charged `sponsor` today.
    fn relayer_budget(
        self: @TContractState, sponsor: ContractAddress, relayer: ContractAddress
    ) -> (u256, u256);
    /// `sponsor`'s daily budget for all its relayers together, and what they charged today.
    fn sponsor_budget(self: @TContractState, sponsor: ContractAddress) -> (u256, u256);
    /// What `relayer` may still charge `sponsor` today: the least of its own budget left, the
    /// sponsor's budget left and the sponsor's deposit (0 for one that is not a relayer).
    fn remaining_budget(
        self: @TContractState, sponsor: ContractAddress, relayer: ContractAddress
    ) -> u256;
}

/// Sponsored execution: a relayer submits a user's signed SNIP-9 outside execution and the
/// sponsor's deposit pays the relayer.
#[starknet::interface]
trait IPaymasterExecute<TContractState> {
    /// Runs `outside_execution` through `user`'s account (`execute_from_outside_v2`) and pays
    /// `charge` from `sponsor`'s deposit to the caller.
    /// Requires: not paused; no re-entry; the caller is one of `sponsor`'s relayers; the
    /// policy exists, is `sponsor`'s, active and not expired; the execution's `caller` is
    /// this contract; its nonce carries `sponsor`'s tag (the nonce's bits above the low 128
    /// equal the sponsor address's low 120 bits: a signed execution runs only through the
    /// sponsor it was built for); it has calls, each allowed by the policy; `user` is not on the
    /// sponsor's blocklist (and is on its allowlist for an allowlist-only policy); the user
    /// is within the policy's rate limit; `charge` <= the policy's max charge; the user's
    /// spend today (with this sponsor) + `charge` <= the daily limit (the policy's, or the
    /// user's running subscription's when higher); the relayer's spend today (with this
    /// sponsor) + `charge` <= its daily budget; all the sponsor's relayers' spend today +
    /// `charge` <= the sponsor's daily budget; `charge` <= the deposit.
    /// The account then checks the signature, nonce and time window itself. Nothing here
    /// checks that `user` is a real account or that `charge` matches the fee the relayer
    /// paid (Cairo 2.1 cannot read a transaction's resource bounds): the budgets bound what a
    /// relayer can take (see the README's trust section).
    /// Effects (spends, count, deposit) come before the account call, the payment after.
    /// Emits `SponsoredExecution`.
    fn execute_sponsored(
        ref self: TContractState,
        sponsor: ContractAddress,
        policy_id: u64,
        user: ContractAddress,
        outside_execution: OutsideExecution,
        signature: Array<felt252>,
        charge: u256
    );
    /// What `user` was charged today on `sponsor`'s deposit.
    fn spent_today(self: @TContractState, sponsor: ContractAddress, user: ContractAddress) -> u256;
    /// What `user` may still be charged today under `policy_id`: the daily limit minus its
    /// spend, capped by the sponsor's daily budget left and its deposit. Requires: the policy
    /// exists.
    fn remaining_allowance(self: @TContractState, policy_id: u64, user: ContractAddress) -> u256;
}

/// SNIP-9 v2, as the Paymaster calls a user's account.
#[starknet::interface]
trait ISRC9V2<TContractState> {
    fn execute_from_outside_v2(
        ref self: TContractState, outside_execution: OutsideExecution, signature: Span<felt252>
    ) -> Array<Span<felt252>>;
}

/// Tiers: users buy a higher daily limit from a sponsor.
#[starknet::interface]
trait IPaymasterTiers<TContractState> {
    /// Defines a tier of the caller's, active at once; returns its id (from 1, per sponsor).
    /// Requires: not paused, daily limit > 0, 1 day <= duration <= 365 days.
    /// Emits `TierSet`.
    fn define_tier(ref self: TContractState, price: u256, duration: u64, daily_limit: u256) -> u32;
    /// Stops or resumes selling a tier (existing subscriptions run on).
    /// Requires: the tier exists. Emits `TierSet`.
    fn set_tier_active(ref self: TContractState, tier_id: u32, active: bool);
    /// Buys `sponsor`'s tier: pulls its price from the caller (balance checked before and
    /// after) into the subscription's unvested payment, and gives the caller the tier's
    /// daily limit until now + duration (a renewal of a running subscription extends it).
    /// What vested of the previous payment is settled first; then the unvested payment (the
    /// rest of the previous one and the new price) vests linearly from now until the new
    /// expiry. Requires: not paused, the tier exists and is active.
    /// Emits `Vested` (when something vested), then `Subscribed`.
    fn subscribe(ref self: TContractState, sponsor: ContractAddress, tier_id: u32);
    /// Moves what vested of `user`'s subscription payment to `sponsor`'s deposit: the
    /// unvested amount × the time since it last vested ÷ the time from then until expiry
    /// (rounded down; all of it once expired). Anyone may call it; works while paused.
    /// Returns the amount. Emits `Vested` (when it is not zero).
    fn vest(ref self: TContractState, sponsor: ContractAddress, user: ContractAddress) -> u256;
    /// What `vest(sponsor, user)` would move now.
    fn vestable(self: @TContractState, sponsor: ContractAddress, user: ContractAddress) -> u256;
    /// A sponsor's tier. Requires: it exists.
    fn get_tier(self: @TContractState, sponsor: ContractAddress, tier_id: u32) -> Tier;
    /// `user`'s subscription with `sponsor` (zero when none).
    fn subscription(
        self: @TContractState, sponsor: ContractAddress, user: ContractAddress
    ) -> Subscription;
}
