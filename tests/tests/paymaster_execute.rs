//! Specification of sponsored execution and tiers: a relayer submits a user's signed SNIP-9
//! outside execution through the Paymaster; the user's calls run without the user paying
//! gas, and the sponsor's deposit pays the relayer, within the policy's limits (raised by a
//! tier the user bought). Every way to drain a sponsor is refused with its error and leaves
//! the sponsor's deposit unchanged.

use ciro_chain::bindings::paymaster::{
    self, AllowedCall, Paymaster, PaymasterReader, PolicyParams, SponsoredExecution, Subscribed,
    Subscription, Tier, TierSet, Vested,
};
use ciro_chain::bindings::test_token::{TestToken, TestTokenReader};
use ciro_chain::cainome::cairo_serde::ContractAddress;
use ciro_chain::snip9::{calls_hash, sponsored_nonce, OutsideExecution};
use ciro_chain::starknet::accounts::Account;
use ciro_chain::starknet::core::types::{Call, Felt};
use ciro_chain::starknet::core::utils::get_selector_from_name;
use ciro_chain::tx::{call, send, TxOutcome};
use ciro_chain::ChainError;
use ciro_tests::assert::{assert_events, assert_reverts};
use ciro_tests::fixtures::{
    deploy_paymaster, deploy_test_token, fund_and_approve, pause_paymaster, u256,
};
use ciro_tests::net::STRK;
use ciro_tests::{Actor, TestNet};

const DEPOSIT: u128 = 10_000;
const DAILY_LIMIT: u128 = 300;
const MAX_CHARGE: u128 = 100;
const USER_TOKENS: u128 = 1_000;
/// The relayer's and the sponsor's daily budgets in the fixture: the whole deposit, so that
/// only the budget tests meet them.
const ROOMY_BUDGET: u128 = DEPOSIT;

/// A Paymaster whose sponsor deposited `DEPOSIT`, set a daily budget of `ROOMY_BUDGET`,
/// named the relayer with a daily budget of `ROOMY_BUDGET`, and created policy 1:
/// `transfer` on the token, `DAILY_LIMIT` a day, `MAX_CHARGE` a transaction, 5 an hour.
/// The user (the submitter account) holds `USER_TOKENS` and approved the Paymaster for all of
/// it (what a tier subscription pulls).
struct Fixture {
    net: TestNet,
    token: Felt,
    paymaster: Felt,
}

async fn fixture() -> Fixture {
    let net = TestNet::new().await.unwrap();
    let token = deploy_test_token(&net, 0).await.unwrap();
    let paymaster = deploy_paymaster(&net, token).await.unwrap();
    fund_and_approve(&net, token, Actor::Sponsor, paymaster, DEPOSIT)
        .await
        .unwrap();
    fund_and_approve(&net, token, Actor::Submitter, paymaster, USER_TOKENS)
        .await
        .unwrap();
    let sponsor = net.account(Actor::Sponsor);
    let pm = Paymaster::new(paymaster, &sponsor);
    send(&net.provider, pm.deposit(&u256(DEPOSIT)))
        .await
        .unwrap();
    send(
        &net.provider,
        pm.add_relayer(&net.contract_address(Actor::Relayer), &u256(ROOMY_BUDGET)),
    )
    .await
    .unwrap();
    send(&net.provider, pm.set_sponsor_budget(&u256(ROOMY_BUDGET)))
        .await
        .unwrap();
    let f = Fixture {
        net,
        token,
        paymaster,
    };
    let params = f.params(5).await;
    send(
        &f.net.provider,
        pm.create_policy(&vec![f.allowed("transfer")], &params),
    )
    .await
    .unwrap();
    f
}

impl Fixture {
    async fn params(&self, rate_limit_count: u32) -> PolicyParams {
        PolicyParams {
            daily_limit: u256(DAILY_LIMIT),
            max_charge: u256(MAX_CHARGE),
            rate_limit_count,
            rate_limit_window: 3_600,
            expiry: self.net.now().await.unwrap() + 30 * 86_400,
            allowlist_only: false,
        }
    }

    fn allowed(&self, function: &str) -> AllowedCall {
        AllowedCall {
            target: ContractAddress(self.token),
            selector: get_selector_from_name(function).unwrap(),
        }
    }

    /// The user's call: `transfer(to, amount)` on the token.
    fn transfer(&self, to: Actor, amount: u128) -> Call {
        let user = self.net.account(Actor::Submitter);
        TestToken::new(self.token, &user)
            .transfer_getcall(&self.net.contract_address(to), &u256(amount))
    }

    /// A user-signed outside execution for the Paymaster to submit.
    async fn signed(
        &self,
        nonce: u64,
        caller: Felt,
        calls: Vec<Call>,
    ) -> (OutsideExecution, Vec<Felt>) {
        let now = self.net.now().await.unwrap();
        let execution = OutsideExecution {
            caller,
            nonce: sponsored_nonce(self.net.address(Actor::Sponsor), nonce.into()),
            execute_after: now - 60,
            execute_before: now + 3_600,
            calls,
        };
        let signature = execution
            .sign(
                &self.net.signing_key(Actor::Submitter),
                self.net.address(Actor::Submitter),
                self.net.chain_id(),
            )
            .unwrap();
        (execution, signature)
    }

    async fn execute_as(
        &self,
        relayer: Actor,
        policy_id: u64,
        execution: &OutsideExecution,
        signature: &[Felt],
        charge: u128,
    ) -> Result<TxOutcome, ChainError> {
        let account = self.net.account(relayer);
        let pm = Paymaster::new(self.paymaster, &account);
        send(
            &self.net.provider,
            pm.execute_sponsored(
                &self.net.contract_address(Actor::Sponsor),
                &policy_id,
                &self.net.contract_address(Actor::Submitter),
                &execution.to_paymaster_binding(),
                &signature.to_vec(),
                &u256(charge),
            ),
        )
        .await
    }

    /// A fresh transfer of 1 to the delegator, signed with `nonce`, submitted by the relayer.
    async fn sponsored_transfer(&self, nonce: u64, charge: u128) -> Result<TxOutcome, ChainError> {
        let (execution, signature) = self
            .signed(
                nonce,
                self.paymaster,
                vec![self.transfer(Actor::Delegator, 1)],
            )
            .await;
        self.execute_as(Actor::Relayer, 1, &execution, &signature, charge)
            .await
    }

    async fn token_of(&self, holder: Felt) -> u128 {
        call(
            TestTokenReader::new(self.token, &self.net.provider)
                .balance_of(&ContractAddress(holder)),
        )
        .await
        .unwrap()
        .low
    }

    async fn strk_of(&self, actor: Actor) -> u128 {
        call(
            TestTokenReader::new(STRK, &self.net.provider)
                .balance_of(&self.net.contract_address(actor)),
        )
        .await
        .unwrap()
        .low
    }

    async fn deposit(&self) -> u128 {
        let reader = PaymasterReader::new(self.paymaster, &self.net.provider);
        call(reader.sponsor_balance(&self.net.contract_address(Actor::Sponsor)))
            .await
            .unwrap()
            .low
    }

    /// (Σ deposits, Σ unvested subscription payments), from the Paymaster's `totals`.
    async fn totals(&self) -> (u128, u128) {
        let reader = PaymasterReader::new(self.paymaster, &self.net.provider);
        let (deposits, unvested) = call(reader.totals()).await.unwrap();
        (deposits.low, unvested.low)
    }

    /// The Paymaster's conservation invariant: its token balance is exactly the sponsors'
    /// deposits plus the unvested subscription payments (and the sponsor's deposit is the
    /// only one in these tests).
    async fn assert_conserved(&self, label: &str) {
        let (deposits, unvested) = self.totals().await;
        assert_eq!(
            self.token_of(self.paymaster).await,
            deposits + unvested,
            "{label}: Paymaster balance == Σ deposits + Σ unvested"
        );
        assert_eq!(deposits, self.deposit().await, "{label}: Σ deposits");
    }

    /// Token balances of every party: sponsor, user, relayer, recipient, Paymaster, attacker
    /// (the second relayer of the budget attacks).
    async fn token_balances(&self) -> Vec<u128> {
        let mut balances = Vec::new();
        for holder in [
            self.net.address(Actor::Sponsor),
            self.net.address(Actor::Submitter),
            self.net.address(Actor::Relayer),
            self.net.address(Actor::Delegator),
            self.paymaster,
            self.net.address(Actor::Attacker),
        ] {
            balances.push(self.token_of(holder).await);
        }
        balances
    }
}

#[tokio::test]
async fn execute_sponsored_runs_the_users_calls_and_pays_the_relayer_from_the_deposit() {
    // Given a user's signed transfer of 5 tokens, for the Paymaster to submit
    let f = fixture().await;
    let calls = vec![f.transfer(Actor::Delegator, 5)];
    let (execution, signature) = f.signed(1, f.paymaster, calls.clone()).await;
    let user_strk = f.strk_of(Actor::Submitter).await;
    let before = f.token_balances().await;

    // When the relayer submits it for a charge of 80
    let outcome = f
        .execute_as(Actor::Relayer, 1, &execution, &signature, 80)
        .await
        .unwrap();

    // Then the user's transfer ran, the user paid no gas, and the deposit paid the relayer
    let after = f.token_balances().await;
    assert_eq!(
        after[1],
        before[1] - 5,
        "the user's own call moved its tokens"
    );
    assert_eq!(after[3], before[3] + 5);
    assert_eq!(after[2], before[2] + 80, "the relayer got the charge");
    assert_eq!(after[4], before[4] - 80, "out of the Paymaster");
    assert_eq!(
        f.strk_of(Actor::Submitter).await,
        user_strk,
        "the user paid no fee"
    );
    assert_eq!(f.deposit().await, DEPOSIT - 80);
    assert_eq!(
        before.iter().sum::<u128>(),
        after.iter().sum::<u128>(),
        "funds are conserved"
    );
    f.assert_conserved("after a sponsored execution").await;
    let reader = PaymasterReader::new(f.paymaster, &f.net.provider);
    let (sponsor, user) = (
        f.net.contract_address(Actor::Sponsor),
        f.net.contract_address(Actor::Submitter),
    );
    assert_eq!(
        call(reader.spent_today(&sponsor, &user)).await.unwrap(),
        u256(80)
    );
    assert_eq!(
        call(reader.remaining_allowance(&1, &user)).await.unwrap(),
        u256(DAILY_LIMIT - 80)
    );
    let relayer = f.net.contract_address(Actor::Relayer);
    assert_eq!(
        call(reader.relayer_budget(&sponsor, &relayer))
            .await
            .unwrap(),
        (u256(ROOMY_BUDGET), u256(80))
    );
    assert_eq!(
        call(reader.sponsor_budget(&sponsor)).await.unwrap(),
        (u256(ROOMY_BUDGET), u256(80))
    );
    assert_eq!(
        call(reader.remaining_budget(&sponsor, &relayer))
            .await
            .unwrap(),
        u256(DEPOSIT - 80),
        "the least of the budgets left (9,920 each) and the deposit (9,920)"
    );
    assert_events(
        &outcome,
        f.paymaster,
        &[paymaster::Event::SponsoredExecution(SponsoredExecution {
            sponsor,
            user,
            relayer: f.net.contract_address(Actor::Relayer),
            policy_id: 1,
            charge: u256(80),
            calls_hash: calls_hash(&calls),
        })],
    );
}

/// Flow 6. The relayer sponsors the user until the daily allowance runs out; then every way
/// to drain the sponsor (a disallowed selector, an over-cap charge, a replayed nonce, an
/// expired window, the wrong outside caller, an unauthorized relayer, a blocked user, the
/// rate limit) is refused, and the sponsor's deposit does not move. Token balances of all
/// parties sum to the same total throughout.
#[tokio::test]
async fn flow_sponsored_until_the_allowance_runs_out_then_every_drain_attempt_fails() {
    let f = fixture().await;
    let total: u128 = f.token_balances().await.iter().sum();

    // Three sponsored transfers at the maximum charge use the daily allowance (300).
    for nonce in 1..=3 {
        f.sponsored_transfer(nonce, MAX_CHARGE).await.unwrap();
    }
    assert_eq!(f.deposit().await, DEPOSIT - 3 * MAX_CHARGE);
    let reader = PaymasterReader::new(f.paymaster, &f.net.provider);
    assert_eq!(
        call(reader.remaining_allowance(&1, &f.net.contract_address(Actor::Submitter)))
            .await
            .unwrap(),
        u256(0)
    );
    let deposit = f.deposit().await;
    assert_reverts(f.sponsored_transfer(4, 1).await, "PM: daily limit reached");

    // Drain attempts (charges of 0 pass the daily limit, so each reaches its own check).
    let (approve, sig) = f
        .signed(
            5,
            f.paymaster,
            vec![{
                let user = f.net.account(Actor::Submitter);
                TestToken::new(f.token, &user)
                    .approve_getcall(&f.net.contract_address(Actor::Attacker), &u256(USER_TOKENS))
            }],
        )
        .await;
    assert_reverts(
        f.execute_as(Actor::Relayer, 1, &approve, &sig, 0).await,
        "PM: call not allowed",
    );

    let (fresh, sig) = f
        .signed(6, f.paymaster, vec![f.transfer(Actor::Delegator, 1)])
        .await;
    assert_reverts(
        f.execute_as(Actor::Relayer, 1, &fresh, &sig, MAX_CHARGE + 1)
            .await,
        "PM: charge over max",
    );

    let (replayed, sig) = f
        .signed(1, f.paymaster, vec![f.transfer(Actor::Delegator, 1)])
        .await;
    assert_reverts(
        f.execute_as(Actor::Relayer, 1, &replayed, &sig, 0).await,
        "SRC9: duplicated nonce",
    );

    let (expiring, sig) = f
        .signed(7, f.paymaster, vec![f.transfer(Actor::Delegator, 1)])
        .await;
    f.net.devnet.increase_time(7_200).await.unwrap();
    assert_reverts(
        f.execute_as(Actor::Relayer, 1, &expiring, &sig, 0).await,
        "SRC9: now >= execute_before",
    );

    let (wrong_caller, sig) = f
        .signed(
            8,
            f.net.address(Actor::Relayer),
            vec![f.transfer(Actor::Delegator, 1)],
        )
        .await;
    assert_reverts(
        f.execute_as(Actor::Relayer, 1, &wrong_caller, &sig, 0)
            .await,
        "PM: outside caller not PM",
    );

    let (unauthorized, sig) = f
        .signed(9, f.paymaster, vec![f.transfer(Actor::Attacker, 1)])
        .await;
    assert_reverts(
        f.execute_as(Actor::Attacker, 1, &unauthorized, &sig, 0)
            .await,
        "PM: caller is not a relayer",
    );

    let sponsor = f.net.account(Actor::Sponsor);
    let pm = Paymaster::new(f.paymaster, &sponsor);
    send(
        &f.net.provider,
        pm.set_blocklisted(&f.net.contract_address(Actor::Submitter), &true),
    )
    .await
    .unwrap();
    let (blocked, sig) = f
        .signed(10, f.paymaster, vec![f.transfer(Actor::Delegator, 1)])
        .await;
    assert_reverts(
        f.execute_as(Actor::Relayer, 1, &blocked, &sig, 0).await,
        "PM: user blocked",
    );
    send(
        &f.net.provider,
        pm.set_blocklisted(&f.net.contract_address(Actor::Submitter), &false),
    )
    .await
    .unwrap();

    let one_per_hour = f.params(1).await;
    send(
        &f.net.provider,
        pm.create_policy(&vec![f.allowed("transfer")], &one_per_hour),
    )
    .await
    .unwrap();
    let (first, sig) = f
        .signed(11, f.paymaster, vec![f.transfer(Actor::Delegator, 1)])
        .await;
    f.execute_as(Actor::Relayer, 2, &first, &sig, 0)
        .await
        .unwrap();
    let (second, sig) = f
        .signed(12, f.paymaster, vec![f.transfer(Actor::Delegator, 1)])
        .await;
    assert_reverts(
        f.execute_as(Actor::Relayer, 2, &second, &sig, 0).await,
        "PM: rate limit reached",
    );

    // The sponsor's deposit did not move, and no tokens appeared or vanished.
    assert_eq!(f.deposit().await, deposit);
    assert_eq!(f.token_balances().await.iter().sum::<u128>(), total);
    f.assert_conserved("after the drain attempts").await;
}

#[tokio::test]
async fn execute_sponsored_refuses_unusable_policies_and_users() {
    let f = fixture().await;
    let sponsor = f.net.account(Actor::Sponsor);
    let pm = Paymaster::new(f.paymaster, &sponsor);
    let transfer = || vec![f.transfer(Actor::Delegator, 1)];

    let (e, sig) = f.signed(1, f.paymaster, transfer()).await;
    assert_reverts(
        f.execute_as(Actor::Relayer, 9, &e, &sig, 0).await,
        "PM: unknown policy",
    );

    // A policy of another sponsor cannot be spent against this sponsor.
    let other = f.net.account(Actor::Delegator);
    let params = f.params(5).await;
    send(
        &f.net.provider,
        Paymaster::new(f.paymaster, &other).create_policy(&vec![f.allowed("transfer")], &params),
    )
    .await
    .unwrap();
    assert_reverts(
        f.execute_as(Actor::Relayer, 2, &e, &sig, 0).await,
        "PM: not the policy sponsor",
    );

    send(&f.net.provider, pm.set_policy_active(&1, &false))
        .await
        .unwrap();
    assert_reverts(
        f.execute_as(Actor::Relayer, 1, &e, &sig, 0).await,
        "PM: policy inactive",
    );
    send(&f.net.provider, pm.set_policy_active(&1, &true))
        .await
        .unwrap();

    let allowlist_only = PolicyParams {
        allowlist_only: true,
        ..params.clone()
    };
    send(
        &f.net.provider,
        pm.create_policy(&vec![f.allowed("transfer")], &allowlist_only),
    )
    .await
    .unwrap();
    assert_reverts(
        f.execute_as(Actor::Relayer, 3, &e, &sig, 0).await,
        "PM: user not allowlisted",
    );
    send(
        &f.net.provider,
        pm.set_allowlisted(&f.net.contract_address(Actor::Submitter), &true),
    )
    .await
    .unwrap();
    f.execute_as(Actor::Relayer, 3, &e, &sig, 0).await.unwrap();

    let (empty, sig) = f.signed(2, f.paymaster, vec![]).await;
    assert_reverts(
        f.execute_as(Actor::Relayer, 1, &empty, &sig, 0).await,
        "PM: no calls",
    );

    f.net.devnet.increase_time(31 * 86_400).await.unwrap();
    let (late, sig) = f.signed(3, f.paymaster, transfer()).await;
    assert_reverts(
        f.execute_as(Actor::Relayer, 1, &late, &sig, 0).await,
        "PM: policy expired",
    );
}

#[tokio::test]
async fn execute_sponsored_needs_a_deposit_that_covers_the_charge_and_stops_when_paused() {
    let f = fixture().await;
    let sponsor = f.net.account(Actor::Sponsor);
    let pm = Paymaster::new(f.paymaster, &sponsor);
    send(&f.net.provider, pm.withdraw(&u256(DEPOSIT - 50)))
        .await
        .unwrap();
    assert_reverts(
        f.sponsored_transfer(1, 51).await,
        "PM: sponsor deposit too low",
    );
    f.sponsored_transfer(1, 50).await.unwrap();
    assert_eq!(f.deposit().await, 0);
    f.assert_conserved("deposit spent to zero").await;

    pause_paymaster(&f.net, f.paymaster).await.unwrap();
    assert_reverts(f.sponsored_transfer(2, 0).await, "GOV: paused");
}

// ---------------------------------------------------------------------------------------
// tiers
// ---------------------------------------------------------------------------------------

const TIER_PRICE: u128 = 400;
const TIER_DAILY_LIMIT: u128 = 500;
const TIER_DURATION: u64 = 7 * 86_400;

impl Fixture {
    /// The sponsor defines tier 1 (the fixture already has the user approve the Paymaster).
    async fn with_tier(&self) {
        let sponsor = self.net.account(Actor::Sponsor);
        send(
            &self.net.provider,
            Paymaster::new(self.paymaster, &sponsor).define_tier(
                &u256(TIER_PRICE),
                &TIER_DURATION,
                &u256(TIER_DAILY_LIMIT),
            ),
        )
        .await
        .unwrap();
    }

    async fn subscribe(&self, tier_id: u32) -> Result<TxOutcome, ChainError> {
        let user = self.net.account(Actor::Submitter);
        send(
            &self.net.provider,
            Paymaster::new(self.paymaster, &user)
                .subscribe(&self.net.contract_address(Actor::Sponsor), &tier_id),
        )
        .await
    }

    async fn subscription(&self) -> Subscription {
        let reader = PaymasterReader::new(self.paymaster, &self.net.provider);
        call(reader.subscription(
            &self.net.contract_address(Actor::Sponsor),
            &self.net.contract_address(Actor::Submitter),
        ))
        .await
        .unwrap()
    }
}

#[tokio::test]
async fn define_tier_numbers_tiers_per_sponsor_and_emits() {
    let f = fixture().await;
    let sponsor = f.net.account(Actor::Sponsor);
    let pm = Paymaster::new(f.paymaster, &sponsor);
    let defined = send(
        &f.net.provider,
        pm.define_tier(&u256(10), &86_400, &u256(20)),
    )
    .await
    .unwrap();
    send(
        &f.net.provider,
        pm.define_tier(&u256(30), &(365 * 86_400), &u256(40)),
    )
    .await
    .unwrap();
    let other = f.net.account(Actor::Delegator);
    send(
        &f.net.provider,
        Paymaster::new(f.paymaster, &other).define_tier(&u256(1), &86_400, &u256(1)),
    )
    .await
    .unwrap();

    let reader = PaymasterReader::new(f.paymaster, &f.net.provider);
    let first = Tier {
        price: u256(10),
        duration: 86_400,
        daily_limit: u256(20),
        active: true,
    };
    assert_eq!(
        call(reader.get_tier(&f.net.contract_address(Actor::Sponsor), &1))
            .await
            .unwrap(),
        first
    );
    assert_eq!(
        call(reader.get_tier(&f.net.contract_address(Actor::Sponsor), &2))
            .await
            .unwrap()
            .daily_limit,
        u256(40)
    );
    assert_eq!(
        call(reader.get_tier(&f.net.contract_address(Actor::Delegator), &1))
            .await
            .unwrap()
            .price,
        u256(1)
    );
    assert_events(
        &defined,
        f.paymaster,
        &[paymaster::Event::TierSet(TierSet {
            sponsor: f.net.contract_address(Actor::Sponsor),
            tier_id: 1,
            tier: first,
        })],
    );
    assert_reverts(
        call(reader.get_tier(&f.net.contract_address(Actor::Sponsor), &3)).await,
        "PM: unknown tier",
    );
    assert_reverts(
        call(reader.get_tier(&f.net.contract_address(Actor::Sponsor), &0)).await,
        "PM: unknown tier",
    );
}

#[tokio::test]
async fn define_tier_rejects_a_zero_limit_and_a_duration_out_of_bounds() {
    let f = fixture().await;
    let sponsor = f.net.account(Actor::Sponsor);
    let pm = Paymaster::new(f.paymaster, &sponsor);
    assert_reverts(
        send(&f.net.provider, pm.define_tier(&u256(1), &86_400, &u256(0))).await,
        "PM: limit is zero",
    );
    assert_reverts(
        send(&f.net.provider, pm.define_tier(&u256(1), &86_399, &u256(1))).await,
        "PM: tier duration out of bounds",
    );
    assert_reverts(
        send(
            &f.net.provider,
            pm.define_tier(&u256(1), &(365 * 86_400 + 1), &u256(1)),
        )
        .await,
        "PM: tier duration out of bounds",
    );
}

#[tokio::test]
async fn subscribe_pays_the_price_into_the_subscriptions_unvested_payment() {
    // Given a tier of 400 for 7 days
    let f = fixture().await;
    f.with_tier().await;
    let before = f.token_balances().await;
    let now = f.net.now().await.unwrap();

    // When the user subscribes
    let outcome = f.subscribe(1).await.unwrap();

    // Then the price moved from the user to the Paymaster, held unvested: not yet the
    // sponsor's
    let after = f.token_balances().await;
    assert_eq!(after[1], before[1] - TIER_PRICE);
    assert_eq!(after[4], before[4] + TIER_PRICE);
    assert_eq!(f.deposit().await, DEPOSIT);
    assert_eq!(f.totals().await, (DEPOSIT, TIER_PRICE));
    assert_eq!(before.iter().sum::<u128>(), after.iter().sum::<u128>());
    f.assert_conserved("after subscribing").await;
    let subscription = f.subscription().await;
    assert_eq!(subscription.tier_id, 1);
    assert_eq!(subscription.daily_limit, u256(TIER_DAILY_LIMIT));
    assert_eq!(subscription.unvested, u256(TIER_PRICE));
    assert_eq!(
        subscription.expires_at,
        subscription.vested_at + TIER_DURATION
    );
    assert!(subscription.vested_at >= now && subscription.vested_at <= now + 60);
    assert_events(
        &outcome,
        f.paymaster,
        &[paymaster::Event::Subscribed(Subscribed {
            sponsor: f.net.contract_address(Actor::Sponsor),
            user: f.net.contract_address(Actor::Submitter),
            tier_id: 1,
            price: u256(TIER_PRICE),
            expires_at: subscription.expires_at,
            unvested: u256(TIER_PRICE),
        })],
    );

    // And a renewal while it runs extends it by the tier's duration; both payments are
    // unvested (seconds later, less than 1 of 400 has vested: 400 × 1,512 s ÷ 7 days = 1)
    f.subscribe(1).await.unwrap();
    let renewed = f.subscription().await;
    assert_eq!(renewed.expires_at, subscription.expires_at + TIER_DURATION);
    assert_eq!(renewed.unvested, u256(2 * TIER_PRICE));
    assert_eq!(f.totals().await, (DEPOSIT, 2 * TIER_PRICE));
    f.assert_conserved("after renewing").await;
}

#[tokio::test]
async fn subscribe_refuses_unknown_and_inactive_tiers_a_shortchanging_token_and_a_pause() {
    let f = fixture().await;
    f.with_tier().await;
    assert_reverts(f.subscribe(2).await, "PM: unknown tier");

    let sponsor = f.net.account(Actor::Sponsor);
    let pm = Paymaster::new(f.paymaster, &sponsor);
    let deactivated = send(&f.net.provider, pm.set_tier_active(&1, &false))
        .await
        .unwrap();
    assert_events(
        &deactivated,
        f.paymaster,
        &[paymaster::Event::TierSet(TierSet {
            sponsor: f.net.contract_address(Actor::Sponsor),
            tier_id: 1,
            tier: Tier {
                price: u256(TIER_PRICE),
                duration: TIER_DURATION,
                daily_limit: u256(TIER_DAILY_LIMIT),
                active: false,
            },
        })],
    );
    assert_reverts(f.subscribe(1).await, "PM: tier inactive");
    assert_reverts(
        send(&f.net.provider, pm.set_tier_active(&7, &true)).await,
        "PM: unknown tier",
    );
    send(&f.net.provider, pm.set_tier_active(&1, &true))
        .await
        .unwrap();

    let admin = f.net.account(Actor::Admin);
    send(
        &f.net.provider,
        TestToken::new(f.token, &admin).set_transfer_from_fee(&u256(1)),
    )
    .await
    .unwrap();
    assert_reverts(f.subscribe(1).await, "PM: transfer_from shortfall");
    send(
        &f.net.provider,
        TestToken::new(f.token, &admin).set_transfer_from_fee(&u256(0)),
    )
    .await
    .unwrap();

    pause_paymaster(&f.net, f.paymaster).await.unwrap();
    assert_reverts(f.subscribe(1).await, "GOV: paused");
    assert_reverts(
        send(&f.net.provider, pm.define_tier(&u256(1), &86_400, &u256(1))).await,
        "GOV: paused",
    );
    assert_eq!(f.deposit().await, DEPOSIT, "nothing was credited");
    assert_eq!(f.totals().await, (DEPOSIT, 0), "nothing is vesting");
    f.assert_conserved("after the refused subscriptions").await;
}

#[tokio::test]
async fn a_subscription_raises_the_daily_limit_until_it_expires() {
    // Given a user whose tier (500 a day) beats the policy (300 a day), under a policy that
    // allows 10 executions an hour
    let f = fixture().await;
    f.with_tier().await;
    f.subscribe(1).await.unwrap();
    let sponsor = f.net.account(Actor::Sponsor);
    let roomy = f.params(10).await;
    send(
        &f.net.provider,
        Paymaster::new(f.paymaster, &sponsor).create_policy(&vec![f.allowed("transfer")], &roomy),
    )
    .await
    .unwrap();
    let user = f.net.contract_address(Actor::Submitter);
    let reader = PaymasterReader::new(f.paymaster, &f.net.provider);
    assert_eq!(
        call(reader.remaining_allowance(&2, &user)).await.unwrap(),
        u256(TIER_DAILY_LIMIT)
    );

    // When the relayer charges 5 × 100, past the policy's 300
    for nonce in 1..=5 {
        let (execution, signature) = f
            .signed(nonce, f.paymaster, vec![f.transfer(Actor::Delegator, 1)])
            .await;
        f.execute_as(Actor::Relayer, 2, &execution, &signature, MAX_CHARGE)
            .await
            .unwrap();
    }

    // Then the tier's 500 applies, and is the limit for the day
    assert_eq!(
        call(reader.remaining_allowance(&2, &user)).await.unwrap(),
        u256(0)
    );
    let (execution, signature) = f
        .signed(6, f.paymaster, vec![f.transfer(Actor::Delegator, 1)])
        .await;
    assert_reverts(
        f.execute_as(Actor::Relayer, 2, &execution, &signature, 1)
            .await,
        "PM: daily limit reached",
    );

    // And once the subscription has expired, the policy's limit is back
    f.net
        .devnet
        .increase_time(TIER_DURATION + 86_400)
        .await
        .unwrap();
    assert_eq!(
        call(reader.remaining_allowance(&2, &user)).await.unwrap(),
        u256(DAILY_LIMIT)
    );
    f.assert_conserved("after the tier's executions").await;
}

#[tokio::test]
async fn execute_sponsored_cannot_be_reentered_from_the_users_calls() {
    // Given a policy that (foolishly) allows calling the Paymaster itself, and a user who is
    // also one of the sponsor's relayers
    let f = fixture().await;
    let sponsor = f.net.account(Actor::Sponsor);
    let pm = Paymaster::new(f.paymaster, &sponsor);
    send(
        &f.net.provider,
        pm.add_relayer(
            &f.net.contract_address(Actor::Submitter),
            &u256(ROOMY_BUDGET),
        ),
    )
    .await
    .unwrap();
    let reentry_allowed = AllowedCall {
        target: ContractAddress(f.paymaster),
        selector: get_selector_from_name("execute_sponsored").unwrap(),
    };
    let params = f.params(5).await;
    send(
        &f.net.provider,
        pm.create_policy(&vec![reentry_allowed], &params),
    )
    .await
    .unwrap();

    // When the user's signed calls re-enter execute_sponsored to be paid twice
    let (inner, inner_signature) = f
        .signed(2, f.paymaster, vec![f.transfer(Actor::Delegator, 1)])
        .await;
    let user = f.net.account(Actor::Submitter);
    let reenter = Paymaster::new(f.paymaster, &user).execute_sponsored_getcall(
        &f.net.contract_address(Actor::Sponsor),
        &1,
        &f.net.contract_address(Actor::Submitter),
        &inner.to_paymaster_binding(),
        &inner_signature,
        &u256(MAX_CHARGE),
    );
    let (outer, signature) = f.signed(1, f.paymaster, vec![reenter]).await;
    let result = f
        .execute_as(Actor::Relayer, 2, &outer, &signature, MAX_CHARGE)
        .await;

    // Then the inner call is refused, the whole execution reverts, nothing is paid
    assert_reverts(result, "PM: reentrant call");
    assert_eq!(f.deposit().await, DEPOSIT);
    f.assert_conserved("after the refused re-entry").await;
}

// ---------------------------------------------------------------------------------------
// vesting: a subscription's price vests to the sponsor over the tier's duration
// ---------------------------------------------------------------------------------------

impl Fixture {
    /// `vest(sponsor, user)`, called by `caller` (anyone may).
    async fn vest_as(&self, caller: Actor) -> TxOutcome {
        let account = self.net.account(caller);
        send(
            &self.net.provider,
            Paymaster::new(self.paymaster, &account).vest(
                &self.net.contract_address(Actor::Sponsor),
                &self.net.contract_address(Actor::Submitter),
            ),
        )
        .await
        .unwrap()
    }

    async fn vestable(&self) -> u128 {
        let reader = PaymasterReader::new(self.paymaster, &self.net.provider);
        call(reader.vestable(
            &self.net.contract_address(Actor::Sponsor),
            &self.net.contract_address(Actor::Submitter),
        ))
        .await
        .unwrap()
        .low
    }

    async fn withdraw(&self, amount: u128) -> Result<TxOutcome, ChainError> {
        let sponsor = self.net.account(Actor::Sponsor);
        send(
            &self.net.provider,
            Paymaster::new(self.paymaster, &sponsor).withdraw(&u256(amount)),
        )
        .await
    }

    fn vested_event(&self, amount: u128, unvested: u128) -> paymaster::Event {
        paymaster::Event::Vested(Vested {
            sponsor: self.net.contract_address(Actor::Sponsor),
            user: self.net.contract_address(Actor::Submitter),
            amount: u256(amount),
            unvested: u256(unvested),
        })
    }
}

/// The contract's vesting rule, for exact expectations: unvested × elapsed ÷ span, rounded
/// down.
fn vested(unvested: u128, elapsed: u64, span: u64) -> u128 {
    unvested * u128::from(elapsed) / u128::from(span)
}

#[tokio::test]
async fn attack_a_sponsor_withdraws_a_fresh_subscription_payment_and_is_refused() {
    // Given a user who just paid 400 for a 7-day tier
    let f = fixture().await;
    f.with_tier().await;
    f.subscribe(1).await.unwrap();

    // When the sponsor tries to take the payment at once (its deposit + 1)
    // Then it is refused: nothing has vested, and vesting now moves nothing
    assert_reverts(f.withdraw(DEPOSIT + 1).await, "PM: insufficient deposit");
    assert_eq!(f.vestable().await, 0);
    let nothing = f.vest_as(Actor::Sponsor).await;
    assert_events::<paymaster::Event>(&nothing, f.paymaster, &[]);
    assert_eq!(f.deposit().await, DEPOSIT);

    // And once it withdrew its own deposit, the payment still cannot be withdrawn, nor spent
    // by its relayer
    f.withdraw(DEPOSIT).await.unwrap();
    assert_reverts(f.withdraw(1).await, "PM: insufficient deposit");
    assert_reverts(
        f.sponsored_transfer(1, 1).await,
        "PM: sponsor deposit too low",
    );
    assert_eq!(f.token_of(f.paymaster).await, TIER_PRICE);
    assert_eq!(f.totals().await, (0, TIER_PRICE));
    f.assert_conserved("the payment stays unvested").await;
}

#[tokio::test]
async fn vest_moves_what_vested_linearly_and_everything_after_expiry() {
    // Given a user who paid 400 for 7 days at t0
    let f = fixture().await;
    f.with_tier().await;
    f.subscribe(1).await.unwrap();
    let t0 = f.subscription().await.vested_at;

    // When half the duration has passed and anyone (here the attacker) calls vest
    f.net.devnet.increase_time(TIER_DURATION / 2).await.unwrap();
    let first = f.vest_as(Actor::Attacker).await;

    // Then exactly ⌊400 × elapsed ÷ 7 days⌋ vested: 200, since the elapsed time is half
    // the duration plus less than 1,512 s (the time 1 token takes)
    let after_first = f.subscription().await;
    let t1 = after_first.vested_at;
    let half = vested(TIER_PRICE, t1 - t0, TIER_DURATION);
    assert_eq!(half, TIER_PRICE / 2, "elapsed {} s", t1 - t0);
    assert_eq!(after_first.unvested, u256(TIER_PRICE - half));
    assert_events(
        &first,
        f.paymaster,
        &[f.vested_event(half, TIER_PRICE - half)],
    );
    assert_eq!(f.deposit().await, DEPOSIT + half);
    f.assert_conserved("after half vested").await;

    // And the sponsor may withdraw what vested, not a unit more
    assert_reverts(
        f.withdraw(DEPOSIT + half + 1).await,
        "PM: insufficient deposit",
    );
    f.withdraw(DEPOSIT + half).await.unwrap();
    f.assert_conserved("after withdrawing what vested").await;

    // And a day later, the rest vests from t1 to the expiry: ⌊200 × (t2 − t1) ÷ (end − t1)⌋
    f.net.devnet.increase_time(86_400).await.unwrap();
    let second = f.vest_as(Actor::Attacker).await;
    let after_second = f.subscription().await;
    let t2 = after_second.vested_at;
    let rest = TIER_PRICE - half;
    let step = vested(rest, t2 - t1, after_first.expires_at - t1);
    assert!((57..=58).contains(&step), "about a 3.5th of 200: {step}");
    assert_eq!(after_second.unvested, u256(rest - step));
    assert_events(&second, f.paymaster, &[f.vested_event(step, rest - step)]);

    // And after the expiry everything has vested, even while the Paymaster is paused
    f.net.devnet.increase_time(TIER_DURATION).await.unwrap();
    assert_eq!(f.vestable().await, rest - step);
    pause_paymaster(&f.net, f.paymaster).await.unwrap();
    let last = f.vest_as(Actor::Attacker).await;
    assert_events(&last, f.paymaster, &[f.vested_event(rest - step, 0)]);
    assert_eq!(f.subscription().await.unvested, u256(0));
    assert_eq!(f.totals().await, (rest, 0));
    assert_eq!(f.deposit().await, rest);
    f.assert_conserved("after everything vested").await;
    let again = f.vest_as(Actor::Attacker).await;
    assert_events::<paymaster::Event>(&again, f.paymaster, &[]);
}

#[tokio::test]
async fn a_renewal_settles_what_vested_and_vests_the_rest_until_the_new_expiry() {
    // Given a user who paid 400 for 7 days at t0, half of it since vested
    let f = fixture().await;
    f.with_tier().await;
    f.subscribe(1).await.unwrap();
    let first = f.subscription().await;
    f.net.devnet.increase_time(TIER_DURATION / 2).await.unwrap();

    // When it renews
    let outcome = f.subscribe(1).await.unwrap();

    // Then the vested half went to the sponsor, and the other half with the new 400 vests
    // until the extended expiry
    let renewed = f.subscription().await;
    let half = vested(
        TIER_PRICE,
        renewed.vested_at - first.vested_at,
        TIER_DURATION,
    );
    assert_eq!(half, TIER_PRICE / 2);
    let unvested = 2 * TIER_PRICE - half;
    assert_eq!(renewed.expires_at, first.expires_at + TIER_DURATION);
    assert_eq!(renewed.unvested, u256(unvested));
    assert_events(
        &outcome,
        f.paymaster,
        &[
            f.vested_event(half, TIER_PRICE - half),
            paymaster::Event::Subscribed(Subscribed {
                sponsor: f.net.contract_address(Actor::Sponsor),
                user: f.net.contract_address(Actor::Submitter),
                tier_id: 1,
                price: u256(TIER_PRICE),
                expires_at: renewed.expires_at,
                unvested: u256(unvested),
            }),
        ],
    );
    assert_eq!(f.deposit().await, DEPOSIT + half);
    assert_eq!(f.totals().await, (DEPOSIT + half, unvested));
    f.assert_conserved("after the renewal").await;

    // And after the new expiry both payments have vested in full
    f.net.devnet.increase_time(2 * TIER_DURATION).await.unwrap();
    f.vest_as(Actor::Sponsor).await;
    assert_eq!(f.deposit().await, DEPOSIT + 2 * TIER_PRICE);
    assert_eq!(f.totals().await, (DEPOSIT + 2 * TIER_PRICE, 0));
    f.assert_conserved("after both payments vested").await;
}

// ---------------------------------------------------------------------------------------
// budgets: what a relayer can take, whatever users it names
// ---------------------------------------------------------------------------------------

/// The rogue relayer's daily budget in the attacks.
const RELAYER_BUDGET: u128 = 1_000;

impl Fixture {
    /// A generous policy 2 (a day's limit of the whole deposit per user, 100 executions an
    /// hour), the kind a sponsor that trusts its users sets, and a contract posing as an
    /// account, deployed by the attacker; returns the fake account.
    async fn with_generous_policy_and_a_fake_account(&self) -> Felt {
        let sponsor = self.net.account(Actor::Sponsor);
        let generous = PolicyParams {
            daily_limit: u256(DEPOSIT),
            ..self.params(100).await
        };
        send(
            &self.net.provider,
            Paymaster::new(self.paymaster, &sponsor)
                .create_policy(&vec![self.allowed("transfer")], &generous),
        )
        .await
        .unwrap();
        self.net
            .deploy(Actor::Attacker, "FakeAccount", vec![])
            .await
            .unwrap()
    }

    async fn sponsor_sets(&self, set: impl FnOnce(&Paymaster<&ciro_chain::RpcAccount>) -> Call) {
        let sponsor = self.net.account(Actor::Sponsor);
        let pm = Paymaster::new(self.paymaster, &sponsor);
        send(&self.net.provider, sponsor.execute_v3(vec![set(&pm)]))
            .await
            .unwrap();
    }

    /// `relayer` submits, in one multicall, `count` "executions" of `fake_user` under policy
    /// 2 at `charge` each: no signature, the fake account checks nothing and runs nothing.
    async fn drain(
        &self,
        relayer: Actor,
        fake_user: Felt,
        count: usize,
        charge: u128,
    ) -> Result<TxOutcome, ChainError> {
        let account = self.net.account(relayer);
        let pm = Paymaster::new(self.paymaster, &account);
        let execution = OutsideExecution {
            caller: self.paymaster,
            nonce: sponsored_nonce(self.net.address(Actor::Sponsor), 1),
            execute_after: 0,
            execute_before: u64::MAX,
            calls: vec![self.transfer(Actor::Delegator, 1)],
        };
        let calls = (0..count)
            .map(|_| {
                pm.execute_sponsored_getcall(
                    &self.net.contract_address(Actor::Sponsor),
                    &2,
                    &ContractAddress(fake_user),
                    &execution.to_paymaster_binding(),
                    &vec![],
                    &u256(charge),
                )
            })
            .collect();
        send(&self.net.provider, account.execute_v3(calls)).await
    }

    async fn remaining_budget(&self, relayer: Actor) -> u128 {
        let reader = PaymasterReader::new(self.paymaster, &self.net.provider);
        call(reader.remaining_budget(
            &self.net.contract_address(Actor::Sponsor),
            &self.net.contract_address(relayer),
        ))
        .await
        .unwrap()
        .low
    }
}

/// The attack: the sponsor's relayer turns rogue and, in one multicall, submits 100
/// sponsored "executions" of a contract posing as an account, charging 100 each. Without
/// budgets that took the whole 10,000 deposit; now the relayer gets its daily budget and not
/// a unit more.
/// The attack: a user's signed execution whose first transaction reverted (or that an
/// attacker copied out of the mempool) stays valid until its `execute_before`. Anyone may
/// become a sponsor: with no deposit, a policy of its own and itself as relayer, it would run
/// the execution charging nothing, at a time of its choosing (after the user signed the same
/// calls again: both run), or ahead of the real sponsor's transaction (which then reverts at
/// that relayer's cost). The nonce names the sponsor the execution was built for, and no other
/// may run it.
#[tokio::test]
async fn attack_a_signed_execution_runs_only_through_the_sponsor_it_was_built_for() {
    let f = fixture().await;
    // Given the Attacker as a second sponsor with no deposit, its own transfer policy (2) and
    // itself as its relayer,
    let attacker = f.net.account(Actor::Attacker);
    let rogue = Paymaster::new(f.paymaster, &attacker);
    let params = f.params(5).await;
    send(
        &f.net.provider,
        rogue.create_policy(&vec![f.allowed("transfer")], &params),
    )
    .await
    .unwrap();
    send(
        &f.net.provider,
        rogue.add_relayer(&f.net.contract_address(Actor::Attacker), &u256(0)),
    )
    .await
    .unwrap();
    let run_as_rogue = |execution: &OutsideExecution, signature: &[Felt]| {
        rogue.execute_sponsored(
            &f.net.contract_address(Actor::Attacker),
            &2,
            &f.net.contract_address(Actor::Submitter),
            &execution.to_paymaster_binding(),
            &signature.to_vec(),
            &u256(0),
        )
    };
    let delegator = f.net.address(Actor::Delegator);
    let before = f.token_of(delegator).await;
    // when it runs an execution the user signed for the fixture's sponsor,
    let (built_for_sponsor, sig) = f
        .signed(1, f.paymaster, vec![f.transfer(Actor::Delegator, 1)])
        .await;
    assert_reverts(
        send(&f.net.provider, run_as_rogue(&built_for_sponsor, &sig)).await,
        "PM: nonce not for sponsor",
    );
    // or one with an untagged nonce (as the relayer built them before the tag),
    let now = f.net.now().await.unwrap();
    let untagged = OutsideExecution {
        caller: f.paymaster,
        nonce: Felt::from(77u8),
        execute_after: now - 60,
        execute_before: now + 3_600,
        calls: vec![f.transfer(Actor::Delegator, 1)],
    };
    let untagged_sig = untagged
        .sign(
            &f.net.signing_key(Actor::Submitter),
            f.net.address(Actor::Submitter),
            f.net.chain_id(),
        )
        .unwrap();
    assert_reverts(
        send(&f.net.provider, run_as_rogue(&untagged, &untagged_sig)).await,
        "PM: nonce not for sponsor",
    );
    // then neither ran; nor does the untagged one through the real sponsor,
    assert_reverts(
        f.execute_as(Actor::Relayer, 1, &untagged, &untagged_sig, 0)
            .await,
        "PM: nonce not for sponsor",
    );
    assert_eq!(f.token_of(delegator).await, before);
    // while the sponsor's own relayer runs the one built for it.
    f.execute_as(Actor::Relayer, 1, &built_for_sponsor, &sig, MAX_CHARGE)
        .await
        .unwrap();
    assert_eq!(f.token_of(delegator).await, before + 1);
    assert_eq!(f.deposit().await, DEPOSIT - MAX_CHARGE);
}

#[tokio::test]
async fn attack_a_relayer_drains_with_100_fake_account_calls_and_stops_at_its_budget() {
    // Given a relayer with a daily budget of 1,000, a generous policy and a fake account
    let f = fixture().await;
    let fake = f.with_generous_policy_and_a_fake_account().await;
    let relayer = f.net.contract_address(Actor::Relayer);
    f.sponsor_sets(|pm| pm.set_relayer_budget_getcall(&relayer, &u256(RELAYER_BUDGET)))
        .await;
    let before = f.token_balances().await;

    // When it submits 100 × 100 in one multicall, the whole multicall is refused
    assert_reverts(
        f.drain(Actor::Relayer, fake, 100, MAX_CHARGE).await,
        "PM: relayer budget reached",
    );
    assert_eq!(f.token_balances().await, before, "nothing moved");

    // And the most it can take, 10 × 100, is exactly its budget
    f.drain(Actor::Relayer, fake, 10, MAX_CHARGE).await.unwrap();
    assert_eq!(f.remaining_budget(Actor::Relayer).await, 0);
    assert_reverts(
        f.drain(Actor::Relayer, fake, 1, 1).await,
        "PM: relayer budget reached",
    );

    // Then the sponsor lost its relayer's budget and no more
    let after = f.token_balances().await;
    assert_eq!(f.deposit().await, DEPOSIT - RELAYER_BUDGET);
    assert_eq!(after[2], before[2] + RELAYER_BUDGET, "the relayer's take");
    assert_eq!(after[4], before[4] - RELAYER_BUDGET);
    assert_eq!(after.iter().sum::<u128>(), before.iter().sum::<u128>());
    let reader = PaymasterReader::new(f.paymaster, &f.net.provider);
    assert_eq!(
        call(reader.relayer_budget(&f.net.contract_address(Actor::Sponsor), &relayer))
            .await
            .unwrap(),
        (u256(RELAYER_BUDGET), u256(RELAYER_BUDGET))
    );
    f.assert_conserved("after the drain").await;
}

#[tokio::test]
async fn attack_a_second_relayer_cannot_take_the_sponsor_past_its_budget() {
    // Given a sponsor budget of 1,500 a day and two relayers with 1,000 each
    let f = fixture().await;
    let fake = f.with_generous_policy_and_a_fake_account().await;
    let (relayer, second) = (
        f.net.contract_address(Actor::Relayer),
        f.net.contract_address(Actor::Attacker),
    );
    f.sponsor_sets(|pm| pm.set_relayer_budget_getcall(&relayer, &u256(RELAYER_BUDGET)))
        .await;
    f.sponsor_sets(|pm| pm.add_relayer_getcall(&second, &u256(RELAYER_BUDGET)))
        .await;
    f.sponsor_sets(|pm| pm.set_sponsor_budget_getcall(&u256(1_500)))
        .await;
    let before = f.token_balances().await;

    // When the first takes its 1,000, the second can take only the 500 left of the sponsor's
    f.drain(Actor::Relayer, fake, 10, MAX_CHARGE).await.unwrap();
    assert_eq!(f.remaining_budget(Actor::Attacker).await, 500);
    assert_reverts(
        f.drain(Actor::Attacker, fake, 6, MAX_CHARGE).await,
        "PM: sponsor budget reached",
    );
    f.drain(Actor::Attacker, fake, 5, MAX_CHARGE).await.unwrap();
    assert_reverts(
        f.drain(Actor::Attacker, fake, 1, 1).await,
        "PM: sponsor budget reached",
    );

    // Then the sponsor lost its own daily budget, and every view says it is spent
    assert_eq!(f.deposit().await, DEPOSIT - 1_500);
    let reader = PaymasterReader::new(f.paymaster, &f.net.provider);
    let sponsor = f.net.contract_address(Actor::Sponsor);
    assert_eq!(
        call(reader.sponsor_budget(&sponsor)).await.unwrap(),
        (u256(1_500), u256(1_500))
    );
    assert_eq!(
        call(reader.relayer_budget(&sponsor, &second))
            .await
            .unwrap(),
        (u256(RELAYER_BUDGET), u256(500))
    );
    assert_eq!(f.remaining_budget(Actor::Attacker).await, 0);
    assert_eq!(f.remaining_budget(Actor::Relayer).await, 0);
    assert_eq!(
        call(reader.remaining_allowance(&2, &ContractAddress(fake)))
            .await
            .unwrap(),
        u256(0),
        "a user's allowance is capped by the sponsor's budget left"
    );
    let after = f.token_balances().await;
    assert_eq!(after[5], before[5] + 500, "the second relayer's take");
    assert_eq!(after.iter().sum::<u128>(), before.iter().sum::<u128>());
    f.assert_conserved("after both relayers").await;
}

#[tokio::test]
async fn budgets_reset_the_next_day_and_renaming_a_relayer_does_not_refill_it() {
    // Given a relayer that spent its whole daily budget
    let f = fixture().await;
    let fake = f.with_generous_policy_and_a_fake_account().await;
    let relayer = f.net.contract_address(Actor::Relayer);
    f.sponsor_sets(|pm| pm.set_relayer_budget_getcall(&relayer, &u256(RELAYER_BUDGET)))
        .await;
    f.drain(Actor::Relayer, fake, 10, MAX_CHARGE).await.unwrap();

    // When the sponsor removes and names it again the same day, its spend today stands
    f.sponsor_sets(|pm| pm.remove_relayer_getcall(&relayer))
        .await;
    assert_eq!(f.remaining_budget(Actor::Relayer).await, 0);
    f.sponsor_sets(|pm| pm.add_relayer_getcall(&relayer, &u256(RELAYER_BUDGET)))
        .await;
    assert_reverts(
        f.drain(Actor::Relayer, fake, 1, 1).await,
        "PM: relayer budget reached",
    );

    // Then the next day its budget (and the sponsor's) is whole again, and the sponsor has
    // lost one budget per day
    f.net.devnet.increase_time(86_400).await.unwrap();
    let reader = PaymasterReader::new(f.paymaster, &f.net.provider);
    let sponsor = f.net.contract_address(Actor::Sponsor);
    assert_eq!(
        call(reader.relayer_budget(&sponsor, &relayer))
            .await
            .unwrap(),
        (u256(RELAYER_BUDGET), u256(0))
    );
    assert_eq!(
        call(reader.sponsor_budget(&sponsor)).await.unwrap(),
        (u256(ROOMY_BUDGET), u256(0))
    );
    assert_eq!(f.remaining_budget(Actor::Relayer).await, RELAYER_BUDGET);
    f.drain(Actor::Relayer, fake, 10, MAX_CHARGE).await.unwrap();
    assert_reverts(
        f.drain(Actor::Relayer, fake, 1, 1).await,
        "PM: relayer budget reached",
    );
    assert_eq!(f.deposit().await, DEPOSIT - 2 * RELAYER_BUDGET);
    f.assert_conserved("after two days").await;
}

#[tokio::test]
async fn without_a_budget_a_relayer_relays_only_free_executions() {
    // Given a relayer named with no budget
    let f = fixture().await;
    let second = f.net.contract_address(Actor::Attacker);
    f.sponsor_sets(|pm| pm.add_relayer_getcall(&second, &u256(0)))
        .await;
    assert_eq!(f.remaining_budget(Actor::Attacker).await, 0);
    let (execution, signature) = f
        .signed(1, f.paymaster, vec![f.transfer(Actor::Delegator, 1)])
        .await;

    // When it charges 1, it is refused; for free, the user's execution runs
    assert_reverts(
        f.execute_as(Actor::Attacker, 1, &execution, &signature, 1)
            .await,
        "PM: relayer budget reached",
    );
    f.execute_as(Actor::Attacker, 1, &execution, &signature, 0)
        .await
        .unwrap();

    // And with no sponsor budget, even a budgeted relayer charges nothing
    f.sponsor_sets(|pm| pm.set_sponsor_budget_getcall(&u256(0)))
        .await;
    assert_eq!(f.remaining_budget(Actor::Relayer).await, 0);
    assert_reverts(
        f.sponsored_transfer(2, 1).await,
        "PM: sponsor budget reached",
    );
    f.sponsored_transfer(2, 0).await.unwrap();

    // And a budget cut below what a relayer spent today stops it at once
    f.sponsor_sets(|pm| pm.set_sponsor_budget_getcall(&u256(ROOMY_BUDGET)))
        .await;
    f.sponsored_transfer(3, 90).await.unwrap();
    let relayer = f.net.contract_address(Actor::Relayer);
    f.sponsor_sets(|pm| pm.set_relayer_budget_getcall(&relayer, &u256(50)))
        .await;
    assert_eq!(f.remaining_budget(Actor::Relayer).await, 0);
    assert_reverts(
        f.sponsored_transfer(4, 1).await,
        "PM: relayer budget reached",
    );
    assert_eq!(f.deposit().await, DEPOSIT - 90);
    f.assert_conserved("after the free executions").await;
}
