/// The Paymaster: sponsors deposit the payment token so that users and workers need no gas
/// token. Sponsors name relayers, keep user lists, set policies and sell tiers; a relayer
/// submits a user's signed SNIP-9 outside execution and is paid from the sponsor's deposit.
/// With governance (roles, two-step admin, pause, timelocked upgrade).
#[starknet::contract]
mod Paymaster {
    use array::{ArrayTrait, SpanTrait};
    use traits::Into;
    use starknet::{
        ClassHash, ContractAddress, get_block_timestamp, get_caller_address, get_contract_address
    };
    use zeroable::Zeroable;
    use ciro::common::erc20;
    use ciro::common::governance::{Governance, IGovernance};
    use ciro::common::governance::Governance::InternalTrait as GovernanceTrait;
    use ciro::paymaster::errors;
    use ciro::paymaster::interface::{
        IPaymasterBudget, IPaymasterExecute, IPaymasterPolicy, IPaymasterSponsor, IPaymasterTiers,
        ISRC9V2Dispatcher, ISRC9V2DispatcherTrait
    };
    use ciro::paymaster::types::{
        AllowedCall, OutsideExecution, Policy, PolicyParams, Subscription, Tier
    };
    use poseidon::poseidon_hash_span;
    use starknet::account::Call;

    /// Seconds in a day: spending limits reset at each multiple.
    const DAY: u64 = 86400;
    /// Longest tier duration: a year.
    const MAX_TIER_DURATION: u64 = 31536000;

    /// Most allowed calls in one policy.
    const MAX_POLICY_CALLS: u32 = 16;
    /// Bounds of a policy's rate window: one minute to seven days.
    const MIN_RATE_WINDOW: u64 = 60;
    const MAX_RATE_WINDOW: u64 = 604800;
    /// Allowlist and blocklist, as named in `UserListed`.
    const ALLOWLIST: felt252 = 'ALLOWLIST';
    const BLOCKLIST: felt252 = 'BLOCKLIST';

    #[storage]
    struct Storage {
        /// The token deposits and charges are paid in (STRK on Starknet).
        token: ContractAddress,
        /// Each sponsor's unspent deposit (with the subscription payments vested to it).
        deposits: LegacyMap<ContractAddress, u256>,
        /// The sum of `deposits`.
        total_deposits: u256,
        /// The sum of the subscriptions' `unvested`. The Paymaster's token balance is
        /// `total_deposits + total_unvested`.
        total_unvested: u256,
        /// Whether (sponsor, relayer) may spend the sponsor's deposit.
        relayers: LegacyMap<(ContractAddress, ContractAddress), bool>,
        /// What (sponsor, relayer) may charge the sponsor's deposit per day.
        relayer_budgets: LegacyMap<(ContractAddress, ContractAddress), u256>,
        /// What (sponsor, relayer) charged on day (timestamp / 86400).
        relayer_spent: LegacyMap<(ContractAddress, ContractAddress, u64), u256>,
        /// What all of a sponsor's relayers together may charge its deposit per day.
        sponsor_budgets: LegacyMap<ContractAddress, u256>,
        /// What all of a sponsor's relayers together charged it, by (sponsor, day).
        sponsor_spent: LegacyMap<(ContractAddress, u64), u256>,
        /// Whether (sponsor, user) is on the sponsor's allowlist.
        allowlisted: LegacyMap<(ContractAddress, ContractAddress), bool>,
        /// Whether (sponsor, user) is on the sponsor's blocklist.
        blocklisted: LegacyMap<(ContractAddress, ContractAddress), bool>,
        /// Policies created so far (ids run from 1).
        policy_count: u64,
        /// Policy by id.
        policies: LegacyMap<u64, Policy>,
        /// Number of allowed calls of a policy.
        policy_call_count: LegacyMap<u64, u32>,
        /// The allowed calls of a policy, by (policy, index).
        policy_calls: LegacyMap<(u64, u32), AllowedCall>,
        /// What (sponsor, user) was charged on day (timestamp / 86400).
        spent: LegacyMap<(ContractAddress, ContractAddress, u64), u256>,
        /// Sponsored executions of (policy, user) in rate window (timestamp / window).
        executions: LegacyMap<(u64, ContractAddress, u64), u32>,
        /// Set while `execute_sponsored` runs (reentrancy guard).
        entered: bool,
        /// Tiers defined so far per sponsor (ids run from 1).
        tier_count: LegacyMap<ContractAddress, u32>,
        /// Tier by (sponsor, id).
        tiers: LegacyMap<(ContractAddress, u32), Tier>,
        /// Subscription by (sponsor, user).
        subscriptions: LegacyMap<(ContractAddress, ContractAddress), Subscription>,
    }

    #[event]
    #[derive(Drop, starknet::Event)]
    enum Event {
        Deposited: Deposited,
        Withdrawn: Withdrawn,
        RelayerSet: RelayerSet,
        UserListed: UserListed,
        PolicySet: PolicySet,
        PolicyActive: PolicyActive,
        SponsoredExecution: SponsoredExecution,
        TierSet: TierSet,
        Subscribed: Subscribed,
        SponsorBudgetSet: SponsorBudgetSet,
        Vested: Vested,
    }

    /// All of `sponsor`'s relayers together may now charge `daily_budget` a day.
    #[derive(Drop, starknet::Event)]
    struct SponsorBudgetSet {
        #[key]
        sponsor: ContractAddress,
        daily_budget: u256,
    }

    /// `amount` of `user`'s subscription payment vested to `sponsor`'s deposit; `unvested`
    /// is left to vest.
    #[derive(Drop, starknet::Event)]
    struct Vested {
        #[key]
        sponsor: ContractAddress,
        #[key]
        user: ContractAddress,
        amount: u256,
        unvested: u256,
    }

    /// `sponsor`'s tier `tier_id` was defined or turned on or off.
    #[derive(Drop, starknet::Event)]
    struct TierSet {
        #[key]
        sponsor: ContractAddress,
        #[key]
        tier_id: u32,
        tier: Tier,
    }

    /// `user` bought `sponsor`'s tier `tier_id` for `price`; it runs until `expires_at`, by
    /// when `unvested` (the price and what was left of an earlier payment) has vested.
    #[derive(Drop, starknet::Event)]
    struct Subscribed {
        #[key]
        sponsor: ContractAddress,
        #[key]
        user: ContractAddress,
        tier_id: u32,
        price: u256,
        expires_at: u64,
        unvested: u256,
    }

    /// `relayer` ran `user`'s outside execution (calls hashed into `calls_hash`) under
    /// `sponsor`'s policy `policy_id` and was paid `charge` from the sponsor's deposit.
    #[derive(Drop, starknet::Event)]
    struct SponsoredExecution {
        #[key]
        sponsor: ContractAddress,
        #[key]
        user: ContractAddress,
        #[key]
        relayer: ContractAddress,
        policy_id: u64,
        charge: u256,
        calls_hash: felt252,
    }

    /// `relayer` may (`allowed`) spend up to `daily_budget` of `sponsor`'s deposit a day, or
    /// may no longer spend it.
    #[derive(Drop, starknet::Event)]
    struct RelayerSet {
        #[key]
        sponsor: ContractAddress,
        #[key]
        relayer: ContractAddress,
        allowed: bool,
        daily_budget: u256,
    }

    /// `user` was put on (`listed`) or taken off `sponsor`'s `list` (ALLOWLIST, BLOCKLIST).
    #[derive(Drop, starknet::Event)]
    struct UserListed {
        #[key]
        sponsor: ContractAddress,
        #[key]
        user: ContractAddress,
        list: felt252,
        listed: bool,
    }

    /// Policy `policy_id` of `sponsor` was created or replaced.
    #[derive(Drop, starknet::Event)]
    struct PolicySet {
        #[key]
        policy_id: u64,
        #[key]
        sponsor: ContractAddress,
        params: PolicyParams,
        allowed_calls: u32,
    }

    /// Policy `policy_id` was turned on or off.
    #[derive(Drop, starknet::Event)]
    struct PolicyActive {
        #[key]
        policy_id: u64,
        active: bool,
    }

    /// `sponsor` added `amount` to its deposit, which is now `balance`.
    #[derive(Drop, starknet::Event)]
    struct Deposited {
        #[key]
        sponsor: ContractAddress,
        amount: u256,
        balance: u256,
    }

    /// `sponsor` took `amount` out of its deposit, which is now `balance`.
    #[derive(Drop, starknet::Event)]
    struct Withdrawn {
        #[key]
        sponsor: ContractAddress,
        amount: u256,
        balance: u256,
    }

    /// Sets the admin, the payment token and the upgrade delay (bounded by governance).
    /// Nothing is left to initialize after deployment.
    #[constructor]
    fn constructor(
        ref self: ContractState, admin: ContractAddress, token: ContractAddress, upgrade_delay: u64
    ) {
        assert(!token.is_zero(), errors::ZERO_ADDRESS);
        self.token.write(token);
        let mut governance = Governance::unsafe_new_contract_state();
        governance.initialize(admin, upgrade_delay);
    }

    #[external(v0)]
    impl SponsorImpl of IPaymasterSponsor<ContractState> {
        fn deposit(ref self: ContractState, amount: u256) {
            Governance::unsafe_new_contract_state().assert_open();
            assert(amount != 0, errors::ZERO_AMOUNT);
            let sponsor = get_caller_address();
            // Credit only what really arrived: a token that moves less than asked (or
            // re-enters and moves more) fails the balance check.
            self.pull(sponsor, amount);
            let balance = self.deposits.read(sponsor) + amount;
            self.deposits.write(sponsor, balance);
            self.total_deposits.write(self.total_deposits.read() + amount);
            self.emit(Deposited { sponsor, amount, balance });
        }

        fn withdraw(ref self: ContractState, amount: u256) {
            assert(amount != 0, errors::ZERO_AMOUNT);
            let sponsor = get_caller_address();
            let deposit = self.deposits.read(sponsor);
            assert(amount <= deposit, errors::INSUFFICIENT_DEPOSIT);
            let balance = deposit - amount;
            self.deposits.write(sponsor, balance);
            self.total_deposits.write(self.total_deposits.read() - amount);
            self.emit(Withdrawn { sponsor, amount, balance });
            self.push(sponsor, amount);
        }

        fn sponsor_balance(self: @ContractState, sponsor: ContractAddress) -> u256 {
            self.deposits.read(sponsor)
        }

        fn token(self: @ContractState) -> ContractAddress {
            self.token.read()
        }

        fn totals(self: @ContractState) -> (u256, u256) {
            (self.total_deposits.read(), self.total_unvested.read())
        }
    }

    #[external(v0)]
    impl PolicyImpl of IPaymasterPolicy<ContractState> {
        fn add_relayer(ref self: ContractState, relayer: ContractAddress, daily_budget: u256) {
            assert(!relayer.is_zero(), errors::ZERO_ADDRESS);
            self.set_relayer(relayer, true, daily_budget);
        }

        fn remove_relayer(ref self: ContractState, relayer: ContractAddress) {
            self.set_relayer(relayer, false, 0);
        }

        fn is_relayer(
            self: @ContractState, sponsor: ContractAddress, relayer: ContractAddress
        ) -> bool {
            self.relayers.read((sponsor, relayer))
        }

        fn set_allowlisted(ref self: ContractState, user: ContractAddress, listed: bool) {
            let sponsor = get_caller_address();
            self.allowlisted.write((sponsor, user), listed);
            self.emit(UserListed { sponsor, user, list: ALLOWLIST, listed });
        }

        fn set_blocklisted(ref self: ContractState, user: ContractAddress, listed: bool) {
            let sponsor = get_caller_address();
            self.blocklisted.write((sponsor, user), listed);
            self.emit(UserListed { sponsor, user, list: BLOCKLIST, listed });
        }

        fn user_status(
            self: @ContractState, sponsor: ContractAddress, user: ContractAddress
        ) -> (bool, bool) {
            (self.allowlisted.read((sponsor, user)), self.blocklisted.read((sponsor, user)))
        }

        fn create_policy(
            ref self: ContractState, calls: Array<AllowedCall>, params: PolicyParams
        ) -> u64 {
            Governance::unsafe_new_contract_state().assert_open();
            let policy_id = self.policy_count.read() + 1;
            self.policy_count.write(policy_id);
            self.store_policy(policy_id, get_caller_address(), true, calls, params);
            policy_id
        }

        fn update_policy(
            ref self: ContractState, policy_id: u64, calls: Array<AllowedCall>, params: PolicyParams
        ) {
            let policy = self.own_policy(policy_id);
            self.store_policy(policy_id, policy.sponsor, policy.active, calls, params);
        }

        fn set_policy_active(ref self: ContractState, policy_id: u64, active: bool) {
            let policy = self.own_policy(policy_id);
            self
                .policies
                .write(
                    policy_id, Policy { sponsor: policy.sponsor, active, params: policy.params }
                );
            self.emit(PolicyActive { policy_id, active });
        }

        fn get_policy(self: @ContractState, policy_id: u64) -> (Policy, Array<AllowedCall>) {
            let policy = self.policies.read(policy_id);
            assert(!policy.sponsor.is_zero(), errors::UNKNOWN_POLICY);
            let count = self.policy_call_count.read(policy_id);
            let mut calls = ArrayTrait::new();
            let mut index = 0;
            loop {
                if index == count {
                    break;
                }
                calls.append(self.policy_calls.read((policy_id, index)));
                index += 1;
            };
            (policy, calls)
        }
    }

    #[external(v0)]
    impl BudgetImpl of IPaymasterBudget<ContractState> {
        fn set_relayer_budget(
            ref self: ContractState, relayer: ContractAddress, daily_budget: u256
        ) {
            assert(self.relayers.read((get_caller_address(), relayer)), errors::UNKNOWN_RELAYER);
            self.set_relayer(relayer, true, daily_budget);
        }

        fn set_sponsor_budget(ref self: ContractState, daily_budget: u256) {
            let sponsor = get_caller_address();
            if self.sponsor_budgets.read(sponsor) != daily_budget {
                self.sponsor_budgets.write(sponsor, daily_budget);
                self.emit(SponsorBudgetSet { sponsor, daily_budget });
            }
        }

        fn relayer_budget(
            self: @ContractState, sponsor: ContractAddress, relayer: ContractAddress
        ) -> (u256, u256) {
            (
                self.relayer_budgets.read((sponsor, relayer)),
                self.relayer_spent.read((sponsor, relayer, get_block_timestamp() / DAY))
            )
        }

        fn sponsor_budget(self: @ContractState, sponsor: ContractAddress) -> (u256, u256) {
            (
                self.sponsor_budgets.read(sponsor),
                self.sponsor_spent.read((sponsor, get_block_timestamp() / DAY))
            )
        }

        fn remaining_budget(
            self: @ContractState, sponsor: ContractAddress, relayer: ContractAddress
        ) -> u256 {
            if !self.relayers.read((sponsor, relayer)) {
                return 0;
            }
            let day = get_block_timestamp() / DAY;
            let relayer_left = left_of(
                self.relayer_budgets.read((sponsor, relayer)),
                self.relayer_spent.read((sponsor, relayer, day))
            );
            min(min(relayer_left, self.sponsor_left(sponsor, day)), self.deposits.read(sponsor))
        }
    }

    #[external(v0)]
    impl ExecuteImpl of IPaymasterExecute<ContractState> {
        fn execute_sponsored(
            ref self: ContractState,
            sponsor: ContractAddress,
            policy_id: u64,
            user: ContractAddress,
            outside_execution: OutsideExecution,
            signature: Array<felt252>,
            charge: u256
        ) {
            assert(!self.entered.read(), errors::REENTRANT_CALL);
            self.entered.write(true);
            Governance::unsafe_new_contract_state().assert_open();
            let relayer = get_caller_address();
            assert(self.relayers.read((sponsor, relayer)), errors::NOT_RELAYER);
            let policy = self.policies.read(policy_id);
            assert(!policy.sponsor.is_zero(), errors::UNKNOWN_POLICY);
            assert(policy.sponsor == sponsor, errors::NOT_POLICY_SPONSOR);
            assert(policy.active, errors::POLICY_INACTIVE);
            let now = get_block_timestamp();
            assert(now <= policy.params.expiry, errors::POLICY_EXPIRED);
            assert(
                outside_execution.caller == get_contract_address(), errors::WRONG_OUTSIDE_CALLER
            );
            assert(
                nonce_tag(outside_execution.nonce) == sponsor_tag(sponsor),
                errors::NONCE_NOT_SPONSORS
            );
            assert(!self.blocklisted.read((sponsor, user)), errors::USER_BLOCKED);
            if policy.params.allowlist_only {
                assert(self.allowlisted.read((sponsor, user)), errors::USER_NOT_ALLOWLISTED);
            }
            let calls_hash = self.check_calls(policy_id, outside_execution.calls.span());
            let window = now / policy.params.rate_limit_window;
            let executions = self.executions.read((policy_id, user, window));
            assert(executions < policy.params.rate_limit_count, errors::RATE_LIMITED);
            assert(charge <= policy.params.max_charge, errors::CHARGE_OVER_MAX);
            let day = now / DAY;
            let spent = self.spent.read((sponsor, user, day)) + charge;
            assert(
                spent <= self.daily_limit_of(sponsor, user, policy.params.daily_limit),
                errors::DAILY_LIMIT_REACHED
            );
            // The relayer chose `user` and `charge`: its own budget and the sponsor's bound
            // what it can take, whatever users it names.
            let relayer_spent = self.relayer_spent.read((sponsor, relayer, day)) + charge;
            assert(
                relayer_spent <= self.relayer_budgets.read((sponsor, relayer)),
                errors::RELAYER_BUDGET_REACHED
            );
            let sponsor_spent = self.sponsor_spent.read((sponsor, day)) + charge;
            assert(
                sponsor_spent <= self.sponsor_budgets.read(sponsor), errors::SPONSOR_BUDGET_REACHED
            );
            let deposit = self.deposits.read(sponsor);
            assert(charge <= deposit, errors::DEPOSIT_TOO_LOW);

            // Effects, then the user's calls, then the payment.
            self.spent.write((sponsor, user, day), spent);
            self.relayer_spent.write((sponsor, relayer, day), relayer_spent);
            self.sponsor_spent.write((sponsor, day), sponsor_spent);
            self.executions.write((policy_id, user, window), executions + 1);
            self.deposits.write(sponsor, deposit - charge);
            self.total_deposits.write(self.total_deposits.read() - charge);
            ISRC9V2Dispatcher {
                contract_address: user
            }.execute_from_outside_v2(outside_execution, signature.span());
            if charge != 0 {
                self.push(relayer, charge);
            }
            self.emit(SponsoredExecution { sponsor, user, relayer, policy_id, charge, calls_hash });
            self.entered.write(false);
        }

        fn spent_today(
            self: @ContractState, sponsor: ContractAddress, user: ContractAddress
        ) -> u256 {
            self.spent.read((sponsor, user, get_block_timestamp() / DAY))
        }

        fn remaining_allowance(
            self: @ContractState, policy_id: u64, user: ContractAddress
        ) -> u256 {
            let policy = self.policies.read(policy_id);
            assert(!policy.sponsor.is_zero(), errors::UNKNOWN_POLICY);
            let day = get_block_timestamp() / DAY;
            let spent = self.spent.read((policy.sponsor, user, day));
            let limit = self.daily_limit_of(policy.sponsor, user, policy.params.daily_limit);
            min(
                min(left_of(limit, spent), self.sponsor_left(policy.sponsor, day)),
                self.deposits.read(policy.sponsor)
            )
        }
    }

    #[external(v0)]
    impl TiersImpl of IPaymasterTiers<ContractState> {
        fn define_tier(
            ref self: ContractState, price: u256, duration: u64, daily_limit: u256
        ) -> u32 {
            Governance::unsafe_new_contract_state().assert_open();
            assert(daily_limit != 0, errors::ZERO_LIMIT);
            assert(duration >= DAY && duration <= MAX_TIER_DURATION, errors::BAD_TIER_DURATION);
            let sponsor = get_caller_address();
            let tier_id = self.tier_count.read(sponsor) + 1;
            self.tier_count.write(sponsor, tier_id);
            let tier = Tier { price, duration, daily_limit, active: true };
            self.tiers.write((sponsor, tier_id), tier);
            self.emit(TierSet { sponsor, tier_id, tier });
            tier_id
        }

        fn set_tier_active(ref self: ContractState, tier_id: u32, active: bool) {
            let sponsor = get_caller_address();
            let tier = self.tier_of(sponsor, tier_id);
            let tier = Tier {
                price: tier.price, duration: tier.duration, daily_limit: tier.daily_limit, active
            };
            self.tiers.write((sponsor, tier_id), tier);
            self.emit(TierSet { sponsor, tier_id, tier });
        }

        fn subscribe(ref self: ContractState, sponsor: ContractAddress, tier_id: u32) {
            Governance::unsafe_new_contract_state().assert_open();
            let tier = self.tier_of(sponsor, tier_id);
            assert(tier.active, errors::TIER_INACTIVE);
            let user = get_caller_address();
            let now = get_block_timestamp();
            let (current, _) = self.settle_vesting(sponsor, user, now);
            // A renewal of the same running tier extends it; anything else starts now.
            let start = if current.tier_id == tier_id && current.expires_at > now {
                current.expires_at
            } else {
                now
            };
            let expires_at = start + tier.duration;
            if tier.price != 0 {
                self.pull(user, tier.price);
            }
            // The payment is not the sponsor's yet: it vests until the new expiry.
            let unvested = current.unvested + tier.price;
            self.total_unvested.write(self.total_unvested.read() + tier.price);
            self
                .subscriptions
                .write(
                    (sponsor, user),
                    Subscription {
                        tier_id, daily_limit: tier.daily_limit, expires_at, unvested, vested_at: now
                    }
                );
            self
                .emit(
                    Subscribed { sponsor, user, tier_id, price: tier.price, expires_at, unvested }
                );
        }

        fn vest(ref self: ContractState, sponsor: ContractAddress, user: ContractAddress) -> u256 {
            let (_, amount) = self.settle_vesting(sponsor, user, get_block_timestamp());
            amount
        }

        fn vestable(self: @ContractState, sponsor: ContractAddress, user: ContractAddress) -> u256 {
            vested_by(self.subscriptions.read((sponsor, user)), get_block_timestamp())
        }

        fn get_tier(self: @ContractState, sponsor: ContractAddress, tier_id: u32) -> Tier {
            self.tier_of(sponsor, tier_id)
        }

        fn subscription(
            self: @ContractState, sponsor: ContractAddress, user: ContractAddress
        ) -> Subscription {
            self.subscriptions.read((sponsor, user))
        }
    }

    #[generate_trait]
    impl InternalImpl of InternalTrait {
        /// Pulls exactly `amount` from `from` (a token that moves less fails the check).
        fn pull(ref self: ContractState, from: ContractAddress, amount: u256) {
            assert(
                erc20::pull_exact(self.token.read(), from, amount), errors::TRANSFER_FROM_SHORTFALL
            );
        }

        fn push(ref self: ContractState, to: ContractAddress, amount: u256) {
            assert(erc20::push(self.token.read(), to, amount), errors::TRANSFER_FAILED);
        }

        fn tier_of(self: @ContractState, sponsor: ContractAddress, tier_id: u32) -> Tier {
            assert(tier_id != 0 && tier_id <= self.tier_count.read(sponsor), errors::UNKNOWN_TIER);
            self.tiers.read((sponsor, tier_id))
        }

        /// The user's daily limit with `sponsor`: the policy's, or its running
        /// subscription's when that is higher.
        fn daily_limit_of(
            self: @ContractState,
            sponsor: ContractAddress,
            user: ContractAddress,
            policy_limit: u256
        ) -> u256 {
            let subscription = self.subscriptions.read((sponsor, user));
            if subscription.expires_at > get_block_timestamp()
                && subscription.daily_limit > policy_limit {
                subscription.daily_limit
            } else {
                policy_limit
            }
        }

        /// Checks every call against the policy's allowed calls; returns the Poseidon hash of
        /// the calls (to, selector, calldata length, calldata) for the event.
        fn check_calls(self: @ContractState, policy_id: u64, mut calls: Span<Call>) -> felt252 {
            assert(calls.len() > 0, errors::NO_CALLS);
            let allowed = self.policy_call_count.read(policy_id);
            let mut flat: Array<felt252> = ArrayTrait::new();
            loop {
                match calls.pop_front() {
                    Option::Some(call) => {
                        let to = *call.to;
                        let selector = *call.selector;
                        let mut index = 0;
                        loop {
                            assert(index < allowed, errors::CALL_NOT_ALLOWED);
                            let entry = self.policy_calls.read((policy_id, index));
                            if entry.target == to && entry.selector == selector {
                                break;
                            }
                            index += 1;
                        };
                        flat.append(to.into());
                        flat.append(selector);
                        flat.append(call.calldata.len().into());
                        let mut data = call.calldata.span();
                        loop {
                            match data.pop_front() {
                                Option::Some(value) => flat.append(*value),
                                Option::None => {
                                    break;
                                }
                            };
                        };
                    },
                    Option::None => {
                        break;
                    }
                };
            };
            poseidon_hash_span(flat.span())
        }

        /// Sets the caller's (allowed, daily budget) for `relayer`; emits when it changes.
        fn set_relayer(
            ref self: ContractState, relayer: ContractAddress, allowed: bool, daily_budget: u256
        ) {
            let sponsor = get_caller_address();
            if self.relayers.read((sponsor, relayer)) != allowed
                || self.relayer_budgets.read((sponsor, relayer)) != daily_budget {
                self.relayers.write((sponsor, relayer), allowed);
                self.relayer_budgets.write((sponsor, relayer), daily_budget);
                self.emit(RelayerSet { sponsor, relayer, allowed, daily_budget });
            }
        }

        /// What `sponsor`'s relayers may still charge it on `day`, together.
        fn sponsor_left(self: @ContractState, sponsor: ContractAddress, day: u64) -> u256 {
            left_of(self.sponsor_budgets.read(sponsor), self.sponsor_spent.read((sponsor, day)))
        }

        /// Moves what vested of (sponsor, user)'s subscription payment into the sponsor's
        /// deposit; returns the subscription as it now stands and the amount. A vesting that
        /// rounds to 0 leaves `vested_at` alone, so that frequent calls cannot stall it.
        fn settle_vesting(
            ref self: ContractState, sponsor: ContractAddress, user: ContractAddress, now: u64
        ) -> (Subscription, u256) {
            let subscription = self.subscriptions.read((sponsor, user));
            let amount = vested_by(subscription, now);
            if amount == 0 {
                return (subscription, 0);
            }
            let unvested = subscription.unvested - amount;
            let subscription = Subscription {
                tier_id: subscription.tier_id,
                daily_limit: subscription.daily_limit,
                expires_at: subscription.expires_at,
                unvested,
                vested_at: now
            };
            self.subscriptions.write((sponsor, user), subscription);
            self.total_unvested.write(self.total_unvested.read() - amount);
            self.deposits.write(sponsor, self.deposits.read(sponsor) + amount);
            self.total_deposits.write(self.total_deposits.read() + amount);
            self.emit(Vested { sponsor, user, amount, unvested });
            (subscription, amount)
        }

        /// The policy, checked to exist and to belong to the caller.
        fn own_policy(self: @ContractState, policy_id: u64) -> Policy {
            let policy = self.policies.read(policy_id);
            assert(!policy.sponsor.is_zero(), errors::UNKNOWN_POLICY);
            assert(policy.sponsor == get_caller_address(), errors::NOT_POLICY_SPONSOR);
            policy
        }

        /// Checks the bounds and stores a policy with its calls.
        fn store_policy(
            ref self: ContractState,
            policy_id: u64,
            sponsor: ContractAddress,
            active: bool,
            calls: Array<AllowedCall>,
            params: PolicyParams
        ) {
            let count = calls.len();
            assert(count > 0, errors::NO_ALLOWED_CALLS);
            assert(count <= MAX_POLICY_CALLS, errors::TOO_MANY_CALLS);
            assert(params.daily_limit != 0 && params.max_charge != 0, errors::ZERO_LIMIT);
            assert(params.max_charge <= params.daily_limit, errors::MAX_CHARGE_OVER_LIMIT);
            assert(
                params.rate_limit_count > 0
                    && params.rate_limit_window >= MIN_RATE_WINDOW
                    && params.rate_limit_window <= MAX_RATE_WINDOW,
                errors::BAD_RATE_LIMIT
            );
            assert(params.expiry > get_block_timestamp(), errors::EXPIRY_IN_PAST);
            self.policies.write(policy_id, Policy { sponsor, active, params });
            self.policy_call_count.write(policy_id, count);
            let mut index = 0;
            let mut remaining = calls.span();
            loop {
                match remaining.pop_front() {
                    Option::Some(call) => {
                        self.policy_calls.write((policy_id, index), *call);
                        index += 1;
                    },
                    Option::None => {
                        break;
                    }
                };
            };
            self.emit(PolicySet { policy_id, sponsor, params, allowed_calls: count });
        }
    }

    /// What of `subscription`'s unvested payment has vested by `now`: all of it once it has
    /// expired, else unvested × (now − vested_at) ÷ (expires_at − vested_at), rounded down.
    fn vested_by(subscription: Subscription, now: u64) -> u256 {
        if subscription.unvested == 0 || now <= subscription.vested_at {
            return 0;
        }
        if now >= subscription.expires_at {
            return subscription.unvested;
        }
        let elapsed: u256 = (now - subscription.vested_at).into();
        let span: u256 = (subscription.expires_at - subscription.vested_at).into();
        subscription.unvested * elapsed / span
    }

    /// Low bits of a sponsor's address that tag the nonces of executions built for it.
    const TAG_MODULUS: u128 = 0x1000000000000000000000000000000; // 2^120

    /// The tag a sponsored execution's nonce must carry: the sponsor address's low 120 bits.
    /// A relayer builds nonces as `tag * 2^128 + random` (SNIP-9 nonces are any unused felt,
    /// and SNIP-29 clients leave them to the server), so the execution a user signs runs only
    /// through the sponsor it was built for: not through another sponsor's relayer (with no
    /// deposit, charging nothing) at a time of its choosing after the first attempt reverted,
    /// nor ahead of the sponsor's own transaction. Forging another sponsor's tag means finding
    /// an address that agrees with it on 120 bits.
    fn sponsor_tag(sponsor: ContractAddress) -> u128 {
        let address: felt252 = sponsor.into();
        let address: u256 = address.into();
        address.low % TAG_MODULUS
    }

    /// The tag a nonce carries: its bits above the low 128.
    fn nonce_tag(nonce: felt252) -> u128 {
        let nonce: u256 = nonce.into();
        nonce.high
    }

    /// `limit - used`, or 0 when `used` has reached it.
    fn left_of(limit: u256, used: u256) -> u256 {
        if used >= limit {
            0
        } else {
            limit - used
        }
    }

    fn min(a: u256, b: u256) -> u256 {
        if a < b {
            a
        } else {
            b
        }
    }

    /// Governance, delegated to the shared library (see `common::governance`).
    #[external(v0)]
    impl GovernanceImpl of IGovernance<ContractState> {
        fn admin(self: @ContractState) -> ContractAddress {
            Governance::unsafe_new_contract_state().admin()
        }

        fn pending_admin(self: @ContractState) -> ContractAddress {
            Governance::unsafe_new_contract_state().pending_admin()
        }

        fn has_role(self: @ContractState, role: felt252, account: ContractAddress) -> bool {
            Governance::unsafe_new_contract_state().has_role(role, account)
        }

        fn grant_role(ref self: ContractState, role: felt252, account: ContractAddress) {
            let mut governance = Governance::unsafe_new_contract_state();
            governance.grant_role(role, account);
        }

        fn revoke_role(ref self: ContractState, role: felt252, account: ContractAddress) {
            let mut governance = Governance::unsafe_new_contract_state();
            governance.revoke_role(role, account);
        }

        fn schedule_role_grant(ref self: ContractState, role: felt252, account: ContractAddress) {
            let mut governance = Governance::unsafe_new_contract_state();
            governance.schedule_role_grant(role, account);
        }

        fn cancel_role_grant(ref self: ContractState, role: felt252, account: ContractAddress) {
            let mut governance = Governance::unsafe_new_contract_state();
            governance.cancel_role_grant(role, account);
        }

        fn role_grant_ready_at(
            self: @ContractState, role: felt252, account: ContractAddress
        ) -> u64 {
            Governance::unsafe_new_contract_state().role_grant_ready_at(role, account)
        }

        fn is_sealed(self: @ContractState) -> bool {
            Governance::unsafe_new_contract_state().is_sealed()
        }

        fn seal(ref self: ContractState) {
            let mut governance = Governance::unsafe_new_contract_state();
            governance.seal();
        }

        fn transfer_admin(ref self: ContractState, new_admin: ContractAddress) {
            let mut governance = Governance::unsafe_new_contract_state();
            governance.transfer_admin(new_admin);
        }

        fn accept_admin(ref self: ContractState) {
            let mut governance = Governance::unsafe_new_contract_state();
            governance.accept_admin();
        }

        fn is_paused(self: @ContractState) -> bool {
            Governance::unsafe_new_contract_state().is_paused()
        }

        fn pause(ref self: ContractState) {
            let mut governance = Governance::unsafe_new_contract_state();
            governance.pause();
        }

        fn unpause(ref self: ContractState) {
            let mut governance = Governance::unsafe_new_contract_state();
            governance.unpause();
        }

        fn upgrade_status(self: @ContractState) -> (u64, ClassHash, u64) {
            Governance::unsafe_new_contract_state().upgrade_status()
        }

        fn schedule_upgrade(ref self: ContractState, class_hash: ClassHash) {
            let mut governance = Governance::unsafe_new_contract_state();
            governance.schedule_upgrade(class_hash);
        }

        fn cancel_upgrade(ref self: ContractState) {
            let mut governance = Governance::unsafe_new_contract_state();
            governance.cancel_upgrade();
        }

        fn execute_upgrade(ref self: ContractState) {
            let mut governance = Governance::unsafe_new_contract_state();
            governance.execute_upgrade();
        }
    }
}
