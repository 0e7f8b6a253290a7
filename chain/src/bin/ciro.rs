//! `ciro`: the operator's command line.
//!
//! `ciro deploy` declares the project's contract classes (skipping those the network has),
//! deploys the contracts (skipping those the manifest lists and the chain has), and writes the
//! deployment manifest `deployments/<network>.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cainome::cairo_serde::{ContractAddress, U256};
use ciro_chain::artifacts::{classes_dir, ContractArtifact};
use ciro_chain::bindings::{constructor_calldata, test_token};
use ciro_chain::deploy::{declare, deploy, Declared};
use ciro_chain::devnet::DevnetRpc;
use ciro_chain::tx::call;
use ciro_chain::RpcAccount;
use clap::{Args, Parser, Subcommand};
use serde::{Deserialize, Serialize};
use starknet::accounts::{ExecutionEncoding, SingleOwnerAccount};
use starknet::core::types::{BlockId, BlockTag, Felt, StarknetError};
use starknet::core::utils::{cairo_short_string_to_felt, parse_cairo_short_string};
use starknet::providers::jsonrpc::HttpTransport;
use starknet::providers::{JsonRpcClient, Provider, ProviderError};
use starknet::signers::{LocalWallet, SigningKey};
use url::Url;

#[derive(Parser)]
#[command(name = "ciro", version, about = "CIRO operator tool")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Declare the contract classes, deploy the contracts, write the deployment manifest.
    Deploy(DeployArgs),
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
}

/// The deploying account: a devnet predeployed account, or an address with its key read from
/// the environment or a file (never from the command line).
#[derive(Args)]
struct AccountArgs {
    /// Use devnet's predeployed account number N (devnet only).
    #[arg(long, conflicts_with = "account_address")]
    devnet_account: Option<usize>,
    /// Account contract address; its key comes from CIRO_PRIVATE_KEY or --private-key-file.
    #[arg(long, env = "CIRO_ACCOUNT_ADDRESS")]
    account_address: Option<Felt>,
    /// File holding the account's private key (hex).
    #[arg(long, env = "CIRO_PRIVATE_KEY_FILE")]
    private_key_file: Option<PathBuf>,
}

/// `deployments/<network>.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Manifest {
    network: String,
    chain_id: String,
    rpc_url: String,
    /// Block of the first deployment recorded in this manifest.
    deploy_block: Option<u64>,
    /// Class hash per contract name.
    classes: BTreeMap<String, Felt>,
    /// Address per deployed contract.
    contracts: BTreeMap<String, Felt>,
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Deploy(args) => run_deploy(args).await,
    };
    if let Err(err) = result {
        eprintln!("ciro: error: {err:#}");
        std::process::exit(1);
    }
}

async fn account(args: &AccountArgs, rpc_url: &Url, chain_id: Felt) -> Result<RpcAccount> {
    let (address, key) = match (args.devnet_account, args.account_address) {
        (Some(index), _) => {
            let accounts = DevnetRpc::new(rpc_url.clone())
                .predeployed_accounts()
                .await?;
            let account = accounts
                .get(index)
                .with_context(|| format!("devnet has {} accounts", accounts.len()))?;
            (account.address, account.private_key)
        }
        (None, Some(address)) => (address, private_key(args.private_key_file.as_deref())?),
        (None, None) => {
            bail!("choose an account: --devnet-account N, or --account-address with a key")
        }
    };
    let provider = JsonRpcClient::new(HttpTransport::new(rpc_url.clone()));
    let signer = LocalWallet::from(SigningKey::from_secret_scalar(key));
    let mut account =
        SingleOwnerAccount::new(provider, signer, address, chain_id, ExecutionEncoding::New);
    account.set_block_id(BlockId::Tag(BlockTag::Latest));
    Ok(account)
}

fn private_key(file: Option<&Path>) -> Result<Felt> {
    let text = match (std::env::var("CIRO_PRIVATE_KEY"), file) {
        (Ok(key), _) => key,
        (Err(_), Some(path)) => {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        }
        (Err(_), None) => bail!("no private key: set CIRO_PRIVATE_KEY or --private-key-file"),
    };
    Felt::from_hex(text.trim()).context("the private key is not a hex felt")
}

async fn run_deploy(args: DeployArgs) -> Result<()> {
    let provider = JsonRpcClient::new(HttpTransport::new(args.rpc_url.clone()));
    let chain_id = provider
        .chain_id()
        .await
        .with_context(|| format!("reaching {}", args.rpc_url))?;
    let account = account(&args.account, &args.rpc_url, chain_id).await?;
    let manifest_path = args
        .manifest
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("deployments/{}.json", args.network)));
    let mut manifest = read_manifest(&manifest_path)?;
    let chain_name =
        parse_cairo_short_string(&chain_id).unwrap_or_else(|_| format!("{chain_id:#x}"));
    if !manifest.chain_id.is_empty() && manifest.chain_id != chain_name {
        bail!(
            "{} is for chain {}, the node is {chain_name}",
            manifest_path.display(),
            manifest.chain_id
        );
    }
    manifest.network = args.network.clone();
    manifest.chain_id = chain_name.clone();
    manifest.rpc_url = args.rpc_url.to_string();
    println!(
        "network {} (chain {chain_name}) at {}; deployer {:#x}",
        args.network,
        args.rpc_url,
        account_address(&account)
    );

    let dir = classes_dir();
    for name in ["TestToken"] {
        let artifact = ContractArtifact::load(&dir, name)?;
        match declare(&account, &artifact)
            .await
            .with_context(|| format!("declaring {name}"))?
        {
            Declared::Now {
                class_hash,
                tx_hash,
            } => {
                println!("declared  {name:<12} class {class_hash:#066x}  tx {tx_hash:#066x}")
            }
            Declared::Already { class_hash } => {
                println!(
                    "declared  {name:<12} class {class_hash:#066x}  (already on chain, skipped)"
                )
            }
        }
        manifest
            .classes
            .insert(name.to_owned(), artifact.class_hash);
    }

    let name = "TestToken";
    let existing = match manifest.contracts.get(name) {
        Some(address) => deployed_class(&provider, *address)
            .await?
            .filter(|class| *class == manifest.classes[name])
            .map(|_| *address),
        None => None,
    };
    let token = match existing {
        Some(address) => {
            println!("deployed  {name:<12} at    {address:#066x}  (in the manifest and on chain, skipped)");
            address
        }
        None => {
            let calldata = constructor_calldata(
                test_token::TestToken::new(Felt::ZERO, &account).constructor_getcall(
                    &cairo_short_string_to_felt("CIRO Test Token")?,
                    &cairo_short_string_to_felt("CTT")?,
                    &18,
                    &U256 {
                        low: 1_000_000_000_000_000_000_000_000,
                        high: 0,
                    },
                    &ContractAddress(account_address(&account)),
                ),
            );
            let deployed = deploy(&account, manifest.classes[name], calldata, Felt::ZERO).await?;
            println!(
                "deployed  {name:<12} at    {:#066x}  tx {:#066x}",
                deployed.address, deployed.tx_hash
            );
            if manifest.deploy_block.is_none() {
                manifest.deploy_block = Some(provider.block_number().await?);
            }
            manifest.contracts.insert(name.to_owned(), deployed.address);
            deployed.address
        }
    };

    let reader = test_token::TestTokenReader::new(token, &provider);
    let supply = call(reader.total_supply()).await?;
    let balance = call(reader.balance_of(&ContractAddress(account_address(&account)))).await?;
    println!(
        "check     TestToken total_supply {} ; deployer balance {}",
        supply.low, balance.low
    );

    write_manifest(&manifest_path, &manifest)?;
    println!("manifest  {}", manifest_path.display());
    Ok(())
}

fn account_address(account: &RpcAccount) -> Felt {
    use starknet::accounts::Account;
    account.address()
}

/// The class deployed at `address`, or `None` when nothing is.
async fn deployed_class(
    provider: &JsonRpcClient<HttpTransport>,
    address: Felt,
) -> Result<Option<Felt>> {
    match provider
        .get_class_hash_at(BlockId::Tag(BlockTag::Latest), address)
        .await
    {
        Ok(class) => Ok(Some(class)),
        Err(ProviderError::StarknetError(StarknetError::ContractNotFound)) => Ok(None),
        Err(e) => Err(e).context("reading the deployed class"),
    }
}

fn read_manifest(path: &Path) -> Result<Manifest> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Manifest::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn write_manifest(path: &Path, manifest: &Manifest) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let text = serde_json::to_string_pretty(manifest)? + "\n";
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
