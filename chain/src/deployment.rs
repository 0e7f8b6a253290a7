//! Deploying CIRO to a network: declare the classes, deploy the contracts, record it all in
//! a manifest (`deployments/<network>.json`). Idempotent: a class the network has is not
//! declared again; a contract the manifest lists and the chain has, with the same class,
//! is not deployed again.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use anyhow::{bail, Context, Result};
use cainome::cairo_serde::{ContractAddress, U256};
use serde::{Deserialize, Serialize};
use starknet::accounts::ConnectedAccount;
use starknet::core::types::{BlockId, BlockTag, Felt, StarknetError};
use starknet::core::utils::{cairo_short_string_to_felt, parse_cairo_short_string};
use starknet::providers::{Provider, ProviderError};

use crate::artifacts::ContractArtifact;
use crate::bindings::{constructor_calldata, paymaster, test_token};
use crate::deploy::{declare, deploy, Declared};

/// The contracts a deployment declares and deploys, in order.
pub const CONTRACTS: &[&str] = &["TestToken", "Paymaster"];
/// The local network's test token supply, minted to the deployer: 1,000,000 tokens.
pub const TEST_TOKEN_SUPPLY: u128 = 1_000_000_000_000_000_000_000_000;

/// What a deployment is configured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeployConfig {
    /// The token the contracts are paid in: an existing one (STRK on Sepolia and mainnet),
    /// or `None` to deploy the project's test token (test networks only: its `mint` is open).
    pub payment_token: Option<Felt>,
    /// Seconds between scheduling and executing an upgrade (1 hour to 30 days).
    pub upgrade_delay: u64,
}

impl Default for DeployConfig {
    fn default() -> Self {
        Self {
            payment_token: None,
            upgrade_delay: 86_400,
        }
    }
}

/// `deployments/<network>.json`.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub network: String,
    /// The chain id as text (`SN_SEPOLIA`), or hex when it is not a short string.
    pub chain_id: String,
    pub rpc_url: String,
    /// Block of the first deployment recorded in this manifest (where indexers start).
    pub deploy_block: Option<u64>,
    /// Class hash per contract name.
    pub classes: BTreeMap<String, Felt>,
    /// Address per deployed contract.
    pub contracts: BTreeMap<String, Felt>,
}

impl Manifest {
    /// Reads `path`, or an empty manifest when there is no file yet.
    pub fn read(path: &Path) -> Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Writes the manifest (creating its folder).
    pub fn write(&self, path: &Path) -> Result<()> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(path, serde_json::to_string_pretty(self)? + "\n")
            .with_context(|| format!("writing {}", path.display()))
    }
}

/// One thing a deployment did or skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Declared {
        name: String,
        class_hash: Felt,
        tx_hash: Felt,
    },
    AlreadyDeclared {
        name: String,
        class_hash: Felt,
    },
    Deployed {
        name: String,
        address: Felt,
        tx_hash: Felt,
    },
    AlreadyDeployed {
        name: String,
        address: Felt,
    },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Declared {
                name,
                class_hash,
                tx_hash,
            } => {
                write!(
                    f,
                    "declared  {name:<12} class {class_hash:#066x}  tx {tx_hash:#066x}"
                )
            }
            Step::AlreadyDeclared { name, class_hash } => {
                write!(
                    f,
                    "declared  {name:<12} class {class_hash:#066x}  (already on chain, skipped)"
                )
            }
            Step::Deployed {
                name,
                address,
                tx_hash,
            } => {
                write!(
                    f,
                    "deployed  {name:<12} at    {address:#066x}  tx {tx_hash:#066x}"
                )
            }
            Step::AlreadyDeployed { name, address } => {
                write!(f, "deployed  {name:<12} at    {address:#066x}  (in the manifest and on chain, skipped)")
            }
        }
    }
}

/// Declares and deploys every contract of [`CONTRACTS`] from `account` (which becomes the
/// contracts' admin), updating `manifest`; `on_step` sees each step as it completes.
pub async fn deploy_all<A>(
    account: &A,
    classes_dir: &Path,
    config: &DeployConfig,
    manifest: &mut Manifest,
    mut on_step: impl FnMut(&Step),
) -> Result<()>
where
    A: ConnectedAccount + Sync,
{
    let provider = account.provider();
    let chain_id = provider.chain_id().await.context("reading the chain id")?;
    let chain_name =
        parse_cairo_short_string(&chain_id).unwrap_or_else(|_| format!("{chain_id:#x}"));
    if !manifest.chain_id.is_empty() && manifest.chain_id != chain_name {
        bail!(
            "the manifest is for chain {}, the node is {chain_name}",
            manifest.chain_id
        );
    }
    manifest.chain_id = chain_name;

    let contracts: Vec<&str> = CONTRACTS
        .iter()
        .copied()
        .filter(|name| !(*name == "TestToken" && config.payment_token.is_some()))
        .collect();
    for name in &contracts {
        let artifact = ContractArtifact::load(classes_dir, name)?;
        let step = match declare(account, &artifact)
            .await
            .with_context(|| format!("declaring {name}"))?
        {
            Declared::Now {
                class_hash,
                tx_hash,
            } => Step::Declared {
                name: name.to_string(),
                class_hash,
                tx_hash,
            },
            Declared::Already { class_hash } => Step::AlreadyDeclared {
                name: name.to_string(),
                class_hash,
            },
        };
        on_step(&step);
        manifest
            .classes
            .insert(name.to_string(), artifact.class_hash);
    }

    for name in &contracts {
        let class_hash = manifest.classes[*name];
        if let Some(address) = manifest.contracts.get(*name).copied() {
            if deployed_class(provider, address).await? == Some(class_hash) {
                on_step(&Step::AlreadyDeployed {
                    name: name.to_string(),
                    address,
                });
                continue;
            }
        }
        let calldata = constructor_args(account, name, config, manifest)?;
        let deployed = deploy(account, class_hash, calldata, Felt::ZERO)
            .await
            .with_context(|| format!("deploying {name}"))?;
        if manifest.deploy_block.is_none() {
            let receipt = provider.get_transaction_receipt(deployed.tx_hash).await?;
            manifest.deploy_block = Some(receipt.block.block_number());
        }
        manifest
            .contracts
            .insert(name.to_string(), deployed.address);
        on_step(&Step::Deployed {
            name: name.to_string(),
            address: deployed.address,
            tx_hash: deployed.tx_hash,
        });
    }
    Ok(())
}

/// Constructor arguments of each contract, serialized by its binding.
fn constructor_args<A: ConnectedAccount + Sync>(
    account: &A,
    name: &str,
    config: &DeployConfig,
    manifest: &Manifest,
) -> Result<Vec<Felt>> {
    match name {
        "Paymaster" => {
            let token = match config.payment_token {
                Some(token) => token,
                None => *manifest
                    .contracts
                    .get("TestToken")
                    .context("the test token is deployed first")?,
            };
            Ok(constructor_calldata(
                paymaster::Paymaster::new(Felt::ZERO, account).constructor_getcall(
                    &ContractAddress(account.address()),
                    &ContractAddress(token),
                    &config.upgrade_delay,
                ),
            ))
        }
        "TestToken" => Ok(constructor_calldata(
            test_token::TestToken::new(Felt::ZERO, account).constructor_getcall(
                &cairo_short_string_to_felt("CIRO Test Token")?,
                &cairo_short_string_to_felt("CTT")?,
                &18,
                &U256 {
                    low: TEST_TOKEN_SUPPLY,
                    high: 0,
                },
                &ContractAddress(account.address()),
            ),
        )),
        other => bail!("no constructor arguments known for {other}"),
    }
}

/// The class deployed at `address`, or `None` when nothing is.
async fn deployed_class<P: Provider + Sync>(provider: &P, address: Felt) -> Result<Option<Felt>> {
    match provider
        .get_class_hash_at(BlockId::Tag(BlockTag::PreConfirmed), address)
        .await
    {
        Ok(class) => Ok(Some(class)),
        Err(ProviderError::StarknetError(StarknetError::ContractNotFound)) => Ok(None),
        Err(e) => Err(e).context("reading the deployed class"),
    }
}
