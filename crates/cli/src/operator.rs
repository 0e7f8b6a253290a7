//! `ciro token transfer`, `ciro token fund-rewards` and `ciro sponsor setup`: funding parties,
//! the workers' rewards and sponsoring CIRO's calls, as the acting account (the local
//! network's script uses them; they work on any network with a manifest).

use anyhow::{bail, ensure, Context, Result};
use ciro_chain::account::connect;
use ciro_chain::bindings::cdc_pool::{CdcPool, CdcPoolReader};
use ciro_chain::bindings::erc20::Erc20;
use ciro_chain::bindings::job_mgr::JobMgrReader;
use ciro_chain::bindings::paymaster::{self, Paymaster, PaymasterReader};
use ciro_chain::cainome::cairo_serde::ContractAddress;
use ciro_chain::clients::{balance_of, u256};
use ciro_chain::manifest::Manifest;
use ciro_chain::sender::{SenderConfig, TxSender};
use ciro_chain::tx::{block_timestamp, call};
use ciro_protocol::contracts;
use ciro_service::{AccountArgs, ChainArgs};
use clap::{Args, Subcommand};
use starknet::accounts::Account;
use starknet::core::types::{BlockId, BlockTag, Call, Felt};
use starknet::core::utils::get_selector_from_name;
use starknet::providers::jsonrpc::HttpTransport;
use starknet::providers::{JsonRpcClient, Provider};

use crate::job::{parse_tokens, tokens};

#[derive(Args, Clone)]
pub struct OnChain {
    #[command(flatten)]
    chain: ChainArgs,
    #[command(flatten)]
    account: AccountArgs,
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Send payment tokens (JobMgr's token) from the account to another.
    Transfer(TransferArgs),
    /// Payment-token balances, in base units (one line per address).
    Balance(BalanceArgs),
    /// Give payment tokens to the workers' reward stream (`CdcPool.notify_reward`): spread
    /// over the stake and delegations past their warm-up, claimed with `ciro-worker claim`.
    FundRewards(FundArgs),
}

#[derive(Args)]
pub struct FundArgs {
    #[command(flatten)]
    on: OnChain,
    /// How many tokens (e.g. 10 or 2.5).
    #[arg(long)]
    amount: String,
}

#[derive(Args)]
pub struct BalanceArgs {
    #[command(flatten)]
    chain: ChainArgs,
    /// Whose balance (repeat for more).
    #[arg(long, required = true)]
    of: Vec<Felt>,
}

#[derive(Args)]
pub struct TransferArgs {
    #[command(flatten)]
    on: OnChain,
    /// Who receives them.
    #[arg(long)]
    to: Vec<Felt>,
    /// How many tokens each receives (e.g. 100 or 2.5).
    #[arg(long)]
    amount: String,
}

#[derive(Subcommand)]
pub enum SponsorCommand {
    /// In one transaction: deposit tokens into the Paymaster, name relayer accounts with a
    /// daily budget each, set the sponsor's daily budget, and create a policy sponsoring the
    /// given calls; prints the policy id (for the relayer's --default-policy or API keys).
    Setup(SetupArgs),
}

#[derive(Args)]
pub struct SetupArgs {
    #[command(flatten)]
    on: OnChain,
    /// Tokens to deposit.
    #[arg(long)]
    deposit: String,
    /// A relayer account that may spend the deposit (repeat for more).
    #[arg(long, required = true)]
    relayer: Vec<Felt>,
    /// Daily budget of the sponsor and of each relayer, in tokens (default: the deposit).
    #[arg(long)]
    budget: Option<String>,
    /// A sponsored call, CONTRACT:FUNCTION, where CONTRACT is a manifest name (JobMgr,
    /// CdcPool), `token` (the payment token) or an address (repeat for more; at most 16).
    #[arg(long, required = true)]
    allow: Vec<String>,
    /// Most one user may be charged per day, in tokens.
    #[arg(long, default_value = "100")]
    daily_limit: String,
    /// Most one transaction may be charged, in tokens.
    #[arg(long, default_value = "10")]
    max_charge: String,
    /// Transactions one user may send per hour.
    #[arg(long, default_value_t = 100)]
    per_hour: u32,
    /// Days the policy lasts.
    #[arg(long, default_value_t = 30)]
    days: u64,
}

struct Acting {
    provider: JsonRpcClient<HttpTransport>,
    manifest: Manifest,
    sender: TxSender<ciro_chain::RpcAccount>,
    token: Felt,
}

async fn acting(on: &OnChain) -> Result<Acting> {
    let chain = on.chain.config()?;
    let provider = JsonRpcClient::new(HttpTransport::new(chain.rpc_url.clone()));
    let chain_id = provider
        .chain_id()
        .await
        .with_context(|| format!("reaching the chain node at {}", chain.rpc_url))?;
    let manifest = Manifest::read(&chain.manifest)?;
    let jobs = manifest.contract(contracts::JOB_MGR)?;
    let token = call(JobMgrReader::new(jobs, &provider).token()).await?.0;
    let account = connect(&on.account.source()?, &chain.rpc_url, chain_id).await?;
    Ok(Acting {
        provider,
        manifest,
        sender: TxSender::new(account, SenderConfig::default()),
        token,
    })
}

pub async fn run_token(command: TokenCommand) -> Result<()> {
    let args = match command {
        TokenCommand::Transfer(args) => args,
        TokenCommand::Balance(args) => return balance(args).await,
        TokenCommand::FundRewards(args) => return fund_rewards(args).await,
    };
    ensure!(!args.to.is_empty(), "name at least one --to");
    let a = acting(&args.on).await?;
    let amount = parse_tokens(&args.amount)?;
    let me = a.sender.account().address();
    let total = amount
        .checked_mul(args.to.len() as u128)
        .context("amount too large")?;
    let balance = balance_of(&a.provider, a.token, me).await?.low;
    ensure!(
        balance >= total,
        "{me:#x} holds {} tokens, {} are needed",
        tokens(balance),
        tokens(total)
    );
    let erc20 = Erc20::new(a.token, a.sender.account());
    let calls: Vec<Call> = args
        .to
        .iter()
        .map(|to| erc20.transfer_getcall(&ContractAddress(*to), &u256(amount)))
        .collect();
    let outcome = a.sender.execute(calls).await?;
    for to in &args.to {
        println!("sent {} tokens to {to:#x}", tokens(amount));
    }
    eprintln!("tx {:#x}", outcome.tx_hash);
    Ok(())
}

/// Approves the pool for `amount` and notifies it, in one transaction.
async fn fund_rewards(args: FundArgs) -> Result<()> {
    let a = acting(&args.on).await?;
    let amount = parse_tokens(&args.amount)?;
    ensure!(amount > 0, "--amount must be more than 0");
    let me = a.sender.account().address();
    let balance = balance_of(&a.provider, a.token, me).await?.low;
    ensure!(
        balance >= amount,
        "{me:#x} holds {} tokens, {} are needed",
        tokens(balance),
        tokens(amount)
    );
    let pool = a.manifest.contract(contracts::CDC_POOL)?;
    let weight = call(CdcPoolReader::new(pool, &a.provider).total_weight()).await?;
    ensure!(
        !ciro_chain::clients::is_zero(&weight),
        "no stake is past its warm-up yet, so nobody would earn these tokens: the pool would \
         send them to its treasury. Fund the rewards once a worker has activated its stake \
         (`ciro-worker status` shows what is still warming)"
    );
    let calls = vec![
        Erc20::new(a.token, a.sender.account())
            .approve_getcall(&ContractAddress(pool), &u256(amount)),
        CdcPool::new(pool, a.sender.account()).notify_reward_getcall(&u256(amount)),
    ];
    let outcome = a.sender.execute(calls).await?;
    println!(
        "funded the workers' rewards with {} tokens, spread at once over the {} staked tokens \
         past their warm-up",
        tokens(amount),
        tokens(weight.low)
    );
    eprintln!("tx {:#x}", outcome.tx_hash);
    Ok(())
}

async fn balance(args: BalanceArgs) -> Result<()> {
    let chain = args.chain.config()?;
    let provider = JsonRpcClient::new(HttpTransport::new(chain.rpc_url.clone()));
    let manifest = Manifest::read(&chain.manifest)?;
    let jobs = manifest.contract(contracts::JOB_MGR)?;
    let token = call(JobMgrReader::new(jobs, &provider).token())
        .await
        .with_context(|| format!("reading JobMgr's token through {}", chain.rpc_url))?
        .0;
    for holder in &args.of {
        let held = balance_of(&provider, token, *holder).await?;
        ensure!(
            held.high == 0,
            "{holder:#x} holds more than 2^128 base units"
        );
        println!("{holder:#x} {}", held.low);
    }
    Ok(())
}

/// `CONTRACT:FUNCTION` as an allowed call.
fn allowed_call(a: &Acting, text: &str) -> Result<paymaster::AllowedCall> {
    let Some((contract, function)) = text.split_once(':') else {
        bail!("--allow takes CONTRACT:FUNCTION (e.g. JobMgr:submit_job), not {text:?}");
    };
    let target = if contract.eq_ignore_ascii_case("token") {
        a.token
    } else if let Ok(address) = Felt::from_hex(contract) {
        address
    } else {
        a.manifest.contract(contract).with_context(|| {
            format!("{contract:?} is neither `token`, an address nor a contract of the manifest")
        })?
    };
    let selector = get_selector_from_name(function)
        .map_err(|e| anyhow::anyhow!("{function:?} is not a function name: {e}"))?;
    Ok(paymaster::AllowedCall {
        target: ContractAddress(target),
        selector,
    })
}

pub async fn run_sponsor(command: SponsorCommand) -> Result<()> {
    let SponsorCommand::Setup(args) = command;
    let a = acting(&args.on).await?;
    let me = a.sender.account().address();
    let pm_address = a.manifest.contract(contracts::PAYMASTER)?;
    let deposit = parse_tokens(&args.deposit)?;
    let budget = match &args.budget {
        Some(text) => parse_tokens(text)?,
        None => deposit,
    };
    let allowed = args
        .allow
        .iter()
        .map(|text| allowed_call(&a, text))
        .collect::<Result<Vec<_>>>()?;
    ensure!(
        (1..=16).contains(&allowed.len()),
        "a policy allows 1 to 16 calls"
    );
    let balance = balance_of(&a.provider, a.token, me).await?.low;
    ensure!(
        balance >= deposit,
        "{me:#x} holds {} tokens and would deposit {}",
        tokens(balance),
        tokens(deposit)
    );
    let now = block_timestamp(&a.provider, BlockId::Tag(BlockTag::Latest)).await?;
    let params = paymaster::PolicyParams {
        daily_limit: u256(parse_tokens(&args.daily_limit)?),
        max_charge: u256(parse_tokens(&args.max_charge)?),
        rate_limit_count: args.per_hour,
        rate_limit_window: 3_600,
        expiry: now + args.days * 86_400,
        allowlist_only: false,
    };
    let account = a.sender.account();
    let pm = Paymaster::new(pm_address, account);
    let mut calls = vec![
        Erc20::new(a.token, account).approve_getcall(&ContractAddress(pm_address), &u256(deposit)),
        pm.deposit_getcall(&u256(deposit)),
    ];
    for relayer in &args.relayer {
        calls.push(pm.add_relayer_getcall(&ContractAddress(*relayer), &u256(budget)));
    }
    calls.push(pm.set_sponsor_budget_getcall(&u256(budget)));
    calls.push(pm.create_policy_getcall(&allowed, &params));
    let outcome = a.sender.execute(calls).await?;
    let policy_id = outcome
        .events_from(pm_address)
        .into_iter()
        .filter_map(|e| paymaster::Event::try_from(e).ok())
        .find_map(|e| match e {
            paymaster::Event::PolicySet(p) => Some(p.policy_id),
            _ => None,
        })
        .with_context(|| format!("transaction {:#x} created no policy", outcome.tx_hash))?;
    let reader = PaymasterReader::new(pm_address, &a.provider);
    let held = call(reader.sponsor_balance(&ContractAddress(me)))
        .await?
        .low;
    eprintln!(
        "sponsor {me:#x}: deposit now {}, {} relayer(s) with a daily budget of {}, policy {policy_id} \
         ({} calls); tx {:#x}",
        tokens(held),
        args.relayer.len(),
        tokens(budget),
        allowed.len(),
        outcome.tx_hash
    );
    println!("{policy_id}");
    Ok(())
}
