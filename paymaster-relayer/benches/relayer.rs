//! Sponsored executions per second through the relayer against the same users' direct
//! invokes on the same devnet, with 1, 2 and 4 relayer accounts. Each figure is 8 users
//! sending 10 token transfers each (one after another per user, users concurrently), timed
//! until every receipt is in. Prints each rate and its ratio to the direct invokes measured on
//! the same devnet (target: at least 0.8), and how the rate grows with accounts. The last
//! rows send the executions in batches (`--batch-window-ms`): several users' executions in
//! one relayer transaction.
//!
//! `cargo bench -p ciro-paymaster-relayer --bench relayer` (after scripts/setup.sh).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use ciro_chain::starknet::accounts::{Account, ConnectedAccount};
use ciro_chain::tx::wait_for_receipt;
use ciro_tests::Actor;
use common::*;

const USERS: usize = 8;
const PER_USER: usize = 10;
/// The batch window of the batched rows.
const BATCH_WINDOW_MS: u64 = 25;

/// Direct invokes: each user pays its own gas.
async fn direct(fx: &Fx) -> f64 {
    for user in &fx.users {
        fx.s.net
            .devnet
            .mint_strk(user.address, RELAYER_STRK)
            .await
            .expect("mint");
    }
    let receiver = fx.s.net.address(Actor::Verifier);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for user in fx.users.clone() {
        let account = account_of(&fx.s, user.address, &user.key);
        let call = fx.transfer(receiver, 1);
        tasks.push(tokio::spawn(async move {
            for _ in 0..PER_USER {
                let sent = account
                    .execute_v3(vec![call.clone()])
                    .send()
                    .await
                    .expect("direct invoke");
                wait_for_receipt(account.provider(), sent.transaction_hash)
                    .await
                    .expect("receipt");
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    (USERS * PER_USER) as f64 / start.elapsed().as_secs_f64()
}

/// STRK (FRI) held by the relayer's accounts.
async fn relayer_strk(fx: &Fx) -> u128 {
    let mut total = 0;
    for relayer in &fx.relayers {
        total += fx.balance(ciro_paymaster_relayer::STRK, *relayer).await;
    }
    total
}

/// The same transfers, sponsored through the relayer: executions per second, and the gas
/// (FRI) the relayer's accounts paid per execution.
async fn relayed(fx: &Fx) -> (f64, u128) {
    let strk = relayer_strk(fx).await;
    let receiver = fx.s.net.address(Actor::Verifier);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for user in fx.users.clone() {
        let client = fx.client();
        let call = fx.transfer(receiver, 1);
        let provider = ciro_chain::starknet::providers::JsonRpcClient::new(
            ciro_chain::starknet::providers::jsonrpc::HttpTransport::new(fx.s.net.rpc_url()),
        );
        let chain_id = fx.chain_id;
        tasks.push(tokio::spawn(async move {
            for _ in 0..PER_USER {
                let (_, executed) = relay(
                    &client,
                    &user,
                    std::slice::from_ref(&call),
                    sponsored(),
                    chain_id,
                )
                .await
                .expect("relayed");
                wait_for_receipt(&provider, executed.transaction_hash)
                    .await
                    .expect("receipt");
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    let rate = (USERS * PER_USER) as f64 / start.elapsed().as_secs_f64();
    let paid = strk - relayer_strk(fx).await;
    (rate, paid / (USERS * PER_USER) as u128)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    println!("relayer benchmark: {USERS} users x {PER_USER} token transfers, until every receipt");
    let mut rows = Vec::new();
    // (accounts, batch window): each execution alone, then batched (`--batch-window-ms`).
    for (accounts, window_ms) in [
        (1usize, 0u64),
        (2, 0),
        (4, 0),
        (1, BATCH_WINDOW_MS),
        (4, BATCH_WINDOW_MS),
    ] {
        let fx = Fx::start(Options {
            relayers: accounts,
            users: USERS,
            policy_rate: 1_000,
            limits: ciro_paymaster_relayer::Limits {
                batch_window: Duration::from_millis(window_ms),
                ..Default::default()
            },
            ..Options::default()
        })
        .await;
        // Relayed first (the users have no STRK), then direct on the same devnet; the CPU
        // time each took, the node's and this process's (the relayer and its clients).
        let node = fx.s.net.devnet_pid();
        let transfers = (USERS * PER_USER) as f64;
        let start = CpuMark::now(node);
        let (through, gas) = relayed(&fx).await;
        let relayed_cpu = start.per_item(transfers);
        let start = CpuMark::now(node);
        let baseline = direct(&fx).await;
        let direct_cpu = start.per_item(transfers);
        let how = if window_ms == 0 {
            "alone".to_owned()
        } else {
            format!("batched ({window_ms} ms window)")
        };
        println!(
            "{accounts} relayer account(s), {how}: relayed {through:.1} tx/s, direct {baseline:.1} tx/s, ratio {:.2} (target >= 0.8); relayer gas {gas} FRI per execution",
            through / baseline
        );
        println!(
            "  CPU per transfer: relayed {:.1} ms (node {:.1}, relayer and clients {:.1}), direct {:.1} ms (node {:.1}, clients {:.1})",
            relayed_cpu.0 + relayed_cpu.1,
            relayed_cpu.0,
            relayed_cpu.1,
            direct_cpu.0 + direct_cpu.1,
            direct_cpu.0,
            direct_cpu.1
        );
        if window_ms > 0 {
            let metrics = reqwest::get(format!("{}metrics", fx.url))
                .await
                .expect("metrics")
                .text()
                .await
                .expect("metrics text");
            let value = |series: &str| {
                metrics
                    .lines()
                    .find_map(|l| l.strip_prefix(series))
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .unwrap_or(0.0)
            };
            let batches = value("ciro_relayer_batches_total{outcome=\"sent\"}");
            let batched = value("ciro_relayer_batched_executions_total{outcome=\"sent\"}");
            let split = value("ciro_relayer_batches_total{outcome=\"split\"}");
            println!(
                "  {batched} of {} relayed executions went out in {batches} batches ({:.1} each), {split} batches split",
                USERS * PER_USER,
                if batches > 0.0 { batched / batches } else { 0.0 }
            );
        }
        rows.push((accounts, how, through));
    }
    let one = rows[0].2;
    for (accounts, how, rate) in &rows {
        println!(
            "  {accounts} account(s), {how}: {:.2}x the 1-account rate",
            rate / one
        );
    }
}
