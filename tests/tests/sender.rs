//! One account used by many concurrent tasks through a `TxSender`: every transaction lands,
//! with consecutive nonces, and the balances add up.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use ciro_chain::bindings::test_token::{TestToken, TestTokenReader};
use ciro_chain::cainome::cairo_serde::{ContractAddress, U256};
use ciro_chain::sender::{GasBounds, SenderConfig, TxSender};
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

/// An HTTP proxy in front of the devnet's JSON-RPC that forwards every request and answers
/// it, except that the answer to the `lose`-th `starknet_addInvokeTransaction` (from 0) is
/// lost: the node got the transaction, the client gets a malformed answer (a transport
/// error). Its URL, and how many invocations it saw.
async fn proxy_losing_an_answer(
    upstream: reqwest::Url,
    lose: u32,
) -> (reqwest::Url, Arc<AtomicU32>) {
    proxy_losing(upstream, lose, false).await
}

/// [`proxy_losing_an_answer`]; with `then_refuse`, past the lost answer every further
/// `starknet_addInvokeTransaction` is refused by the proxy itself (insufficient balance, a
/// definite refusal) and every transaction status is "not found" (the node has not shown the
/// landed transaction yet).
async fn proxy_losing(
    upstream: reqwest::Url,
    lose: u32,
    then_refuse: bool,
) -> (reqwest::Url, Arc<AtomicU32>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap())
        .parse()
        .unwrap();
    let invokes = Arc::new(AtomicU32::new(0));
    let seen = invokes.clone();
    let client = reqwest::Client::new();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (client, upstream, seen) = (client.clone(), upstream.clone(), seen.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 16_384];
                let (head_len, body_len) = loop {
                    let n = socket.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (end + 4, len);
                    }
                };
                while buf.len() < head_len + body_len {
                    let n = socket.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let body = buf[head_len..head_len + body_len].to_vec();
                let text = String::from_utf8_lossy(&body).into_owned();
                let invoke = text.contains("starknet_addInvokeTransaction");
                let past_loss = then_refuse && seen.load(Ordering::SeqCst) > lose;
                let refusal = |code: i64, message: &str| {
                    let id = serde_json::from_str::<serde_json::Value>(&text)
                        .ok()
                        .and_then(|v| v.get("id").cloned())
                        .unwrap_or(serde_json::Value::Null);
                    serde_json::json!({
                        "jsonrpc": "2.0",
                        "id": id,
                        "error": {"code": code, "message": message},
                    })
                    .to_string()
                    .into_bytes()
                };
                let answer = if past_loss && invoke {
                    seen.fetch_add(1, Ordering::SeqCst);
                    refusal(
                        54,
                        "Account balance is smaller than the transaction's maximal fee",
                    )
                } else if past_loss && text.contains("starknet_getTransactionStatus") {
                    refusal(29, "Transaction hash not found")
                } else {
                    let answer = client
                        .post(upstream)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .unwrap()
                        .bytes()
                        .await
                        .unwrap();
                    if invoke && seen.fetch_add(1, Ordering::SeqCst) == lose {
                        b"the answer was lost".to_vec()
                    } else {
                        answer.to_vec()
                    }
                };
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    answer.len()
                );
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(&answer).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    (url, invokes)
}

#[tokio::test]
async fn a_transaction_whose_answer_was_lost_is_not_sent_again() {
    // For the sender's first transaction (its nonce read from the chain) and for a later one
    // (its nonce cached), sent with its own estimate (`execute`: the coordinator, workers and
    // CLI) or within the caller's gas bounds (`send_with_bounds`: the relayer): the node loses
    // the answer to that transaction, which lands.
    for (lose, bounded) in [(0, false), (1, false), (0, true), (1, true)] {
        let net = TestNet::new().await.unwrap();
        let token = deploy_test_token(&net, 10).await.unwrap();
        let (url, invokes) = proxy_losing_an_answer(net.rpc_url(), lose).await;
        let sender = TxSender::new(net.account_via(Actor::Admin, url), SenderConfig::default());
        let nonce_before = net
            .provider
            .get_nonce(BlockId::Tag(BlockTag::Latest), net.address(Actor::Admin))
            .await
            .unwrap();
        let to = ContractAddress(net.address(Actor::WorkerB));
        let binding = TestToken::new(token, sender.account());
        let one = U256 { low: 1, high: 0 };
        // When it sends three transfers one after another, each call returns that
        // transfer's own transaction: past the lost answer it finds its transaction on the
        // node instead of failing (a first transaction: the caller would send it again) or
        // sending the calls again at the next nonce (a later one: the transfer ran twice);
        for _ in 0..3 {
            let calls = vec![binding.transfer_getcall(&to, &one)];
            let outcome = if bounded {
                let estimate = sender.estimate(&calls).await.unwrap();
                let bounds = GasBounds::from_estimate(&estimate, 1.5);
                let tx_hash = sender
                    .send_with_bounds(&calls, &bounds)
                    .await
                    .unwrap_or_else(|e| panic!("losing answer {lose}, bounded: {e}"));
                sender.wait(tx_hash).await.unwrap()
            } else {
                sender
                    .execute(calls)
                    .await
                    .unwrap_or_else(|e| panic!("losing answer {lose}: {e}"))
            };
            assert_eq!(outcome.tx_hash, *outcome.receipt.receipt.transaction_hash());
        }
        assert!(
            invokes.load(Ordering::SeqCst) > lose,
            "answer {lose} was lost"
        );
        // then each transfer ran once, with one nonce each.
        let balance = call(TestTokenReader::new(token, &net.provider).balance_of(&to))
            .await
            .unwrap();
        assert_eq!(
            balance.low, 3,
            "losing answer {lose} (bounded: {bounded}): each transfer ran once"
        );
        let nonce_after = net
            .provider
            .get_nonce(BlockId::Tag(BlockTag::Latest), net.address(Actor::Admin))
            .await
            .unwrap();
        assert_eq!(
            nonce_after,
            nonce_before + Felt::from(3u8),
            "losing answer {lose} (bounded: {bounded})"
        );
    }
}

/// A send whose answer was lost and whose retry the node then refused outright (here a
/// definite refusal, insufficient balance, while the node does not show the landed
/// transaction yet) is reported as possibly sent (a transport error: "may still land"), never
/// as the refusal: a relayer would take a refusal for "nothing went out" and free the user
/// whose transaction lands.
#[tokio::test]
async fn a_refusal_after_a_lost_answer_is_reported_as_possibly_sent() {
    let net = TestNet::new().await.unwrap();
    let token = deploy_test_token(&net, 10).await.unwrap();
    let (url, invokes) = proxy_losing(net.rpc_url(), 0, true).await;
    let sender = TxSender::new(net.account_via(Actor::Admin, url), SenderConfig::default());
    let to = ContractAddress(net.address(Actor::WorkerB));
    let calls =
        vec![TestToken::new(token, sender.account())
            .transfer_getcall(&to, &U256 { low: 1, high: 0 })];
    let estimate = sender.estimate(&calls).await.unwrap();
    let bounds = GasBounds::from_estimate(&estimate, 1.5);
    match sender.send_with_bounds(&calls, &bounds).await {
        Err(ciro_chain::ChainError::Transport(message)) => {
            assert!(message.contains("may still land"), "{message}")
        }
        other => panic!("not reported as possibly sent: {other:?}"),
    }
    assert!(invokes.load(Ordering::SeqCst) >= 2, "the retry was refused");
    // The lost transaction landed.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let balance = call(TestTokenReader::new(token, &net.provider).balance_of(&to))
            .await
            .unwrap();
        if balance.low == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the transfer never landed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
