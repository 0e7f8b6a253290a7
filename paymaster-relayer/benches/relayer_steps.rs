//! Where a relayed execution's time goes, one request at a time: on one devnet with one
//! relayer account and one user, the mean latency of each node request the relayer makes
//! (timed alone, one after another) and of each step of a relayed transfer (build, execute,
//! the client's receipt), against the steps of the same user's direct invoke; the CPU time
//! each transfer took in the devnet and in this process (the relayer and its client); and the
//! L2 gas of each call in one transfer of each kind. Nothing runs beside each step, so each
//! figure is that step's own work.
//!
//! `cargo bench -p ciro-paymaster-relayer --bench relayer_steps --profile dev` (after
//! `source scripts/env.sh`).

#[path = "../tests/common/mod.rs"]
mod common;

use std::future::Future;
use std::time::{Duration, Instant};

use ciro_chain::bindings::paymaster::PaymasterReader;
use ciro_chain::cainome::cairo_serde::ContractAddress;
use ciro_chain::starknet::accounts::{Account, ConnectedAccount};
use ciro_chain::starknet::core::types::{
    BlockId, BlockTag, ExecuteInvocation, Felt, FunctionCall, FunctionInvocation, TransactionTrace,
};
use ciro_chain::starknet::core::utils::get_selector_from_name;
use ciro_chain::starknet::macros::selector;
use ciro_chain::starknet::providers::Provider;
use ciro_chain::tx::wait_for_receipt;
use ciro_tests::Actor;
use common::*;

/// Repetitions of each request or step.
const N: u32 = 40;

/// Mean latency of `f` over `N` runs, after one unmeasured run.
async fn mean<F, Fut>(mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    f().await;
    let start = Instant::now();
    for _ in 0..N {
        f().await;
    }
    start.elapsed() / N
}

fn row(what: &str, took: Duration) {
    println!("{what:<58} {:>8.2} ms", took.as_secs_f64() * 1e3);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let fx = Fx::start(Options {
        relayers: 1,
        users: 1,
        policy_rate: 1_000,
        ..Options::default()
    })
    .await;
    let user = fx.users[0].clone();
    let provider = &fx.s.net.provider;
    let reader = PaymasterReader::new(fx.s.paymaster, provider);
    let pre = BlockId::Tag(BlockTag::PreConfirmed);
    let node = fx.s.net.devnet_pid();
    println!("relayer steps: mean of {N}, one request at a time");

    // The node requests the relayer makes, each alone.
    row(
        "node: block_number",
        mean(|| async {
            provider.block_number().await.expect("block number");
        })
        .await,
    );
    row(
        "node: get_class_hash_at (user)",
        mean(|| async {
            provider
                .get_class_hash_at(pre, user.address)
                .await
                .expect("class");
        })
        .await,
    );
    row(
        "node: call get_public_key (user)",
        mean(|| async {
            provider
                .call(
                    FunctionCall {
                        contract_address: user.address,
                        entry_point_selector: selector!("get_public_key"),
                        calldata: vec![],
                    },
                    pre,
                )
                .await
                .expect("key");
        })
        .await,
    );
    row(
        "node: call Paymaster.user_status",
        mean(|| async {
            reader
                .user_status(&ContractAddress(fx.sponsor), &ContractAddress(user.address))
                .call()
                .await
                .expect("status");
        })
        .await,
    );
    row(
        "node: call Paymaster.remaining_allowance",
        mean(|| async {
            reader
                .remaining_allowance(&fx.policy_id, &ContractAddress(user.address))
                .call()
                .await
                .expect("allowance");
        })
        .await,
    );

    // A relayed transfer, step by step.
    let client = fx.client();
    let receiver = fx.s.net.address(Actor::Verifier);
    let call = fx.transfer(receiver, 1);
    let (mut build, mut execute, mut receipt) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut last = None;
    let cpu = CpuMark::now(node);
    for i in 0..=N {
        let t = Instant::now();
        let (built, params) = build_and_sign(
            &client,
            &user,
            std::slice::from_ref(&call),
            sponsored(),
            fx.chain_id,
        )
        .await
        .expect("build");
        drop(built);
        let b = t.elapsed();
        let t = Instant::now();
        let executed = client.execute_transaction(&params).await.expect("execute");
        let e = t.elapsed();
        let t = Instant::now();
        wait_for_receipt(provider, executed.transaction_hash)
            .await
            .expect("receipt");
        let r = t.elapsed();
        last = Some(executed.transaction_hash);
        if i > 0 {
            build += b;
            execute += e;
            receipt += r;
        }
    }
    let (node_ms, own_ms) = cpu.per_item((N + 1) as f64);
    println!("relayed: CPU per transfer: node {node_ms:.2} ms, relayer + client {own_ms:.2} ms");
    row("relayed: build + sign", build / N);
    row("relayed: execute", execute / N);
    row("relayed: client's receipt", receipt / N);
    row("relayed: whole transfer", (build + execute + receipt) / N);
    if let Some(hash) = last {
        row(
            "node: get_transaction_receipt (landed)",
            mean(|| async {
                provider
                    .get_transaction_receipt(hash)
                    .await
                    .expect("receipt");
            })
            .await,
        );
    }

    // The same user's direct invokes.
    fx.s.net
        .devnet
        .mint_strk(user.address, RELAYER_STRK)
        .await
        .expect("mint");
    let account = account_of(&fx.s, user.address, &user.key);
    row(
        "direct: estimate_fee",
        mean(|| async {
            account
                .execute_v3(vec![call.clone()])
                .estimate_fee()
                .await
                .expect("estimate");
        })
        .await,
    );
    let (mut send, mut receipt) = (Duration::ZERO, Duration::ZERO);
    let mut last_direct = None;
    let cpu = CpuMark::now(node);
    for i in 0..=N {
        let t = Instant::now();
        let sent = account
            .execute_v3(vec![call.clone()])
            .send()
            .await
            .expect("direct invoke");
        let s = t.elapsed();
        let t = Instant::now();
        wait_for_receipt(account.provider(), sent.transaction_hash)
            .await
            .expect("receipt");
        let r = t.elapsed();
        last_direct = Some(sent.transaction_hash);
        if i > 0 {
            send += s;
            receipt += r;
        }
    }
    let (node_ms, own_ms) = cpu.per_item((N + 1) as f64);
    println!("direct: CPU per transfer: node {node_ms:.2} ms, client {own_ms:.2} ms");
    row("direct: nonce + estimate + send", send / N);
    row("direct: receipt", receipt / N);
    row("direct: whole transfer", (send + receipt) / N);
    // The L2 gas of each call in the last transfer of each kind.
    let names = [
        (fx.relayers[0], "relayer account"),
        (user.address, "user account"),
        (fx.s.paymaster, "Paymaster"),
        (fx.s.token, "payment token"),
        (ciro_paymaster_relayer::STRK, "STRK"),
    ];
    if let (Some(relayed), Some(direct)) = (last, last_direct) {
        for (what, hash) in [("relayed", relayed), ("direct", direct)] {
            let trace = provider.trace_transaction(hash).await.expect("trace");
            let TransactionTrace::Invoke(trace) = trace else {
                panic!("not an invoke");
            };
            println!(
                "{what} transfer: L2 gas {} in all, by call (each including the calls under it):",
                trace.execution_resources.l2_gas
            );
            let mut calls = Vec::new();
            calls.extend(trace.validate_invocation.iter());
            if let ExecuteInvocation::Success(execute) = &trace.execute_invocation {
                calls.push(execute);
            }
            calls.extend(trace.fee_transfer_invocation.iter());
            for call in calls {
                tree(call, 1, &names);
            }
        }
    }
}

fn tree(call: &FunctionInvocation, depth: usize, names: &[(Felt, &str)]) {
    let name = |address: Felt| {
        names
            .iter()
            .find(|(a, _)| *a == address)
            .map_or_else(|| format!("{address:#x}"), |(_, n)| (*n).to_owned())
    };
    let selectors = [
        "__validate__",
        "__execute__",
        "execute_sponsored",
        "execute_from_outside_v2",
        "is_valid_signature",
        "transfer",
    ];
    let function = selectors
        .iter()
        .find(|f| get_selector_from_name(f).ok() == Some(call.entry_point_selector))
        .map_or_else(
            || format!("{:#x}", call.entry_point_selector),
            |f| (*f).to_owned(),
        );
    println!(
        "{:indent$}{} {function}: {}",
        "",
        name(call.contract_address),
        call.execution_resources.l2_gas,
        indent = depth * 2
    );
    for inner in &call.calls {
        tree(inner, depth + 1, names);
    }
}
