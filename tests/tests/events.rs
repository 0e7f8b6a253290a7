//! The event stream on a devnet with hundreds of events across many blocks: every event
//! decoded, in order, exactly once across pages and across a restart from a stored cursor;
//! pre-confirmed events told apart from accepted ones.

use ciro_chain::bindings::test_token::{Event, TestToken, Transfer};
use ciro_chain::cainome::cairo_serde::{ContractAddress, U256};
use ciro_chain::events::{ChainEvent, CiroEvent, ContractKind, EventCursor, EventStream, Finality};
use ciro_chain::starknet::accounts::Account;
use ciro_chain::starknet::core::types::Felt;
use ciro_chain::starknet::providers::Provider;
use ciro_chain::tx::send;
use ciro_tests::fixtures::deploy_test_token;
use ciro_tests::{Actor, TestNet};

const TXS: u128 = 30;
const TRANSFERS_PER_TX: u128 = 10;

async fn deploy_token(net: &TestNet) -> Felt {
    deploy_test_token(net, 1_000_000_000).await.unwrap()
}

/// The Transfer the admin's `i`-th transfer emits (amounts are distinct: 1, 2, 3, ...).
fn expected_transfer(net: &TestNet, i: u128) -> CiroEvent {
    let recipients = [Actor::WorkerA, Actor::WorkerB, Actor::WorkerC];
    CiroEvent::TestToken(Event::Transfer(Transfer {
        from: ContractAddress(net.address(Actor::Admin)),
        to: ContractAddress(net.address(recipients[(i % 3) as usize])),
        value: U256 {
            low: i + 1,
            high: 0,
        },
    }))
}

/// `TXS` multicalls of `TRANSFERS_PER_TX` transfers each: one block per transaction.
async fn emit_transfers(net: &TestNet, token: Felt) {
    let admin = net.account(Actor::Admin);
    let binding = TestToken::new(token, &admin);
    for tx in 0..TXS {
        let calls = (0..TRANSFERS_PER_TX)
            .map(|k| {
                let i = tx * TRANSFERS_PER_TX + k;
                let CiroEvent::TestToken(Event::Transfer(t)) = expected_transfer(net, i) else {
                    unreachable!()
                };
                binding.transfer_getcall(&t.to, &t.value)
            })
            .collect();
        send(&net.provider, admin.execute_v3(calls)).await.unwrap();
    }
}

/// Reads pages until caught up; returns the events and the final cursor.
async fn drain<P: Provider + Sync>(
    stream: &EventStream<P>,
    mut cursor: EventCursor,
    max_pages: usize,
) -> (Vec<ChainEvent>, EventCursor, usize) {
    let mut events = Vec::new();
    let mut pages = 0;
    while pages < max_pages {
        let (page, next) = stream.next_page(&cursor).await.unwrap();
        pages += 1;
        let caught_up =
            page.is_empty() && next.continuation.is_none() && next.from_block == cursor.from_block;
        events.extend(page);
        cursor = next;
        if caught_up {
            break;
        }
    }
    (events, cursor, pages)
}

#[tokio::test]
async fn stream_delivers_hundreds_of_events_in_order_exactly_once_and_resumes_from_a_stored_cursor()
{
    // Given a token with one mint and 300 transfers over 30 blocks
    let net = TestNet::new().await.unwrap();
    let deploy_block = net.provider.block_number().await.unwrap() + 1;
    let token = deploy_token(&net).await;
    emit_transfers(&net, token).await;
    let mut expected = vec![CiroEvent::TestToken(Event::Transfer(Transfer {
        from: ContractAddress(Felt::ZERO),
        to: ContractAddress(net.address(Actor::Admin)),
        value: U256 {
            low: 1_000_000_000,
            high: 0,
        },
    }))];
    expected.extend((0..TXS * TRANSFERS_PER_TX).map(|i| expected_transfer(&net, i)));

    // When an indexer reads 4 pages of 37, stores its cursor, "restarts" and reads the rest
    let stream = EventStream::new(&net.provider, token, ContractKind::TestToken, 37);
    let (first, cursor, _) = drain(&stream, EventCursor::at(deploy_block), 4).await;
    assert_eq!(first.len(), 4 * 37);
    let stored = serde_json::to_string(&cursor).unwrap();
    let restarted = EventStream::new(&net.provider, token, ContractKind::TestToken, 37);
    let (rest, end, _) = drain(&restarted, serde_json::from_str(&stored).unwrap(), 100).await;

    // Then every event came once, in order, decoded, accepted, from the token
    let all: Vec<ChainEvent> = first.into_iter().chain(rest).collect();
    assert_eq!(all.len(), expected.len());
    assert_eq!(
        all.iter().map(|e| e.event.clone()).collect::<Vec<_>>(),
        expected
    );
    assert!(all
        .iter()
        .all(|e| e.finality == Finality::AcceptedOnL2 && e.contract == token));
    let blocks: std::collections::BTreeSet<u64> =
        all.iter().filter_map(|e| e.block_number).collect();
    assert_eq!(blocks.len() as u128, TXS + 1, "one block per transaction");
    assert!(all
        .windows(2)
        .all(|w| w[0].block_number <= w[1].block_number));

    // And once caught up, a new event is the only thing the next read returns
    let admin = net.account(Actor::Admin);
    let to = ContractAddress(net.address(Actor::Delegator));
    send(
        &net.provider,
        TestToken::new(token, &admin).transfer(&to, &U256 { low: 5, high: 0 }),
    )
    .await
    .unwrap();
    let (new, _, _) = drain(&restarted, end, 10).await;
    assert_eq!(new.len(), 1);
    assert_eq!(
        new[0].event,
        CiroEvent::TestToken(Event::Transfer(Transfer {
            from: ContractAddress(net.address(Actor::Admin)),
            to,
            value: U256 { low: 5, high: 0 }
        }))
    );
}

#[tokio::test]
async fn pre_confirmed_events_are_told_apart_and_delivered_again_once_accepted() {
    // Given a devnet that closes blocks only on demand
    let net = TestNet::with_devnet_args(&["--block-generation-on", "demand"])
        .await
        .unwrap();
    net.devnet.create_block().await.unwrap();
    let token = deploy_token(&net).await;
    net.devnet.create_block().await.unwrap();
    let stream = EventStream::new(&net.provider, token, ContractKind::TestToken, 100);
    let (_, cursor, _) = drain(&stream, EventCursor::at(0), 10).await;

    // When a transfer lands in the pre-confirmed block
    let admin = net.account(Actor::Admin);
    let to = ContractAddress(net.address(Actor::WorkerA));
    send(
        &net.provider,
        TestToken::new(token, &admin).transfer(&to, &U256 { low: 9, high: 0 }),
    )
    .await
    .unwrap();

    // Then it is visible as pre-confirmed, and not yet through the cursor
    let peeked = stream.pre_confirmed().await.unwrap();
    assert_eq!(peeked.len(), 1);
    assert_eq!(peeked[0].finality, Finality::PreConfirmed);
    let (accepted, cursor, _) = drain(&stream, cursor, 10).await;
    assert!(accepted.is_empty());

    // And once the block closes it comes through the cursor as accepted
    net.devnet.create_block().await.unwrap();
    let (accepted, _, _) = drain(&stream, cursor, 10).await;
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0].finality, Finality::AcceptedOnL2);
    assert_eq!(accepted[0].event, peeked[0].event);
    assert!(stream.pre_confirmed().await.unwrap().is_empty());
}

#[tokio::test]
async fn jobmgr_and_pool_events_are_decoded_with_their_hosted_governance_events() {
    use ciro_chain::bindings::{cdc_pool, governance, job_mgr};
    use ciro_tests::system::System;
    // Given the system deployed (its role grants are governance events) and one job's life
    let s = System::deploy().await.unwrap();
    let (_, job) = s.completed_job().await;
    s.advance(ciro_tests::system::RESULT_WINDOW).await;
    s.send(s.jobs_as(Actor::Attacker).finalize(&job))
        .await
        .unwrap();

    // When both contracts' events are streamed from the first block
    let jobs = EventStream::new(&s.net.provider, s.job_mgr, ContractKind::JobMgr, 10);
    let (job_events, _, _) = drain(&jobs, EventCursor::at(0), 100).await;
    let pool = EventStream::new(&s.net.provider, s.pool, ContractKind::CdcPool, 10);
    let (pool_events, _, _) = drain(&pool, EventCursor::at(0), 100).await;

    // Then JobMgr's read as governance, parameters, then the job's life in order
    let names: Vec<&str> = job_events
        .iter()
        .map(|e| match &e.event {
            CiroEvent::Governance(governance::Event::AdminTransferred(_)) => "AdminTransferred",
            CiroEvent::Governance(governance::Event::RoleGranted(_)) => "RoleGranted",
            CiroEvent::Governance(governance::Event::Sealed(_)) => "Sealed",
            CiroEvent::JobMgr(job_mgr::Event::ParamsSet(_)) => "ParamsSet",
            CiroEvent::JobMgr(job_mgr::Event::ModelSet(_)) => "ModelSet",
            CiroEvent::JobMgr(job_mgr::Event::JobSubmitted(_)) => "JobSubmitted",
            CiroEvent::JobMgr(job_mgr::Event::JobAssigned(_)) => "JobAssigned",
            CiroEvent::JobMgr(job_mgr::Event::ResultSubmitted(_)) => "ResultSubmitted",
            CiroEvent::JobMgr(job_mgr::Event::JobFinalized(_)) => "JobFinalized",
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        names,
        [
            "ParamsSet",
            "AdminTransferred",
            "RoleGranted",
            "RoleGranted",
            "RoleGranted",
            "RoleGranted",
            "Sealed",
            "ModelSet",
            "JobSubmitted",
            "JobAssigned",
            "ResultSubmitted",
            "JobFinalized"
        ]
    );
    // And the pool's include the worker's registration, stake, outcome and the reward
    let has = |pick: fn(&CiroEvent) -> bool| pool_events.iter().any(|e| pick(&e.event));
    assert!(has(|e| matches!(
        e,
        CiroEvent::CdcPool(cdc_pool::Event::WorkerRegistered(_))
    )));
    assert!(has(|e| matches!(
        e,
        CiroEvent::CdcPool(cdc_pool::Event::Staked(_))
    )));
    assert!(has(|e| matches!(
        e,
        CiroEvent::CdcPool(cdc_pool::Event::OutcomeRecorded(_))
    )));
    assert!(has(|e| matches!(
        e,
        CiroEvent::CdcPool(cdc_pool::Event::RewardNotified(_))
    )));
    assert!(has(|e| matches!(
        e,
        CiroEvent::Governance(governance::Event::RoleGranted(_))
    )));
}
