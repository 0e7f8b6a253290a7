//! `ciro lifecycle`: one job's whole life on a local devnet, through the chain crate's
//! clients. The parties are devnet's predeployed accounts: 0 the deployer (admin, model owner),
//! 1 the coordinator, 3 the submitter, 4 the worker.

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use ciro_chain::account::{connect, AccountSource};
use ciro_chain::bindings::{cdc_pool, erc20::Erc20, job_mgr};
use ciro_chain::cainome::cairo_serde::{ContractAddress, U256};
use ciro_chain::clients::{
    balance_of, no_options, u256, u256_from_digest, JobMgrClient, PoolClient,
};
use ciro_chain::devnet::DevnetRpc;
use ciro_chain::manifest::Manifest;
use ciro_chain::sender::{SenderConfig, TxSender};
use ciro_chain::tx::{block_timestamp, call, TxOutcome};
use ciro_chain::RpcAccount;
use starknet::accounts::Account;
use starknet::core::types::{BlockId, BlockTag, Felt};
use starknet::core::utils::cairo_short_string_to_felt;
use starknet::providers::jsonrpc::HttpTransport;
use starknet::providers::{JsonRpcClient, Provider};

use super::LifecycleArgs;

use ciro_chain::constants::{contracts, roles, TOKEN};
/// What the submitter pays for the job.
const JOB_FEE: u128 = 10 * TOKEN;

fn digest(text: &str) -> Result<U256> {
    let hex = text.trim().trim_start_matches("0x");
    if hex.len() != 64 {
        bail!("expected a 32-byte hex digest, got {text:?}");
    }
    let mut bytes = [0u8; 32];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
            .with_context(|| format!("not hex: {text:?}"))?;
    }
    Ok(u256_from_digest(&bytes))
}

fn tokens(amount: U256) -> String {
    if amount.high != 0 {
        return "more than 2^128 units".to_owned();
    }
    let value = amount.low;
    format!(
        "{}.{:06}",
        value / TOKEN,
        (value % TOKEN) / 1_000_000_000_000
    )
}

fn step(label: &str, outcome: &TxOutcome) {
    let fee = outcome.actual_fee();
    let fri = u128::try_from(fee.to_biguint()).unwrap_or(u128::MAX);
    println!(
        "{label:<34} tx {:#066x}  fee {}.{:09} STRK",
        outcome.tx_hash,
        fri / TOKEN,
        (fri % TOKEN) / 1_000_000_000
    );
}

struct Party {
    address: Felt,
    sender: Arc<TxSender<RpcAccount>>,
}

async fn party(args: &LifecycleArgs, chain_id: Felt, index: usize) -> Result<Party> {
    let account = connect(
        &AccountSource::DevnetPredeployed(index),
        &args.rpc_url,
        chain_id,
    )
    .await?;
    Ok(Party {
        address: account.address(),
        sender: Arc::new(TxSender::new(account, SenderConfig::default())),
    })
}

pub async fn run(args: LifecycleArgs) -> Result<()> {
    let provider = JsonRpcClient::new(HttpTransport::new(args.rpc_url.clone()));
    let chain_id = provider
        .chain_id()
        .await
        .with_context(|| format!("reaching {}", args.rpc_url))?;
    let manifest = Manifest::read(&args.manifest)?;
    let (token, pool, jobs) = (
        manifest.contract(contracts::TEST_TOKEN)?,
        manifest.contract(contracts::CDC_POOL)?,
        manifest.contract(contracts::JOB_MGR)?,
    );
    let (model_hash, input_hash, output_hash) = (
        digest(&args.model_hash)?,
        digest(&args.input_hash)?,
        digest(&args.output_hash)?,
    );
    let admin = party(&args, chain_id, 0).await?;
    let coordinator = party(&args, chain_id, 1).await?;
    let submitter = party(&args, chain_id, 3).await?;
    let worker = party(&args, chain_id, 4).await?;
    let jm = |p: &Party| JobMgrClient::new(jobs, p.sender.clone());
    let cdc = |p: &Party| PoolClient::new(pool, p.sender.clone());

    let params = jm(&admin).params().await?;
    let min_stake = call(cdc(&admin).reader().params()).await?.min_stake_0;

    // Setup: the coordinator role, and tokens for the submitter and the worker.
    let role = ciro_chain::role_felt(roles::COORDINATOR)?;
    let jm_admin = job_mgr::JobMgr::new(jobs, admin.sender.account().clone());
    if !call(
        jm(&admin)
            .reader()
            .has_role(&role, &ContractAddress(coordinator.address)),
    )
    .await?
    {
        // The contracts are sealed after deployment: a grant waits out the timelock, which
        // this devnet skips by moving its clock.
        let holder = ContractAddress(coordinator.address);
        let out = admin
            .sender
            .execute(vec![jm_admin.schedule_role_grant_getcall(&role, &holder)])
            .await?;
        step("schedule COORDINATOR grant", &out);
        let (delay, _, _) = call(jm(&admin).reader().upgrade_status()).await?;
        DevnetRpc::new(args.rpc_url.clone())
            .increase_time(delay)
            .await?;
        println!(
            "{:<34} {delay} s (the governance timelock)",
            "time advanced"
        );
        let out = admin
            .sender
            .execute(vec![jm_admin.grant_role_getcall(&role, &holder)])
            .await?;
        step("grant COORDINATOR", &out);
    }
    let token_admin = Erc20::new(token, admin.sender.account().clone());
    let out = admin
        .sender
        .execute(vec![
            token_admin.transfer_getcall(&ContractAddress(submitter.address), &u256(100 * TOKEN)),
            token_admin.transfer_getcall(&ContractAddress(worker.address), &min_stake),
        ])
        .await?;
    step("fund submitter and worker", &out);

    // The life of a job.
    let requirements = job_mgr::Requirements {
        min_vram_mb: 0,
        required_flags: 0,
        min_stake_tier: 0,
        min_score: 0,
    };
    let (model_id, out) = jm(&admin)
        .register_model(model_hash, &requirements, u256(TOKEN))
        .await?;
    step(&format!("register_model -> model {model_id}"), &out);
    // This machine's worker runs on CPU: it declares exactly that.
    let capabilities = cdc_pool::Capabilities {
        gpu_model: cairo_short_string_to_felt("CPU")?,
        vram_mb: 0,
        compute_capability: 0,
        flags: 0,
    };
    let out = cdc(&worker)
        .register_and_stake(token, &capabilities, Felt::ZERO, min_stake)
        .await?;
    step("register_worker + stake", &out);
    // New stake earns only after the pool's warm-up; the worker activates it then, so the
    // protocol fee of its job reaches it.
    let warmup = call(cdc(&admin).reader().params()).await?.warmup;
    DevnetRpc::new(args.rpc_url.clone())
        .increase_time(warmup)
        .await?;
    println!("{:<34} {warmup} s (the stake's warm-up)", "time advanced");
    let out = cdc(&worker).activate(worker.address).await?;
    step("activate (stake earns)", &out);
    let deadline = block_timestamp(&provider, BlockId::Tag(BlockTag::PreConfirmed)).await? + 3_600;
    let (job_id, out) = jm(&submitter)
        .submit_job(
            token,
            model_id,
            input_hash,
            u256(JOB_FEE),
            deadline,
            &no_options(),
        )
        .await?;
    step(&format!("submit_job -> job {job_id}"), &out);
    let out = jm(&coordinator)
        .assign_jobs(&[(job_id, worker.address)])
        .await?;
    step("assign_job", &out);
    let out = jm(&worker).submit_result(job_id, output_hash).await?;
    step("submit_result", &out);
    DevnetRpc::new(args.rpc_url.clone())
        .increase_time(params.challenge_window)
        .await?;
    println!(
        "{:<34} {} s (the challenge window)",
        "time advanced", params.challenge_window
    );
    let out = jm(&coordinator).finalize(&[job_id]).await?;
    step("finalize", &out);
    let out = cdc(&worker).claim_rewards().await?;
    step("claim_rewards (protocol fee)", &out);

    let info = jm(&admin).job(job_id).await?;
    println!(
        "\njob {job_id}: {:?}, output hash matches: {}",
        info.job.state,
        info.job.output_hash == digest(&args.output_hash)?
    );
    for (name, address) in [
        ("submitter", submitter.address),
        ("worker", worker.address),
        ("JobMgr", jobs),
        ("CDC Pool", pool),
    ] {
        println!(
            "balance {name:<10} {} CTT",
            tokens(balance_of(&provider, token, address).await?)
        );
    }
    let (escrow, bonds) = call(jm(&admin).reader().totals()).await?;
    let totals = call(cdc(&admin).reader().totals()).await?;
    println!(
        "JobMgr escrow {} + bonds {}; pool stakes {} + delegations {} + exits {} + rewards {} + bonds {} (warming {})",
        tokens(escrow),
        tokens(bonds),
        tokens(totals.stakes),
        tokens(totals.delegations),
        tokens(totals.exits),
        tokens(totals.rewards),
        tokens(totals.bonds),
        tokens(totals.warming)
    );
    Ok(())
}
