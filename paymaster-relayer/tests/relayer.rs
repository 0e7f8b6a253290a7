//! The paymaster relayer against a real devnet, a real Paymaster and OpenZeppelin accounts:
//! a user with no STRK submits a job through build → sign → execute, sponsored or paying in
//! the payment token; every drain attempt is refused with nothing paid by the sponsor or the
//! relayer; 200 executions from 20 users through 4 relayer accounts all land.

#[path = "common/mod.rs"]
mod common;

use std::collections::HashSet;
use std::time::Duration;

use ciro_api::snip29::{PaymasterError, API_KEY_HEADER};
use ciro_chain::bindings::job_mgr::JobMgrReader;
use ciro_chain::bindings::paymaster::{Event as PaymasterEvent, Paymaster, PaymasterReader};
use ciro_chain::bindings::test_token::TestToken;
use ciro_chain::cainome::cairo_serde::{CairoSerde, ContractAddress};
use ciro_chain::clients::u256;
use ciro_chain::snip9::{sponsored_nonce, OutsideExecution, ANY_CALLER};
use ciro_chain::starknet::accounts::Account;
use ciro_chain::starknet::core::types::{BlockId, BlockTag, Call, Felt};
use ciro_chain::starknet::core::utils::{cairo_short_string_to_felt, get_selector_from_name};
use ciro_chain::starknet::providers::Provider;
use ciro_chain::starknet::signers::SigningKey;
use ciro_chain::tx::{call, send};
use ciro_paymaster_relayer::OPENZEPPELIN_ACCOUNT_1_0;
use ciro_paymaster_relayer::{Limits, STRK};
use ciro_tests::system::{JOB_FEE, MODEL_PRICE};
use ciro_tests::Actor;
use common::*;

fn code(error: PaymasterError) -> i64 {
    error.code()
}

/// The charge of every `SponsoredExecution` event in a receipt.
fn charges(
    receipt: &ciro_chain::starknet::core::types::TransactionReceiptWithBlockInfo,
    paymaster: Felt,
) -> Vec<u128> {
    receipt
        .receipt
        .events()
        .iter()
        .filter(|e| e.from_address == paymaster)
        .filter_map(|e| match PaymasterEvent::try_from(e) {
            Ok(PaymasterEvent::SponsoredExecution(s)) => Some(s.charge.low),
            _ => None,
        })
        .collect()
}

/// A job submission: approve JobMgr for the fee, then `submit_job`.
async fn job_calls(fx: &Fx, model_id: u64, input: u128) -> Vec<Call> {
    let deadline = fx.s.net.now().await.unwrap() + 3_600;
    let mut submit = vec![];
    submit.extend(u64::cairo_serialize(&model_id));
    submit.extend(ciro_chain::cainome::cairo_serde::U256::cairo_serialize(
        &u256(input),
    ));
    submit.extend(ciro_chain::cainome::cairo_serde::U256::cairo_serialize(
        &u256(JOB_FEE),
    ));
    submit.extend(u64::cairo_serialize(&deadline));
    submit.extend(ciro_chain::bindings::job_mgr::JobOptions::cairo_serialize(
        &ciro_chain::clients::no_options(),
    ));
    vec![
        Call {
            to: fx.s.token,
            selector: get_selector_from_name("approve").unwrap(),
            calldata: vec![fx.s.job_mgr, Felt::from(JOB_FEE), Felt::ZERO],
        },
        Call {
            to: fx.s.job_mgr,
            selector: get_selector_from_name("submit_job").unwrap(),
            calldata: submit,
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_user_without_strk_submits_a_job_and_the_sponsor_pays_exactly_the_charge() {
    let fx = Fx::start(Options::default()).await;
    assert!(fx.client().is_available().await.unwrap());
    let tokens = fx.client().get_supported_tokens().await.unwrap();
    let listed: HashSet<Felt> = tokens.iter().map(|t| t.token_address).collect();
    assert_eq!(listed, HashSet::from([STRK, fx.s.token]));
    let model = fx.s.model().await;
    let user = &fx.users[0];
    assert_eq!(
        fx.balance(STRK, user.address).await,
        0,
        "the user has no STRK"
    );
    let calls = job_calls(&fx, model, 0xabc).await;
    let (deposit, relayer_strk, relayer_tokens) = (
        fx.deposit().await,
        fx.balance(STRK, fx.relayers[0]).await,
        fx.balance(fx.s.token, fx.relayers[0]).await,
    );
    let user_tokens = fx.balance(fx.s.token, user.address).await;

    let built = fx
        .client()
        .build_transaction(&build_params(user.address, &calls, sponsored()))
        .await
        .unwrap();
    // The typed data: Caller is the Paymaster, the calls one for one with minimal-hex
    // selectors, fee fields present.
    let typed = built.typed_data().unwrap();
    let execution = OutsideExecution::from_typed_data(typed, fx.chain_id).unwrap();
    assert_eq!(execution.caller, fx.s.paymaster);
    assert_eq!(execution.calls, calls);
    assert_eq!(
        typed["message"]["Calls"][1]["Selector"],
        format!("{:#x}", get_selector_from_name("submit_job").unwrap())
    );
    assert!(built.fee().estimated_fee_in_strk > 0u8.into());
    let (typed_data, signature) = sign(user, &built, fx.chain_id);
    let executed = fx
        .client()
        .execute_transaction(&execute_params(
            user.address,
            typed_data,
            signature,
            built.parameters().clone(),
        ))
        .await
        .unwrap();
    let receipt = landed(&fx.s, executed.transaction_hash).await;

    // The execution is tracked: its id names this transaction, accepted once its receipt is
    // in (by name, and by position as starknet.go sends it); an unknown id is 160.
    assert_ne!(executed.tracking_id, Felt::ZERO);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let tracked = fx
            .client()
            .tracking_id_to_latest_hash(executed.tracking_id)
            .await
            .unwrap();
        assert_eq!(tracked.transaction_hash, executed.transaction_hash);
        if tracked.status == ciro_api::snip29::TrackingStatus::Accepted {
            break;
        }
        assert_eq!(tracked.status, ciro_api::snip29::TrackingStatus::Active);
        assert!(std::time::Instant::now() < deadline, "never accepted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let positional: serde_json::Value = reqwest::Client::new()
        .post(&fx.url)
        .json(&serde_json::json!({
            "jsonrpc": "2.0",
            "id": 7,
            "method": "paymaster_trackingIdToLatestHash",
            "params": [format!("{:#x}", executed.tracking_id)],
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        positional["result"],
        serde_json::json!({
            "transaction_hash": format!("{:#x}", executed.transaction_hash),
            "status": "accepted",
        })
    );
    let (c, _) = refusal(
        fx.client()
            .tracking_id_to_latest_hash(Felt::from(42u8))
            .await,
    );
    assert_eq!(c, code(PaymasterError::InvalidId));

    // The job is on chain, the user's.
    let jobs = JobMgrReader::new(fx.s.job_mgr, &fx.s.net.provider);
    assert_eq!(call(jobs.job_count()).await.unwrap(), 1);
    let job = call(jobs.get_job(&1)).await.unwrap();
    assert_eq!(job.job.submitter.0, user.address);
    // The user paid the job's fee and no gas.
    assert_eq!(fx.balance(STRK, user.address).await, 0);
    assert_eq!(
        fx.balance(fx.s.token, user.address).await,
        user_tokens - JOB_FEE
    );
    // The sponsor's deposit paid exactly the charge, to the relayer; the charge covers the
    // fee the relayer paid (token priced at 1 STRK).
    let charged = charges(&receipt, fx.s.paymaster);
    assert_eq!(charged.len(), 1);
    let charge = charged[0];
    assert!(charge > 0);
    assert_eq!(fx.deposit().await, deposit - charge);
    assert_eq!(
        fx.balance(fx.s.token, fx.relayers[0]).await,
        relayer_tokens + charge
    );
    let fee_paid = relayer_strk - fx.balance(STRK, fx.relayers[0]).await;
    assert!(
        fee_paid > 0 && fee_paid <= charge,
        "fee {fee_paid} vs charge {charge}"
    );
    assert!(charge <= MAX_CHARGE);
    let _ = MODEL_PRICE;

    // This sponsor does not pay for deployments (the default): a new account is refused with
    // 158 and the reason.
    let (newcomer, deployment) = new_account(0x0de9_0000);
    let (c, data) = refusal(
        fx.client()
            .build_transaction(&deploy_build_params(
                newcomer.address,
                &calls,
                &deployment,
                sponsored(),
            ))
            .await,
    );
    assert_eq!(c, code(PaymasterError::InvalidDeploymentData), "{data}");
    assert!(
        data.contains("does not pay for account deployments"),
        "{data}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn default_mode_pays_the_quoted_fee_in_the_payment_token_and_no_sponsor_pays() {
    let fx = Fx::start(Options::default()).await;
    let user = &fx.users[0];
    // Fees in the payment token at 1 STRK a token: give the user a whole token for them.
    let admin = fx.s.net.account(Actor::Admin);
    send(
        &fx.s.net.provider,
        ciro_chain::bindings::test_token::TestToken::new(fx.s.token, &admin).mint(
            &ContractAddress(user.address),
            &u256(1_000_000_000_000_000_000),
        ),
    )
    .await
    .unwrap();
    let recipient = fx.s.net.address(Actor::Verifier);
    let deposit = fx.deposit().await;
    let user_tokens = fx.balance(fx.s.token, user.address).await;
    let fee_recipient_tokens = fx.balance(fx.s.token, fx.relayers[0]).await;
    let calls = vec![fx.transfer(recipient, 1_000)];
    // Sponsored needs no key here: default mode pays its own way, without an API key.
    let (built, executed) = relay(
        &fx.anonymous(),
        user,
        &calls,
        default_mode(fx.s.token),
        fx.chain_id,
    )
    .await
    .unwrap();
    landed(&fx.s, executed.transaction_hash).await;
    let execution =
        OutsideExecution::from_typed_data(built.typed_data().unwrap(), fx.chain_id).unwrap();
    assert!(
        fx.relayers.contains(&execution.caller),
        "Caller is the relayer account that will send it"
    );
    assert_eq!(
        execution.calls.len(),
        2,
        "the user's call and the fee transfer"
    );
    let fee = execution.calls[1].clone();
    assert_eq!(fee.to, fx.s.token);
    assert_eq!(fee.selector, get_selector_from_name("transfer").unwrap());
    assert_eq!(fee.calldata[0], fx.relayers[0]);
    let amount: u128 = fee.calldata[1].try_into().unwrap();
    assert_eq!(built.fee().suggested_max_fee_in_gas_token, amount.into());
    assert!(amount > 0);
    assert_eq!(
        fx.balance(fx.s.token, user.address).await,
        user_tokens - 1_000 - amount
    );
    assert_eq!(
        fx.balance(fx.s.token, fx.relayers[0]).await,
        fee_recipient_tokens + amount
    );
    assert_eq!(fx.balance(STRK, user.address).await, 0);
    assert_eq!(fx.deposit().await, deposit, "no sponsor paid");
    // An unlisted gas token is refused at build.
    let (code_, _) = refusal(
        fx.anonymous()
            .build_transaction(&build_params(
                user.address,
                &calls,
                default_mode(Felt::from(0x1234u32)),
            ))
            .await,
    );
    assert_eq!(code_, code(PaymasterError::TokenNotSupported));

    // A fee signed, then the tokens moved away before execute: refused before any relayer
    // account is leased or anything simulated, and nobody pays.
    let (_, params) = build_and_sign(
        &fx.anonymous(),
        user,
        &[fx.transfer(recipient, 1)],
        default_mode(fx.s.token),
        fx.chain_id,
    )
    .await
    .unwrap();
    fx.s.net
        .devnet
        .mint_strk(user.address, RELAYER_STRK)
        .await
        .unwrap();
    let left = fx.balance(fx.s.token, user.address).await;
    send(
        &fx.s.net.provider,
        ciro_chain::bindings::test_token::TestToken::new(
            fx.s.token,
            &account_of(&fx.s, user.address, &user.key),
        )
        .transfer(&ContractAddress(recipient), &u256(left)),
    )
    .await
    .unwrap();
    let before = fx.funds().await;
    let (c, data) = refusal(fx.anonymous().execute_transaction(&params).await);
    assert_eq!(c, code(PaymasterError::TransactionExecutionError), "{data}");
    assert!(data.contains("below the fee it signed"), "{data}");
    assert_eq!(fx.funds().await, before);
}

/// A signed outside execution the test builds itself (what an attacker can send without the
/// relayer's build); for the Paymaster as caller, its nonce carries the fixture sponsor's tag.
fn forged(
    fx: &Fx,
    signer: &User,
    caller: Felt,
    calls: Vec<Call>,
    after: u64,
    before: u64,
    nonce: u64,
) -> (serde_json::Value, Vec<Felt>) {
    let nonce = if caller == fx.s.paymaster {
        sponsored_nonce(fx.sponsor, nonce.into())
    } else {
        Felt::from(nonce)
    };
    let execution = OutsideExecution {
        caller,
        nonce,
        execute_after: after,
        execute_before: before,
        calls,
    };
    let signature = execution
        .sign(&signer.key, signer.address, fx.chain_id)
        .unwrap();
    (execution.typed_data_json(fx.chain_id), signature)
}

/// A policy about to expire is refused at build as one that expired: an execution simulated
/// seconds before the expiry could land after it and revert at the relayer's cost (a review
/// found the relayer refused only an expired one).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_policy_about_to_expire_is_refused_before_anything_is_signed() {
    let fx = Fx::start(Options::default()).await;
    let (policy, _) = call(
        ciro_chain::bindings::paymaster::PaymasterReader::new(fx.s.paymaster, &fx.s.net.provider)
            .get_policy(&fx.policy_id),
    )
    .await
    .unwrap();
    // Calls the policy allows and that would run: built while the policy has time left,
    let model = fx.s.model().await;
    let calls = job_calls(&fx, model, 0xabc).await;
    fx.client()
        .build_transaction(&build_params(fx.users[0].address, &calls, sponsored()))
        .await
        .expect("built while the policy has time left");
    // and refused with the chain's clock 5 s before the policy's expiry (the relayer keeps
    // 10 s of margin).
    let now = fx.s.net.now().await.unwrap();
    fx.s.advance(policy.params.expiry - now - 5).await;
    // (The relayer reads the chain's clock at most once a second.)
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let calls = job_calls(&fx, model, 0xabc).await;
    let (c, data) = refusal(
        fx.client()
            .build_transaction(&build_params(fx.users[0].address, &calls, sponsored()))
            .await,
    );
    assert_eq!(c, code(PaymasterError::UnknownError), "{data}");
    assert!(data.contains("expires within 10 s"), "{data}");
}

/// A subscription that raises a user's daily limit above the policy's: an execution simulated
/// under it seconds before it ends may land after it, over the policy's lower limit, and
/// revert at the relayer's cost. As with a policy's expiry, the relayer keeps a margin.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_execution_is_refused_in_the_last_seconds_of_the_subscription_that_raised_its_limit() {
    let fx = Fx::start(Options::default()).await;
    let user = &fx.users[0];
    // Given a tier that doubles the policy's daily limit for a day, bought by the user,
    let sponsor = fx.s.net.account(Actor::Sponsor);
    send(
        &fx.s.net.provider,
        Paymaster::new(fx.s.paymaster, &sponsor).define_tier(
            &u256(1_000),
            &86_400,
            &u256(2 * DAILY_LIMIT),
        ),
    )
    .await
    .unwrap();
    fx.s.net
        .devnet
        .mint_strk(user.address, RELAYER_STRK)
        .await
        .unwrap();
    let own = account_of(&fx.s, user.address, &user.key);
    send(
        &fx.s.net.provider,
        TestToken::new(fx.s.token, &own).approve(&ContractAddress(fx.s.paymaster), &u256(1_000)),
    )
    .await
    .unwrap();
    send(
        &fx.s.net.provider,
        Paymaster::new(fx.s.paymaster, &own).subscribe(&ContractAddress(fx.sponsor), &1),
    )
    .await
    .unwrap();
    let ends = call(
        PaymasterReader::new(fx.s.paymaster, &fx.s.net.provider)
            .subscription(&ContractAddress(fx.sponsor), &ContractAddress(user.address)),
    )
    .await
    .unwrap()
    .expires_at;
    // an execution built and signed a minute before it ends
    let now = fx.s.net.now().await.unwrap();
    fx.s.advance(ends - now - 60).await;
    // (the relayer reads the chain's clock at most once a second)
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let model = fx.s.model().await;
    let calls = job_calls(&fx, model, 0xabc).await;
    let built = fx
        .client()
        .build_transaction(&build_params(user.address, &calls, sponsored()))
        .await
        .expect("built a minute before the end");
    let (typed_data, signature) = sign(user, &built, fx.chain_id);
    let execute = || {
        execute_params(
            user.address,
            typed_data.clone(),
            signature.clone(),
            built.parameters().clone(),
        )
    };
    // is refused 5 s before the end (the relayer keeps 10 s of margin), with nothing paid,
    fx.s.advance(55).await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let before = fx.funds().await;
    let (c, data) = refusal(fx.client().execute_transaction(&execute()).await);
    assert_eq!(c, code(PaymasterError::UnknownError), "{data}");
    assert!(data.contains("subscription ends within 10 s"), "{data}");
    assert_eq!(fx.funds().await, before);
    // and runs once the subscription has ended, under the policy's limit.
    fx.s.advance(10).await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let executed = fx
        .client()
        .execute_transaction(&execute())
        .await
        .expect("executed after the end");
    landed(&fx.s, executed.transaction_hash).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drain_attempts_are_refused_and_nobody_pays() {
    let fx = Fx::start(Options {
        limits: Limits {
            per_user_per_minute: 45,
            ..Limits::default()
        },
        ..Options::default()
    })
    .await;
    let (user, other) = (&fx.users[0], &fx.users[1]);
    let attacker = fx.s.net.address(Actor::Attacker);
    let before = fx.funds().await;
    let client = fx.client();
    let now = fx.s.net.now().await.unwrap();
    let unknown = code(PaymasterError::UnknownError);
    let execution_error = code(PaymasterError::TransactionExecutionError);
    let bad_signature = code(PaymasterError::InvalidSignature);

    // 1. Calls outside the policy, at build: another contract's function, and the
    //    Paymaster's and the relayer's own funds.
    let outside = [
        Call {
            to: fx.s.token,
            selector: get_selector_from_name("transfer_from").unwrap(),
            calldata: vec![fx.s.paymaster, attacker, Felt::from(1_000u32), Felt::ZERO],
        },
        Call {
            to: fx.s.paymaster,
            selector: get_selector_from_name("withdraw").unwrap(),
            calldata: vec![Felt::from(1_000u32), Felt::ZERO],
        },
        Call {
            to: fx.relayers[0],
            selector: get_selector_from_name("__execute__").unwrap(),
            calldata: vec![Felt::ZERO],
        },
    ];
    for call_ in &outside {
        let (c, data) = refusal(
            client
                .build_transaction(&build_params(
                    user.address,
                    std::slice::from_ref(call_),
                    sponsored(),
                ))
                .await,
        );
        assert_eq!(c, unknown, "{data}");
        assert!(
            data.contains("not allowed") || data == "blacklisted calls",
            "{data}"
        );
    }
    // ... and at execute, signed by the user with the Paymaster as Caller (no build).
    for (i, call_) in outside.iter().enumerate() {
        let (typed, sig) = forged(
            &fx,
            user,
            fx.s.paymaster,
            vec![call_.clone()],
            1,
            now + 600,
            100 + i as u64,
        );
        let (c, data) = refusal(
            client
                .execute_transaction(&execute_params(user.address, typed, sig, sponsored()))
                .await,
        );
        assert_eq!(c, unknown, "{data}");
    }
    // ... and allowed calls signed with a nonce not built for this sponsor: untagged, or
    // another sponsor's (the Paymaster would refuse both; the relayer says so unsimulated).
    for nonce in [Felt::from(77u8), sponsored_nonce(attacker, 77)] {
        let execution = OutsideExecution {
            caller: fx.s.paymaster,
            nonce,
            execute_after: 1,
            execute_before: now + 600,
            calls: vec![fx.transfer(attacker, 10)],
        };
        let sig = execution
            .sign(&user.key, user.address, fx.chain_id)
            .unwrap();
        let typed = execution.typed_data_json(fx.chain_id);
        let (c, data) = refusal(
            client
                .execute_transaction(&execute_params(user.address, typed, sig, sponsored()))
                .await,
        );
        assert_eq!(c, execution_error, "{data}");
        assert!(data.contains("not built for this sponsor"), "{data}");
    }

    // 2. A good execution, then its replay.
    let calls = vec![fx.transfer(attacker, 10)];
    let built = client
        .build_transaction(&build_params(user.address, &calls, sponsored()))
        .await
        .unwrap();
    let (typed, sig) = sign(user, &built, fx.chain_id);
    let params = execute_params(
        user.address,
        typed.clone(),
        sig.clone(),
        built.parameters().clone(),
    );
    let done = client.execute_transaction(&params).await.unwrap();
    let receipt = landed(&fx.s, done.transaction_hash).await;
    let paid = charges(&receipt, fx.s.paymaster)[0];
    let after_one = fx.funds().await;
    assert_eq!(after_one.0, before.0 - paid);
    // Replayed more times than the user's rate allows (45 a minute here): each is refused as
    // a replay, none counts against the user (counted, they would lock it out of its own
    // executions: anyone can read a landed execution's signature from the chain).
    for _ in 0..50 {
        let (c, data) = refusal(client.execute_transaction(&params).await);
        assert_eq!(c, execution_error, "{data}");
        assert!(data.contains("already"), "{data}");
    }

    // 3. Typed data altered after signing: calldata, Caller, nonce, bounds.
    let built = client
        .build_transaction(&build_params(user.address, &calls, sponsored()))
        .await
        .unwrap();
    let (typed, sig) = sign(user, &built, fx.chain_id);
    let alter = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut t = typed.clone();
        edit(&mut t);
        execute_params(user.address, t, sig.clone(), built.parameters().clone())
    };
    let amount = format!("{:#x}", 1_000_000u32);
    for (what, params, expected) in [
        (
            "calldata",
            alter(&|t| t["message"]["Calls"][0]["Calldata"][1] = amount.clone().into()),
            bad_signature,
        ),
        (
            "nonce",
            alter(&|t| {
                t["message"]["Nonce"] = format!("{:#x}", sponsored_nonce(fx.sponsor, 0x1234)).into()
            }),
            bad_signature,
        ),
        (
            "bounds",
            alter(&|t| t["message"]["Execute Before"] = format!("{:#x}", now + 900).into()),
            bad_signature,
        ),
        (
            "Caller",
            alter(&|t| t["message"]["Caller"] = format!("{attacker:#x}").into()),
            execution_error,
        ),
        (
            "Caller any",
            alter(&|t| t["message"]["Caller"] = format!("{ANY_CALLER:#x}").into()),
            execution_error,
        ),
    ] {
        let (c, data) = refusal(client.execute_transaction(&params).await);
        assert_eq!(c, expected, "{what}: {data}");
    }

    // 4. A signature from another account, and a malformed one.
    let (c, _) = refusal(
        client
            .execute_transaction(&execute_params(
                user.address,
                typed.clone(),
                OutsideExecution::from_typed_data(&typed, fx.chain_id)
                    .unwrap()
                    .sign(&other.key, user.address, fx.chain_id)
                    .unwrap(),
                built.parameters().clone(),
            ))
            .await,
    );
    assert_eq!(c, bad_signature);
    let (c, _) = refusal(
        client
            .execute_transaction(&execute_params(
                user.address,
                typed.clone(),
                vec![Felt::ONE; 17],
                built.parameters().clone(),
            ))
            .await,
    );
    assert_eq!(c, bad_signature);

    // 5. Expired, not yet valid, and too short to land.
    let bounds = code(PaymasterError::InvalidTimeBounds);
    for (after, before_) in [
        (1, now.saturating_sub(10)),
        (now + 600, now + 1_200),
        (1, now + 2),
    ] {
        let (typed, sig) = forged(
            &fx,
            user,
            fx.s.paymaster,
            calls.clone(),
            after,
            before_,
            7_000 + after,
        );
        let (c, data) = refusal(
            client
                .execute_transaction(&execute_params(user.address, typed, sig, sponsored()))
                .await,
        );
        assert_eq!(c, bounds, "{after}..{before_}: {data}");
    }
    let (c, _) = refusal(
        client
            .build_transaction(&build_params(
                user.address,
                &calls,
                with_bounds(sponsored(), 1, now + 10 * 86_400),
            ))
            .await,
    );
    assert_eq!(c, bounds, "validity beyond the maximum");

    // 6. Two executions valid when built and signed; once the first spent the user's tokens,
    //    the second fails the relayer's simulation with the token's own error, and is
    //    never sent.
    let balance = fx.balance(fx.s.token, user.address).await;
    let mut signed = Vec::new();
    for to in [attacker, fx.sponsor] {
        let calls = [fx.transfer(to, balance)];
        let (_, params) = build_and_sign(&client, user, &calls, sponsored(), fx.chain_id)
            .await
            .unwrap();
        signed.push(params);
    }
    let first = client.execute_transaction(&signed[0]).await.unwrap();
    landed(&fx.s, first.transaction_hash).await;
    let after_first = fx.funds().await;
    let (c, data) = refusal(client.execute_transaction(&signed[1]).await);
    assert_eq!(c, execution_error, "{data}");
    assert!(
        data.to_lowercase().contains("balance"),
        "the token's own error string: {data}"
    );
    assert_eq!(fx.funds().await, after_first, "the relayer sent nothing");
    let after_two = after_first;
    let sponsor = fx.s.net.account(Actor::Sponsor);
    let pm = Paymaster::new(fx.s.paymaster, &sponsor);
    let calls = vec![fx.transfer(attacker, 0)];

    // 7. Keys: none (no default policy) and a wrong one.
    let (c, data) = refusal(
        fx.anonymous()
            .build_transaction(&build_params(user.address, &calls, sponsored()))
            .await,
    );
    assert_eq!(c, unknown, "{data}");
    let wrong = ciro_api::snip29::PaymasterClient::new(&fx.url)
        .unwrap()
        .with_api_key("not-a-key-of-ours-at-all");
    let (c, data) = refusal(
        wrong
            .build_transaction(&build_params(user.address, &calls, sponsored()))
            .await,
    );
    assert_eq!(
        (c, data.as_str()),
        (unknown, "x-paymaster-api-key is invalid")
    );

    // 8. A blocked user.
    send(
        &fx.s.net.provider,
        pm.set_blocklisted(&ContractAddress(other.address), &true),
    )
    .await
    .unwrap();
    let (c, data) = refusal(
        client
            .build_transaction(&build_params(other.address, &calls, sponsored()))
            .await,
    );
    assert_eq!(c, unknown);
    assert!(data.contains("blocked"), "{data}");

    // 9. Oversized calldata, too many calls, an oversized body.
    let long = Call {
        to: fx.s.token,
        selector: get_selector_from_name("transfer").unwrap(),
        calldata: vec![Felt::ONE; 600],
    };
    let (c, data) = refusal(
        client
            .build_transaction(&build_params(user.address, &[long], sponsored()))
            .await,
    );
    assert_eq!(c, unknown);
    assert!(data.contains("calldata too long"), "{data}");
    let many = vec![fx.transfer(attacker, 1); 17];
    let (c, data) = refusal(
        client
            .build_transaction(&build_params(user.address, &many, sponsored()))
            .await,
    );
    assert_eq!(c, unknown);
    assert!(data.contains("too many calls"), "{data}");
    let http = reqwest::Client::new();
    let huge = http
        .post(&fx.url)
        .header("content-type", "application/json")
        .body(vec![b' '; 100 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), reqwest::StatusCode::PAYLOAD_TOO_LARGE);

    // 10. A flood from one user beyond the rate limit: refused with 429 and nothing sent.
    let mut limited = 0;
    for _ in 0..60 {
        let response = http
            .post(&fx.url)
            .header(API_KEY_HEADER, KEY)
            .json(&serde_json::json!({
                "jsonrpc": "2.0", "id": 1, "method": "paymaster_buildTransaction",
                "params": serde_json::to_value(build_params(user.address, &calls, sponsored())).unwrap()
            }))
            .send()
            .await
            .unwrap();
        if response.status() == reqwest::StatusCode::TOO_MANY_REQUESTS {
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], unknown);
            limited += 1;
        }
    }
    assert!(limited >= 20, "the flood was limited {limited} times");

    // 11. A contract posing as an account (its `execute_from_outside_v2` runs nothing) is
    //     not a user this paymaster serves.
    let fake =
        fx.s.net
            .deploy(Actor::Attacker, "FakeAccount", vec![])
            .await
            .unwrap();
    let (c, data) = refusal(
        fx.client()
            .build_transaction(&build_params(fake, &calls, sponsored()))
            .await,
    );
    assert_eq!(c, code(PaymasterError::ClassHashNotSupported), "{data}");
    let (typed, sig) = forged(
        &fx,
        other,
        fx.s.paymaster,
        calls.clone(),
        1,
        now + 600,
        9_001,
    );
    let (c, _) = refusal(
        fx.client()
            .execute_transaction(&execute_params(fake, typed, sig, sponsored()))
            .await,
    );
    assert_eq!(c, code(PaymasterError::ClassHashNotSupported));

    // Across all of it, nobody paid for anything but the two good executions.
    assert_eq!(fx.funds().await, after_two);
    assert!(after_two.0 < after_one.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_execution_per_user_in_flight_so_simulations_cannot_be_stacked() {
    let fx = Fx::start(Options {
        users: 1,
        ..Options::default()
    })
    .await;
    let user = &fx.users[0];
    // The account class the relayer supports by default is the one devnet's accounts have.
    let class = ciro_chain::starknet::providers::Provider::get_class_hash_at(
        &fx.s.net.provider,
        ciro_chain::starknet::core::types::BlockId::Tag(
            ciro_chain::starknet::core::types::BlockTag::Latest,
        ),
        user.address,
    )
    .await
    .unwrap();
    assert_eq!(class, OPENZEPPELIN_ACCOUNT_1_0);
    // Two executions, each spending everything the user has, both valid when built.
    let balance = fx.balance(fx.s.token, user.address).await;
    let client = fx.client();
    let mut signed = Vec::new();
    for to in [fx.sponsor, fx.s.net.address(Actor::Verifier)] {
        let calls = [fx.transfer(to, balance)];
        let (_, params) = build_and_sign(&client, user, &calls, sponsored(), fx.chain_id)
            .await
            .unwrap();
        signed.push(params);
    }
    let before = fx.funds().await;
    let (a, b) = tokio::join!(
        client.execute_transaction(&signed[0]),
        client.execute_transaction(&signed[1])
    );
    let (ok, refused) = match (a, b) {
        (Ok(ok), Err(e)) | (Err(e), Ok(ok)) => (ok, e),
        (a, b) => panic!("exactly one must be accepted: {a:?} {b:?}"),
    };
    let (c, data) = refusal::<()>(Err(refused));
    assert!(
        (c == code(PaymasterError::UnknownError) && data.contains("in flight")
            || data.contains("being submitted"))
            || (c == code(PaymasterError::TransactionExecutionError)
                && data.to_lowercase().contains("balance")),
        "{c} {data}"
    );
    let receipt = landed(&fx.s, ok.transaction_hash).await;
    let charge: u128 = charges(&receipt, fx.s.paymaster).iter().sum();
    let after = fx.funds().await;
    assert_eq!(
        after.0,
        before.0 - charge,
        "one charge, for the one that landed"
    );
    assert_eq!(fx.balance(fx.s.token, user.address).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fee_above_the_policys_max_charge_is_refused_before_sending() {
    let fx = Fx::start(Options::default()).await;
    let sponsor = fx.s.net.account(Actor::Sponsor);
    let pm = Paymaster::new(fx.s.paymaster, &sponsor);
    // The policy's max charge cut to 1 base unit: no real fee fits.
    let params = policy_params(&fx.s, 1, 100).await;
    send(
        &fx.s.net.provider,
        pm.update_policy(
            &fx.policy_id,
            &vec![allowed(fx.s.token, "transfer")],
            &params,
        ),
    )
    .await
    .unwrap();
    let before = fx.funds().await;
    let (c, data) = refusal(
        relay(
            &fx.client(),
            &fx.users[0],
            &[fx.transfer(fx.sponsor, 1)],
            sponsored(),
            fx.chain_id,
        )
        .await,
    );
    assert_eq!(c, code(PaymasterError::TransactionExecutionError), "{data}");
    assert!(data.contains("max charge"), "{data}");
    assert_eq!(fx.funds().await, before);
}

/// A relayer account that has spent its daily budget with the sponsor (here the sponsor cut it
/// to 0) is passed over for that sponsor: the first execution it is leased for is tried again
/// from the other account and lands, and later ones go from the other account at once (one
/// refused simulation in all); every charge is the other account's. Once both are spent, an
/// execution is refused with the Paymaster's reason, nothing paid. (Before, the execution
/// leased to the spent account failed with "PM: relayer budget reached" while the other
/// account had budget left.)
#[tokio::test]
async fn an_account_that_spent_its_budget_with_the_sponsor_is_passed_over_for_another() {
    let fx = Fx::start(Options {
        relayers: 2,
        ..Options::default()
    })
    .await;
    let sponsor = fx.s.net.account(Actor::Sponsor);
    let pm = Paymaster::new(fx.s.paymaster, &sponsor);
    let (spent, open) = (fx.relayers[0], fx.relayers[1]);
    send(
        &fx.s.net.provider,
        pm.set_relayer_budget(&ContractAddress(spent), &u256(0)),
    )
    .await
    .unwrap();
    for round in 0..3 {
        let user = &fx.users[round % fx.users.len()];
        let (_, executed) = relay(
            &fx.client(),
            user,
            &[fx.transfer(fx.sponsor, 1)],
            sponsored(),
            fx.chain_id,
        )
        .await
        .unwrap_or_else(|e| panic!("execution {round}: {e:?}"));
        landed(&fx.s, executed.transaction_hash).await;
    }
    assert_eq!(
        fx.relayer_spent(spent).await,
        0,
        "the spent account charged nothing"
    );
    assert!(fx.relayer_spent(open).await > 0, "the other account paid");
    let metrics = fx.metrics().await;
    assert!(
        metrics
            .contains(r#"ciro_relayer_accounts_passed_over_total{why="relayer_budget_spent"} 1"#),
        "one simulation from the spent account, then it was passed over: {metrics}"
    );
    // Both spent: refused with the Paymaster's reason, nothing paid.
    send(
        &fx.s.net.provider,
        pm.set_relayer_budget(&ContractAddress(open), &u256(0)),
    )
    .await
    .unwrap();
    let before = fx.funds().await;
    let (c, data) = refusal(
        relay(
            &fx.client(),
            &fx.users[0],
            &[fx.transfer(fx.sponsor, 1)],
            sponsored(),
            fx.chain_id,
        )
        .await,
    );
    assert_eq!(c, code(PaymasterError::TransactionExecutionError), "{data}");
    assert!(data.contains("relayer budget reached"), "{data}");
    assert_eq!(fx.funds().await, before);
}

/// An account is passed over only for executions its budget left cannot pay: a large
/// execution refused by both accounts (one has nothing left, the other one and a half small
/// executions' charge) does not take them from a small execution, which goes from the account
/// that can still pay it. (Marking an account spent for every charge after one large refusal
/// let one user, at no cost, refuse every other user of the sponsor for a minute.)
#[tokio::test]
async fn a_large_charge_refused_for_lack_of_budget_does_not_take_the_account_from_small_ones() {
    let fx = Fx::start(Options {
        relayers: 2,
        ..Options::default()
    })
    .await;
    let sponsor = fx.s.net.account(Actor::Sponsor);
    let pm = Paymaster::new(fx.s.paymaster, &sponsor);
    let (a, b) = (fx.relayers[0], fx.relayers[1]);
    let small = vec![fx.transfer(fx.sponsor, 1)];
    let large: Vec<Call> = (0..16).map(|_| fx.transfer(fx.sponsor, 1)).collect();
    // Each execution's charge, from the sponsor's deposit.
    let mut charges = Vec::new();
    for (user, calls) in [(&fx.users[0], &small), (&fx.users[1], &large)] {
        let before = fx.deposit().await;
        let (_, executed) = relay(&fx.client(), user, calls, sponsored(), fx.chain_id)
            .await
            .unwrap();
        landed(&fx.s, executed.transaction_hash).await;
        charges.push(before - fx.deposit().await);
    }
    let (small_charge, large_charge) = (charges[0], charges[1]);
    assert!(large_charge > 2 * small_charge, "{charges:?}");
    // Account a keeps one and a half small charges, b nothing.
    let a_spent = fx.relayer_spent(a).await;
    for (relayer, budget) in [
        (a, a_spent + small_charge * 3 / 2),
        (b, fx.relayer_spent(b).await),
    ] {
        send(
            &fx.s.net.provider,
            pm.set_relayer_budget(&ContractAddress(relayer), &u256(budget)),
        )
        .await
        .unwrap();
    }
    let (c, data) =
        refusal(relay(&fx.client(), &fx.users[1], &large, sponsored(), fx.chain_id).await);
    assert_eq!(c, code(PaymasterError::TransactionExecutionError), "{data}");
    assert!(data.contains("relayer budget reached"), "{data}");
    let (_, executed) = relay(&fx.client(), &fx.users[0], &small, sponsored(), fx.chain_id)
        .await
        .expect("the small execution goes from the account that can pay it");
    landed(&fx.s, executed.transaction_hash).await;
    assert!(
        fx.relayer_spent(a).await > a_spent,
        "account a paid the small execution"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_executions_from_twenty_users_through_four_accounts_all_land() {
    let fx = Fx::start(Options {
        relayers: 4,
        users: 20,
        ..Options::default()
    })
    .await;
    let deposit = fx.deposit().await;
    let nonces: Vec<Felt> = futures_nonces(&fx).await;
    let receiver = fx.s.net.address(Actor::Verifier);
    let receiver_tokens = fx.balance(fx.s.token, receiver).await;
    let mut tasks = Vec::new();
    for user in fx.users.clone() {
        let client = fx.client();
        let call_ = fx.transfer(receiver, 1);
        let chain_id = fx.chain_id;
        let rpc_url = fx.s.net.rpc_url();
        tasks.push(tokio::spawn(async move {
            let provider = ciro_chain::starknet::providers::JsonRpcClient::new(
                ciro_chain::starknet::providers::jsonrpc::HttpTransport::new(rpc_url),
            );
            let mut hashes = Vec::new();
            for _ in 0..10 {
                let (_, executed) = relay(
                    &client,
                    &user,
                    std::slice::from_ref(&call_),
                    sponsored(),
                    chain_id,
                )
                .await
                .expect("relayed");
                // One execution per user in flight: the next once this one landed.
                ciro_chain::tx::wait_for_receipt(&provider, executed.transaction_hash)
                    .await
                    .expect("landed");
                hashes.push(executed.transaction_hash);
            }
            hashes
        }));
    }
    let mut hashes = Vec::new();
    for task in tasks {
        hashes.extend(task.await.unwrap());
    }
    assert_eq!(hashes.len(), 200);
    assert_eq!(hashes.iter().collect::<HashSet<_>>().len(), 200);
    let mut charged = 0;
    for hash in &hashes {
        let receipt = landed(&fx.s, *hash).await;
        charged += charges(&receipt, fx.s.paymaster).iter().sum::<u128>();
    }
    assert_eq!(
        fx.balance(fx.s.token, receiver).await,
        receiver_tokens + 200
    );
    assert_eq!(
        fx.deposit().await,
        deposit - charged,
        "the deposit paid exactly the charges"
    );
    // Every account carried transactions, and their nonces account for all 200.
    let after = futures_nonces(&fx).await;
    let mut sent = 0u64;
    for (a, b) in nonces.iter().zip(&after) {
        let n: u64 = (*b - *a).try_into().unwrap();
        assert!(n > 0, "an account carried nothing");
        sent += n;
    }
    assert_eq!(sent, 200);
    tokio::time::sleep(Duration::from_millis(10)).await;
}

async fn futures_nonces(fx: &Fx) -> Vec<Felt> {
    let mut out = Vec::new();
    for r in &fx.relayers {
        out.push(fx.nonce(*r).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ready_only_when_connected_with_an_account_in_rotation_and_metrics_count_refusals() {
    let fx = Fx::start(Options::default()).await;
    let base = fx.url.trim_end_matches('/');
    let http = reqwest::Client::new();
    // Connected in the background: ready within seconds.
    let mut report = serde_json::Value::Null;
    for _ in 0..100 {
        let response = http.get(format!("{base}/ready")).send().await.unwrap();
        let ok = response.status() == reqwest::StatusCode::OK;
        report = response.json().await.unwrap();
        if ok {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(report["ready"], true, "{report}");
    let relayer = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "relayer")
        .expect("a relayer check")
        .clone();
    assert_eq!(relayer["detail"], "1 of 1 relayer accounts in rotation");
    // CORS preflight for browser dapps.
    let preflight = http
        .request(reqwest::Method::OPTIONS, &fx.url)
        .header("origin", "https://dapp.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
    assert!(preflight.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("x-paymaster-api-key"));
    // A refusal is counted by rule and by method.
    let wrong = ciro_api::snip29::PaymasterClient::new(&fx.url).unwrap();
    let calls = [Call {
        to: fx.s.paymaster,
        selector: get_selector_from_name("withdraw").unwrap(),
        calldata: vec![],
    }];
    let _ = refusal(
        wrong
            .build_transaction(&build_params(fx.users[0].address, &calls, sponsored()))
            .await,
    );
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(r#"ciro_relayer_refused_total{rule="blacklisted_call"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"ciro_relayer_requests_total{method="paymaster_buildTransaction",outcome="UNKNOWN_ERROR"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("ciro_relayer_accounts_in_rotation 1"),
        "{text}"
    );
}

/// Build, sign (with `signer`'s key, as `user`) and execute a `deploy_and_invoke`.
async fn deploy_and_relay(
    client: &ciro_api::snip29::PaymasterClient,
    fx: &Fx,
    user: &User,
    signer: &User,
    deployment: &ciro_api::snip29::DeploymentData,
    calls: &[Call],
    parameters: ciro_api::snip29::ExecutionParameters,
) -> Result<
    (
        ciro_api::snip29::BuildTransactionResult,
        ciro_api::snip29::ExecuteTransactionResult,
    ),
    ciro_api::snip29::PaymasterClientError,
> {
    let built = client
        .build_transaction(&deploy_build_params(
            user.address,
            calls,
            deployment,
            parameters,
        ))
        .await?;
    let typed_data = built.typed_data().expect("typed data").clone();
    let execution = OutsideExecution::from_typed_data(&typed_data, fx.chain_id).unwrap();
    let signature = execution
        .sign(&signer.key, user.address, fx.chain_id)
        .unwrap();
    let executed = client
        .execute_transaction(&deploy_execute_params(
            user.address,
            typed_data,
            signature,
            deployment,
            built.parameters().clone(),
        ))
        .await?;
    Ok((built, executed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_account_is_deployed_with_its_first_calls_and_the_sponsor_pays_exactly_the_charge() {
    let fx = Fx::start(Options {
        sponsor_deployments: true,
        ..Options::default()
    })
    .await;
    let (user, deployment) = new_account(0x0de9_0001);
    let recipient = fx.s.net.address(Actor::Verifier);
    assert_eq!(fx.class_at(user.address).await, None, "not deployed yet");
    // Some STRK at the address, which the sponsored deployment must leave alone.
    let user_strk = 1_000_000_000_000_000u128;
    fx.s.net
        .devnet
        .mint_strk(user.address, user_strk)
        .await
        .unwrap();
    // Tokens sent to the address before the account exists (how a new user is paid).
    let admin = fx.s.net.account(Actor::Admin);
    send(
        &fx.s.net.provider,
        ciro_chain::bindings::test_token::TestToken::new(fx.s.token, &admin)
            .mint(&ContractAddress(user.address), &u256(USER_TOKENS)),
    )
    .await
    .unwrap();
    let (deposit, relayer_strk, relayer_tokens, recipient_tokens) = (
        fx.deposit().await,
        fx.balance(STRK, fx.relayers[0]).await,
        fx.balance(fx.s.token, fx.relayers[0]).await,
        fx.balance(fx.s.token, recipient).await,
    );
    let calls = vec![fx.transfer(recipient, 1_000)];
    let (built, executed) = deploy_and_relay(
        &fx.client(),
        &fx,
        &user,
        &user,
        &deployment,
        &calls,
        sponsored(),
    )
    .await
    .unwrap();
    // The build answers deploy_and_invoke, echoing the deployment, with the calls one for one.
    match &built {
        ciro_api::snip29::BuildTransactionResult::DeployAndInvoke {
            deployment: echoed, ..
        } => assert_eq!(echoed, &deployment),
        other => panic!("not deploy_and_invoke: {other:?}"),
    }
    let execution =
        OutsideExecution::from_typed_data(built.typed_data().unwrap(), fx.chain_id).unwrap();
    assert_eq!(execution.caller, fx.s.paymaster);
    assert_eq!(execution.calls, calls);
    assert!(built.fee().estimated_fee_in_strk > 0u8.into());
    let receipt = landed(&fx.s, executed.transaction_hash).await;

    // The account exists, of the class asked for, and its first call ran.
    assert_eq!(
        fx.class_at(user.address).await,
        Some(ciro_paymaster_relayer::OPENZEPPELIN_ACCOUNT_1_0)
    );
    assert_eq!(
        fx.balance(fx.s.token, recipient).await,
        recipient_tokens + 1_000
    );
    assert_eq!(
        fx.balance(fx.s.token, user.address).await,
        USER_TOKENS - 1_000
    );
    assert_eq!(
        fx.balance(STRK, user.address).await,
        user_strk,
        "the user paid no gas"
    );
    // The sponsor paid exactly the charge, which covers the deployment too.
    let charged = charges(&receipt, fx.s.paymaster);
    assert_eq!(charged.len(), 1);
    let charge = charged[0];
    assert_eq!(fx.deposit().await, deposit - charge);
    assert_eq!(
        fx.balance(fx.s.token, fx.relayers[0]).await,
        relayer_tokens + charge
    );
    let fee_paid = relayer_strk - fx.balance(STRK, fx.relayers[0]).await;
    assert!(
        fee_paid > 0 && fee_paid <= charge,
        "fee {fee_paid} vs charge {charge}"
    );

    // Asked again for the account now deployed: no second deployment, just the calls.
    let deposit = fx.deposit().await;
    let (_, executed) = deploy_and_relay(
        &fx.client(),
        &fx,
        &user,
        &user,
        &deployment,
        &calls,
        sponsored(),
    )
    .await
    .unwrap();
    let receipt = landed(&fx.s, executed.transaction_hash).await;
    let charge = charges(&receipt, fx.s.paymaster)[0];
    assert_eq!(fx.deposit().await, deposit - charge);
    assert_eq!(
        fx.balance(fx.s.token, recipient).await,
        recipient_tokens + 2_000
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deployments_that_would_drain_are_refused_and_default_mode_deploys_at_the_users_cost() {
    let fx = Fx::start(Options {
        sponsor_deployments: true,
        ..Options::default()
    })
    .await;
    let client = fx.client();
    let bad_deployment = code(PaymasterError::InvalidDeploymentData);
    let recipient = fx.s.net.address(Actor::Verifier);
    let calls = vec![fx.transfer(recipient, 1)];
    let (user, deployment) = new_account(0x0de9_0002);
    let admin = fx.s.net.account(Actor::Admin);
    let token = ciro_chain::bindings::test_token::TestToken::new(fx.s.token, &admin);
    send(
        &fx.s.net.provider,
        token.mint(&ContractAddress(user.address), &u256(USER_TOKENS)),
    )
    .await
    .unwrap();
    let before = fx.funds().await;
    let build = |deployment: ciro_api::snip29::DeploymentData| {
        let (client, calls) = (&client, &calls);
        async move {
            refusal(
                client
                    .build_transaction(&deploy_build_params(
                        user.address,
                        calls,
                        &deployment,
                        sponsored(),
                    ))
                    .await,
            )
        }
    };

    // 1. A class the paymaster does not support (here: the Paymaster's own), at its address.
    let paymaster_class = fx.class_at(fx.s.paymaster).await.unwrap();
    let foreign = ciro_api::snip29::DeploymentData {
        class_hash: paymaster_class,
        address: ciro_chain::starknet::core::utils::get_contract_address(
            deployment.salt,
            paymaster_class,
            &deployment.calldata,
            Felt::ZERO,
        ),
        ..deployment.clone()
    };
    let (c, data) = refusal(
        client
            .build_transaction(&deploy_build_params(
                foreign.address,
                &calls,
                &foreign,
                sponsored(),
            ))
            .await,
    );
    assert_eq!(c, bad_deployment, "{data}");
    assert!(data.contains("not one this paymaster supports"), "{data}");
    // 2. An address the class, salt and calldata do not give.
    let elsewhere = Felt::from(0xe15e_0001_u64);
    let (c, data) = refusal(
        client
            .build_transaction(&deploy_build_params(
                elsewhere,
                &calls,
                &ciro_api::snip29::DeploymentData {
                    address: elsewhere,
                    ..deployment.clone()
                },
                sponsored(),
            ))
            .await,
    );
    assert_eq!(c, bad_deployment, "{data}");
    assert!(data.contains("give the address"), "{data}");
    // ... nor a deployment of one address with the calls of another.
    let (c, data) = build(ciro_api::snip29::DeploymentData {
        address: elsewhere,
        ..deployment.clone()
    })
    .await;
    assert_eq!(c, bad_deployment, "{data}");
    // 3. Constructor calldata other than what gives the address (another owner's key).
    let (c, data) = build(ciro_api::snip29::DeploymentData {
        calldata: vec![Felt::from(0xbad_u32)],
        ..deployment.clone()
    })
    .await;
    assert_eq!(c, bad_deployment, "{data}");
    assert!(data.contains("give the address"), "{data}");
    // 4. A deployment alone: nothing signed binds it to the owner's key.
    let alone = ciro_api::snip29::BuildTransactionParams {
        transaction: ciro_api::snip29::BuildTransaction::Deploy {
            deployment: deployment.clone(),
        },
        parameters: sponsored(),
    };
    let (c, data) = refusal(client.build_transaction(&alone).await);
    assert_eq!(c, bad_deployment, "{data}");
    // 5. Signed by another key than the one the account is deployed for: refused before
    //    anything is simulated or sent.
    let (c, data) = refusal(
        deploy_and_relay(
            &client,
            &fx,
            &user,
            &fx.users[0],
            &deployment,
            &calls,
            sponsored(),
        )
        .await,
    );
    assert_eq!(c, code(PaymasterError::InvalidSignature), "{data}");
    // 6. Calls outside the policy still are, with a deployment.
    let (c, data) = refusal(
        client
            .build_transaction(&deploy_build_params(
                user.address,
                &[Call {
                    to: fx.s.token,
                    selector: get_selector_from_name("transfer_from").unwrap(),
                    calldata: vec![fx.s.paymaster, user.address, Felt::ONE, Felt::ZERO],
                }],
                &deployment,
                sponsored(),
            ))
            .await,
    );
    assert_eq!(c, code(PaymasterError::UnknownError));
    assert!(data.contains("call not allowed"), "{data}");
    // 7. `sigdata` this class does not use (it would be dropped, not checked).
    let (c, data) = build(ciro_api::snip29::DeploymentData {
        sigdata: Some(vec![Felt::ONE]),
        ..deployment.clone()
    })
    .await;
    assert_eq!(c, bad_deployment, "{data}");
    assert_eq!(
        fx.class_at(user.address).await,
        None,
        "nothing was deployed"
    );
    assert_eq!(fx.funds().await, before, "nobody paid");

    // Default mode: the new account pays its own deployment in the payment token.
    let (payer, payer_deployment) = new_account(0x0de9_0003);
    let whole_token = 1_000_000_000_000_000_000u128;
    send(
        &fx.s.net.provider,
        token.mint(&ContractAddress(payer.address), &u256(whole_token)),
    )
    .await
    .unwrap();
    let fee_recipient_tokens = fx.balance(fx.s.token, fx.relayers[0]).await;
    let (built, executed) = deploy_and_relay(
        &fx.anonymous(),
        &fx,
        &payer,
        &payer,
        &payer_deployment,
        &calls,
        default_mode(fx.s.token),
    )
    .await
    .unwrap();
    landed(&fx.s, executed.transaction_hash).await;
    let execution =
        OutsideExecution::from_typed_data(built.typed_data().unwrap(), fx.chain_id).unwrap();
    let amount: u128 = execution.calls[1].calldata[1].try_into().unwrap();
    assert_eq!(
        fx.class_at(payer.address).await,
        Some(ciro_paymaster_relayer::OPENZEPPELIN_ACCOUNT_1_0)
    );
    assert_eq!(
        fx.balance(fx.s.token, payer.address).await,
        whole_token - 1 - amount
    );
    assert_eq!(
        fx.balance(fx.s.token, fx.relayers[0]).await,
        fee_recipient_tokens + amount
    );
    assert_eq!(fx.deposit().await, before.0, "no sponsor paid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_listed_class_whose_account_cannot_vouch_for_the_signature_is_refused_before_sending() {
    let fx = Fx::start(Options {
        list_fake_account: true,
        ..Options::default()
    })
    .await;
    let fake = fx.fake_account.expect("the fixture deployed it");
    let recipient = fx.s.net.address(Actor::Verifier);
    let now = fx.s.net.now().await.unwrap();
    let before = fx.funds().await;
    // Not OpenZeppelin's class, so the signature goes to the account's own
    // `is_valid_signature`, which this contract does not have: refused (153), nothing
    // simulated, sent or paid.
    let (typed, sig) = forged(
        &fx,
        &fx.users[0],
        fx.s.paymaster,
        vec![fx.transfer(recipient, 1)],
        1,
        now + 600,
        77,
    );
    let (c, data) = refusal(
        fx.client()
            .execute_transaction(&execute_params(fake, typed, sig, sponsored()))
            .await,
    );
    assert_eq!(c, code(PaymasterError::InvalidSignature), "{data}");
    assert_eq!(fx.funds().await, before, "nobody paid");
    // The same execution signed for a real OpenZeppelin user is checked off chain and passes
    // that check (it is refused later only if something else is wrong): the refusal above
    // came from the class's own check, not from the signature's shape.
    let user = &fx.users[0];
    let (typed, sig) = forged(
        &fx,
        user,
        fx.s.paymaster,
        vec![fx.transfer(recipient, 1)],
        1,
        now + 600,
        78,
    );
    let executed = fx
        .client()
        .execute_transaction(&execute_params(user.address, typed, sig, sponsored()))
        .await
        .unwrap();
    landed(&fx.s, executed.transaction_hash).await;
}

/// A relayer that remembers users' keys for the whole test, whatever the machine's speed.
async fn remembering_keys() -> Fx {
    Fx::start(Options {
        limits: Limits {
            key_memory: Duration::from_secs(3_600),
            ..Limits::default()
        },
        ..Options::default()
    })
    .await
}

/// `user`'s account calls `function` on itself (an owner's own transaction, paid in STRK
/// minted for it), and it lands.
async fn on_own_account(fx: &Fx, user: &User, function: &str, calldata: Vec<Felt>) {
    fx.s.net
        .devnet
        .mint_strk(user.address, RELAYER_STRK)
        .await
        .unwrap();
    let sent = account_of(&fx.s, user.address, &user.key)
        .execute_v3(vec![Call {
            to: user.address,
            selector: get_selector_from_name(function).unwrap(),
            calldata,
        }])
        .send()
        .await
        .unwrap();
    landed(&fx.s, sent.transaction_hash).await;
}

/// The relayer remembers a user's OpenZeppelin key for a while (`Limits::key_memory`, one read
/// fewer per execution): a key rotated since then must not let the old key through to a
/// transaction, nor keep the new key out.
#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_key_signs_at_once_and_the_old_key_gets_nothing_paid() {
    let fx = remembering_keys().await;
    let old = fx.users[0].clone();
    let recipient = fx.s.net.address(Actor::Verifier);
    let relay_transfer = |user: User| {
        let client = fx.client();
        let call = fx.transfer(recipient, 1);
        let chain_id = fx.chain_id;
        async move { relay(&client, &user, &[call], sponsored(), chain_id).await }
    };
    // The relayer reads and remembers the key.
    let (_, executed) = relay_transfer(old.clone()).await.unwrap();
    landed(&fx.s, executed.transaction_hash).await;
    // The owner rotates it (OpenZeppelin's `set_public_key`: the new key signs
    // poseidon('StarkNet Message', 'accept_ownership', account, current key)).
    let new = User {
        address: old.address,
        key: SigningKey::from_secret_scalar(Felt::from(0x0a7e_u64)),
    };
    let message = starknet_crypto::poseidon_hash_many(&[
        cairo_short_string_to_felt("StarkNet Message").unwrap(),
        cairo_short_string_to_felt("accept_ownership").unwrap(),
        old.address,
        old.key.verifying_key().scalar(),
    ]);
    let proof = new.key.sign(&message).unwrap();
    on_own_account(
        &fx,
        &old,
        "set_public_key",
        vec![
            new.key.verifying_key().scalar(),
            Felt::TWO,
            proof.r,
            proof.s,
        ],
    )
    .await;
    // At once, the old key's execution passes the remembered key but not the simulation,
    // which runs the account's own check: refused, and nobody paid.
    let before = fx.funds().await;
    let (c, data) = refusal(relay_transfer(old.clone()).await);
    assert_eq!(c, code(PaymasterError::TransactionExecutionError), "{data}");
    assert!(data.contains("invalid signature"), "{data}");
    assert_eq!(fx.funds().await, before, "nobody paid");
    // That failure made the relayer forget the key: the old key's next try is refused off
    // chain (153), before any simulation.
    let (c, data) = refusal(relay_transfer(old.clone()).await);
    assert_eq!(c, code(PaymasterError::InvalidSignature), "{data}");
    assert_eq!(fx.funds().await, before, "nobody paid");
    // The new key's execution is checked against the key read afresh, and lands.
    let (_, executed) = relay_transfer(new.clone()).await.unwrap();
    landed(&fx.s, executed.transaction_hash).await;
    // Now the relayer remembers the new key: the old one is still refused off chain (153).
    let before = fx.funds().await;
    let (c, data) = refusal(relay_transfer(old).await);
    assert_eq!(c, code(PaymasterError::InvalidSignature), "{data}");
    assert_eq!(fx.funds().await, before, "nobody paid");
}

/// The account class is what keeps out a contract that would pass simulation and run nothing
/// (the `FakeAccount` below), and OpenZeppelin's account is upgradeable: a user who upgrades
/// its account right after an execution, while the relayer still remembers its key, must be
/// refused on the class read afresh, not served from anything remembered.
#[tokio::test(flavor = "multi_thread")]
async fn an_account_upgraded_to_an_unlisted_class_is_refused_at_once_and_nobody_pays() {
    let fx = remembering_keys().await;
    let user = fx.users[0].clone();
    let recipient = fx.s.net.address(Actor::Verifier);
    // An execution: the relayer reads (and may remember) the user's class and key.
    let (_, executed) = relay(
        &fx.client(),
        &user,
        &[fx.transfer(recipient, 1)],
        sponsored(),
        fx.chain_id,
    )
    .await
    .unwrap();
    landed(&fx.s, executed.transaction_hash).await;
    // The user upgrades its own account to a class whose `execute_from_outside_v2` runs
    // nothing (declared by deploying one).
    let fake =
        fx.s.net
            .deploy(Actor::Attacker, "FakeAccount", vec![])
            .await
            .unwrap();
    let fake_class =
        fx.s.net
            .provider
            .get_class_hash_at(BlockId::Tag(BlockTag::Latest), fake)
            .await
            .unwrap();
    on_own_account(&fx, &user, "upgrade", vec![fake_class]).await;
    // At once: a build is refused (155), and so is an execution signed with the key the
    // relayer read a moment ago, with nothing simulated, sent or paid.
    let before = fx.funds().await;
    let (c, data) = refusal(
        fx.client()
            .build_transaction(&build_params(
                user.address,
                &[fx.transfer(recipient, 1)],
                sponsored(),
            ))
            .await,
    );
    assert_eq!(c, code(PaymasterError::ClassHashNotSupported), "{data}");
    let now = fx.s.net.now().await.unwrap();
    let (typed, sig) = forged(
        &fx,
        &user,
        fx.s.paymaster,
        vec![fx.transfer(recipient, 1)],
        1,
        now + 600,
        91,
    );
    let (c, data) = refusal(
        fx.client()
            .execute_transaction(&execute_params(user.address, typed, sig, sponsored()))
            .await,
    );
    assert_eq!(c, code(PaymasterError::ClassHashNotSupported), "{data}");
    assert_eq!(fx.funds().await, before, "nobody paid");
}

/// Each of `users`' sponsored `transfer(receiver, amount)`, built and signed.
async fn sign_transfers(
    fx: &Fx,
    users: &[User],
    receiver: Felt,
    amount: u128,
) -> Vec<ciro_api::snip29::ExecuteTransactionParams> {
    let mut signed = Vec::new();
    for user in users {
        let (_, params) = build_and_sign(
            &fx.client(),
            user,
            &[fx.transfer(receiver, amount)],
            sponsored(),
            fx.chain_id,
        )
        .await
        .unwrap();
        signed.push(params);
    }
    signed
}

/// Executes every one of `signed` at once (each from its own client); the outcomes in order.
async fn execute_at_once(
    fx: &Fx,
    signed: &[ciro_api::snip29::ExecuteTransactionParams],
) -> Vec<Result<ciro_api::snip29::ExecuteTransactionResult, (i64, String)>> {
    let tasks: Vec<_> = signed
        .iter()
        .cloned()
        .map(|params| {
            let client = fx.client();
            tokio::spawn(async move {
                client
                    .execute_transaction(&params)
                    .await
                    .map_err(|e| refusal::<()>(Err(e)))
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.expect("task"));
    }
    outcomes
}

/// A relayer for `users` users whose sponsored executions wait up to `window` for their batch.
async fn batching(users: usize, window: Duration) -> Fx {
    Fx::start(Options {
        users,
        limits: Limits {
            batch_window: window,
            ..Limits::default()
        },
        ..Options::default()
    })
    .await
}

/// With a batch window, several users' sponsored executions go out in one relayer
/// transaction, each charged its own simulation's charge, the sponsor's deposit and the
/// relayer's tokens moving by exactly their sum. A batch whose executions each pass alone
/// but fail together (two charges, a deposit for one and a half) is never sent as a whole:
/// it is split, the first lands alone, the second is refused with the Paymaster's own error
/// before anything is sent for it, and the relayer pays for no reverted transaction.
#[tokio::test(flavor = "multi_thread")]
async fn batched_executions_land_together_each_charged_and_a_batch_that_would_fail_is_split() {
    let fx = batching(6, Duration::from_millis(400)).await;
    let receiver = fx.s.net.address(Actor::Verifier);
    let relayer = fx.relayers[0];
    let (deposit, relayer_strk, relayer_tokens, received) = (
        fx.deposit().await,
        fx.balance(STRK, relayer).await,
        fx.balance(fx.s.token, relayer).await,
        fx.balance(fx.s.token, receiver).await,
    );
    let nonce = fx.nonce(relayer).await;
    let signed = sign_transfers(&fx, &fx.users, receiver, 5).await;
    let executed: Vec<_> = execute_at_once(&fx, &signed)
        .await
        .into_iter()
        .map(|outcome| outcome.expect("every execution is taken"))
        .collect();
    let hashes: HashSet<Felt> = executed.iter().map(|e| e.transaction_hash).collect();
    assert!(
        hashes.len() < executed.len(),
        "{} executions went out in {} transactions: none were batched",
        executed.len(),
        hashes.len()
    );
    let tracking: HashSet<Felt> = executed.iter().map(|e| e.tracking_id).collect();
    assert_eq!(tracking.len(), executed.len(), "one tracking id each");
    let mut charged = Vec::new();
    for hash in &hashes {
        charged.extend(charges(&landed(&fx.s, *hash).await, fx.s.paymaster));
    }
    assert_eq!(charged.len(), fx.users.len(), "one charge per execution");
    let total: u128 = charged.iter().sum();
    assert_eq!(fx.deposit().await, deposit - total);
    assert_eq!(
        fx.balance(fx.s.token, relayer).await,
        relayer_tokens + total
    );
    assert_eq!(
        fx.balance(fx.s.token, receiver).await,
        received + 5 * fx.users.len() as u128
    );
    let fee_paid = relayer_strk - fx.balance(STRK, relayer).await;
    assert!(
        fee_paid > 0 && fee_paid <= total,
        "fee {fee_paid} vs the charges {total}"
    );
    assert_eq!(
        fx.nonce(relayer).await,
        nonce + Felt::from(hashes.len() as u64),
        "one relayer transaction per batch"
    );

    // The sponsor keeps a deposit for one and a half charges.
    let charge = *charged.iter().max().unwrap();
    let sponsor = fx.s.net.account(Actor::Sponsor);
    let keep = charge + charge / 2;
    send(
        &fx.s.net.provider,
        Paymaster::new(fx.s.paymaster, &sponsor).withdraw(&u256(fx.deposit().await - keep)),
    )
    .await
    .unwrap();
    let signed = sign_transfers(&fx, &fx.users[..2], receiver, 7).await;
    let nonce = fx.nonce(relayer).await;
    let relayer_strk = fx.balance(STRK, relayer).await;
    let received = fx.balance(fx.s.token, receiver).await;
    let outcomes = execute_at_once(&fx, &signed).await;
    let landed_ones: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
    let refused: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert_eq!(landed_ones.len(), 1, "{outcomes:?}");
    assert_eq!(refused.len(), 1, "{outcomes:?}");
    let (c, data) = refused[0];
    assert_eq!(
        *c,
        code(PaymasterError::TransactionExecutionError),
        "{data}"
    );
    assert!(
        data.contains("PM: sponsor deposit too low"),
        "the Paymaster's own error: {data}"
    );
    let receipt = landed(&fx.s, landed_ones[0].transaction_hash).await;
    assert_eq!(charges(&receipt, fx.s.paymaster).len(), 1, "sent alone");
    assert_eq!(
        fx.nonce(relayer).await,
        nonce + Felt::ONE,
        "nothing else sent"
    );
    assert_eq!(fx.balance(fx.s.token, receiver).await, received + 7);
    assert!(fx.deposit().await < charge, "the first charge was paid");
    assert!(fx.balance(STRK, relayer).await < relayer_strk);
    let metrics = fx.metrics().await;
    assert!(
        metrics.contains("ciro_relayer_batches_total{outcome=\"split\"} 1"),
        "{metrics}"
    );
}

/// The attack: a user sends an execution and drops the connection while it waits to be sent,
/// then sends a second one that spends the same tokens. Had the relayer let go of the first
/// with its client, the user's slot would be free and the second simulated on a state that
/// does not hold the first, to revert on chain at the relayer's cost (or the first would be
/// dropped unsent after the user was told nothing). Instead the first runs to its end
/// without its client, the second is refused while the first is in flight, and the first
/// lands and is charged like any other.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_goes_away_cannot_free_its_execution_to_stack_another() {
    let fx = batching(1, Duration::from_millis(3_000)).await;
    let user = &fx.users[0];
    let balance = fx.balance(fx.s.token, user.address).await;
    let (first_to, second_to) = (fx.s.net.address(Actor::Verifier), fx.sponsor);
    let received = fx.balance(fx.s.token, first_to).await;
    let mut signed = Vec::new();
    for to in [first_to, second_to] {
        let (_, params) = build_and_sign(
            &fx.client(),
            user,
            &[fx.transfer(to, balance)],
            sponsored(),
            fx.chain_id,
        )
        .await
        .unwrap();
        signed.push(params);
    }
    let deposit = fx.deposit().await;
    let gone = reqwest::Client::new()
        .post(&fx.url)
        .header(API_KEY_HEADER, KEY)
        .timeout(Duration::from_millis(1_200))
        .json(&serde_json::json!({
            "jsonrpc": "2.0",
            "id": 1,
            "method": "paymaster_executeTransaction",
            "params": signed[0],
        }))
        .send()
        .await;
    assert!(
        gone.as_ref().is_err_and(|e| e.is_timeout()),
        "the client gives up while the execution waits for its batch: {gone:?}"
    );
    let (c, data) = refusal(fx.client().execute_transaction(&signed[1]).await);
    assert_eq!(c, code(PaymasterError::UnknownError), "{data}");
    assert!(
        data.contains("being submitted") || data.contains("in flight"),
        "{data}"
    );
    // The first lands all the same, charged to the sponsor like any other.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while fx.balance(fx.s.token, first_to).await != received + balance {
        assert!(
            std::time::Instant::now() < deadline,
            "the execution whose client went away never landed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(fx.balance(fx.s.token, user.address).await, 0);
    assert!(fx.deposit().await < deposit, "charged to the sponsor");
    let metrics = fx.metrics().await;
    assert!(
        metrics.contains(r#"ciro_relayer_refused_total{rule="in_flight"} 1"#),
        "the second was refused as in flight: {metrics}"
    );
    assert!(
        !metrics.contains(r#"rule="task_lost""#),
        "nothing dropped: {metrics}"
    );
}
