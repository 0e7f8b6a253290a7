//! The CIRO paymaster relayer: serves the SNIP-29 paymaster API exactly as starknet.js speaks
//! it (`POST /`, JSON-RPC 2.0) and submits users' signed SNIP-9 outside executions from a
//! pool of its own accounts, each with its own nonce:
//!
//! - **sponsored** (`fee_mode: sponsored`): through the Paymaster contract's
//!   `execute_sponsored`, which runs the user's calls and pays the relayer a charge from the
//!   sponsor's deposit, within the sponsor's policy;
//! - **default** (`fee_mode: default`): through the user's own `execute_from_outside_v2`,
//!   whose last call pays the quoted fee in a listed gas token to the operator's recipient.
//!
//! [`relayer`] holds the rules, [`rpc`] the JSON-RPC layer, [`pool`] the accounts.

#![warn(missing_docs)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use async_trait::async_trait;
use ciro_chain::account::{address_and_key, AccountSource};
use ciro_chain::bindings::erc20::Erc20Reader;
use ciro_chain::bindings::paymaster::PaymasterReader;
use ciro_chain::cainome::cairo_serde::ContractAddress;
use ciro_chain::clients::balance_of;
use ciro_chain::constants::contracts;
use ciro_chain::manifest::Manifest;
use ciro_chain::sender::{SenderConfig, TxSender};
use ciro_chain::starknet::accounts::{ExecutionEncoding, SingleOwnerAccount};
use ciro_chain::starknet::core::types::{BlockId, BlockTag, Felt};
use ciro_chain::starknet::providers::jsonrpc::HttpTransport;
use ciro_chain::starknet::providers::{JsonRpcClient, Provider};
use ciro_chain::starknet::signers::LocalWallet;
use ciro_chain::tx::call as view;
use ciro_service::{
    CancellationToken, ChainConfig, Metrics, Readiness, ReadinessCheck, RpcCheck, Server,
};
use url::Url;

mod batch;
pub mod metrics;
pub mod pool;
pub mod relayer;
pub mod rpc;

pub use relayer::{GasToken, Limits, Sponsorship, FRI_PER_STRK, STRK};

use crate::metrics::RelayerMetrics;
use crate::pool::Pool;
use crate::relayer::Relayer;

/// The service's name, in logs, errors and the `ciro_build_info` metric.
pub const SERVICE: &str = "ciro-paymaster-relayer";
/// The port the relayer listens on by default (on loopback).
pub const DEFAULT_PORT: u16 = 7071;

/// The relayer's configuration, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// The Starknet node it submits to, and the deployment manifest (the Paymaster's address).
    pub chain: ChainConfig,
    /// Where to serve HTTP (port 0: any free port, logged).
    pub listen: SocketAddr,
    /// The relayer's own accounts (at least one).
    pub accounts: Vec<AccountSource>,
    /// API keys and the sponsorship each selects.
    pub api_keys: HashMap<String, Sponsorship>,
    /// The sponsorship of requests without a key, if any.
    pub default_sponsorship: Option<Sponsorship>,
    /// FRI per whole payment token: what a sponsored charge and a default-mode fee in it are
    /// computed with.
    pub payment_token_price_fri: u128,
    /// Who default-mode fee transfers pay (default: the first relayer account).
    pub fee_recipient: Option<Felt>,
    /// An account with less STRK (FRI) is out of rotation.
    pub min_balance_fri: u128,
    /// How often balances are read.
    pub balance_interval: Duration,
    /// Timeout of every node call.
    pub node_timeout: Duration,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Account classes users may have (their `execute_from_outside_v2` must really run the
    /// signed calls): the relayer refuses any other with 155.
    pub account_classes: Vec<Felt>,
    /// Limits and margins.
    pub limits: Limits,
}

/// OpenZeppelin's account 1.0.0 (what starknet-devnet 0.10 predeploys and what the tests
/// deploy through the UDC): the account class the relayer supports unless told otherwise.
pub const OPENZEPPELIN_ACCOUNT_1_0: Felt =
    Felt::from_hex_unchecked("0x05b4b537eaa2399e3aa99c4e2e0208ebd6c71bc1467938cd52c798c601e43564");

impl Config {
    /// A configuration with the defaults for everything but the chain, the address and the
    /// accounts.
    pub fn new(chain: ChainConfig, listen: SocketAddr, accounts: Vec<AccountSource>) -> Self {
        Self {
            chain,
            listen,
            accounts,
            api_keys: HashMap::new(),
            default_sponsorship: None,
            payment_token_price_fri: FRI_PER_STRK,
            fee_recipient: None,
            min_balance_fri: FRI_PER_STRK / 10,
            balance_interval: Duration::from_secs(30),
            node_timeout: Duration::from_secs(10),
            max_body_bytes: 64 * 1024,
            account_classes: vec![OPENZEPPELIN_ACCOUNT_1_0],
            limits: Limits::default(),
        }
    }
}

/// Reads an API-key file: a JSON object `{"<key>": {"sponsor": "0x...", "policy": N}}`, with
/// `"deployments": true` in an entry whose sponsor also pays for new accounts.
pub fn read_api_keys(path: &Path) -> Result<HashMap<String, Sponsorship>> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Entry {
        sponsor: String,
        policy: u64,
        #[serde(default)]
        deployments: bool,
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let entries: HashMap<String, Entry> =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    entries
        .into_iter()
        .map(|(key, entry)| {
            ensure!(
                key.len() >= 16,
                "API key {:?}... is shorter than 16 characters",
                &key[..key.len().min(4)]
            );
            let sponsor = Felt::from_hex(&entry.sponsor)
                .with_context(|| format!("the sponsor {:?} is not a hex address", entry.sponsor))?;
            Ok((
                key,
                Sponsorship {
                    sponsor,
                    policy_id: entry.policy,
                    deployments: entry.deployments,
                },
            ))
        })
        .collect()
}

/// Parses `SPONSOR:POLICY` (`0xabc:1`), or `SPONSOR:POLICY:deployments` for a sponsor that
/// also pays for new accounts.
pub fn parse_sponsorship(text: &str) -> Result<Sponsorship> {
    let mut parts = text.split(':');
    let (Some(sponsor), Some(policy)) = (parts.next(), parts.next()) else {
        bail!("expected SPONSOR_ADDRESS:POLICY_ID[:deployments], got {text:?}");
    };
    let deployments = match parts.next() {
        None => false,
        Some("deployments") => true,
        Some(other) => bail!("expected \"deployments\" after the policy id, got {other:?}"),
    };
    ensure!(
        parts.next().is_none(),
        "expected SPONSOR_ADDRESS:POLICY_ID[:deployments], got {text:?}"
    );
    Ok(Sponsorship {
        sponsor: Felt::from_hex(sponsor)
            .with_context(|| format!("{sponsor:?} is not a hex address"))?,
        policy_id: policy
            .parse()
            .with_context(|| format!("{policy:?} is not a policy id"))?,
        deployments,
    })
}

/// A provider whose every call times out after `timeout`.
pub fn node_client(url: &Url, timeout: Duration) -> Result<JsonRpcClient<HttpTransport>> {
    let http = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .context("building the HTTP client")?;
    Ok(JsonRpcClient::new(HttpTransport::new_with_client(
        url.clone(),
        http,
    )))
}

/// What the relayer reads from the chain at startup.
struct Chain {
    provider: Arc<JsonRpcClient<HttpTransport>>,
    chain_id: Felt,
    paymaster: Felt,
    payment_token: GasToken,
    accounts: Vec<(Felt, TxSender<ciro_chain::RpcAccount>)>,
}

async fn connect(config: &Config) -> Result<Chain> {
    ensure!(
        !config.accounts.is_empty(),
        "the relayer needs at least one account"
    );
    let manifest = Manifest::read(&config.chain.manifest)?;
    let paymaster = manifest.contract(contracts::PAYMASTER)?;
    let provider = Arc::new(node_client(&config.chain.rpc_url, config.node_timeout)?);
    let chain_id = provider.chain_id().await.context("reading the chain id")?;
    let token = view(PaymasterReader::new(paymaster, provider.as_ref()).token())
        .await
        .context("reading the Paymaster's payment token")?
        .0;
    let decimals = view(Erc20Reader::new(token, provider.as_ref()).decimals())
        .await
        .context("reading the payment token's decimals")?;
    let mut accounts = Vec::new();
    for source in &config.accounts {
        let (address, key) = address_and_key(source, &config.chain.rpc_url).await?;
        let mut account = SingleOwnerAccount::new(
            node_client(&config.chain.rpc_url, config.node_timeout)?,
            LocalWallet::from(key),
            address,
            chain_id,
            ExecutionEncoding::New,
        );
        account.set_block_id(BlockId::Tag(BlockTag::PreConfirmed));
        ensure!(
            !accounts.iter().any(|(a, _)| *a == address),
            "relayer account {address:#x} is configured twice"
        );
        // A node call that times out is retried once, not more: a request holds its account
        // while it simulates.
        let sender_config = SenderConfig {
            retry: ciro_chain::sender::RetryPolicy {
                attempts: 2,
                first_backoff: Duration::from_millis(100),
            },
            ..SenderConfig::default()
        };
        accounts.push((address, TxSender::new(account, sender_config)));
    }
    Ok(Chain {
        provider,
        chain_id,
        paymaster,
        payment_token: GasToken {
            address: token,
            decimals,
            price_fri: config.payment_token_price_fri,
        },
        accounts,
    })
}

/// Reads every account's STRK balance and puts it in or out of rotation.
async fn check_balances(
    pool: &Pool,
    provider: &JsonRpcClient<HttpTransport>,
    minimum: u128,
    metrics: &RelayerMetrics,
) {
    for account in pool.accounts() {
        match balance_of(provider, STRK, account.address).await {
            Ok(balance) => {
                let fri = if balance.high == 0 {
                    balance.low
                } else {
                    u128::MAX
                };
                let address = format!("{:#x}", account.address);
                metrics.balance(&address, fri);
                if account.set_balance(fri, minimum) {
                    if account.enabled() {
                        tracing::info!(account = %address, balance_fri = fri, "relayer account back in rotation");
                    } else {
                        tracing::error!(
                            account = %address,
                            balance_fri = fri,
                            minimum_fri = minimum,
                            "relayer account's STRK balance is below the minimum: out of rotation until funded"
                        );
                    }
                }
            }
            Err(error) => {
                tracing::warn!(account = %format!("{:#x}", account.address), "reading a balance: {error}")
            }
        }
    }
    metrics.accounts(pool.accounts().iter().filter(|a| a.enabled()).count());
    pool.wake();
}

/// `/ready`'s `relayer` check: connected to the chain (the Paymaster and the accounts read)
/// and an account in rotation.
struct RelayerCheck {
    slot: rpc::Slot,
    last_error: Arc<std::sync::Mutex<String>>,
}

#[async_trait]
impl ReadinessCheck for RelayerCheck {
    fn name(&self) -> &str {
        "relayer"
    }

    async fn check(&self) -> Result<String> {
        let Some(relayer) = self.slot.get() else {
            let error = self
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            bail!("not connected to the chain yet: {error}");
        };
        let accounts = relayer.pool.accounts();
        let enabled = accounts.iter().filter(|a| a.enabled()).count();
        ensure!(enabled > 0, "no relayer account has enough STRK");
        Ok(format!(
            "{enabled} of {} relayer accounts in rotation",
            accounts.len()
        ))
    }
}

/// Connects to the chain (retrying until it can or `shutdown`), then fills `slot` and keeps
/// the accounts' balances up to date.
async fn connect_and_monitor(
    config: Config,
    slot: rpc::Slot,
    last_error: Arc<std::sync::Mutex<String>>,
    metrics: RelayerMetrics,
    shutdown: CancellationToken,
) {
    let chain = loop {
        match connect(&config).await {
            Ok(chain) => break chain,
            Err(error) => {
                let text = format!("{error:#}");
                tracing::warn!("connecting to the chain: {text}; retrying in 2 s");
                *last_error.lock().unwrap_or_else(|p| p.into_inner()) = text;
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
            }
        }
    };
    let fee_recipient = config.fee_recipient.unwrap_or(chain.accounts[0].0);
    let pool = Pool::new(chain.accounts);
    check_balances(&pool, &chain.provider, config.min_balance_fri, &metrics).await;
    let mut gas_tokens = vec![GasToken {
        address: STRK,
        decimals: 18,
        price_fri: FRI_PER_STRK,
    }];
    if chain.payment_token.address != STRK {
        gas_tokens.push(chain.payment_token);
    }
    let relayer = Arc::new(Relayer::new(
        chain.provider.clone(),
        chain.chain_id,
        chain.paymaster,
        chain.payment_token,
        gas_tokens,
        fee_recipient,
        pool.clone(),
        config.api_keys.clone(),
        config.default_sponsorship,
        config.limits.clone(),
        metrics.clone(),
        config.account_classes.clone(),
    ));
    tracing::info!(
        paymaster = %format!("{:#x}", chain.paymaster),
        payment_token = %format!("{:#x}", chain.payment_token.address),
        fee_recipient = %format!("{fee_recipient:#x}"),
        accounts = pool.accounts().len(),
        api_keys = config.api_keys.len(),
        default_policy = ?config.default_sponsorship,
        "connected: serving the SNIP-29 API"
    );
    let _ = slot.set(relayer);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(config.balance_interval) => {
                check_balances(&pool, &chain.provider, config.min_balance_fri, &metrics).await
            }
        }
    }
}

/// Serves the relayer until `shutdown` is cancelled; `bound` receives the address it listens
/// on once it does (useful with port 0). It listens at once and connects to the chain in the
/// background (retrying): until then `/ready` says why and the API answers 163 "service not
/// available".
pub async fn run_with(
    config: Config,
    shutdown: CancellationToken,
    bound: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
) -> Result<()> {
    ensure!(
        !config.accounts.is_empty(),
        "the relayer needs at least one account"
    );
    let metrics = Metrics::new(SERVICE, env!("CARGO_PKG_VERSION"))?;
    let relayer_metrics = RelayerMetrics::register(&metrics)?;
    let slot: rpc::Slot = Arc::default();
    let last_error = Arc::new(std::sync::Mutex::new(String::from("connecting")));
    let readiness = Readiness::new()
        .with_check(RpcCheck::new(config.chain.rpc_url.clone()))
        .with_check(RelayerCheck {
            slot: slot.clone(),
            last_error: last_error.clone(),
        });
    tracing::info!(
        rpc_url = %config.chain.rpc_url,
        "{SERVICE} {} starting",
        env!("CARGO_PKG_VERSION")
    );
    let server = Server::bind(config.listen).await?;
    if let Some(bound) = bound {
        let _ = bound.send(server.local_addr());
    }
    let app = rpc::router(slot.clone(), config.max_body_bytes);
    let background = tokio::spawn(connect_and_monitor(
        config,
        slot,
        last_error,
        relayer_metrics,
        shutdown.clone(),
    ));
    let result = server
        .serve(ciro_service::router(app, &metrics, readiness), shutdown)
        .await;
    background.abort();
    result
}

/// Serves the relayer until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<()> {
    run_with(config, shutdown, None).await
}

/// A u256 amount in decimal.
fn amount(value: ciro_chain::cainome::cairo_serde::U256) -> String {
    if value.high == 0 {
        value.low.to_string()
    } else {
        format!("{:#x}{:032x}", value.high, value.low)
    }
}

/// `ciro-paymaster-relayer status`: the accounts (STRK and payment-token balances, nonce,
/// rotation), and for each configured sponsorship the sponsor's deposit and daily budget,
/// the policy, and each account's standing with the sponsor.
pub async fn status(config: &Config) -> Result<String> {
    use std::fmt::Write;
    let chain = connect(config).await?;
    let reader = PaymasterReader::new(chain.paymaster, chain.provider.as_ref());
    let mut out = String::new();
    writeln!(
        out,
        "Paymaster {:#x}, payment token {:#x}",
        chain.paymaster, chain.payment_token.address
    )?;
    writeln!(out, "relayer accounts:")?;
    for (address, _) in &chain.accounts {
        let strk = balance_of(chain.provider.as_ref(), STRK, *address).await?;
        let token = balance_of(
            chain.provider.as_ref(),
            chain.payment_token.address,
            *address,
        )
        .await?;
        let nonce = chain
            .provider
            .get_nonce(BlockId::Tag(BlockTag::Latest), *address)
            .await?;
        let state = if strk.high > 0 || strk.low >= config.min_balance_fri {
            "in rotation"
        } else {
            "OUT OF ROTATION (fund it with STRK)"
        };
        writeln!(
            out,
            "  {address:#x}: {} FRI, {} payment-token units, nonce {nonce:#x}, {state}",
            amount(strk),
            amount(token)
        )?;
    }
    let mut sponsorships: Vec<(String, Sponsorship)> = config
        .api_keys
        .iter()
        .map(|(key, s)| {
            (
                format!("key {}…", key.chars().take(6).collect::<String>()),
                *s,
            )
        })
        .collect();
    if let Some(default) = config.default_sponsorship {
        sponsorships.push(("no key (default)".into(), default));
    }
    sponsorships.sort_by_key(|(label, _)| label.clone());
    for (label, s) in sponsorships {
        let sponsor = ContractAddress(s.sponsor);
        let deposit = view(reader.sponsor_balance(&sponsor)).await?;
        let (budget, spent) = view(reader.sponsor_budget(&sponsor)).await?;
        writeln!(
            out,
            "{label}: sponsor {:#x} policy {}",
            s.sponsor, s.policy_id
        )?;
        writeln!(
            out,
            "  deposit {}, daily budget {} (charged today {})",
            amount(deposit),
            amount(budget),
            amount(spent)
        )?;
        match view(reader.get_policy(&s.policy_id)).await {
            Ok((policy, calls)) => writeln!(
                out,
                "  policy: {}, expires {}, max charge {}, daily limit {}, {} calls a {} s window, {} allowed calls{}{}",
                if policy.active { "active" } else { "INACTIVE" },
                policy.params.expiry,
                amount(policy.params.max_charge),
                amount(policy.params.daily_limit),
                policy.params.rate_limit_count,
                policy.params.rate_limit_window,
                calls.len(),
                if policy.params.allowlist_only { ", allowlist only" } else { "" },
                if policy.sponsor.0 != s.sponsor { ", NOT THIS SPONSOR'S" } else { "" },
            )?,
            Err(error) => writeln!(out, "  policy: unreadable ({error})")?,
        }
        for (address, _) in &chain.accounts {
            let relayer = ContractAddress(*address);
            let named = view(reader.is_relayer(&sponsor, &relayer)).await?;
            let (budget, spent) = view(reader.relayer_budget(&sponsor, &relayer)).await?;
            writeln!(
                out,
                "  {address:#x}: {} daily budget {} (charged today {})",
                if named {
                    "relayer,"
                } else {
                    "NOT A RELAYER (add_relayer),"
                },
                amount(budget),
                amount(spent)
            )?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_default_policy_pays_for_deployments_only_when_it_says_so() {
        let plain = parse_sponsorship("0xabc:3").unwrap();
        assert_eq!(
            (plain.sponsor, plain.policy_id, plain.deployments),
            (Felt::from(0xabc_u32), 3, false)
        );
        assert!(
            parse_sponsorship("0xabc:3:deployments")
                .unwrap()
                .deployments
        );
        for bad in [
            "0xabc",
            "0xabc:3:deploy",
            "0xabc:3:deployments:x",
            "0xabc:x",
            "0xabc:3:",
        ] {
            assert!(parse_sponsorship(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_api_key_file_says_which_sponsors_pay_for_deployments_and_refuses_typos() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        std::fs::write(
            &path,
            r#"{"key-of-sixteen-chars-1": {"sponsor": "0x1", "policy": 1},
                "key-of-sixteen-chars-2": {"sponsor": "0x2", "policy": 2, "deployments": true}}"#,
        )
        .unwrap();
        let keys = read_api_keys(&path).unwrap();
        assert!(!keys["key-of-sixteen-chars-1"].deployments);
        assert!(keys["key-of-sixteen-chars-2"].deployments);
        // A misspelt field is an error, not a setting silently left off.
        std::fs::write(
            &path,
            r#"{"key-of-sixteen-chars-1": {"sponsor": "0x1", "policy": 1, "deployment": true}}"#,
        )
        .unwrap();
        let error = format!("{:#}", read_api_keys(&path).unwrap_err());
        assert!(error.contains("deployment"), "{error}");
        // A short key is refused.
        std::fs::write(&path, r#"{"short": {"sponsor": "0x1", "policy": 1}}"#).unwrap();
        assert!(read_api_keys(&path).is_err());
    }
}
