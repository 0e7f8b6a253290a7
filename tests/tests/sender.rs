//! One account used by many concurrent tasks through a `TxSender`: every transaction lands,
//! with consecutive nonces, and the balances add up.

use std::sync::Arc;

use ciro_chain::bindings::test_token::{TestToken, TestTokenReader};
use ciro_chain::cainome::cairo_serde::{ContractAddress, U256};
use ciro_chain::sender::{SenderConfig, TxSender};
use ciro_chain::starknet::accounts::Account;
use ciro_chain::starknet::core::types::{BlockId, BlockTag, Felt};
use ciro_chain::starknet::providers::Provider;
use ciro_chain::tx::call;
use ciro_tests::assert::assert_reverts;
use ciro_tests::fixtures::deploy_test_token;
use ciro_tests::{Actor, TestNet};

const TASKS: u128 = 16;

#[tokio::test]
async fn concurrent_tasks_share_one_account_without_nonce_collisions() {
    // Given a token and a sender for the admin's account
    let net = TestNet::new().await.unwrap();
    let token = deploy_test_token(&net, 1_000_000).await.unwrap();
    let nonce_before = net
        .provider
        .get_nonce(BlockId::Tag(BlockTag::Latest), net.address(Actor::Admin))
        .await
        .unwrap();
    let sender = Arc::new(TxSender::new(
        net.account(Actor::Admin),
        SenderConfig::default(),
    ));
    let recipient = ContractAddress(net.address(Actor::WorkerA));

    // When 16 tasks each send a transfer at the same time
    let tasks: Vec<_> = (1..=TASKS)
        .map(|amount| {
            let sender = sender.clone();
            tokio::spawn(async move {
                let call = TestToken::new(token, sender.account()).transfer_getcall(
                    &recipient,
                    &U256 {
                        low: amount,
                        high: 0,
                    },
                );
                sender.execute(vec![call]).await
            })
        })
        .collect();
    let mut hashes = std::collections::HashSet::new();
    for task in tasks {
        hashes.insert(task.await.unwrap().unwrap().tx_hash);
    }

    // Then all 16 landed, the nonce advanced by 16, and the recipient got 1 + 2 + ... + 16
    assert_eq!(hashes.len() as u128, TASKS);
    let nonce_after = net
        .provider
        .get_nonce(BlockId::Tag(BlockTag::Latest), net.address(Actor::Admin))
        .await
        .unwrap();
    assert_eq!(nonce_after, nonce_before + Felt::from(TASKS));
    let reader = TestTokenReader::new(token, &net.provider);
    assert_eq!(
        call(reader.balance_of(&recipient)).await.unwrap().low,
        TASKS * (TASKS + 1) / 2
    );
}

#[tokio::test]
async fn a_revert_through_the_sender_keeps_the_nonce_in_step() {
    let net = TestNet::new().await.unwrap();
    let token = deploy_test_token(&net, 10).await.unwrap();
    let sender = TxSender::new(net.account(Actor::Admin), SenderConfig::default());
    let to = ContractAddress(net.address(Actor::WorkerB));
    let binding = TestToken::new(token, sender.account());

    let too_much = sender
        .execute(vec![
            binding.transfer_getcall(&to, &U256 { low: 11, high: 0 })
        ])
        .await;
    assert_reverts(too_much, "ERC20: insufficient balance");

    // The failed estimate used no nonce: the next transaction goes through.
    sender
        .execute(vec![
            binding.transfer_getcall(&to, &U256 { low: 10, high: 0 })
        ])
        .await
        .unwrap();
    assert_eq!(sender.account().address(), net.address(Actor::Admin));
}

#[tokio::test]
async fn a_nonce_moved_by_another_sender_of_the_account_is_resynchronised() {
    // Given a sender that has cached the admin's nonce
    let net = TestNet::new().await.unwrap();
    let token = deploy_test_token(&net, 10).await.unwrap();
    let sender = TxSender::new(net.account(Actor::Admin), SenderConfig::default());
    let to = ContractAddress(net.address(Actor::WorkerB));
    let binding = TestToken::new(token, sender.account());
    let one = U256 { low: 1, high: 0 };
    sender
        .execute(vec![binding.transfer_getcall(&to, &one)])
        .await
        .unwrap();

    // When another process of the same account sends two transactions behind its back
    let other = net.account(Actor::Admin);
    for _ in 0..2 {
        ciro_chain::tx::send(
            &net.provider,
            TestToken::new(token, &other).transfer(&to, &one),
        )
        .await
        .unwrap();
    }

    // Then its next transaction still lands (the node reports the stale nonce as an execution
    // failure; the sender sees the chain's nonce is past its own and resynchronises)
    sender
        .execute(vec![binding.transfer_getcall(&to, &one)])
        .await
        .unwrap();
    let balance = call(TestTokenReader::new(token, &net.provider).balance_of(&to))
        .await
        .unwrap();
    assert_eq!(balance.low, 4);
}
