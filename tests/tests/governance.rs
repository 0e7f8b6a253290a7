//! Specification of the governance every CIRO contract hosts, run against all three hosts
//! (JobMgr, CDC Pool, Paymaster) of a system deployed by `deploy_all`: the setup phase and
//! `seal`, the timelock on grants of every role but PAUSER, the two-step admin transfer and
//! the timelocked upgrade. (Parameter changes are timelocked per host: see `job_mgr.rs` and
//! `cdc_pool.rs`; roles and pause through the Paymaster: `paymaster.rs`.)
//!
//! Threat: a single admin key moving users' funds without notice, e.g. the pool admin granting
//! itself JOB_MANAGER and slashing every worker to itself in one multicall. After `seal`, any
//! such grant is announced (`RoleGrantScheduled`) a full delay before it can take effect.

use ciro_chain::bindings::cdc_pool::{self, SlashReason};
use ciro_chain::bindings::governance::{self, Event as GovEvent};
use ciro_chain::bindings::job_mgr::{JobMgr, JobMgrReader};
use ciro_chain::cainome::cairo_serde::{ClassHash, ContractAddress};
use ciro_chain::constants::roles;
use ciro_chain::starknet::accounts::Account;
use ciro_chain::starknet::core::types::{BlockId, BlockTag, Felt};
use ciro_chain::starknet::providers::Provider;
use ciro_chain::tx::{call, send};
use ciro_tests::assert::{assert_events, assert_reverts};
use ciro_tests::fixtures::u256;
use ciro_tests::system::*;
use ciro_tests::Actor;

/// The three hosts of the deployment: (name, address). All have the same upgrade delay.
async fn hosts(s: &System) -> Vec<(&'static str, Felt)> {
    vec![
        ("JobMgr", s.job_mgr),
        ("CdcPool", s.pool),
        ("Paymaster", s.paymaster),
    ]
}

/// Every host exposes the same governance ABI; JobMgr's binding reaches it at any address.
fn gov(s: &System, host: Felt, actor: Actor) -> JobMgr<ciro_chain::RpcAccount> {
    JobMgr::new(host, s.net.account(actor))
}

#[tokio::test]
async fn seal_ends_the_setup_phase_once_and_only_for_the_admin() {
    let s = System::deploy_unsealed().await.unwrap();
    for (name, host) in hosts(&s).await {
        assert!(!call(gov(&s, host, Actor::Admin).is_sealed()).await.unwrap());
        assert_reverts(
            s.send(gov(&s, host, Actor::Attacker).seal()).await,
            "GOV: caller is not admin",
        );
        let out = s.send(gov(&s, host, Actor::Admin).seal()).await.unwrap();
        assert_events(
            &out,
            host,
            &[GovEvent::Sealed(governance::Sealed {
                account: s.addr(Actor::Admin),
            })],
        );
        assert!(
            call(gov(&s, host, Actor::Admin).is_sealed()).await.unwrap(),
            "{name}"
        );
        assert_reverts(
            s.send(gov(&s, host, Actor::Admin).seal()).await,
            "GOV: already sealed",
        );
    }
}

#[tokio::test]
async fn business_is_refused_before_seal() {
    let s = System::deploy_unsealed().await.unwrap();
    let hosts = hosts(&s).await;
    assert_reverts(
        s.send(
            s.jobs_as(Actor::Admin)
                .register_model(&u256(1), &requirements(), &u256(1)),
        )
        .await,
        "GOV: not sealed",
    );
    assert_reverts(
        s.send(s.pool_as(Actor::WorkerA).register_worker(&h100(), &felt(1)))
            .await,
        "GOV: not sealed",
    );
    let paymaster = hosts[2].1;
    let sponsor =
        ciro_chain::bindings::paymaster::Paymaster::new(paymaster, s.net.account(Actor::Submitter));
    assert_reverts(s.send(sponsor.deposit(&u256(1))).await, "GOV: not sealed");
}

#[tokio::test]
async fn before_seal_grants_are_instant_after_seal_only_pauser_is() {
    let s = System::deploy_unsealed().await.unwrap();
    for (_, host) in hosts(&s).await {
        let admin = gov(&s, host, Actor::Admin);
        let attacker = s.addr(Actor::Attacker);
        s.send(admin.grant_role(&role(roles::ARBITER), &attacker))
            .await
            .unwrap();
        s.send(admin.revoke_role(&role(roles::ARBITER), &attacker))
            .await
            .unwrap();
        s.send(admin.seal()).await.unwrap();
        for name in [
            roles::ARBITER,
            roles::COORDINATOR,
            roles::JOB_MANAGER,
            roles::SLASHER,
            roles::VERIFIER,
        ] {
            assert_reverts(
                s.send(admin.grant_role(&role(name), &attacker)).await,
                "GOV: not scheduled",
            );
        }
        // Pausing only takes power away: its role stays instant.
        s.send(admin.grant_role(&role(roles::PAUSER), &attacker))
            .await
            .unwrap();
        // Revoking stays instant.
        s.send(admin.revoke_role(&role(roles::PAUSER), &attacker))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_scheduled_grant_waits_the_delay_and_is_consumed() {
    let s = System::deploy_unsealed().await.unwrap();
    for (_, host) in hosts(&s).await {
        let admin = gov(&s, host, Actor::Admin);
        s.send(admin.seal()).await.unwrap();
        let who = s.addr(Actor::Verifier);
        let out = s
            .send(admin.schedule_role_grant(&role(roles::ARBITER), &who))
            .await
            .unwrap();
        let scheduled = call(admin.role_grant_ready_at(&role(roles::ARBITER), &who))
            .await
            .unwrap();
        let ready_at = s.read_back(scheduled, UPGRADE_DELAY).await;
        assert_events(
            &out,
            host,
            &[GovEvent::RoleGrantScheduled(
                governance::RoleGrantScheduled {
                    role: role(roles::ARBITER),
                    account: who,
                    ready_at,
                },
            )],
        );
        assert_eq!(
            call(admin.role_grant_ready_at(&role(roles::ARBITER), &who))
                .await
                .unwrap(),
            ready_at
        );
        s.advance(UPGRADE_DELAY - 10).await;
        assert_reverts(
            s.send(admin.grant_role(&role(roles::ARBITER), &who)).await,
            "GOV: timelock not passed",
        );
        s.advance(10).await;
        let out = s
            .send(admin.grant_role(&role(roles::ARBITER), &who))
            .await
            .unwrap();
        assert_events(
            &out,
            host,
            &[GovEvent::RoleGranted(governance::RoleGranted {
                role: role(roles::ARBITER),
                account: who,
                sender: s.addr(Actor::Admin),
            })],
        );
        assert!(call(admin.has_role(&role(roles::ARBITER), &who))
            .await
            .unwrap());
        // The schedule was consumed: after a revoke, a new grant needs a new schedule.
        s.send(admin.revoke_role(&role(roles::ARBITER), &who))
            .await
            .unwrap();
        assert_reverts(
            s.send(admin.grant_role(&role(roles::ARBITER), &who)).await,
            "GOV: not scheduled",
        );
        // A schedule is for one account: it does not let the admin grant another.
        s.send(admin.schedule_role_grant(&role(roles::SLASHER), &who))
            .await
            .unwrap();
        s.advance(UPGRADE_DELAY).await;
        assert_reverts(
            s.send(admin.grant_role(&role(roles::SLASHER), &s.addr(Actor::Attacker)))
                .await,
            "GOV: not scheduled",
        );
    }
}

#[tokio::test]
async fn attack_a_schedule_kept_in_reserve_expires_and_one_made_before_seal_never_carries_over() {
    let s = System::deploy_unsealed().await.unwrap();
    for (_, host) in hosts(&s).await {
        let admin = gov(&s, host, Actor::Admin);
        let me = s.addr(Actor::Admin);
        // Given a JOB_MANAGER grant to itself scheduled during setup and left dormant,
        s.send(admin.schedule_role_grant(&role(roles::JOB_MANAGER), &me))
            .await
            .unwrap();
        s.advance(UPGRADE_DELAY).await;
        // when the admin seals and later tries to use it, it is refused;
        s.send(admin.seal()).await.unwrap();
        assert_reverts(
            s.send(admin.grant_role(&role(roles::JOB_MANAGER), &me))
                .await,
            "GOV: scheduled before seal",
        );
        // and a grant scheduled after the seal but kept past its 7-day grace expires.
        s.send(admin.schedule_role_grant(&role(roles::SLASHER), &me))
            .await
            .unwrap();
        s.advance(UPGRADE_DELAY + 7 * 86_400 + 1).await;
        assert_reverts(
            s.send(admin.grant_role(&role(roles::SLASHER), &me)).await,
            "GOV: operation expired",
        );
        assert!(!call(admin.has_role(&role(roles::SLASHER), &me))
            .await
            .unwrap());
        assert!(!call(admin.has_role(&role(roles::JOB_MANAGER), &me))
            .await
            .unwrap());
    }
}

#[tokio::test]
async fn cancel_role_grant_drops_the_schedule() {
    let s = System::deploy_unsealed().await.unwrap();
    for (_, host) in hosts(&s).await {
        let admin = gov(&s, host, Actor::Admin);
        s.send(admin.seal()).await.unwrap();
        let who = s.addr(Actor::Verifier);
        assert_reverts(
            s.send(admin.cancel_role_grant(&role(roles::ARBITER), &who))
                .await,
            "GOV: not scheduled",
        );
        s.send(admin.schedule_role_grant(&role(roles::ARBITER), &who))
            .await
            .unwrap();
        let out = s
            .send(admin.cancel_role_grant(&role(roles::ARBITER), &who))
            .await
            .unwrap();
        assert_events(
            &out,
            host,
            &[GovEvent::RoleGrantCancelled(
                governance::RoleGrantCancelled {
                    role: role(roles::ARBITER),
                    account: who,
                },
            )],
        );
        s.advance(UPGRADE_DELAY).await;
        assert_reverts(
            s.send(admin.grant_role(&role(roles::ARBITER), &who)).await,
            "GOV: not scheduled",
        );
    }
}

#[tokio::test]
async fn grant_scheduling_is_admin_only_and_refuses_the_zero_address() {
    let s = System::deploy_unsealed().await.unwrap();
    for (_, host) in hosts(&s).await {
        let who = s.addr(Actor::Attacker);
        assert_reverts(
            s.send(gov(&s, host, Actor::Attacker).schedule_role_grant(&role(roles::ARBITER), &who))
                .await,
            "GOV: caller is not admin",
        );
        assert_reverts(
            s.send(gov(&s, host, Actor::Attacker).cancel_role_grant(&role(roles::ARBITER), &who))
                .await,
            "GOV: caller is not admin",
        );
        assert_reverts(
            s.send(
                gov(&s, host, Actor::Admin)
                    .schedule_role_grant(&role(roles::ARBITER), &ContractAddress(Felt::ZERO)),
            )
            .await,
            "GOV: zero address",
        );
    }
}

#[tokio::test]
async fn attack_the_pool_admin_cannot_grant_itself_job_manager_and_slash_in_one_multicall() {
    // Given a sealed system with an active, staked worker,
    let s = System::deploy().await.unwrap();
    s.active_worker(Actor::WorkerA).await;
    let admin = s.net.account(Actor::Admin);
    let pool = cdc_pool::CdcPool::new(s.pool, &admin);
    // when the admin tries the review's drain: grant itself JOB_MANAGER, raise the
    // beneficiary share to 100%, and slash the worker 100% to itself, all at once,
    let me = s.addr(Actor::Admin);
    let drain = vec![
        pool.grant_role_getcall(&role(roles::JOB_MANAGER), &me),
        pool.schedule_params_getcall(&cdc_pool::PoolParams {
            beneficiary_share_bps: 10_000,
            ..s.pool_params()
        }),
        pool.slash_getcall(
            &s.addr(Actor::WorkerA),
            &SlashReason::Fraud,
            &10_000,
            &felt(1),
            &me,
            &u256(u128::MAX),
        ),
    ];
    // then it is refused and the stake is untouched;
    assert_reverts(
        send(&s.net.provider, admin.execute_v3(drain)).await,
        "GOV: not scheduled",
    );
    // and the slower path is visible a whole delay ahead: the schedule emits an event users
    // watch, and until it can be executed nothing changes.
    let out = s
        .send(
            s.pool_as(Actor::Admin)
                .schedule_role_grant(&role(roles::JOB_MANAGER), &me),
        )
        .await
        .unwrap();
    assert_eq!(
        ciro_tests::assert::decoded_events::<GovEvent>(&out, s.pool).len(),
        1
    );
    assert_reverts(
        s.send(s.pool_as(Actor::Admin).slash(
            &s.addr(Actor::WorkerA),
            &SlashReason::Fraud,
            &10_000,
            &felt(1),
            &me,
            &u256(0),
        ))
        .await,
        "POOL: not job manager/slasher",
    );
    assert_eq!(
        s.worker_info(Actor::WorkerA).await.stake,
        u256(MIN_STAKE[3])
    );
    s.assert_invariants("after the attempt").await;
}

// ---------------------------------------------------------------------------------------
// admin transfer, on every host
// ---------------------------------------------------------------------------------------

/// Reads any host's governance views (JobMgr's binding reaches them at any address).
fn gov_reader(
    s: &System,
    host: Felt,
) -> JobMgrReader<
    &ciro_chain::starknet::providers::JsonRpcClient<
        ciro_chain::starknet::providers::jsonrpc::HttpTransport,
    >,
> {
    JobMgrReader::new(host, &s.net.provider)
}

#[tokio::test]
async fn admin_transfer_takes_two_steps_and_only_the_named_account_completes_it() {
    let s = System::deploy().await.unwrap();
    for (name, host) in hosts(&s).await {
        // Given the admin starts handing over to the coordinator's account
        let started = s
            .send(gov(&s, host, Actor::Admin).transfer_admin(&s.addr(Actor::Coordinator)))
            .await
            .unwrap();
        assert_events(
            &started,
            host,
            &[GovEvent::AdminTransferStarted(
                governance::AdminTransferStarted {
                    previous_admin: s.addr(Actor::Admin),
                    new_admin: s.addr(Actor::Coordinator),
                },
            )],
        );
        let reader = gov_reader(&s, host);
        assert_eq!(
            call(reader.admin()).await.unwrap(),
            s.addr(Actor::Admin),
            "{name}: nothing changes before acceptance"
        );
        assert_eq!(
            call(reader.pending_admin()).await.unwrap(),
            s.addr(Actor::Coordinator),
            "{name}"
        );

        // When someone else tries to accept, it fails; the named account accepts
        assert_reverts(
            s.send(gov(&s, host, Actor::Attacker).accept_admin()).await,
            "GOV: caller not pending admin",
        );
        let accepted = s
            .send(gov(&s, host, Actor::Coordinator).accept_admin())
            .await
            .unwrap();

        // Then the coordinator is admin and the old admin lost its powers
        assert_eq!(
            call(reader.admin()).await.unwrap(),
            s.addr(Actor::Coordinator),
            "{name}"
        );
        assert_eq!(
            call(reader.pending_admin()).await.unwrap(),
            ContractAddress(Felt::ZERO),
            "{name}"
        );
        assert_events(
            &accepted,
            host,
            &[GovEvent::AdminTransferred(governance::AdminTransferred {
                previous_admin: s.addr(Actor::Admin),
                new_admin: s.addr(Actor::Coordinator),
            })],
        );
        assert_reverts(
            s.send(
                gov(&s, host, Actor::Admin).grant_role(&role(roles::PAUSER), &s.addr(Actor::Admin)),
            )
            .await,
            "GOV: caller is not admin",
        );
        assert_reverts(
            s.send(gov(&s, host, Actor::Admin).schedule_upgrade(&ClassHash(Felt::ONE)))
                .await,
            "GOV: caller is not admin",
        );
    }
}

#[tokio::test]
async fn transfer_admin_rejects_a_non_admin_and_the_zero_address_and_accept_needs_a_transfer() {
    let s = System::deploy().await.unwrap();
    for (_, host) in hosts(&s).await {
        assert_reverts(
            s.send(gov(&s, host, Actor::Attacker).transfer_admin(&s.addr(Actor::Attacker)))
                .await,
            "GOV: caller is not admin",
        );
        assert_reverts(
            s.send(gov(&s, host, Actor::Admin).transfer_admin(&ContractAddress(Felt::ZERO)))
                .await,
            "GOV: zero address",
        );
        assert_reverts(
            s.send(gov(&s, host, Actor::Admin).accept_admin()).await,
            "GOV: caller not pending admin",
        );
    }
}

// ---------------------------------------------------------------------------------------
// timelocked upgrade, on every host
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn upgrade_runs_only_after_its_delay_and_replaces_the_class() {
    let s = System::deploy().await.unwrap();
    let new_class = s.net.class_hash("TestToken").unwrap();
    for (name, host) in hosts(&s).await {
        // Given the admin schedules an upgrade to another declared class
        let admin = gov(&s, host, Actor::Admin);
        let scheduled = s
            .send(admin.schedule_upgrade(&ClassHash(new_class)))
            .await
            .unwrap();
        let (delay, pending, ready_at) = call(gov_reader(&s, host).upgrade_status()).await.unwrap();
        assert_eq!(delay, UPGRADE_DELAY, "{name}");
        assert_eq!(pending, ClassHash(new_class), "{name}");
        let ready_at = s.read_back(ready_at, UPGRADE_DELAY).await;
        assert_events(
            &scheduled,
            host,
            &[GovEvent::UpgradeScheduled(governance::UpgradeScheduled {
                class_hash: ClassHash(new_class),
                ready_at,
            })],
        );

        // When it is executed too early it is refused; after the delay it runs
        assert_reverts(
            s.send(admin.execute_upgrade()).await,
            "GOV: upgrade delay not passed",
        );
        s.advance(UPGRADE_DELAY).await;
        let upgraded = s.send(admin.execute_upgrade()).await.unwrap();

        // Then the contract runs the new class
        assert_events(
            &upgraded,
            host,
            &[GovEvent::Upgraded(governance::Upgraded {
                class_hash: ClassHash(new_class),
            })],
        );
        assert_eq!(
            s.net
                .provider
                .get_class_hash_at(BlockId::Tag(BlockTag::Latest), host)
                .await
                .unwrap(),
            new_class,
            "{name}"
        );
    }
}

#[tokio::test]
async fn attack_an_upgrade_kept_in_reserve_expires_and_one_made_before_seal_never_carries_over() {
    let s = System::deploy_unsealed().await.unwrap();
    let new_class = ClassHash(s.net.class_hash("TestToken").unwrap());
    for (name, host) in hosts(&s).await {
        let admin = gov(&s, host, Actor::Admin);
        // Given an upgrade scheduled during setup and left dormant,
        s.send(admin.schedule_upgrade(&new_class)).await.unwrap();
        s.advance(UPGRADE_DELAY).await;
        // when the admin seals and later tries to run it, it is refused (cancelled, the same
        // class may be scheduled again, in users' sight);
        s.send(admin.seal()).await.unwrap();
        assert_reverts(
            s.send(admin.execute_upgrade()).await,
            "GOV: scheduled before seal",
        );
        s.send(admin.cancel_upgrade()).await.unwrap();
        // and an upgrade scheduled after the seal but kept past its 7-day grace expires.
        s.send(admin.schedule_upgrade(&new_class)).await.unwrap();
        s.advance(UPGRADE_DELAY + 7 * 86_400 + 1).await;
        assert_reverts(
            s.send(admin.execute_upgrade()).await,
            "GOV: operation expired",
        );
        assert_ne!(
            s.net
                .provider
                .get_class_hash_at(BlockId::Tag(BlockTag::Latest), host)
                .await
                .unwrap(),
            new_class.0,
            "{name} still runs its own class"
        );
        // One scheduled again runs within its grace (a minute before its end).
        s.send(admin.cancel_upgrade()).await.unwrap();
        s.send(admin.schedule_upgrade(&new_class)).await.unwrap();
        s.advance(UPGRADE_DELAY + 7 * 86_400 - 60).await;
        s.send(admin.execute_upgrade()).await.unwrap();
        assert_eq!(
            s.net
                .provider
                .get_class_hash_at(BlockId::Tag(BlockTag::Latest), host)
                .await
                .unwrap(),
            new_class.0,
            "{name}"
        );
    }
}

#[tokio::test]
async fn upgrade_scheduling_is_admin_only_non_zero_and_one_at_a_time() {
    let s = System::deploy().await.unwrap();
    let new_class = ClassHash(s.net.class_hash("TestToken").unwrap());
    for (_, host) in hosts(&s).await {
        assert_reverts(
            s.send(gov(&s, host, Actor::Attacker).schedule_upgrade(&new_class))
                .await,
            "GOV: caller is not admin",
        );
        let admin = gov(&s, host, Actor::Admin);
        assert_reverts(
            s.send(admin.schedule_upgrade(&ClassHash(Felt::ZERO))).await,
            "GOV: zero class hash",
        );
        s.send(admin.schedule_upgrade(&new_class)).await.unwrap();
        assert_reverts(
            s.send(admin.schedule_upgrade(&new_class)).await,
            "GOV: upgrade already pending",
        );
        assert_reverts(
            s.send(gov(&s, host, Actor::Attacker).execute_upgrade())
                .await,
            "GOV: caller is not admin",
        );
    }
}

#[tokio::test]
async fn cancel_upgrade_clears_the_pending_upgrade() {
    let s = System::deploy().await.unwrap();
    let new_class = ClassHash(s.net.class_hash("TestToken").unwrap());
    for (name, host) in hosts(&s).await {
        let admin = gov(&s, host, Actor::Admin);
        assert_reverts(
            s.send(admin.cancel_upgrade()).await,
            "GOV: no upgrade pending",
        );
        s.send(admin.schedule_upgrade(&new_class)).await.unwrap();
        assert_reverts(
            s.send(gov(&s, host, Actor::Attacker).cancel_upgrade())
                .await,
            "GOV: caller is not admin",
        );

        let cancelled = s.send(admin.cancel_upgrade()).await.unwrap();

        assert_events(
            &cancelled,
            host,
            &[GovEvent::UpgradeCancelled(governance::UpgradeCancelled {
                class_hash: new_class,
            })],
        );
        assert_eq!(
            call(gov_reader(&s, host).upgrade_status()).await.unwrap(),
            (UPGRADE_DELAY, ClassHash(Felt::ZERO), 0),
            "{name}"
        );
    }
    s.advance(UPGRADE_DELAY).await;
    for (_, host) in hosts(&s).await {
        assert_reverts(
            s.send(gov(&s, host, Actor::Admin).execute_upgrade()).await,
            "GOV: no upgrade pending",
        );
    }
}
