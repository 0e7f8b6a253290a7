//! Specification of sponsored execution: a relayer submits a user's signed SNIP-9 outside
//! execution through the Paymaster; the user's calls run without the user paying gas, and
//! the sponsor's deposit pays the relayer, within the policy's limits. Every way to drain a
//! sponsor is refused with its error and leaves the sponsor's deposit unchanged.

use ciro_chain::bindings::constructor_calldata;
use ciro_chain::bindings::paymaster::{
    self, AllowedCall, Paymaster, PaymasterReader, PolicyParams, SponsoredExecution,
};
use ciro_chain::bindings::test_token::{TestToken, TestTokenReader};
use ciro_chain::cainome::cairo_serde::{ContractAddress, U256};
use ciro_chain::deploy::deploy;
use ciro_chain::snip9::{calls_hash, OutsideExecution};
use ciro_chain::starknet::core::types::{Call, Felt};
use ciro_chain::starknet::core::utils::{cairo_short_string_to_felt, get_selector_from_name};
use ciro_chain::tx::{call, send, TxOutcome};
use ciro_chain::ChainError;
use ciro_tests::assert::{assert_events, assert_reverts};
use ciro_tests::fixtures::deploy_test_token;
use ciro_tests::net::STRK;
use ciro_tests::{Actor, TestNet};

const DEPOSIT: u128 = 10_000;
const DAILY_LIMIT: u128 = 300;
const MAX_CHARGE: u128 = 100;
const USER_TOKENS: u128 = 1_000;

fn u256(value: u128) -> U256 {
    U256 {
        low: value,
        high: 0,
    }
}

fn addr(net: &TestNet, actor: Actor) -> ContractAddress {
    ContractAddress(net.address(actor))
}

/// A Paymaster whose sponsor deposited `DEPOSIT`, named the relayer, and created policy 1:
/// `transfer` on the token, `DAILY_LIMIT` a day, `MAX_CHARGE` a transaction, 5 an hour.
/// The user (the submitter account) holds `USER_TOKENS`.
struct Fixture {
    net: TestNet,
    token: Felt,
    paymaster: Felt,
}

async fn fixture() -> Fixture {
    let net = TestNet::new().await.unwrap();
    let token = deploy_test_token(&net, 0).await.unwrap();
    let admin = net.account(Actor::Admin);
    let calldata = constructor_calldata(Paymaster::new(Felt::ZERO, &admin).constructor_getcall(
        &addr(&net, Actor::Admin),
        &ContractAddress(token),
        &3_600,
    ));
    let paymaster = deploy(
        &admin,
        net.class_hash("Paymaster").unwrap(),
        calldata,
        Felt::ZERO,
    )
    .await
    .unwrap()
    .address;
    let sponsor = net.account(Actor::Sponsor);
    let token_as_sponsor = TestToken::new(token, &sponsor);
    send(
        &net.provider,
        token_as_sponsor.mint(&addr(&net, Actor::Sponsor), &u256(DEPOSIT)),
    )
    .await
    .unwrap();
    send(
        &net.provider,
        token_as_sponsor.mint(&addr(&net, Actor::Submitter), &u256(USER_TOKENS)),
    )
    .await
    .unwrap();
    send(
        &net.provider,
        token_as_sponsor.approve(&ContractAddress(paymaster), &u256(DEPOSIT)),
    )
    .await
    .unwrap();
    let pm = Paymaster::new(paymaster, &sponsor);
    send(&net.provider, pm.deposit(&u256(DEPOSIT)))
        .await
        .unwrap();
    send(&net.provider, pm.add_relayer(&addr(&net, Actor::Relayer)))
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
        TestToken::new(self.token, &user).transfer_getcall(&addr(&self.net, to), &u256(amount))
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
                &addr(&self.net, Actor::Sponsor),
                &policy_id,
                &addr(&self.net, Actor::Submitter),
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
        call(TestTokenReader::new(STRK, &self.net.provider).balance_of(&addr(&self.net, actor)))
            .await
            .unwrap()
            .low
    }

    async fn deposit(&self) -> u128 {
        let reader = PaymasterReader::new(self.paymaster, &self.net.provider);
        call(reader.sponsor_balance(&addr(&self.net, Actor::Sponsor)))
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
    let (sponsor, user) = (addr(&f.net, Actor::Sponsor), addr(&f.net, Actor::Submitter));
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
            relayer: addr(&f.net, Actor::Relayer),
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
        call(reader.remaining_allowance(&1, &addr(&f.net, Actor::Submitter)))
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
                    .approve_getcall(&addr(&f.net, Actor::Attacker), &u256(USER_TOKENS))
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
        pm.set_blocklisted(&addr(&f.net, Actor::Submitter), &true),
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
        pm.set_blocklisted(&addr(&f.net, Actor::Submitter), &false),
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
        pm.set_allowlisted(&addr(&f.net, Actor::Submitter), &true),
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

    let admin = f.net.account(Actor::Admin);
    let pauser_role = cairo_short_string_to_felt("PAUSER").unwrap();
    send(
        &f.net.provider,
        Paymaster::new(f.paymaster, &admin).grant_role(&pauser_role, &addr(&f.net, Actor::Pauser)),
    )
    .await
    .unwrap();
    let pauser = f.net.account(Actor::Pauser);
    send(
        &f.net.provider,
        Paymaster::new(f.paymaster, &pauser).pause(),
    )
    .await
    .unwrap();
    assert_reverts(f.sponsored_transfer(2, 0).await, "GOV: paused");
}
