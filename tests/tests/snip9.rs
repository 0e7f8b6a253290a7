//! SNIP-9 v2 outside executions signed by the chain crate (SNIP-12 revision 1), submitted
//! by a relayer through a predeployed OpenZeppelin account's `execute_from_outside_v2`:
//! the user's calls run and the user pays no fee; a replay, a tampered message, the wrong
//! submitter and an expired window are each rejected with the account's error string.

use ciro_chain::bindings::src9_account::Src9Account;
use ciro_chain::bindings::test_token::{TestToken, TestTokenReader};
use ciro_chain::cainome::cairo_serde::{ContractAddress, U256};
use ciro_chain::snip9::{verify, OutsideExecution, ANY_CALLER};
use ciro_chain::starknet::core::types::Felt;
use ciro_chain::tx::{call, send};
use ciro_tests::assert::assert_reverts;
use ciro_tests::net::STRK;
use ciro_tests::{Actor, TestNet};

const AMOUNT: u128 = 1_234_567;

async fn strk_of(net: &TestNet, actor: Actor) -> u128 {
    let strk = TestTokenReader::new(STRK, &net.provider);
    call(strk.balance_of(&ContractAddress(net.address(actor))))
        .await
        .unwrap()
        .low
}

/// The submitter's outside execution: pay `AMOUNT` STRK to the sponsor, submitted by `caller`.
async fn transfer_execution(
    net: &TestNet,
    caller: Felt,
    nonce: u64,
    amount: u128,
) -> OutsideExecution {
    let user = net.account(Actor::Submitter);
    let transfer = TestToken::new(STRK, &user).transfer_getcall(
        &ContractAddress(net.address(Actor::Sponsor)),
        &U256 {
            low: amount,
            high: 0,
        },
    );
    let now = net.now().await.unwrap();
    OutsideExecution {
        caller,
        nonce: Felt::from(nonce),
        execute_after: now - 60,
        execute_before: now + 3_600,
        calls: vec![transfer],
    }
}

fn sign(net: &TestNet, execution: &OutsideExecution) -> Vec<Felt> {
    execution
        .sign(
            &net.signing_key(Actor::Submitter),
            net.address(Actor::Submitter),
            net.chain_id(),
        )
        .unwrap()
}

#[tokio::test]
async fn relayer_submits_a_signed_outside_execution_and_the_user_pays_no_fee() {
    // Given the submitter signed a STRK transfer that only the relayer may submit
    let net = TestNet::new().await.unwrap();
    let execution = transfer_execution(&net, net.address(Actor::Relayer), 1, AMOUNT).await;
    let signature = sign(&net, &execution);
    let hash = execution.message_hash(net.address(Actor::Submitter), net.chain_id());
    assert!(
        verify(net.public_key(Actor::Submitter), hash, &signature),
        "off-chain verification"
    );
    let (user_before, sponsor_before, relayer_before) = (
        strk_of(&net, Actor::Submitter).await,
        strk_of(&net, Actor::Sponsor).await,
        strk_of(&net, Actor::Relayer).await,
    );
    let relayer = net.account(Actor::Relayer);
    let account = Src9Account::new(net.address(Actor::Submitter), &relayer);
    let reader = Src9Account::new(net.address(Actor::Submitter), &relayer);
    assert!(call(reader.is_valid_outside_execution_nonce(&Felt::ONE))
        .await
        .unwrap());

    // When the relayer submits it
    let outcome = send(
        &net.provider,
        account.execute_from_outside_v2(&execution.to_binding(), &signature),
    )
    .await
    .unwrap();

    // Then the transfer happened, the user paid exactly the amount, the relayer the fee
    let fee = outcome.actual_fee();
    assert!(fee > Felt::ZERO);
    assert_eq!(strk_of(&net, Actor::Submitter).await, user_before - AMOUNT);
    assert_eq!(strk_of(&net, Actor::Sponsor).await, sponsor_before + AMOUNT);
    let fee: u128 = fee.try_into().unwrap();
    assert_eq!(strk_of(&net, Actor::Relayer).await, relayer_before - fee);
    assert!(
        !call(reader.is_valid_outside_execution_nonce(&Felt::ONE))
            .await
            .unwrap(),
        "nonce spent"
    );

    // And a replay of the same signed execution is rejected
    let replay = send(
        &net.provider,
        account.execute_from_outside_v2(&execution.to_binding(), &signature),
    )
    .await;
    assert_reverts(replay, "SRC9: duplicated nonce");
}

#[tokio::test]
async fn a_tampered_execution_fails_signature_verification() {
    let net = TestNet::new().await.unwrap();
    let signed = transfer_execution(&net, ANY_CALLER, 2, AMOUNT).await;
    let signature = sign(&net, &signed);
    // The relayer swaps in a larger amount under the user's signature.
    let tampered = transfer_execution(&net, ANY_CALLER, 2, AMOUNT * 100).await;
    let user_before = strk_of(&net, Actor::Submitter).await;
    let relayer = net.account(Actor::Relayer);
    let account = Src9Account::new(net.address(Actor::Submitter), &relayer);

    let result = send(
        &net.provider,
        account.execute_from_outside_v2(&tampered.to_binding(), &signature),
    )
    .await;

    assert_reverts(result, "SRC9: invalid signature");
    assert_eq!(strk_of(&net, Actor::Submitter).await, user_before);
}

#[tokio::test]
async fn only_the_named_caller_may_submit() {
    let net = TestNet::new().await.unwrap();
    let execution = transfer_execution(&net, net.address(Actor::Relayer), 3, AMOUNT).await;
    let signature = sign(&net, &execution);
    let attacker = net.account(Actor::Attacker);
    let account = Src9Account::new(net.address(Actor::Submitter), &attacker);

    let result = send(
        &net.provider,
        account.execute_from_outside_v2(&execution.to_binding(), &signature),
    )
    .await;

    assert_reverts(result, "SRC9: invalid caller");
}

#[tokio::test]
async fn an_execution_past_its_window_is_rejected() {
    let net = TestNet::new().await.unwrap();
    let execution = transfer_execution(&net, ANY_CALLER, 4, AMOUNT).await;
    let signature = sign(&net, &execution);
    net.devnet.increase_time(7_200).await.unwrap();
    let relayer = net.account(Actor::Relayer);
    let account = Src9Account::new(net.address(Actor::Submitter), &relayer);

    let result = send(
        &net.provider,
        account.execute_from_outside_v2(&execution.to_binding(), &signature),
    )
    .await;

    assert_reverts(result, "SRC9: now >= execute_before");
}
