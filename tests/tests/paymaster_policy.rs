//! Specification of the Paymaster's relayers, user lists and policies: who a sponsor lets
//! spend its deposit, for which users, on which calls, within which limits.

use ciro_chain::bindings::paymaster::{
    self, AllowedCall, Paymaster, PaymasterReader, Policy, PolicyActive, PolicyParams, PolicySet,
    RelayerSet, SponsorBudgetSet, UserListed,
};
use ciro_chain::cainome::cairo_serde::ContractAddress;
use ciro_chain::starknet::core::types::Felt;
use ciro_chain::starknet::core::utils::cairo_short_string_to_felt;
use ciro_chain::starknet::core::utils::get_selector_from_name;
use ciro_chain::tx::{call, send};
use ciro_tests::assert::{assert_events, assert_reverts};
use ciro_tests::fixtures::{deploy_paymaster, deploy_test_token, pause_paymaster, u256};
use ciro_tests::{Actor, TestNet};

fn sel(name: &str) -> Felt {
    get_selector_from_name(name).unwrap()
}

struct Fixture {
    net: TestNet,
    token: Felt,
    paymaster: Felt,
}

async fn fixture() -> Fixture {
    let net = TestNet::new().await.unwrap();
    let token = deploy_test_token(&net, 0).await.unwrap();
    let paymaster = deploy_paymaster(&net, token).await.unwrap();
    Fixture {
        net,
        token,
        paymaster,
    }
}

impl Fixture {
    /// A valid policy: transfers on the token, 1,000 a day, 100 a transaction, 5 per hour.
    async fn params(&self) -> PolicyParams {
        PolicyParams {
            daily_limit: u256(1_000),
            max_charge: u256(100),
            rate_limit_count: 5,
            rate_limit_window: 3_600,
            expiry: self.net.now().await.unwrap() + 30 * 86_400,
            allowlist_only: false,
        }
    }

    fn transfer_call(&self) -> AllowedCall {
        AllowedCall {
            target: ContractAddress(self.token),
            selector: sel("transfer"),
        }
    }

    fn reader(
        &self,
    ) -> PaymasterReader<
        &ciro_chain::starknet::providers::JsonRpcClient<
            ciro_chain::starknet::providers::jsonrpc::HttpTransport,
        >,
    > {
        PaymasterReader::new(self.paymaster, &self.net.provider)
    }
}

// ---------------------------------------------------------------------------------------
// relayers
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn add_relayer_names_the_relayer_with_its_budget_and_emits_only_on_change() {
    let f = fixture().await;
    let sponsor = f.net.account(Actor::Sponsor);
    let pm = Paymaster::new(f.paymaster, &sponsor);
    let relayer = f.net.contract_address(Actor::Relayer);
    let sponsor_address = f.net.contract_address(Actor::Sponsor);

    let added = send(&f.net.provider, pm.add_relayer(&relayer, &u256(500)))
        .await
        .unwrap();
    let again = send(&f.net.provider, pm.add_relayer(&relayer, &u256(500)))
        .await
        .unwrap();

    assert!(call(f.reader().is_relayer(&sponsor_address, &relayer))
        .await
        .unwrap());
    assert_eq!(
        call(f.reader().relayer_budget(&sponsor_address, &relayer))
            .await
            .unwrap(),
        (u256(500), u256(0))
    );
    // Relayers are per sponsor: another sponsor's relayer set is untouched.
    assert!(!call(
        f.reader()
            .is_relayer(&f.net.contract_address(Actor::Delegator), &relayer)
    )
    .await
    .unwrap());
    assert_events(
        &added,
        f.paymaster,
        &[paymaster::Event::RelayerSet(RelayerSet {
            sponsor: sponsor_address,
            relayer,
            allowed: true,
            daily_budget: u256(500),
        })],
    );
    assert_events::<paymaster::Event>(&again, f.paymaster, &[]);

    // Naming it again with another budget sets the budget.
    let rebudgeted = send(&f.net.provider, pm.add_relayer(&relayer, &u256(70)))
        .await
        .unwrap();
    assert_events(
        &rebudgeted,
        f.paymaster,
        &[paymaster::Event::RelayerSet(RelayerSet {
            sponsor: sponsor_address,
            relayer,
            allowed: true,
            daily_budget: u256(70),
        })],
    );
}

#[tokio::test]
async fn add_relayer_rejects_the_zero_address() {
    let f = fixture().await;
    let sponsor = f.net.account(Actor::Sponsor);
    let result = send(
        &f.net.provider,
        Paymaster::new(f.paymaster, &sponsor).add_relayer(&ContractAddress(Felt::ZERO), &u256(1)),
    )
    .await;
    assert_reverts(result, "PM: zero address");
}

#[tokio::test]
async fn remove_relayer_revokes_clears_the_budget_and_emits_only_on_change() {
    let f = fixture().await;
    let sponsor = f.net.account(Actor::Sponsor);
    let pm = Paymaster::new(f.paymaster, &sponsor);
    let relayer = f.net.contract_address(Actor::Relayer);
    let nothing = send(&f.net.provider, pm.remove_relayer(&relayer))
        .await
        .unwrap();
    assert_events::<paymaster::Event>(&nothing, f.paymaster, &[]);
    send(&f.net.provider, pm.add_relayer(&relayer, &u256(500)))
        .await
        .unwrap();

    let removed = send(&f.net.provider, pm.remove_relayer(&relayer))
        .await
        .unwrap();

    let sponsor_address = f.net.contract_address(Actor::Sponsor);
    assert!(!call(f.reader().is_relayer(&sponsor_address, &relayer))
        .await
        .unwrap());
    assert_eq!(
        call(f.reader().relayer_budget(&sponsor_address, &relayer))
            .await
            .unwrap(),
        (u256(0), u256(0))
    );
    assert_events(
        &removed,
        f.paymaster,
        &[paymaster::Event::RelayerSet(RelayerSet {
            sponsor: sponsor_address,
            relayer,
            allowed: false,
            daily_budget: u256(0),
        })],
    );
}

// ---------------------------------------------------------------------------------------
// budgets
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn set_relayer_budget_changes_a_named_relayers_budget_and_emits_only_on_change() {
    let f = fixture().await;
    let sponsor = f.net.account(Actor::Sponsor);
    let pm = Paymaster::new(f.paymaster, &sponsor);
    let relayer = f.net.contract_address(Actor::Relayer);
    let sponsor_address = f.net.contract_address(Actor::Sponsor);
    send(&f.net.provider, pm.add_relayer(&relayer, &u256(500)))
        .await
        .unwrap();

    let cut = send(&f.net.provider, pm.set_relayer_budget(&relayer, &u256(200)))
        .await
        .unwrap();
    let same = send(&f.net.provider, pm.set_relayer_budget(&relayer, &u256(200)))
        .await
        .unwrap();

    assert_eq!(
        call(f.reader().relayer_budget(&sponsor_address, &relayer))
            .await
            .unwrap(),
        (u256(200), u256(0))
    );
    assert_events(
        &cut,
        f.paymaster,
        &[paymaster::Event::RelayerSet(RelayerSet {
            sponsor: sponsor_address,
            relayer,
            allowed: true,
            daily_budget: u256(200),
        })],
    );
    assert_events::<paymaster::Event>(&same, f.paymaster, &[]);
}

#[tokio::test]
async fn set_relayer_budget_never_names_a_relayer() {
    // A removed relayer (or one never named) is not brought back by a budget change, and
    // another sponsor's relayer is not this sponsor's.
    let f = fixture().await;
    let sponsor = f.net.account(Actor::Sponsor);
    let pm = Paymaster::new(f.paymaster, &sponsor);
    let relayer = f.net.contract_address(Actor::Relayer);
    assert_reverts(
        send(&f.net.provider, pm.set_relayer_budget(&relayer, &u256(1))).await,
        "PM: unknown relayer",
    );
    send(&f.net.provider, pm.add_relayer(&relayer, &u256(5)))
        .await
        .unwrap();
    send(&f.net.provider, pm.remove_relayer(&relayer))
        .await
        .unwrap();
    assert_reverts(
        send(&f.net.provider, pm.set_relayer_budget(&relayer, &u256(1))).await,
        "PM: unknown relayer",
    );
    let other = f.net.account(Actor::Delegator);
    send(
        &f.net.provider,
        Paymaster::new(f.paymaster, &other).add_relayer(&relayer, &u256(5)),
    )
    .await
    .unwrap();
    assert_reverts(
        send(&f.net.provider, pm.set_relayer_budget(&relayer, &u256(1))).await,
        "PM: unknown relayer",
    );
    assert!(!call(
        f.reader()
            .is_relayer(&f.net.contract_address(Actor::Sponsor), &relayer)
    )
    .await
    .unwrap());
}

#[tokio::test]
async fn set_sponsor_budget_sets_the_sponsors_daily_budget_and_emits_only_on_change() {
    let f = fixture().await;
    let sponsor = f.net.account(Actor::Sponsor);
    let pm = Paymaster::new(f.paymaster, &sponsor);
    let sponsor_address = f.net.contract_address(Actor::Sponsor);
    assert_eq!(
        call(f.reader().sponsor_budget(&sponsor_address))
            .await
            .unwrap(),
        (u256(0), u256(0)),
        "no budget until the sponsor sets one"
    );

    let set = send(&f.net.provider, pm.set_sponsor_budget(&u256(2_000)))
        .await
        .unwrap();
    let same = send(&f.net.provider, pm.set_sponsor_budget(&u256(2_000)))
        .await
        .unwrap();

    assert_eq!(
        call(f.reader().sponsor_budget(&sponsor_address))
            .await
            .unwrap(),
        (u256(2_000), u256(0))
    );
    assert_eq!(
        call(
            f.reader()
                .sponsor_budget(&f.net.contract_address(Actor::Delegator))
        )
        .await
        .unwrap(),
        (u256(0), u256(0)),
        "budgets are per sponsor"
    );
    assert_events(
        &set,
        f.paymaster,
        &[paymaster::Event::SponsorBudgetSet(SponsorBudgetSet {
            sponsor: sponsor_address,
            daily_budget: u256(2_000),
        })],
    );
    assert_events::<paymaster::Event>(&same, f.paymaster, &[]);

    // A sponsor can cut its budget while the Paymaster is paused.
    pause_paymaster(&f.net, f.paymaster).await.unwrap();
    send(&f.net.provider, pm.set_sponsor_budget(&u256(0)))
        .await
        .unwrap();
    assert_eq!(
        call(f.reader().sponsor_budget(&sponsor_address))
            .await
            .unwrap(),
        (u256(0), u256(0))
    );
}

// ---------------------------------------------------------------------------------------
// allowlist / blocklist
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn sponsors_keep_their_own_allowlist_and_blocklist() {
    let f = fixture().await;
    let sponsor = f.net.account(Actor::Sponsor);
    let pm = Paymaster::new(f.paymaster, &sponsor);
    let (user, attacker) = (
        f.net.contract_address(Actor::Submitter),
        f.net.contract_address(Actor::Attacker),
    );

    let allowed = send(&f.net.provider, pm.set_allowlisted(&user, &true))
        .await
        .unwrap();
    let blocked = send(&f.net.provider, pm.set_blocklisted(&attacker, &true))
        .await
        .unwrap();

    let sponsor_address = f.net.contract_address(Actor::Sponsor);
    assert_eq!(
        call(f.reader().user_status(&sponsor_address, &user))
            .await
            .unwrap(),
        (true, false)
    );
    assert_eq!(
        call(f.reader().user_status(&sponsor_address, &attacker))
            .await
            .unwrap(),
        (false, true)
    );
    assert_eq!(
        call(
            f.reader()
                .user_status(&f.net.contract_address(Actor::Delegator), &attacker)
        )
        .await
        .unwrap(),
        (false, false)
    );
    let list = |name: &str| cairo_short_string_to_felt(name).unwrap();
    assert_events(
        &allowed,
        f.paymaster,
        &[paymaster::Event::UserListed(UserListed {
            sponsor: sponsor_address,
            user,
            list: list("ALLOWLIST"),
            listed: true,
        })],
    );
    assert_events(
        &blocked,
        f.paymaster,
        &[paymaster::Event::UserListed(UserListed {
            sponsor: sponsor_address,
            user: attacker,
            list: list("BLOCKLIST"),
            listed: true,
        })],
    );

    send(&f.net.provider, pm.set_blocklisted(&attacker, &false))
        .await
        .unwrap();
    assert_eq!(
        call(f.reader().user_status(&sponsor_address, &attacker))
            .await
            .unwrap(),
        (false, false)
    );
}

// ---------------------------------------------------------------------------------------
// policies
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn create_policy_stores_it_active_numbered_from_one() {
    let f = fixture().await;
    let sponsor = f.net.account(Actor::Sponsor);
    let pm = Paymaster::new(f.paymaster, &sponsor);
    let params = f.params().await;
    let calls = vec![
        f.transfer_call(),
        AllowedCall {
            target: ContractAddress(f.token),
            selector: sel("approve"),
        },
    ];

    let created = send(&f.net.provider, pm.create_policy(&calls, &params))
        .await
        .unwrap();
    send(
        &f.net.provider,
        pm.create_policy(&calls[..1].to_vec(), &params),
    )
    .await
    .unwrap();

    let (policy, stored_calls) = call(f.reader().get_policy(&1)).await.unwrap();
    assert_eq!(
        policy,
        Policy {
            sponsor: f.net.contract_address(Actor::Sponsor),
            active: true,
            params: params.clone()
        }
    );
    assert_eq!(stored_calls, calls);
    assert_eq!(
        call(f.reader().get_policy(&2)).await.unwrap().1,
        vec![f.transfer_call()]
    );
    assert_events(
        &created,
        f.paymaster,
        &[paymaster::Event::PolicySet(PolicySet {
            policy_id: 1,
            sponsor: f.net.contract_address(Actor::Sponsor),
            params,
            allowed_calls: 2,
        })],
    );
}

#[tokio::test]
async fn create_policy_rejects_every_out_of_bounds_parameter() {
    let f = fixture().await;
    let sponsor = f.net.account(Actor::Sponsor);
    let pm = Paymaster::new(f.paymaster, &sponsor);
    let ok = f.params().await;
    let calls = vec![f.transfer_call()];
    let now = f.net.now().await.unwrap();

    let cases: Vec<(PolicyParams, Vec<AllowedCall>, &str)> = vec![
        (ok.clone(), vec![], "PM: no allowed calls"),
        (
            ok.clone(),
            vec![f.transfer_call(); 17],
            "PM: too many allowed calls",
        ),
        (
            PolicyParams {
                daily_limit: u256(0),
                ..ok.clone()
            },
            calls.clone(),
            "PM: limit is zero",
        ),
        (
            PolicyParams {
                max_charge: u256(0),
                ..ok.clone()
            },
            calls.clone(),
            "PM: limit is zero",
        ),
        (
            PolicyParams {
                max_charge: u256(1_001),
                ..ok.clone()
            },
            calls.clone(),
            "PM: max charge over daily limit",
        ),
        (
            PolicyParams {
                rate_limit_count: 0,
                ..ok.clone()
            },
            calls.clone(),
            "PM: rate limit out of bounds",
        ),
        (
            PolicyParams {
                rate_limit_window: 59,
                ..ok.clone()
            },
            calls.clone(),
            "PM: rate limit out of bounds",
        ),
        (
            PolicyParams {
                rate_limit_window: 604_801,
                ..ok.clone()
            },
            calls.clone(),
            "PM: rate limit out of bounds",
        ),
        (
            PolicyParams {
                expiry: now,
                ..ok.clone()
            },
            calls.clone(),
            "PM: expiry not in the future",
        ),
    ];
    for (params, calls, expected) in cases {
        assert_reverts(
            send(&f.net.provider, pm.create_policy(&calls, &params)).await,
            expected,
        );
    }
    // The bounds themselves are accepted.
    let edge = PolicyParams {
        max_charge: u256(1_000),
        rate_limit_window: 604_800,
        ..ok.clone()
    };
    send(
        &f.net.provider,
        pm.create_policy(&vec![f.transfer_call(); 16], &edge),
    )
    .await
    .unwrap();
    let edge = PolicyParams {
        rate_limit_count: 1,
        rate_limit_window: 60,
        ..ok.clone()
    };
    send(&f.net.provider, pm.create_policy(&calls, &edge))
        .await
        .unwrap();
}

#[tokio::test]
async fn create_policy_is_refused_while_paused() {
    let f = fixture().await;
    pause_paymaster(&f.net, f.paymaster).await.unwrap();
    let sponsor = f.net.account(Actor::Sponsor);
    let params = f.params().await;
    let result = send(
        &f.net.provider,
        Paymaster::new(f.paymaster, &sponsor).create_policy(&vec![f.transfer_call()], &params),
    )
    .await;
    assert_reverts(result, "GOV: paused");
}

#[tokio::test]
async fn update_policy_replaces_calls_and_params_and_keeps_its_state() {
    let f = fixture().await;
    let sponsor = f.net.account(Actor::Sponsor);
    let pm = Paymaster::new(f.paymaster, &sponsor);
    let params = f.params().await;
    send(
        &f.net.provider,
        pm.create_policy(&vec![f.transfer_call()], &params),
    )
    .await
    .unwrap();
    send(&f.net.provider, pm.set_policy_active(&1, &false))
        .await
        .unwrap();

    let new_params = PolicyParams {
        daily_limit: u256(50),
        max_charge: u256(5),
        allowlist_only: true,
        ..params.clone()
    };
    let new_calls = vec![AllowedCall {
        target: ContractAddress(f.token),
        selector: sel("approve"),
    }];
    let updated = send(
        &f.net.provider,
        pm.update_policy(&1, &new_calls, &new_params),
    )
    .await
    .unwrap();

    let (policy, calls) = call(f.reader().get_policy(&1)).await.unwrap();
    assert_eq!(
        policy,
        Policy {
            sponsor: f.net.contract_address(Actor::Sponsor),
            active: false,
            params: new_params.clone()
        }
    );
    assert_eq!(calls, new_calls, "the old calls are gone");
    assert_events(
        &updated,
        f.paymaster,
        &[paymaster::Event::PolicySet(PolicySet {
            policy_id: 1,
            sponsor: f.net.contract_address(Actor::Sponsor),
            params: new_params,
            allowed_calls: 1,
        })],
    );
}

#[tokio::test]
async fn only_the_sponsor_changes_its_policy_and_unknown_policies_are_reported() {
    let f = fixture().await;
    let sponsor = f.net.account(Actor::Sponsor);
    let params = f.params().await;
    send(
        &f.net.provider,
        Paymaster::new(f.paymaster, &sponsor).create_policy(&vec![f.transfer_call()], &params),
    )
    .await
    .unwrap();
    let attacker = f.net.account(Actor::Attacker);
    let pm = Paymaster::new(f.paymaster, &attacker);
    assert_reverts(
        send(
            &f.net.provider,
            pm.update_policy(&1, &vec![f.transfer_call()], &params),
        )
        .await,
        "PM: not the policy sponsor",
    );
    assert_reverts(
        send(&f.net.provider, pm.set_policy_active(&1, &false)).await,
        "PM: not the policy sponsor",
    );
    let sponsor_pm = Paymaster::new(f.paymaster, &sponsor);
    assert_reverts(
        send(&f.net.provider, sponsor_pm.set_policy_active(&9, &false)).await,
        "PM: unknown policy",
    );
    assert_reverts(
        send(
            &f.net.provider,
            sponsor_pm.update_policy(&9, &vec![f.transfer_call()], &params),
        )
        .await,
        "PM: unknown policy",
    );
    assert_reverts(call(f.reader().get_policy(&9)).await, "PM: unknown policy");
}

#[tokio::test]
async fn set_policy_active_turns_a_policy_off_and_on() {
    let f = fixture().await;
    let sponsor = f.net.account(Actor::Sponsor);
    let pm = Paymaster::new(f.paymaster, &sponsor);
    let params = f.params().await;
    send(
        &f.net.provider,
        pm.create_policy(&vec![f.transfer_call()], &params),
    )
    .await
    .unwrap();

    let off = send(&f.net.provider, pm.set_policy_active(&1, &false))
        .await
        .unwrap();
    assert!(!call(f.reader().get_policy(&1)).await.unwrap().0.active);
    let on = send(&f.net.provider, pm.set_policy_active(&1, &true))
        .await
        .unwrap();
    assert!(call(f.reader().get_policy(&1)).await.unwrap().0.active);

    assert_events(
        &off,
        f.paymaster,
        &[paymaster::Event::PolicyActive(PolicyActive {
            policy_id: 1,
            active: false,
        })],
    );
    assert_events(
        &on,
        f.paymaster,
        &[paymaster::Event::PolicyActive(PolicyActive {
            policy_id: 1,
            active: true,
        })],
    );
}
