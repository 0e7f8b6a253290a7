//! `ciro`: the operator's command line.
//!
//! `ciro devnet` starts a local starknet-devnet exactly as the test harness does (the
//! project's seed, accounts and balances) and keeps it until SIGINT/SIGTERM.
//!
//! `ciro job …` (submit, status, watch, result, cancel, dispute, list) and `ciro model …`
//! (add, list) are the submitter's and model owner's commands; `ciro token transfer` and
//! `ciro sponsor setup` fund parties and sponsor CIRO's calls.
//!
//! `ciro deploy` declares the project's contract classes (skipping those the network has),
//! deploys the contracts (skipping those the manifest lists and the chain has), and writes the
//! deployment manifest `deployments/<network>.json` (see `ciro_deploy::deployment`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use cainome::cairo_serde::ContractAddress;
use ciro_chain::account::connect;
use ciro_chain::bindings::erc20::Erc20Reader;
use ciro_chain::bindings::paymaster::PaymasterReader;
use ciro_chain::tx::call;
use ciro_deploy::artifacts::classes_dir;
use ciro_deploy::deployment::{deploy_all, DeployConfig, Manifest};
use ciro_service::{run_main, run_service, AccountArgs, LogArgs};
use clap::{Args, Parser, Subcommand};
use starknet::accounts::Account;
use starknet::core::types::Felt;
use starknet::providers::jsonrpc::HttpTransport;
use starknet::providers::{JsonRpcClient, Provider};
use url::Url;

mod devnet;
mod job;
mod lifecycle;
mod operator;

#[derive(Parser)]
#[command(name = "ciro", version, about = "CIRO operator tool")]
struct Cli {
    #[command(flatten)]
    log: LogArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Declare the contract classes, deploy the contracts, write the deployment manifest.
    Deploy(DeployArgs),
    /// Start a local starknet-devnet the way the test harness does (fixed seed, accounts and
    /// balances), print its RPC URL, and run until SIGINT/SIGTERM.
    Devnet(devnet::DevnetArgs),
    /// On a local devnet with a deployment: run one job's whole life through the chain
    /// crate (model, worker stake, job, assignment, result, time advanced, finalization,
    /// rewards), printing each transaction with its fee and the final balances.
    Lifecycle(LifecycleArgs),
    /// Submit jobs and follow them: submit, status, watch, result, cancel, dispute, list.
    #[command(subcommand)]
    Job(job::JobCommand),
    /// Models: add (upload and register a TorchScript file), list.
    #[command(subcommand)]
    Model(job::ModelCommand),
    /// The payment token: transfer, balance, fund-rewards (the workers' reward stream).
    #[command(subcommand)]
    Token(operator::TokenCommand),
    /// Sponsoring users' gas through the Paymaster: setup.
    #[command(subcommand)]
    Sponsor(operator::SponsorCommand),
}

#[derive(Args)]
struct LifecycleArgs {
    /// devnet's JSON-RPC endpoint.
    #[arg(
        long,
        env = "CIRO_RPC_URL",
        default_value = "http://127.0.0.1:5050/rpc"
    )]
    rpc_url: Url,
    /// The deployment manifest.
    #[arg(long, default_value = "deployments/devnet.json")]
    manifest: PathBuf,
    /// SHA-256 of the model file (hex), as `ciro-worker add-model` printed it.
    #[arg(long)]
    model_hash: String,
    /// SHA-256 of the job's input tensors (hex), as `ciro-worker exec` printed it.
    #[arg(long)]
    input_hash: String,
    /// SHA-256 of the output tensors the worker computed (hex).
    #[arg(long)]
    output_hash: String,
}

#[derive(Args)]
struct DeployArgs {
    /// Starknet JSON-RPC endpoint.
    #[arg(
        long,
        env = "CIRO_RPC_URL",
        default_value = "http://127.0.0.1:5050/rpc"
    )]
    rpc_url: Url,
    /// Network name, used for the manifest's file name.
    #[arg(long, env = "CIRO_NETWORK", default_value = "devnet")]
    network: String,
    #[command(flatten)]
    account: AccountArgs,
    /// Manifest path (default: deployments/<network>.json).
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// Deployment config (JSON: payment token, upgrade delay, treasury, roles, the pool's
    /// and JobMgr's parameters; see `DeployConfig`). Without it, the local-network defaults.
    #[arg(long, env = "CIRO_DEPLOY_CONFIG")]
    config: Option<PathBuf>,
    /// Overrides the config's payment token (STRK on Sepolia and mainnet). Without either,
    /// the project's test token is deployed and used, which only a starknet-devnet accepts
    /// (the node must answer `devnet_getConfig`; elsewhere the deployment is refused).
    #[arg(long, env = "CIRO_PAYMENT_TOKEN")]
    payment_token: Option<Felt>,
    /// Overrides the config's upgrade delay (seconds, 1 hour to 30 days).
    #[arg(long, env = "CIRO_UPGRADE_DELAY")]
    upgrade_delay: Option<u64>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        // A long-running command: SIGINT/SIGTERM end it cleanly.
        Command::Devnet(args) => {
            run_service("ciro", &cli.log, |shutdown| devnet::run(args, shutdown))
        }
        Command::Deploy(args) => run_main("ciro", &cli.log, run_deploy(args)),
        Command::Lifecycle(args) => run_main("ciro", &cli.log, lifecycle::run(args)),
        Command::Job(command) => run_main("ciro", &cli.log, job::run_job(command)),
        Command::Model(command) => run_main("ciro", &cli.log, job::run_model(command)),
        Command::Token(command) => run_main("ciro", &cli.log, operator::run_token(command)),
        Command::Sponsor(command) => run_main("ciro", &cli.log, operator::run_sponsor(command)),
    }
}

async fn run_deploy(args: DeployArgs) -> Result<()> {
    let provider = JsonRpcClient::new(HttpTransport::new(args.rpc_url.clone()));
    let chain_id = provider
        .chain_id()
        .await
        .with_context(|| format!("reaching {}", args.rpc_url))?;
    let account = connect(&args.account.source()?, &args.rpc_url, chain_id).await?;
    let manifest_path = args
        .manifest
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("deployments/{}.json", args.network)));
    let mut manifest = Manifest::read(&manifest_path)?;
    manifest.network = args.network.clone();
    manifest.rpc_url = args.rpc_url.to_string();
    println!(
        "network {} at {}; deployer {:#x}",
        args.network,
        args.rpc_url,
        account.address()
    );

    let mut config = match &args.config {
        Some(path) => DeployConfig::read(path)?,
        None => DeployConfig::default(),
    };
    if args.payment_token.is_some() {
        config.payment_token = args.payment_token;
    }
    if let Some(delay) = args.upgrade_delay {
        config.upgrade_delay = delay;
    }
    deploy_all(
        &account,
        &args.rpc_url,
        &classes_dir(),
        &config,
        &mut manifest,
        |step| println!("{step}"),
    )
    .await?;
    manifest.write(&manifest_path)?;

    let paymaster = PaymasterReader::new(
        manifest.contract(ciro_chain::constants::contracts::PAYMASTER)?,
        &provider,
    );
    let token = call(paymaster.token()).await?;
    let balance =
        call(Erc20Reader::new(token.0, &provider).balance_of(&ContractAddress(account.address())))
            .await?;
    println!(
        "check     Paymaster admin {:#x}, payment token {:#x}; deployer holds {} of it",
        call(paymaster.admin()).await?.0,
        token.0,
        balance.low
    );
    let deploy_block = manifest
        .deploy_block
        .map_or_else(|| "unknown".to_owned(), |b| b.to_string());
    println!(
        "manifest  {} (chain {}, deploy block {deploy_block})",
        manifest_path.display(),
        manifest.chain_id
    );
    Ok(())
}
