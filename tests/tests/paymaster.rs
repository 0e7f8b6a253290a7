//! Specification of the Paymaster's sponsor deposits and of the governance roles and pause
//! every CIRO contract hosts, exercised through the Paymaster (admin transfer and upgrade run
//! against all three hosts in `governance.rs`). Each test reads given / when / then; every revert is asserted by
//! its exact error string, every state change by its decoded events.

use ciro_chain::bindings::governance::{self, Event as GovEvent};
use ciro_chain::bindings::paymaster::{self, Deposited, Paymaster, PaymasterReader, Withdrawn};
use ciro_chain::bindings::test_token::{TestToken, TestTokenReader};
use ciro_chain::cainome::cairo_serde::{ClassHash, ContractAddress};
use ciro_chain::constants::roles;
use ciro_chain::starknet::core::types::Felt;
use ciro_chain::starknet::core::utils::cairo_short_string_to_felt;
use ciro_chain::tx::{call, send};
use ciro_tests::assert::{assert_events, assert_reverts};
use ciro_tests::fixtures::{
    deploy_paymaster, deploy_test_token, fund_and_approve, pause_paymaster, try_deploy_paymaster,
    u256, PAYMASTER_UPGRADE_DELAY as UPGRADE_DELAY,
};
use ciro_tests::{Actor, TestNet};

const SPONSOR_FUNDS: u128 = 1_000_000;

fn role(name: &str) -> Felt {
    cairo_short_string_to_felt(name).unwrap()
}

/// A deployed Paymaster and its token; the sponsor holds `SPONSOR_FUNDS` and approved the
/// Paymaster for all of it.
struct Fixture {
    net: TestNet,
    token: Felt,
    paymaster: Felt,
}

async fn fixture() -> Fixture {
    let net = TestNet::new().await.unwrap();
    let token = deploy_test_token(&net, 0).await.unwrap();
    let paymaster = deploy_paymaster(&net, token).await.unwrap();
    fund_and_approve(&net, token, Actor::Sponsor, paymaster, SPONSOR_FUNDS)
        .await
        .unwrap();
    Fixture {
        net,
        token,
        paymaster,
    }
}

impl Fixture {
    async fn balance(&self, holder: Felt) -> u128 {
        call(
            TestTokenReader::new(self.token, &self.net.provider)
                .balance_of(&ContractAddress(holder)),
        )
        .await
        .unwrap()
        .low
    }

    async fn deposit_of(&self, actor: Actor) -> u128 {
        let reader = PaymasterReader::new(self.paymaster, &self.net.provider);
        call(reader.sponsor_balance(&self.net.contract_address(actor)))
            .await
            .unwrap()
            .low
    }

    /// The Paymaster's invariant: its token balance is the sum of the sponsors' deposits
    /// (with no subscriptions here, nothing is unvested), as its `totals` also say.
    async fn assert_deposits_cover_balance(&self, label: &str) {
        let deposits =
            self.deposit_of(Actor::Sponsor).await + self.deposit_of(Actor::Delegator).await;
        assert_eq!(
            self.balance(self.paymaster).await,
            deposits,
            "{label}: Paymaster balance == sum of deposits"
        );
        let reader = PaymasterReader::new(self.paymaster, &self.net.provider);
        assert_eq!(
            call(reader.totals()).await.unwrap(),
            (u256(deposits), u256(0)),
            "{label}: totals"
        );
    }

    /// Grants `role_name` to `actor` as the admin; the Paymaster is sealed, so a role other
    /// than PAUSER is scheduled first and granted after the timelock.
    async fn grant(&self, role_name: &str, actor: Actor) {
        let admin = self.net.account(Actor::Admin);
        let pm = Paymaster::new(self.paymaster, &admin);
        let who = self.net.contract_address(actor);
        if role_name != roles::PAUSER {
            send(
                &self.net.provider,
                pm.schedule_role_grant(&role(role_name), &who),
            )
            .await
            .unwrap();
            self.net.devnet.increase_time(UPGRADE_DELAY).await.unwrap();
        }
        send(&self.net.provider, pm.grant_role(&role(role_name), &who))
            .await
            .unwrap();
    }
}

// ---------------------------------------------------------------------------------------
// constructor
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn constructor_sets_admin_token_and_upgrade_delay() {
    let f = fixture().await;
    let reader = PaymasterReader::new(f.paymaster, &f.net.provider);
    assert_eq!(
        call(reader.admin()).await.unwrap(),
        f.net.contract_address(Actor::Admin)
    );
    assert_eq!(
        call(reader.token()).await.unwrap(),
        ContractAddress(f.token)
    );
    assert_eq!(
        call(reader.pending_admin()).await.unwrap(),
        ContractAddress(Felt::ZERO)
    );
    assert!(!call(reader.is_paused()).await.unwrap());
    assert_eq!(
        call(reader.upgrade_status()).await.unwrap(),
        (UPGRADE_DELAY, ClassHash(Felt::ZERO), 0)
    );
}

#[tokio::test]
async fn constructor_rejects_a_zero_token() {
    let net = TestNet::new().await.unwrap();
    let result =
        try_deploy_paymaster(&net, net.address(Actor::Admin), Felt::ZERO, UPGRADE_DELAY).await;
    assert_reverts(result, "PM: zero address");
}

#[tokio::test]
async fn constructor_rejects_a_zero_admin() {
    let net = TestNet::new().await.unwrap();
    let token = deploy_test_token(&net, 0).await.unwrap();
    let result = try_deploy_paymaster(&net, Felt::ZERO, token, UPGRADE_DELAY).await;
    assert_reverts(result, "GOV: zero address");
}

#[tokio::test]
async fn constructor_rejects_an_upgrade_delay_out_of_bounds() {
    let net = TestNet::new().await.unwrap();
    let token = deploy_test_token(&net, 0).await.unwrap();
    for delay in [3_599, 2_592_001] {
        let result = try_deploy_paymaster(&net, net.address(Actor::Admin), token, delay).await;
        assert_reverts(result, "GOV: delay out of bounds");
    }
    // The bounds themselves are accepted.
    for delay in [3_600, 2_592_000] {
        try_deploy_paymaster(&net, net.address(Actor::Admin), token, delay)
            .await
            .unwrap();
    }
}

// ---------------------------------------------------------------------------------------
// deposit / withdraw
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn deposit_pulls_tokens_into_the_paymaster_and_credits_the_sponsor() {
    // Given a sponsor with funds and an approval
    let f = fixture().await;
    let sponsor = f.net.account(Actor::Sponsor);
    let pm = Paymaster::new(f.paymaster, &sponsor);

    // When it deposits 400, then 100
    let first = send(&f.net.provider, pm.deposit(&u256(400))).await.unwrap();
    let second = send(&f.net.provider, pm.deposit(&u256(100))).await.unwrap();

    // Then the tokens moved, the deposit is 500, and each deposit announced the new balance
    assert_eq!(f.balance(f.paymaster).await, 500);
    assert_eq!(
        f.balance(f.net.address(Actor::Sponsor)).await,
        SPONSOR_FUNDS - 500
    );
    assert_eq!(f.deposit_of(Actor::Sponsor).await, 500);
    f.assert_deposits_cover_balance("after two deposits").await;
    let sponsor_address = f.net.contract_address(Actor::Sponsor);
    assert_events(
        &first,
        f.paymaster,
        &[paymaster::Event::Deposited(Deposited {
            sponsor: sponsor_address,
            amount: u256(400),
            balance: u256(400),
        })],
    );
    assert_events(
        &second,
        f.paymaster,
        &[paymaster::Event::Deposited(Deposited {
            sponsor: sponsor_address,
            amount: u256(100),
            balance: u256(500),
        })],
    );
}

#[tokio::test]
async fn deposit_rejects_a_zero_amount() {
    let f = fixture().await;
    let sponsor = f.net.account(Actor::Sponsor);
    let result = send(
        &f.net.provider,
        Paymaster::new(f.paymaster, &sponsor).deposit(&u256(0)),
    )
    .await;
    assert_reverts(result, "PM: amount is zero");
}

#[tokio::test]
async fn deposit_without_allowance_reverts_with_the_token_error() {
    let f = fixture().await;
    let attacker = f.net.account(Actor::Attacker);
    let result = send(
        &f.net.provider,
        Paymaster::new(f.paymaster, &attacker).deposit(&u256(1)),
    )
    .await;
    assert_reverts(result, "ERC20: insufficient allowance");
}

#[tokio::test]
async fn deposit_rejects_a_token_that_delivers_less_than_asked() {
    // Given a token that burns 1 of every transfer_from
    let f = fixture().await;
    let admin = f.net.account(Actor::Admin);
    send(
        &f.net.provider,
        TestToken::new(f.token, &admin).set_transfer_from_fee(&u256(1)),
    )
    .await
    .unwrap();
    let sponsor = f.net.account(Actor::Sponsor);

    // When the sponsor deposits 100 (only 99 would arrive)
    let result = send(
        &f.net.provider,
        Paymaster::new(f.paymaster, &sponsor).deposit(&u256(100)),
    )
    .await;

    // Then the deposit is refused and nothing moved
    assert_reverts(result, "PM: transfer_from shortfall");
    assert_eq!(f.deposit_of(Actor::Sponsor).await, 0);
    f.assert_deposits_cover_balance("after the refused deposit")
        .await;
    assert_eq!(
        f.balance(f.net.address(Actor::Sponsor)).await,
        SPONSOR_FUNDS
    );
}

#[tokio::test]
async fn deposit_is_refused_while_paused() {
    let f = fixture().await;
    pause_paymaster(&f.net, f.paymaster).await.unwrap();
    let sponsor = f.net.account(Actor::Sponsor);
    let result = send(
        &f.net.provider,
        Paymaster::new(f.paymaster, &sponsor).deposit(&u256(10)),
    )
    .await;
    assert_reverts(result, "GOV: paused");
}

#[tokio::test]
async fn withdraw_pays_the_deposit_back_and_emits_the_new_balance() {
    let f = fixture().await;
    let sponsor = f.net.account(Actor::Sponsor);
    let pm = Paymaster::new(f.paymaster, &sponsor);
    send(&f.net.provider, pm.deposit(&u256(300))).await.unwrap();

    let outcome = send(&f.net.provider, pm.withdraw(&u256(120)))
        .await
        .unwrap();

    assert_eq!(f.deposit_of(Actor::Sponsor).await, 180);
    assert_eq!(f.balance(f.paymaster).await, 180);
    f.assert_deposits_cover_balance("after a withdrawal").await;
    assert_eq!(
        f.balance(f.net.address(Actor::Sponsor)).await,
        SPONSOR_FUNDS - 180
    );
    assert_events(
        &outcome,
        f.paymaster,
        &[paymaster::Event::Withdrawn(Withdrawn {
            sponsor: f.net.contract_address(Actor::Sponsor),
            amount: u256(120),
            balance: u256(180),
        })],
    );
}

#[tokio::test]
async fn withdraw_rejects_more_than_the_deposit_and_zero() {
    let f = fixture().await;
    let sponsor = f.net.account(Actor::Sponsor);
    let pm = Paymaster::new(f.paymaster, &sponsor);
    send(&f.net.provider, pm.deposit(&u256(50))).await.unwrap();
    assert_reverts(
        send(&f.net.provider, pm.withdraw(&u256(51))).await,
        "PM: insufficient deposit",
    );
    assert_reverts(
        send(&f.net.provider, pm.withdraw(&u256(0))).await,
        "PM: amount is zero",
    );
    // Another account cannot take the sponsor's deposit.
    let attacker = f.net.account(Actor::Attacker);
    let stolen = send(
        &f.net.provider,
        Paymaster::new(f.paymaster, &attacker).withdraw(&u256(1)),
    )
    .await;
    assert_reverts(stolen, "PM: insufficient deposit");
}

#[tokio::test]
async fn withdraw_still_works_while_paused() {
    let f = fixture().await;
    let sponsor = f.net.account(Actor::Sponsor);
    send(
        &f.net.provider,
        Paymaster::new(f.paymaster, &sponsor).deposit(&u256(70)),
    )
    .await
    .unwrap();
    pause_paymaster(&f.net, f.paymaster).await.unwrap();

    send(
        &f.net.provider,
        Paymaster::new(f.paymaster, &sponsor).withdraw(&u256(70)),
    )
    .await
    .unwrap();

    assert_eq!(f.deposit_of(Actor::Sponsor).await, 0);
    f.assert_deposits_cover_balance("after the paused withdrawal")
        .await;
    assert_eq!(
        f.balance(f.net.address(Actor::Sponsor)).await,
        SPONSOR_FUNDS
    );
}

// ---------------------------------------------------------------------------------------
// governance: roles
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn grant_role_by_the_admin_grants_and_emits_once() {
    let f = fixture().await;
    let admin = f.net.account(Actor::Admin);
    let pm = Paymaster::new(f.paymaster, &admin);
    let relayer = f.net.contract_address(Actor::Relayer);

    let outcome = send(
        &f.net.provider,
        pm.grant_role(&role(roles::PAUSER), &relayer),
    )
    .await
    .unwrap();
    let again = send(
        &f.net.provider,
        pm.grant_role(&role(roles::PAUSER), &relayer),
    )
    .await
    .unwrap();

    let reader = PaymasterReader::new(f.paymaster, &f.net.provider);
    assert!(call(reader.has_role(&role(roles::PAUSER), &relayer))
        .await
        .unwrap());
    assert!(!call(reader.has_role(&role(roles::ARBITER), &relayer))
        .await
        .unwrap());
    assert_events(
        &outcome,
        f.paymaster,
        &[GovEvent::RoleGranted(governance::RoleGranted {
            role: role(roles::PAUSER),
            account: relayer,
            sender: f.net.contract_address(Actor::Admin),
        })],
    );
    assert_events::<GovEvent>(&again, f.paymaster, &[]);
}

#[tokio::test]
async fn grant_role_rejects_a_non_admin_and_the_zero_address() {
    let f = fixture().await;
    let attacker = f.net.account(Actor::Attacker);
    let result = send(
        &f.net.provider,
        Paymaster::new(f.paymaster, &attacker).grant_role(
            &role(roles::PAUSER),
            &f.net.contract_address(Actor::Attacker),
        ),
    )
    .await;
    assert_reverts(result, "GOV: caller is not admin");
    let admin = f.net.account(Actor::Admin);
    let zero = send(
        &f.net.provider,
        Paymaster::new(f.paymaster, &admin)
            .grant_role(&role(roles::PAUSER), &ContractAddress(Felt::ZERO)),
    )
    .await;
    assert_reverts(zero, "GOV: zero address");
}

#[tokio::test]
async fn revoke_role_by_the_admin_revokes_and_a_non_admin_cannot() {
    let f = fixture().await;
    f.grant(roles::ARBITER, Actor::Arbiter).await;
    let attacker = f.net.account(Actor::Attacker);
    let arbiter = f.net.contract_address(Actor::Arbiter);
    let refused = send(
        &f.net.provider,
        Paymaster::new(f.paymaster, &attacker).revoke_role(&role(roles::ARBITER), &arbiter),
    )
    .await;
    assert_reverts(refused, "GOV: caller is not admin");

    let admin = f.net.account(Actor::Admin);
    let outcome = send(
        &f.net.provider,
        Paymaster::new(f.paymaster, &admin).revoke_role(&role(roles::ARBITER), &arbiter),
    )
    .await
    .unwrap();

    let reader = PaymasterReader::new(f.paymaster, &f.net.provider);
    assert!(!call(reader.has_role(&role(roles::ARBITER), &arbiter))
        .await
        .unwrap());
    assert_events(
        &outcome,
        f.paymaster,
        &[GovEvent::RoleRevoked(governance::RoleRevoked {
            role: role(roles::ARBITER),
            account: arbiter,
            sender: f.net.contract_address(Actor::Admin),
        })],
    );
}

// ---------------------------------------------------------------------------------------
// governance: pause
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn pause_and_unpause_need_the_pauser_role_and_alternate() {
    let f = fixture().await;
    let admin = f.net.account(Actor::Admin);
    assert_reverts(
        send(&f.net.provider, Paymaster::new(f.paymaster, &admin).pause()).await,
        "GOV: caller is missing role",
    );
    f.grant(roles::PAUSER, Actor::Pauser).await;
    let pauser = f.net.account(Actor::Pauser);
    let pm = Paymaster::new(f.paymaster, &pauser);
    assert_reverts(send(&f.net.provider, pm.unpause()).await, "GOV: not paused");

    let paused = send(&f.net.provider, pm.pause()).await.unwrap();
    assert_events(
        &paused,
        f.paymaster,
        &[GovEvent::Paused(governance::Paused {
            account: f.net.contract_address(Actor::Pauser),
        })],
    );
    assert!(
        call(PaymasterReader::new(f.paymaster, &f.net.provider).is_paused())
            .await
            .unwrap()
    );
    assert_reverts(send(&f.net.provider, pm.pause()).await, "GOV: paused");

    let unpaused = send(&f.net.provider, pm.unpause()).await.unwrap();
    assert_events(
        &unpaused,
        f.paymaster,
        &[GovEvent::Unpaused(governance::Unpaused {
            account: f.net.contract_address(Actor::Pauser),
        })],
    );
    assert!(
        !call(PaymasterReader::new(f.paymaster, &f.net.provider).is_paused())
            .await
            .unwrap()
    );
}

// ---------------------------------------------------------------------------------------
// flow
// ---------------------------------------------------------------------------------------

/// Two sponsors deposit, one withdraws part, the Paymaster is paused, both withdraw the
/// rest. At every step the Paymaster's token balance equals the sum of the deposits, and at
/// the end every party holds what it started with.
#[tokio::test]
async fn flow_deposits_and_withdrawals_conserve_funds() {
    let f = fixture().await;
    fund_and_approve(&f.net, f.token, Actor::Delegator, f.paymaster, 5_000)
        .await
        .unwrap();
    let other = f.net.account(Actor::Delegator);
    let parties = [
        f.net.address(Actor::Sponsor),
        f.net.address(Actor::Delegator),
        f.paymaster,
    ];
    let mut start = Vec::new();
    for party in parties {
        start.push(f.balance(party).await);
    }
    let sponsor = f.net.account(Actor::Sponsor);
    let (pm_sponsor, pm_other) = (
        Paymaster::new(f.paymaster, &sponsor),
        Paymaster::new(f.paymaster, &other),
    );

    send(&f.net.provider, pm_sponsor.deposit(&u256(600)))
        .await
        .unwrap();
    send(&f.net.provider, pm_other.deposit(&u256(2_500)))
        .await
        .unwrap();
    f.assert_deposits_cover_balance("after deposits").await;
    send(&f.net.provider, pm_sponsor.withdraw(&u256(250)))
        .await
        .unwrap();
    f.assert_deposits_cover_balance("after a withdrawal").await;
    pause_paymaster(&f.net, f.paymaster).await.unwrap();
    send(&f.net.provider, pm_sponsor.withdraw(&u256(350)))
        .await
        .unwrap();
    send(&f.net.provider, pm_other.withdraw(&u256(2_500)))
        .await
        .unwrap();
    f.assert_deposits_cover_balance("after the paused withdrawals")
        .await;

    for (party, before) in parties.iter().zip(start) {
        assert_eq!(
            f.balance(*party).await,
            before,
            "{party:#x} ends where it started"
        );
    }
}

#[tokio::test]
async fn withdraw_reverts_when_the_token_transfer_fails_silently() {
    // Given a deposit, and a token whose `transfer` returns false instead of reverting
    let f = fixture().await;
    let sponsor = f.net.account(Actor::Sponsor);
    let pm = Paymaster::new(f.paymaster, &sponsor);
    send(&f.net.provider, pm.deposit(&u256(40))).await.unwrap();
    let admin = f.net.account(Actor::Admin);
    send(
        &f.net.provider,
        TestToken::new(f.token, &admin).set_transfer_returns_false(&true),
    )
    .await
    .unwrap();

    // When the sponsor withdraws, the Paymaster notices and reverts: the deposit is kept
    assert_reverts(
        send(&f.net.provider, pm.withdraw(&u256(40))).await,
        "PM: token transfer failed",
    );
    assert_eq!(f.deposit_of(Actor::Sponsor).await, 40);
    f.assert_deposits_cover_balance("after the failed withdrawal")
        .await;
}
