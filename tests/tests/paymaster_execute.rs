//! Specification of sponsored execution and tiers: a relayer submits a user's signed SNIP-9
//! outside execution through the Paymaster; the user's calls run without the user paying
//! gas, and the sponsor's deposit pays the relayer, within the policy's limits (raised by a
//! tier the user bought). Every way to drain a sponsor is refused with its error and leaves
//! the sponsor's deposit unchanged.

use ciro_chain::bindings::paymaster::{
    self, AllowedCall, Paymaster, PaymasterReader, PolicyParams, SponsoredExecution, Subscribed,
    Subscription, Tier, TierSet,
};
use ciro_chain::bindings::test_token::{TestToken, TestTokenReader};
use ciro_chain::cainome::cairo_serde::ContractAddress;
use ciro_chain::snip9::{calls_hash, OutsideExecution};
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

/// A Paymaster whose sponsor deposited `DEPOSIT`, named the relayer, and created policy 1:
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
        pm.add_relayer(&net.contract_address(Actor::Relayer)),
    )
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
            nonce: Felt::from(nonce),
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

    /// Token balances of every party: sponsor, user, relayer, recipient, Paymaster.
    async fn token_balances(&self) -> Vec<u128> {
        let mut balances = Vec::new();
        for holder in [
            self.net.address(Actor::Sponsor),
            self.net.address(Actor::Submitter),
            self.net.address(Actor::Relayer),
            self.net.address(Actor::Delegator),
            self.paymaster,
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
async fn subscribe_pays_the_price_into_the_sponsors_deposit() {
    // Given a tier of 400 for 7 days
    let f = fixture().await;
    f.with_tier().await;
    let before = f.token_balances().await;
    let now = f.net.now().await.unwrap();

    // When the user subscribes
    let outcome = f.subscribe(1).await.unwrap();

    // Then the price moved from the user to the Paymaster, credited to the sponsor
    let after = f.token_balances().await;
    assert_eq!(after[1], before[1] - TIER_PRICE);
    assert_eq!(after[4], before[4] + TIER_PRICE);
    assert_eq!(f.deposit().await, DEPOSIT + TIER_PRICE);
    assert_eq!(before.iter().sum::<u128>(), after.iter().sum::<u128>());
    let subscription = f.subscription().await;
    assert_eq!(subscription.tier_id, 1);
    assert_eq!(subscription.daily_limit, u256(TIER_DAILY_LIMIT));
    assert!(
        subscription.expires_at >= now + TIER_DURATION
            && subscription.expires_at <= now + TIER_DURATION + 60
    );
    assert_events(
        &outcome,
        f.paymaster,
        &[paymaster::Event::Subscribed(Subscribed {
            sponsor: f.net.contract_address(Actor::Sponsor),
            user: f.net.contract_address(Actor::Submitter),
            tier_id: 1,
            price: u256(TIER_PRICE),
            expires_at: subscription.expires_at,
        })],
    );

    // And a renewal while it runs extends it by the tier's duration
    f.subscribe(1).await.unwrap();
    assert_eq!(
        f.subscription().await.expires_at,
        subscription.expires_at + TIER_DURATION
    );
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
        pm.add_relayer(&f.net.contract_address(Actor::Submitter)),
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
}
