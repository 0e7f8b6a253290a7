//! Deploying CIRO to a network: declare the classes, deploy the contracts with parameters from
//! a config file, wire them (JobMgr holds JOB_MANAGER in the CDC Pool; coordinator, arbiter,
//! pauser and slasher roles), and record it all in a manifest (`deployments/<network>.json`).
//! Idempotent: a class the network has is not declared again; a contract the manifest lists
//! and the chain has, with the same class, is not deployed again; a role already held is not
//! granted again.
//!
//! The open-mint test token is deployed on a starknet-devnet only: without a configured payment
//! token, [`deploy_all`] asks the node whether it is a devnet ([`DevnetRpc::is_devnet`]) and
//! refuses anywhere else ([`check_payment_token`]), before sending anything.

use std::fmt;
use std::path::Path;

use anyhow::{bail, Context, Result};
use cainome::cairo_serde::{ContractAddress, U256};
use serde::{Deserialize, Serialize};
use starknet::accounts::ConnectedAccount;
use starknet::core::types::{BlockId, BlockTag, Felt, StarknetError};
use starknet::core::utils::{cairo_short_string_to_felt, parse_cairo_short_string};
use starknet::providers::{Provider, ProviderError};
use url::Url;

use ciro_chain::bindings::{cdc_pool, constructor_calldata, job_mgr, paymaster, test_token};
use ciro_chain::clients::u256;
use ciro_chain::devnet::DevnetRpc;
pub use ciro_chain::manifest::Manifest;
use ciro_chain::tx::{call, send};

use ciro_protocol::{roles, TOKEN};

use crate::artifacts::ContractArtifact;
use crate::declare::{declare, deploy, Declared};

/// The contracts a deployment declares and deploys, in order.
pub const CONTRACTS: &[&str] = &ciro_protocol::contracts::ALL;
/// The local network's test token supply, minted to the deployer: 1,000,000 tokens.
pub const TEST_TOKEN_SUPPLY: u128 = 1_000_000_000_000_000_000_000_000;

/// What a deployment is configured with: `ciro deploy --config <file.json>`; every field is
/// optional (the defaults suit a local network). Amounts are in the token's smallest unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeployConfig {
    /// The token the contracts are paid in: an existing one (STRK on Sepolia and mainnet),
    /// or `None` to deploy the project's test token (test networks only: its `mint` is open).
    pub payment_token: Option<Felt>,
    /// Seconds between scheduling and executing an upgrade (1 hour to 30 days).
    pub upgrade_delay: u64,
    /// Where slash proceeds go (default: the deployer).
    pub treasury: Option<Felt>,
    /// Accounts given each role (the deployer is admin of every contract).
    pub roles: RoleConfig,
    /// The CDC Pool's parameters.
    pub pool: PoolConfig,
    /// JobMgr's parameters.
    pub jobs: JobsConfig,
    /// The test token's supply, minted to the deployer (only when the test token is deployed).
    pub test_token_supply: u128,
    /// Seal the contracts once wired (the default). `false` leaves them in their setup phase,
    /// where business is refused until the admin calls `seal()`: a staged deployment, or a
    /// specification of the setup phase.
    pub seal: bool,
}

/// Role holders. COORDINATOR and VERIFIER are JobMgr's; SLASHER the pool's; ARBITER both's;
/// PAUSER all three contracts'. Granted at once while the contracts are in their setup phase;
/// the deployment then seals them, after which every grant but PAUSER's goes through the
/// timelock (`schedule_role_grant`, wait the upgrade delay, `grant_role`).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoleConfig {
    pub coordinator: Vec<Felt>,
    pub arbiter: Vec<Felt>,
    pub pauser: Vec<Felt>,
    pub slasher: Vec<Felt>,
    pub verifier: Vec<Felt>,
}

/// The CDC Pool's parameters (bounds: `ICdcPoolAdmin::schedule_params`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    /// Minimum own stake per hardware tier (VRAM < 16 GB, < 40 GB, < 80 GB, >= 80 GB).
    pub min_stake: [u128; 4],
    pub exit_window: u64,
    pub challenge_window: u64,
    /// Seconds the arbiter has to decide a challenged slash (then it is overturned).
    pub arbitration_window: u64,
    pub challenge_bond: u128,
    pub beneficiary_share_bps: u16,
    /// Default slash per reason: Unavailable, PoorPerformance, ProtocolViolation, Malicious,
    /// Fraud.
    pub slash_bps: [u16; 5],
    /// Seconds new stake and delegations wait before they earn rewards (1 hour to 7 days).
    pub warmup: u64,
}

/// JobMgr's parameters (bounds: `IJobMgrAdmin::schedule_params`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobsConfig {
    pub protocol_fee_bps: u16,
    pub min_fee: u128,
    pub challenge_window: u64,
    pub assignment_timeout: u64,
    /// Least dispute bond; a job's bond is the larger of this and `dispute_bond_bps` of its
    /// fee.
    pub min_dispute_bond: u128,
    pub dispute_bond_bps: u16,
    pub max_job_duration: u64,
    /// Seconds the arbiter has to decide a dispute (then the result stands).
    pub arbitration_window: u64,
    pub max_dispute_slash_bps: u16,
    /// Most a disputer may win from a slash, as a multiple of the job's fee.
    pub max_award_multiple: u16,
    /// Least fee for a job's outcome to move reputation.
    pub min_rated_fee: u128,
}

impl Default for DeployConfig {
    fn default() -> Self {
        Self {
            payment_token: None,
            upgrade_delay: 86_400,
            treasury: None,
            roles: RoleConfig::default(),
            pool: PoolConfig::default(),
            jobs: JobsConfig::default(),
            test_token_supply: TEST_TOKEN_SUPPLY,
            seal: true,
        }
    }
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            min_stake: [100 * TOKEN, 500 * TOKEN, 1_000 * TOKEN, 2_000 * TOKEN],
            exit_window: 7 * 86_400,
            challenge_window: 86_400,
            arbitration_window: 7 * 86_400,
            challenge_bond: 10 * TOKEN,
            beneficiary_share_bps: 5_000,
            slash_bps: [100, 500, 1_000, 2_500, 5_000],
            warmup: 86_400,
        }
    }
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            protocol_fee_bps: 500,
            min_fee: TOKEN / 100,
            challenge_window: 3_600,
            assignment_timeout: 600,
            min_dispute_bond: TOKEN / 100,
            dispute_bond_bps: 1_000,
            max_job_duration: 86_400,
            arbitration_window: 7 * 86_400,
            max_dispute_slash_bps: 1_000,
            max_award_multiple: 10,
            min_rated_fee: TOKEN / 10,
        }
    }
}

impl DeployConfig {
    /// Reads a JSON config file (unknown fields are errors, missing ones take the defaults).
    pub fn read(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// The pool's parameters as its binding takes them, with `treasury` (the configured one,
    /// else the deployer).
    pub fn pool_params(&self, treasury: Felt) -> cdc_pool::PoolParams {
        let p = &self.pool;
        cdc_pool::PoolParams {
            treasury: ContractAddress(self.treasury.unwrap_or(treasury)),
            min_stake_0: u256(p.min_stake[0]),
            min_stake_1: u256(p.min_stake[1]),
            min_stake_2: u256(p.min_stake[2]),
            min_stake_3: u256(p.min_stake[3]),
            exit_window: p.exit_window,
            challenge_window: p.challenge_window,
            arbitration_window: p.arbitration_window,
            challenge_bond: u256(p.challenge_bond),
            beneficiary_share_bps: p.beneficiary_share_bps,
            bps_unavailable: p.slash_bps[0],
            bps_poor_performance: p.slash_bps[1],
            bps_protocol_violation: p.slash_bps[2],
            bps_malicious: p.slash_bps[3],
            bps_fraud: p.slash_bps[4],
            warmup: p.warmup,
        }
    }

    /// JobMgr's parameters as its binding takes them.
    pub fn job_params(&self) -> job_mgr::JobParams {
        let j = &self.jobs;
        job_mgr::JobParams {
            protocol_fee_bps: j.protocol_fee_bps,
            min_fee: u256(j.min_fee),
            challenge_window: j.challenge_window,
            assignment_timeout: j.assignment_timeout,
            min_dispute_bond: u256(j.min_dispute_bond),
            dispute_bond_bps: j.dispute_bond_bps,
            max_job_duration: j.max_job_duration,
            arbitration_window: j.arbitration_window,
            max_dispute_slash_bps: j.max_dispute_slash_bps,
            max_award_multiple: j.max_award_multiple,
            min_rated_fee: u256(j.min_rated_fee),
        }
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
    /// `role` was granted to `account` in `contract`.
    Granted {
        contract: String,
        role: String,
        account: Felt,
        tx_hash: Felt,
    },
    AlreadyGranted {
        contract: String,
        role: String,
        account: Felt,
    },
    /// `contract`'s setup phase was ended: business opens, changes are timelocked.
    Sealed {
        contract: String,
        tx_hash: Felt,
    },
    AlreadySealed {
        contract: String,
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
            Step::Granted {
                contract,
                role,
                account,
                tx_hash,
            } => write!(
                f,
                "granted   {contract:<12} {role} to {account:#066x}  tx {tx_hash:#066x}"
            ),
            Step::AlreadyGranted {
                contract,
                role,
                account,
            } => write!(
                f,
                "granted   {contract:<12} {role} to {account:#066x}  (already held, skipped)"
            ),
            Step::Sealed { contract, tx_hash } => {
                write!(f, "sealed    {contract:<12} tx {tx_hash:#066x}")
            }
            Step::AlreadySealed { contract } => {
                write!(f, "sealed    {contract:<12} (already sealed, skipped)")
            }
        }
    }
}

/// The kind of chain a deployment goes to, as far as the test token is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainKind {
    /// A starknet-devnet (it answers `devnet_getConfig`, see [`DevnetRpc::is_devnet`]),
    /// whatever chain id it was started with.
    Devnet,
    /// Any other node: Sepolia, mainnet, another local chain.
    Other {
        /// The chain id the node reports, for the error message.
        chain_id: String,
    },
}

/// A deployment refused before anything was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeployRefused {
    /// No payment token is configured and the chain is not a devnet, so the project's test
    /// token would be deployed and used, and anyone can mint it. Not retryable as is:
    /// configure the payment token.
    #[error(
        "no payment token configured for chain {chain_id}, which is not a starknet-devnet: the \
         project's test token (anyone can mint it) is deployed on a devnet only; set \
         `payment_token` in the deploy config or pass --payment-token (on Sepolia and mainnet, \
         STRK: 0x04718f5a0fc34cc1af16a1cdee98ffb20c31f5cd61d6ab07201858f4287c938d)"
    )]
    TestTokenOffDevnet { chain_id: String },
}

/// Whether a deployment with `payment_token` may go to `chain`: a configured token may go
/// anywhere; without one the test token is deployed, which only a devnet may have.
pub fn check_payment_token(
    payment_token: Option<Felt>,
    chain: &ChainKind,
) -> Result<(), DeployRefused> {
    match (payment_token, chain) {
        (Some(_), _) | (None, ChainKind::Devnet) => Ok(()),
        (None, ChainKind::Other { chain_id }) => Err(DeployRefused::TestTokenOffDevnet {
            chain_id: chain_id.clone(),
        }),
    }
}

/// Declares and deploys every contract of [`CONTRACTS`] from `account` (which becomes the
/// contracts' admin), updating `manifest`; `on_step` sees each step as it completes.
///
/// `rpc_url` is the JSON-RPC endpoint of the account's node. Without a configured payment
/// token it is asked whether it is a devnet ([`DevnetRpc::is_devnet`]), and anywhere else the
/// deployment is refused with [`DeployRefused::TestTokenOffDevnet`] before anything is sent
/// and before the manifest is touched.
pub async fn deploy_all<A>(
    account: &A,
    rpc_url: &Url,
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
    if config.payment_token.is_none() {
        let chain = if DevnetRpc::new(rpc_url.clone()).is_devnet().await? {
            ChainKind::Devnet
        } else {
            ChainKind::Other {
                chain_id: chain_name.clone(),
            }
        };
        check_payment_token(config.payment_token, &chain)?;
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
    wire(account, config, manifest, &mut on_step).await
}

/// The role grants a deployment makes: (contract, role, account).
fn grants(config: &DeployConfig, manifest: &Manifest) -> Vec<(String, &'static str, Felt)> {
    let mut grants = Vec::new();
    if let (Some(_), Some(job_mgr)) = (
        manifest.contracts.get("CdcPool"),
        manifest.contracts.get("JobMgr"),
    ) {
        grants.push(("CdcPool".to_owned(), roles::JOB_MANAGER, *job_mgr));
    }
    let r = &config.roles;
    for holder in &r.coordinator {
        grants.push(("JobMgr".to_owned(), roles::COORDINATOR, *holder));
    }
    for holder in &r.arbiter {
        grants.push(("JobMgr".to_owned(), roles::ARBITER, *holder));
        grants.push(("CdcPool".to_owned(), roles::ARBITER, *holder));
    }
    for holder in &r.slasher {
        grants.push(("CdcPool".to_owned(), roles::SLASHER, *holder));
    }
    for holder in &r.verifier {
        grants.push(("JobMgr".to_owned(), roles::VERIFIER, *holder));
    }
    for holder in &r.pauser {
        for contract in ["JobMgr", "CdcPool", "Paymaster"] {
            grants.push((contract.to_owned(), roles::PAUSER, *holder));
        }
    }
    grants
}

/// Grants every role of [`grants`] not already held, then seals every contract not yet
/// sealed, in one multicall. A grant missing from a sealed contract (a config changed after
/// the first deployment) is refused with how to do it through the timelock.
async fn wire<A>(
    account: &A,
    config: &DeployConfig,
    manifest: &Manifest,
    on_step: &mut impl FnMut(&Step),
) -> Result<()>
where
    A: ConnectedAccount + Sync,
{
    let provider = account.provider();
    let mut calls = Vec::new();
    let mut pending = Vec::new();
    for (contract, role, holder) in grants(config, manifest) {
        let address = *manifest
            .contracts
            .get(&contract)
            .with_context(|| format!("{contract} is not deployed"))?;
        let role_felt = cairo_short_string_to_felt(role)?;
        // Every contract hosts the same governance interface; JobMgr's binding reaches it.
        let reader = job_mgr::JobMgrReader::new(address, provider);
        if call(reader.has_role(&role_felt, &ContractAddress(holder)))
            .await
            .with_context(|| format!("reading {role} of {holder:#x} in {contract}"))?
        {
            on_step(&Step::AlreadyGranted {
                contract,
                role: role.to_owned(),
                account: holder,
            });
            continue;
        }
        if role != roles::PAUSER && call(reader.is_sealed()).await? {
            bail!(
                "{contract} is sealed, so granting {role} to {holder:#x} is timelocked: have \
                 the admin call schedule_role_grant, wait the upgrade delay, then grant_role"
            );
        }
        calls.push(
            job_mgr::JobMgr::new(address, account)
                .grant_role_getcall(&role_felt, &ContractAddress(holder)),
        );
        pending.push((contract, role, holder));
    }
    let mut sealing = Vec::new();
    let sealed_contracts: &[&str] = if config.seal {
        &["CdcPool", "JobMgr", "Paymaster"]
    } else {
        &[]
    };
    for &contract in sealed_contracts {
        let Some(address) = manifest.contracts.get(contract).copied() else {
            continue;
        };
        let reader = job_mgr::JobMgrReader::new(address, provider);
        if call(reader.is_sealed())
            .await
            .with_context(|| format!("reading whether {contract} is sealed"))?
        {
            on_step(&Step::AlreadySealed {
                contract: contract.to_owned(),
            });
        } else {
            calls.push(job_mgr::JobMgr::new(address, account).seal_getcall());
            sealing.push(contract);
        }
    }
    if calls.is_empty() {
        return Ok(());
    }
    let outcome = send(provider, account.execute_v3(calls))
        .await
        .context("granting roles and sealing")?;
    for (contract, role, holder) in pending {
        on_step(&Step::Granted {
            contract,
            role: role.to_owned(),
            account: holder,
            tx_hash: outcome.tx_hash,
        });
    }
    for contract in sealing {
        on_step(&Step::Sealed {
            contract: contract.to_owned(),
            tx_hash: outcome.tx_hash,
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
            let token = payment_token(config, manifest)?;
            Ok(constructor_calldata(
                paymaster::Paymaster::new(Felt::ZERO, account).constructor_getcall(
                    &ContractAddress(account.address()),
                    &ContractAddress(token),
                    &config.upgrade_delay,
                ),
            ))
        }
        "CdcPool" => Ok(constructor_calldata(
            cdc_pool::CdcPool::new(Felt::ZERO, account).constructor_getcall(
                &ContractAddress(account.address()),
                &ContractAddress(payment_token(config, manifest)?),
                &config.upgrade_delay,
                &config.pool_params(account.address()),
            ),
        )),
        "JobMgr" => Ok(constructor_calldata(
            job_mgr::JobMgr::new(Felt::ZERO, account).constructor_getcall(
                &ContractAddress(account.address()),
                &ContractAddress(payment_token(config, manifest)?),
                &ContractAddress(
                    *manifest
                        .contracts
                        .get("CdcPool")
                        .context("the CDC Pool is deployed before JobMgr")?,
                ),
                &config.upgrade_delay,
                &config.job_params(),
            ),
        )),
        "TestToken" => Ok(constructor_calldata(
            test_token::TestToken::new(Felt::ZERO, account).constructor_getcall(
                &cairo_short_string_to_felt("CIRO Test Token")?,
                &cairo_short_string_to_felt("CTT")?,
                &18,
                &U256 {
                    low: config.test_token_supply,
                    high: 0,
                },
                &ContractAddress(account.address()),
            ),
        )),
        other => bail!("no constructor arguments known for {other}"),
    }
}

/// The configured payment token, or the test token deployed first.
fn payment_token(config: &DeployConfig, manifest: &Manifest) -> Result<Felt> {
    match config.payment_token {
        Some(token) => Ok(token),
        None => manifest
            .contracts
            .get("TestToken")
            .copied()
            .context("the test token is deployed first"),
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
