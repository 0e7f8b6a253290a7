//! [`TestNet`]: one isolated chain per test.
//!
//! Devnets are pooled per test process. A fresh one is started, the project's classes are
//! declared on it, and a snapshot is taken: that is the *base* state. A test checks a devnet
//! out of the pool; the checkout reverts it to the base snapshot first, so every test starts
//! from the same state whatever ran before (or panicked) on that devnet, and tests can run in
//! parallel (one devnet each) and in any order.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use anyhow::{anyhow, Context, Result};
use ciro_chain::starknet::accounts::{ExecutionEncoding, SingleOwnerAccount};
use ciro_chain::starknet::core::types::{BlockId, BlockTag, Felt};
use ciro_chain::starknet::providers::jsonrpc::HttpTransport;
use ciro_chain::starknet::providers::{JsonRpcClient, Provider};
use ciro_chain::starknet::signers::{LocalWallet, SigningKey};
use ciro_chain::tx::block_timestamp;
use ciro_chain::ChainError;
use ciro_chain::RpcAccount;
use ciro_deploy::artifacts::{classes_dir, ContractArtifact};
use ciro_deploy::declare::{declare, deploy};
use url::Url;

use crate::actors::Actor;
use crate::devnet::{Devnet, DevnetRpc, PredeployedAccount};

/// STRK on devnet (and on Starknet): the fee token, and the payment token of the contracts.
pub const STRK: Felt =
    Felt::from_hex_unchecked("0x04718f5a0fc34cc1af16a1cdee98ffb20c31f5cd61d6ab07201858f4287c938d");

/// A devnet with the project's classes declared, and its base snapshot.
struct Prepared {
    devnet: Devnet,
    base_snapshot: String,
    chain_id: Felt,
    accounts: Vec<PredeployedAccount>,
    class_hashes: HashMap<String, Felt>,
}

static POOL: Mutex<Vec<Prepared>> = Mutex::new(Vec::new());

/// The project's compiled classes, loaded and hashed once per process.
fn artifacts() -> Result<&'static [ContractArtifact]> {
    static ARTIFACTS: OnceLock<Result<Vec<ContractArtifact>, String>> = OnceLock::new();
    ARTIFACTS
        .get_or_init(|| load_artifacts().map_err(|e| format!("{e:#}")))
        .as_deref()
        .map_err(|e| anyhow!("{e}"))
}

fn load_artifacts() -> Result<Vec<ContractArtifact>> {
    let dir = classes_dir();
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir)
        .with_context(|| format!("reading {} (run `ciro-cairo build`)", dir.display()))?
    {
        let file_name = entry?.file_name();
        let file_name = file_name.to_string_lossy();
        if let Some(name) = file_name
            .strip_prefix("ciro_")
            .and_then(|n| n.strip_suffix(".contract_class.json"))
        {
            names.push(name.to_owned());
        }
    }
    names.sort();
    anyhow::ensure!(
        !names.is_empty(),
        "no contract classes in {}",
        dir.display()
    );
    names
        .iter()
        .map(|name| ContractArtifact::load(&dir, name))
        .collect()
}

/// An isolated chain for one test, with the project's classes declared and every
/// [`Actor`]'s account funded. Goes back to the pool when dropped.
pub struct TestNet {
    prepared: Option<Prepared>,
    /// Whether the devnet goes back to the pool on drop (only default-configured ones do).
    pooled: bool,
    /// devnet's extension RPC (mint, time, snapshots).
    pub devnet: DevnetRpc,
    /// A JSON-RPC provider on the chain.
    pub provider: JsonRpcClient<HttpTransport>,
}

impl TestNet {
    /// Checks a devnet out of the pool (starting one if none is idle) and puts it back in its
    /// base state.
    pub async fn new() -> Result<Self> {
        let pooled = POOL
            .lock()
            .map_err(|_| anyhow!("devnet pool poisoned"))?
            .pop();
        let prepared = match pooled {
            Some(mut prepared) => {
                let rpc = DevnetRpc::new(prepared.devnet.rpc_url());
                rpc.revert(&prepared.base_snapshot)
                    .await
                    .context("reverting to the base snapshot")?;
                // A snapshot may be consumed by reverting to it: take the base again.
                prepared.base_snapshot = rpc.snapshot().await?;
                prepared
            }
            None => prepare(&[]).await?,
        };
        Ok(Self::from_prepared(prepared, true))
    }

    /// A chain on a fresh devnet started with extra flags (e.g. `--block-generation-on
    /// demand`); it is not pooled, and is killed on drop.
    pub async fn with_devnet_args(extra_args: &[&str]) -> Result<Self> {
        Ok(Self::from_prepared(prepare(extra_args).await?, false))
    }

    fn from_prepared(prepared: Prepared, pooled: bool) -> Self {
        let url = prepared.devnet.rpc_url();
        Self {
            devnet: DevnetRpc::new(url.clone()),
            provider: JsonRpcClient::new(HttpTransport::new(url)),
            prepared: Some(prepared),
            pooled,
        }
    }

    fn prepared(&self) -> &Prepared {
        self.prepared.as_ref().expect("present until drop")
    }

    /// The JSON-RPC URL of the chain.
    pub fn rpc_url(&self) -> Url {
        self.prepared().devnet.rpc_url()
    }

    /// The process id of the chain's devnet (benchmarks account for its CPU time).
    pub fn devnet_pid(&self) -> u32 {
        self.prepared().devnet.pid()
    }

    /// The chain id.
    pub fn chain_id(&self) -> Felt {
        self.prepared().chain_id
    }

    /// The account address of `actor`.
    pub fn address(&self, actor: Actor) -> Felt {
        self.prepared().accounts[actor.index()].address
    }

    /// The account address of `actor`, as the bindings take it.
    pub fn contract_address(
        &self,
        actor: Actor,
    ) -> ciro_chain::cainome::cairo_serde::ContractAddress {
        ciro_chain::cainome::cairo_serde::ContractAddress(self.address(actor))
    }

    /// The private key of `actor`'s account (to sign off-chain messages as the actor).
    pub fn signing_key(&self, actor: Actor) -> SigningKey {
        SigningKey::from_secret_scalar(self.prepared().accounts[actor.index()].private_key)
    }

    /// The public key of `actor`'s account.
    pub fn public_key(&self, actor: Actor) -> Felt {
        self.prepared().accounts[actor.index()].public_key
    }

    /// A signing account for `actor` (nonces and estimates at the pre-confirmed block).
    pub fn account(&self, actor: Actor) -> RpcAccount {
        self.account_via(actor, self.rpc_url())
    }

    /// `actor`'s account talking to the node through `url` (a proxy in front of the devnet).
    pub fn account_via(&self, actor: Actor, url: Url) -> RpcAccount {
        account_for(
            &self.prepared().accounts[actor.index()],
            url,
            self.chain_id(),
        )
    }

    /// `ciro_deploy::deploy_all` from the admin's account with the classes of `target/dev`:
    /// the deployment a real network gets.
    pub async fn deploy_all(
        &self,
        config: &ciro_deploy::DeployConfig,
        manifest: &mut ciro_deploy::Manifest,
        on_step: impl FnMut(&ciro_deploy::Step),
    ) -> Result<()> {
        ciro_deploy::deploy_all(
            &self.account(Actor::Admin),
            &self.rpc_url(),
            &classes_dir(),
            config,
            manifest,
            on_step,
        )
        .await
    }

    /// The class hash of one of the project's contracts (declared in the base state).
    pub fn class_hash(&self, contract: &str) -> Result<Felt> {
        self.prepared()
            .class_hashes
            .get(contract)
            .copied()
            .ok_or_else(|| anyhow!("no class {contract} in {}", classes_dir().display()))
    }

    /// Deploys `contract` from `deployer`'s account with `constructor_calldata` (from a
    /// binding's `constructor_getcall`); returns its address.
    pub async fn deploy(
        &self,
        deployer: Actor,
        contract: &str,
        constructor_calldata: Vec<Felt>,
    ) -> Result<Felt> {
        self.try_deploy(deployer, contract, constructor_calldata)
            .await
            .with_context(|| format!("deploying {contract}"))
    }

    /// [`Self::deploy`], with a constructor revert as the `ChainError` to assert on.
    pub async fn try_deploy(
        &self,
        deployer: Actor,
        contract: &str,
        constructor_calldata: Vec<Felt>,
    ) -> Result<Felt, ChainError> {
        let class_hash = self.class_hash(contract)?;
        deploy(
            &self.account(deployer),
            class_hash,
            constructor_calldata,
            Felt::ZERO,
        )
        .await
        .map(|d| d.address)
    }

    /// The timestamp of the latest block.
    pub async fn now(&self) -> Result<u64> {
        Ok(block_timestamp(&self.provider, BlockId::Tag(BlockTag::Latest)).await?)
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        if !self.pooled {
            return;
        }
        if let (Some(prepared), Ok(mut pool)) = (self.prepared.take(), POOL.lock()) {
            pool.push(prepared);
        }
    }
}

fn account_for(account: &PredeployedAccount, rpc_url: Url, chain_id: Felt) -> RpcAccount {
    let signer = LocalWallet::from(SigningKey::from_secret_scalar(account.private_key));
    let provider = JsonRpcClient::new(HttpTransport::new(rpc_url));
    let mut account = SingleOwnerAccount::new(
        provider,
        signer,
        account.address,
        chain_id,
        ExecutionEncoding::New,
    );
    // Nonces and estimates at the pre-confirmed block, where the next transaction lands
    // (the same as the latest block when every transaction closes one).
    account.set_block_id(BlockId::Tag(BlockTag::PreConfirmed));
    account
}

/// Starts a devnet, declares every project class from the admin account, snapshots.
async fn prepare(extra_args: &[&str]) -> Result<Prepared> {
    let artifacts = artifacts()?;
    let devnet = Devnet::start_with(extra_args)?;
    let rpc = DevnetRpc::new(devnet.rpc_url());
    rpc.wait_alive().await?;
    let accounts = rpc.predeployed_accounts().await?;
    anyhow::ensure!(
        accounts.len() >= Actor::ALL.len(),
        "devnet has {} accounts",
        accounts.len()
    );
    let provider = JsonRpcClient::new(HttpTransport::new(devnet.rpc_url()));
    let chain_id = provider.chain_id().await.context("chain id")?;
    let admin = account_for(&accounts[Actor::Admin.index()], devnet.rpc_url(), chain_id);
    let mut class_hashes = HashMap::new();
    for artifact in artifacts {
        let declared = declare(&admin, artifact).await.with_context(|| {
            format!(
                "declaring {}\ndevnet log:\n{}",
                artifact.name,
                devnet.recent_log()
            )
        })?;
        class_hashes.insert(artifact.name.clone(), declared.class_hash());
    }
    let base_snapshot = rpc.snapshot().await?;
    Ok(Prepared {
        devnet,
        base_snapshot,
        chain_id,
        accounts,
        class_hashes,
    })
}
