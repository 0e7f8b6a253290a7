//! A relayer run in-process against a devnet deployment: fresh OpenZeppelin accounts for the
//! users (no STRK) and for the relayer (funded with STRK), a sponsor that deposited and named
//! the relayer accounts, and a policy sponsoring CIRO's calls.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use ciro_api::snip29::{
    BuildTransaction, BuildTransactionParams, BuildTransactionResult, DeploymentData,
    ExecutableInvoke, ExecutableTransaction, ExecuteTransactionParams, ExecuteTransactionResult,
    ExecutionParameters, FeeMode, PaymasterClient, PaymasterClientError, TimeBounds,
};
use ciro_chain::account::{AccountSource, KeySource};
use ciro_chain::bindings::paymaster::{AllowedCall, Paymaster, PaymasterReader, PolicyParams};
use ciro_chain::bindings::test_token::TestToken;
use ciro_chain::cainome::cairo_serde::ContractAddress;
use ciro_chain::clients::{balance_of, u256};
pub use ciro_chain::gasless::build_params;
use ciro_chain::snip9::OutsideExecution;
use ciro_chain::starknet::accounts::{Account, ExecutionEncoding, SingleOwnerAccount};
use ciro_chain::starknet::core::types::{
    BlockId, BlockTag, Call, ExecutionResult, Felt, TransactionReceiptWithBlockInfo,
};
use ciro_chain::starknet::core::utils::{get_contract_address, get_selector_from_name};
use ciro_chain::starknet::providers::Provider;
use ciro_chain::starknet::signers::{LocalWallet, SigningKey};
use ciro_chain::tx::{call, send, wait_for_receipt};
use ciro_chain::RpcAccount;
use ciro_paymaster_relayer::{run_with, Config, Limits, Sponsorship, STRK};
use ciro_service::{CancellationToken, ChainConfig};
use ciro_tests::system::System;
use ciro_tests::Actor;

/// The sponsor's API key in the fixture.
pub const KEY: &str = "ciro-test-sponsor-key-0001";
/// Payment tokens the sponsor deposits (base units; the token has 18 decimals and is priced
/// at 1 STRK, so a charge in it equals the fee in FRI times the margin).
pub const DEPOSIT: u128 = 10_000 * 1_000_000_000_000_000_000;
/// The policy's per-user daily limit and per-transaction maximum.
pub const DAILY_LIMIT: u128 = 1_000 * 1_000_000_000_000_000_000;
pub const MAX_CHARGE: u128 = 10 * 1_000_000_000_000_000_000;
/// STRK each relayer account starts with.
pub const RELAYER_STRK: u128 = 10 * 1_000_000_000_000_000_000;
/// Payment tokens each user starts with.
pub const USER_TOKENS: u128 = 1_000_000;

/// A user: an OpenZeppelin account with no STRK.
#[derive(Clone)]
pub struct User {
    pub address: Felt,
    pub key: SigningKey,
}

/// The running relayer and its chain.
pub struct Fx {
    pub s: System,
    pub url: String,
    pub relayers: Vec<Felt>,
    pub users: Vec<User>,
    pub sponsor: Felt,
    pub policy_id: u64,
    pub chain_id: Felt,
    pub config: Config,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<Result<()>>,
    pub dir: tempfile::TempDir,
    /// The `FakeAccount` whose class the relayer lists, if asked for.
    pub fake_account: Option<Felt>,
}

impl Drop for Fx {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// What varies between the tests' relayers.
pub struct Options {
    pub relayers: usize,
    pub users: usize,
    pub limits: Limits,
    /// Policy rate limit: transactions per user per hour.
    pub policy_rate: u32,
    /// Whether the key's sponsor also pays for new accounts.
    pub sponsor_deployments: bool,
    /// Deploy the test-only `FakeAccount` and list its class among the users' account
    /// classes (a class that is not OpenZeppelin's: its signatures go through
    /// `is_valid_signature`).
    pub list_fake_account: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            relayers: 1,
            users: 2,
            limits: Limits::default(),
            policy_rate: 100,
            sponsor_deployments: false,
            list_fake_account: false,
        }
    }
}

/// Deploys an OpenZeppelin account (devnet's predeployed class) for `key` from the admin.
pub async fn deploy_account(s: &System, key: &SigningKey, salt: u64) -> Result<Felt> {
    let admin = s.net.account(Actor::Admin);
    let class_hash = s
        .net
        .provider
        .get_class_hash_at(BlockId::Tag(BlockTag::Latest), admin.address())
        .await?;
    let deployed = ciro_deploy::declare::deploy(
        &admin,
        class_hash,
        vec![key.verifying_key().scalar()],
        Felt::from(salt),
    )
    .await?;
    Ok(deployed.address)
}

/// An account object for a fixture-made account.
pub fn account_of(s: &System, address: Felt, key: &SigningKey) -> RpcAccount {
    let mut account = SingleOwnerAccount::new(
        ciro_chain::starknet::providers::JsonRpcClient::new(
            ciro_chain::starknet::providers::jsonrpc::HttpTransport::new(s.net.rpc_url()),
        ),
        LocalWallet::from(key.clone()),
        address,
        s.net.chain_id(),
        ExecutionEncoding::New,
    );
    account.set_block_id(BlockId::Tag(BlockTag::PreConfirmed));
    account
}

pub fn allowed(target: Felt, function: &str) -> AllowedCall {
    AllowedCall {
        target: ContractAddress(target),
        selector: get_selector_from_name(function).expect("selector"),
    }
}

pub async fn policy_params(s: &System, max_charge: u128, rate: u32) -> PolicyParams {
    PolicyParams {
        daily_limit: u256(DAILY_LIMIT),
        max_charge: u256(max_charge),
        rate_limit_count: rate,
        rate_limit_window: 3_600,
        expiry: s.net.now().await.expect("now") + 30 * 86_400,
        allowlist_only: false,
    }
}

impl Fx {
    pub async fn start(options: Options) -> Self {
        Self::try_start(options).await.expect("fixture")
    }

    async fn try_start(options: Options) -> Result<Self> {
        let s = System::deploy().await?;
        let dir = tempfile::tempdir()?;
        let admin = s.net.account(Actor::Admin);
        let token = TestToken::new(s.token, &admin);
        // Relayer accounts: fresh, funded with STRK, keys in files.
        let mut relayers = Vec::new();
        let mut sources = Vec::new();
        for i in 0..options.relayers {
            let key = SigningKey::from_secret_scalar(Felt::from(0x7e1a_0000u64 + i as u64));
            let address = deploy_account(&s, &key, 0x7e1a_0000 + i as u64).await?;
            s.net.devnet.mint_strk(address, RELAYER_STRK).await?;
            let file = dir.path().join(format!("relayer-{i}.key"));
            std::fs::write(&file, format!("{:#x}", key.secret_scalar()))?;
            sources.push(AccountSource::Key {
                address,
                key: KeySource::File(file),
            });
            relayers.push(address);
        }
        // Users: no STRK, some payment tokens.
        let mut users = Vec::new();
        for i in 0..options.users {
            let key = SigningKey::from_secret_scalar(Felt::from(0x05e4_0000u64 + i as u64));
            let address = deploy_account(&s, &key, 0x05e4_0000 + i as u64).await?;
            send(
                &s.net.provider,
                token.mint(&ContractAddress(address), &u256(USER_TOKENS)),
            )
            .await?;
            users.push(User { address, key });
        }
        // The sponsor: deposit, relayers, budget, policy 1 (CIRO's calls).
        let sponsor_account = s.net.account(Actor::Sponsor);
        let sponsor = s.net.address(Actor::Sponsor);
        let pm = Paymaster::new(s.paymaster, &sponsor_account);
        send(
            &s.net.provider,
            token.mint(&ContractAddress(sponsor), &u256(DEPOSIT)),
        )
        .await?;
        send(
            &s.net.provider,
            TestToken::new(s.token, &sponsor_account)
                .approve(&ContractAddress(s.paymaster), &u256(DEPOSIT)),
        )
        .await?;
        send(&s.net.provider, pm.deposit(&u256(DEPOSIT))).await?;
        for relayer in &relayers {
            send(
                &s.net.provider,
                pm.add_relayer(&ContractAddress(*relayer), &u256(DEPOSIT)),
            )
            .await?;
        }
        send(&s.net.provider, pm.set_sponsor_budget(&u256(DEPOSIT))).await?;
        let calls = vec![
            allowed(s.token, "approve"),
            allowed(s.token, "transfer"),
            allowed(s.job_mgr, "submit_job"),
        ];
        let params = policy_params(&s, MAX_CHARGE, options.policy_rate).await;
        send(&s.net.provider, pm.create_policy(&calls, &params)).await?;
        let policy_id = 1;
        // The relayer.
        let manifest = dir.path().join("manifest.json");
        s.manifest.write(&manifest)?;
        let mut config = Config::new(
            ChainConfig {
                rpc_url: s.net.rpc_url(),
                manifest,
            },
            "127.0.0.1:0".parse::<SocketAddr>()?,
            sources,
        );
        config.api_keys = HashMap::from([(
            KEY.to_owned(),
            Sponsorship {
                sponsor,
                policy_id,
                deployments: options.sponsor_deployments,
            },
        )]);
        config.limits = options.limits;
        let fake_account = if options.list_fake_account {
            let fake = s.net.deploy(Actor::Attacker, "FakeAccount", vec![]).await?;
            let class = s
                .net
                .provider
                .get_class_hash_at(BlockId::Tag(BlockTag::Latest), fake)
                .await?;
            config.account_classes.push(class);
            Some(fake)
        } else {
            None
        };
        let shutdown = CancellationToken::new();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(run_with(config.clone(), shutdown.clone(), Some(tx)));
        let addr = tokio::time::timeout(Duration::from_secs(60), rx)
            .await
            .context("the relayer did not start")??;
        // It connects to the chain in the background: wait until it is ready.
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let ready = http.get(format!("http://{addr}/ready")).send().await?;
            if ready.status().is_success() {
                break;
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the relayer is not ready: {}",
                ready.text().await?
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Self {
            chain_id: s.net.chain_id(),
            s,
            url: format!("http://{addr}/"),
            relayers,
            users,
            sponsor,
            policy_id,
            config,
            shutdown,
            task,
            dir,
            fake_account,
        })
    }

    pub fn client(&self) -> PaymasterClient {
        PaymasterClient::new(&self.url)
            .expect("client")
            .with_api_key(KEY)
    }

    pub fn anonymous(&self) -> PaymasterClient {
        PaymasterClient::new(&self.url).expect("client")
    }

    /// `transfer(to, amount)` on the payment token.
    pub fn transfer(&self, to: Felt, amount: u128) -> Call {
        Call {
            to: self.s.token,
            selector: get_selector_from_name("transfer").unwrap(),
            calldata: vec![to, Felt::from(amount), Felt::ZERO],
        }
    }

    /// The relayer's `/metrics` text.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}metrics", self.url))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    pub async fn deposit(&self) -> u128 {
        let reader = PaymasterReader::new(self.s.paymaster, &self.s.net.provider);
        call(reader.sponsor_balance(&ContractAddress(self.sponsor)))
            .await
            .expect("sponsor_balance")
            .low
    }

    /// What `relayer` charged the sponsor today (its `relayer_budget`'s spent part).
    pub async fn relayer_spent(&self, relayer: Felt) -> u128 {
        let reader = PaymasterReader::new(self.s.paymaster, &self.s.net.provider);
        call(reader.relayer_budget(&ContractAddress(self.sponsor), &ContractAddress(relayer)))
            .await
            .expect("relayer_budget")
            .1
            .low
    }

    pub async fn balance(&self, token: Felt, holder: Felt) -> u128 {
        balance_of(&self.s.net.provider, token, holder)
            .await
            .expect("balance")
            .low
    }

    pub async fn nonce(&self, address: Felt) -> Felt {
        self.s
            .net
            .provider
            .get_nonce(BlockId::Tag(BlockTag::Latest), address)
            .await
            .expect("nonce")
    }

    /// Everything a drain attempt must leave unchanged: the sponsor's deposit and every
    /// relayer account's STRK and nonce.
    pub async fn funds(&self) -> (u128, Vec<(u128, Felt)>) {
        let mut relayers = Vec::new();
        for r in &self.relayers {
            relayers.push((self.balance(STRK, *r).await, self.nonce(*r).await));
        }
        (self.deposit().await, relayers)
    }
}

pub fn sponsored() -> ExecutionParameters {
    ExecutionParameters::V1 {
        fee_mode: FeeMode::Sponsored { tip: None },
        time_bounds: None,
    }
}

pub fn default_mode(gas_token: Felt) -> ExecutionParameters {
    ExecutionParameters::V1 {
        fee_mode: FeeMode::Default {
            gas_token,
            tip: None,
        },
        time_bounds: None,
    }
}

pub fn with_bounds(
    parameters: ExecutionParameters,
    after: u64,
    before: u64,
) -> ExecutionParameters {
    let ExecutionParameters::V1 { fee_mode, .. } = parameters;
    ExecutionParameters::V1 {
        fee_mode,
        time_bounds: Some(TimeBounds {
            execute_after: after,
            execute_before: before,
        }),
    }
}

/// The typed data of a build result, and the user's signature of it.
pub fn sign(
    user: &User,
    built: &BuildTransactionResult,
    chain_id: Felt,
) -> (serde_json::Value, Vec<Felt>) {
    let typed_data = built.typed_data().expect("typed data").clone();
    let execution =
        OutsideExecution::from_typed_data(&typed_data, chain_id).expect("our own typed data");
    let signature = execution
        .sign(&user.key, user.address, chain_id)
        .expect("sign");
    (typed_data, signature)
}

pub fn execute_params(
    user: Felt,
    typed_data: serde_json::Value,
    signature: Vec<Felt>,
    parameters: ExecutionParameters,
) -> ExecuteTransactionParams {
    ExecuteTransactionParams {
        transaction: ExecutableTransaction::Invoke {
            invoke: ExecutableInvoke {
                user_address: user,
                typed_data,
                signature,
            },
        },
        parameters,
    }
}

/// Build `calls` for `user` and sign them: the build result and what execute takes.
pub async fn build_and_sign(
    client: &PaymasterClient,
    user: &User,
    calls: &[Call],
    parameters: ExecutionParameters,
    chain_id: Felt,
) -> Result<(BuildTransactionResult, ExecuteTransactionParams), PaymasterClientError> {
    let built = client
        .build_transaction(&build_params(user.address, calls, parameters))
        .await?;
    let (typed_data, signature) = sign(user, &built, chain_id);
    let params = execute_params(
        user.address,
        typed_data,
        signature,
        built.parameters().clone(),
    );
    Ok((built, params))
}

/// Build, sign and execute `calls` for `user`; the execution result.
pub async fn relay(
    client: &PaymasterClient,
    user: &User,
    calls: &[Call],
    parameters: ExecutionParameters,
    chain_id: Felt,
) -> Result<(BuildTransactionResult, ExecuteTransactionResult), PaymasterClientError> {
    let (built, params) = build_and_sign(client, user, calls, parameters, chain_id).await?;
    let executed = client.execute_transaction(&params).await?;
    Ok((built, executed))
}

/// The receipt of `tx_hash`, which must have succeeded.
pub async fn landed(s: &System, tx_hash: Felt) -> TransactionReceiptWithBlockInfo {
    let receipt = wait_for_receipt(&s.net.provider, tx_hash)
        .await
        .expect("receipt");
    match receipt.receipt.execution_result() {
        ExecutionResult::Succeeded => receipt,
        ExecutionResult::Reverted { reason } => panic!("{tx_hash:#x} reverted: {reason}"),
    }
}

/// The SNIP-29 code and data of a refused call.
pub fn refusal<T: std::fmt::Debug>(result: Result<T, PaymasterClientError>) -> (i64, String) {
    let error = result.expect_err("must be refused");
    let rpc = error
        .rpc_error()
        .unwrap_or_else(|| panic!("not a JSON-RPC error: {error:?}"));
    let data = match &rpc.data {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    (rpc.code, data)
}

/// A new OpenZeppelin account, not deployed: its owner (key from `seed`) and the deployment
/// data that gives its address.
pub fn new_account(seed: u64) -> (User, DeploymentData) {
    let key = SigningKey::from_secret_scalar(Felt::from(seed));
    let class_hash = ciro_paymaster_relayer::OPENZEPPELIN_ACCOUNT_1_0;
    let calldata = vec![key.verifying_key().scalar()];
    let salt = Felt::from(seed);
    let address = get_contract_address(salt, class_hash, &calldata, Felt::ZERO);
    (
        User { address, key },
        DeploymentData {
            address,
            class_hash,
            salt,
            calldata,
            sigdata: None,
            version: 1,
        },
    )
}

/// `build_params` for a `deploy_and_invoke`.
pub fn deploy_build_params(
    user: Felt,
    calls: &[Call],
    deployment: &DeploymentData,
    parameters: ExecutionParameters,
) -> BuildTransactionParams {
    let BuildTransaction::Invoke { invoke } =
        build_params(user, calls, parameters.clone()).transaction
    else {
        unreachable!("build_params builds an invoke")
    };
    BuildTransactionParams {
        transaction: BuildTransaction::DeployAndInvoke {
            invoke,
            deployment: deployment.clone(),
        },
        parameters,
    }
}

/// `execute_params` for a `deploy_and_invoke`.
pub fn deploy_execute_params(
    user: Felt,
    typed_data: serde_json::Value,
    signature: Vec<Felt>,
    deployment: &DeploymentData,
    parameters: ExecutionParameters,
) -> ExecuteTransactionParams {
    ExecuteTransactionParams {
        transaction: ExecutableTransaction::DeployAndInvoke {
            invoke: ExecutableInvoke {
                user_address: user,
                typed_data,
                signature,
            },
            deployment: deployment.clone(),
        },
        parameters,
    }
}

impl Fx {
    /// The class at `address`, if a contract is there.
    pub async fn class_at(&self, address: Felt) -> Option<Felt> {
        self.s
            .net
            .provider
            .get_class_hash_at(BlockId::Tag(BlockTag::PreConfirmed), address)
            .await
            .ok()
    }
}

/// CPU time used so far (user and system, all threads) by a devnet and by this process (the
/// relayer and its clients): the benchmarks' accounting of where a transfer's work is done.
#[derive(Debug, Clone, Copy)]
pub struct CpuMark {
    devnet_pid: u32,
    node: f64,
    own: f64,
}

impl CpuMark {
    pub fn now(devnet_pid: u32) -> Self {
        Self {
            devnet_pid,
            node: cpu_seconds(&devnet_pid.to_string()),
            own: cpu_seconds("self"),
        }
    }

    /// Milliseconds of CPU per item since this mark, for `items` items: the devnet's and this
    /// process's.
    pub fn per_item(&self, items: f64) -> (f64, f64) {
        let now = Self::now(self.devnet_pid);
        (
            (now.node - self.node) * 1e3 / items,
            (now.own - self.own) * 1e3 / items,
        )
    }
}

/// CPU seconds used so far by the process `pid` (a number, or `self`), its own threads only.
fn cpu_seconds(pid: &str) -> f64 {
    ciro_tests::cpu::cpu_seconds(pid, false).expect("the process's CPU time in /proc")
}
