//! The harness itself, exercised on the project's test ERC-20 on a real starknet-devnet:
//! declare (in the base state), deploy through the UDC, calls, an exact revert string, exact
//! decoded events, per-test isolation, time control, minting, and devnet's lifetime.

use ciro_chain::bindings::test_token::{Event, TestToken, TestTokenReader, Transfer};
use ciro_chain::cainome::cairo_serde::ContractAddress;
use ciro_chain::starknet::core::types::{BlockId, BlockTag, Felt};
use ciro_chain::starknet::providers::Provider;
use ciro_chain::tx::{call, send};
use ciro_tests::assert::{assert_events, assert_reverts};
use ciro_tests::devnet::Devnet;
use ciro_tests::fixtures::{deploy_test_token, u256, TEST_TOKEN_DECIMALS, TEST_TOKEN_NAME};
use ciro_tests::net::STRK;
use ciro_tests::{Actor, TestNet};

const SUPPLY: u128 = 1_000_000;

async fn deploy_token(net: &TestNet) -> Felt {
    deploy_test_token(net, SUPPLY)
        .await
        .expect("deploy TestToken")
}

#[tokio::test]
async fn test_token_deploys_with_its_constructor_arguments() {
    let net = TestNet::new().await.unwrap();
    let token = deploy_token(&net).await;
    let reader = TestTokenReader::new(token, &net.provider);

    assert_eq!(call(reader.name()).await.unwrap(), TEST_TOKEN_NAME);
    assert_eq!(call(reader.decimals()).await.unwrap(), TEST_TOKEN_DECIMALS);
    assert_eq!(call(reader.total_supply()).await.unwrap(), u256(SUPPLY));
    let admin = ContractAddress(net.address(Actor::Admin));
    assert_eq!(call(reader.balance_of(&admin)).await.unwrap(), u256(SUPPLY));
}

#[tokio::test]
async fn transfer_moves_balance_and_emits_exactly_one_transfer_event() {
    // Given a token whose supply the admin holds
    let net = TestNet::new().await.unwrap();
    let token_address = deploy_token(&net).await;
    let admin = net.account(Actor::Admin);
    let token = TestToken::new(token_address, &admin);
    let submitter = ContractAddress(net.address(Actor::Submitter));

    // When the admin transfers 250 to the submitter
    let outcome = send(&net.provider, token.transfer(&submitter, &u256(250)))
        .await
        .unwrap();

    // Then the balances moved and exactly one Transfer was emitted
    let reader = TestTokenReader::new(token_address, &net.provider);
    assert_eq!(
        call(reader.balance_of(&submitter)).await.unwrap(),
        u256(250)
    );
    assert_eq!(
        call(reader.balance_of(&ContractAddress(net.address(Actor::Admin))))
            .await
            .unwrap(),
        u256(SUPPLY - 250)
    );
    assert_events(
        &outcome,
        token_address,
        &[Event::Transfer(Transfer {
            from: ContractAddress(net.address(Actor::Admin)),
            to: submitter,
            value: u256(250),
        })],
    );
}

#[tokio::test]
async fn transfer_beyond_balance_reverts_with_the_contract_error_string() {
    let net = TestNet::new().await.unwrap();
    let token_address = deploy_token(&net).await;
    let attacker = net.account(Actor::Attacker);
    let token = TestToken::new(token_address, &attacker);

    let result = send(
        &net.provider,
        token.transfer(&ContractAddress(net.address(Actor::Attacker)), &u256(1)),
    )
    .await;

    assert_reverts(result, "ERC20: insufficient balance");
}

#[tokio::test]
async fn transfer_from_without_allowance_reverts_and_the_revert_is_exact() {
    let net = TestNet::new().await.unwrap();
    let token_address = deploy_token(&net).await;
    let attacker = net.account(Actor::Attacker);
    let token = TestToken::new(token_address, &attacker);
    let from = ContractAddress(net.address(Actor::Admin));
    let to = ContractAddress(net.address(Actor::Attacker));

    let result = send(&net.provider, token.transfer_from(&from, &to, &u256(1))).await;

    // The assertion compares the whole string: a prefix or another revert is a failure.
    let err = result.as_ref().expect_err("must revert");
    assert_eq!(err.revert_reason(), Some("ERC20: insufficient allowance"));
    assert_reverts(result, "ERC20: insufficient allowance");
}

#[tokio::test]
#[should_panic(
    expected = "expected revert \"ERC20: insufficient\", got revert \"ERC20: insufficient balance\""
)]
async fn assert_reverts_rejects_a_different_error_string() {
    let net = TestNet::new().await.unwrap();
    let token_address = deploy_token(&net).await;
    let attacker = net.account(Actor::Attacker);
    let token = TestToken::new(token_address, &attacker);
    let result = send(
        &net.provider,
        token.transfer(&ContractAddress(net.address(Actor::Admin)), &u256(1)),
    )
    .await;
    assert_reverts(result, "ERC20: insufficient");
}

#[tokio::test]
#[should_panic(expected = "events emitted by")]
async fn assert_events_rejects_a_different_event() {
    let net = TestNet::new().await.unwrap();
    let token_address = deploy_token(&net).await;
    let admin = net.account(Actor::Admin);
    let token = TestToken::new(token_address, &admin);
    let to = ContractAddress(net.address(Actor::Submitter));
    let outcome = send(&net.provider, token.transfer(&to, &u256(5)))
        .await
        .unwrap();
    let from = ContractAddress(net.address(Actor::Admin));
    assert_events(
        &outcome,
        token_address,
        &[Event::Transfer(Transfer {
            from,
            to,
            value: u256(6),
        })],
    );
}

#[tokio::test]
async fn each_test_net_starts_from_the_base_state() {
    // Given a net where a token was deployed, time moved and a block was added
    let net = TestNet::new().await.unwrap();
    let base_block = net.provider.block_number().await.unwrap();
    let token = deploy_token(&net).await;
    net.devnet.increase_time(10_000).await.unwrap();
    assert!(net.provider.block_number().await.unwrap() > base_block);
    drop(net);

    // When the next test net is checked out (the same devnet, from the pool)
    let net = TestNet::new().await.unwrap();

    // Then none of it is there
    assert_eq!(net.provider.block_number().await.unwrap(), base_block);
    assert!(net
        .provider
        .get_class_hash_at(BlockId::Tag(BlockTag::Latest), token)
        .await
        .is_err());
    assert!(net.class_hash("TestToken").is_ok());
}

#[tokio::test]
async fn increase_time_moves_the_block_clock() {
    let net = TestNet::new().await.unwrap();
    let before = net.now().await.unwrap();
    net.devnet.increase_time(7 * 86_400).await.unwrap();
    assert!(net.now().await.unwrap() >= before + 7 * 86_400);

    let target = before + 30 * 86_400;
    net.devnet.set_time(target).await.unwrap();
    assert_eq!(net.now().await.unwrap(), target);
}

#[tokio::test]
async fn mint_funds_an_account_in_strk() {
    let net = TestNet::new().await.unwrap();
    let strk = TestTokenReader::new(STRK, &net.provider);
    let who = ContractAddress(net.address(Actor::Sponsor));
    let before = call(strk.balance_of(&who)).await.unwrap();

    let reported = net.devnet.mint_strk(who.0, 5_000).await.unwrap();

    let after = call(strk.balance_of(&who)).await.unwrap();
    assert_eq!(after.low, before.low + 5_000);
    assert_eq!(reported, after.low);
}

#[tokio::test]
async fn actors_are_distinct_funded_accounts() {
    let net = TestNet::new().await.unwrap();
    let strk = TestTokenReader::new(STRK, &net.provider);
    let mut seen = std::collections::HashSet::new();
    for actor in Actor::ALL {
        assert!(
            seen.insert(net.address(actor)),
            "{actor:?} shares an account"
        );
        let balance = call(strk.balance_of(&ContractAddress(net.address(actor))))
            .await
            .unwrap();
        assert!(balance.low > 0, "{actor:?} has no STRK");
    }
}

fn process_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn devnet_is_killed_on_drop() {
    let devnet = Devnet::start().unwrap();
    let pid = devnet.pid();
    assert!(process_alive(pid));
    drop(devnet);
    assert!(!process_alive(pid));
}

#[test]
fn devnet_is_killed_when_the_test_panics() {
    let (tx, rx) = std::sync::mpsc::channel();
    let outcome = std::thread::spawn(move || {
        let devnet = Devnet::start().unwrap();
        tx.send(devnet.pid()).unwrap();
        panic!("a failing test");
    })
    .join();
    assert!(outcome.is_err());
    let pid = rx.recv().unwrap();
    assert!(!process_alive(pid));
}
