//! starknet-devnet: its own JSON-RPC methods (`devnet_*`: predeployed accounts, minting, time
//! control, blocks and snapshots, which starknet-rs does not know) and, with the `devnet`
//! feature, a launcher for a local devnet process ([`Devnet`]) started one way everywhere (the
//! test harness, `ciro devnet`, `scripts/run-local.sh`).

#[cfg(feature = "devnet")]
mod process;
#[cfg(feature = "devnet")]
pub use process::{
    devnet_binary, Devnet, DevnetOptions, ACCOUNTS, DEVNET_VERSION, INITIAL_BALANCE, SEED,
};

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use serde_json::{json, Value};
use starknet::core::types::Felt;
use url::Url;

const ALIVE_TIMEOUT: Duration = Duration::from_secs(60);

/// A predeployed account as devnet reports it.
#[derive(Debug, Clone, Deserialize)]
pub struct PredeployedAccount {
    pub address: Felt,
    pub private_key: Felt,
    pub public_key: Felt,
}

/// devnet's own JSON-RPC methods (`devnet_*`), which starknet-rs does not know.
#[derive(Debug, Clone)]
pub struct DevnetRpc {
    http: reqwest::Client,
    url: Url,
}

impl DevnetRpc {
    pub fn new(rpc_url: Url) -> Self {
        Self {
            http: reqwest::Client::new(),
            url: rpc_url,
        }
    }

    async fn call(&self, method: &str, params: Value) -> Result<Value> {
        let response: Value = self
            .http
            .post(self.url.clone())
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
            .send()
            .await
            .with_context(|| format!("{method}: sending"))?
            .json()
            .await
            .with_context(|| format!("{method}: reading the response"))?;
        if let Some(error) = response.get("error") {
            return Err(anyhow!("{method} failed: {error}"));
        }
        response
            .get("result")
            .cloned()
            .ok_or_else(|| anyhow!("{method}: no result in {response}"))
    }

    /// Whether the node at this URL is a starknet-devnet: it answers devnet's own
    /// `devnet_getConfig` with a config object.
    ///
    /// The chain id cannot tell: devnet's is configurable (`--chain-id`, `SN_SEPOLIA` by
    /// default), so a devnet can claim to be mainnet and Sepolia nodes say the same. No other
    /// node implements `devnet_*` methods; `devnet_getConfig` is the one devnet serves even in
    /// `--restrictive-mode` (which blocks `devnet_getPredeployedAccounts`, `devnet_mint`, ...).
    /// Any answer other than a config (a JSON-RPC error such as "method not found", an HTTP
    /// error, a body that is not JSON) means "not a devnet"; so does a devnet started with
    /// `devnet_getConfig` among its `--restricted-methods`. Errors only when the request
    /// cannot be sent or no response arrives.
    pub async fn is_devnet(&self) -> Result<bool> {
        let response = self
            .http
            .post(self.url.clone())
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "devnet_getConfig", "params": {}}))
            .send()
            .await
            .with_context(|| format!("asking {} for devnet_getConfig", self.url))?;
        if !response.status().is_success() {
            return Ok(false);
        }
        Ok(match response.json::<Value>().await {
            Ok(body) => body.get("result").is_some_and(Value::is_object),
            Err(_) => false,
        })
    }

    /// Waits until the node answers `/is_alive` (beside `/rpc`).
    pub async fn wait_alive(&self) -> Result<()> {
        let alive = self.url.join("is_alive")?;
        let started = Instant::now();
        loop {
            match self.http.get(alive.clone()).send().await {
                Ok(response) if response.status().is_success() => return Ok(()),
                _ if started.elapsed() < ALIVE_TIMEOUT => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Ok(response) => bail!("{alive} answered {}", response.status()),
                Err(e) => return Err(e).context(format!("{alive} never answered")),
            }
        }
    }

    /// The predeployed accounts, in devnet's order.
    pub async fn predeployed_accounts(&self) -> Result<Vec<PredeployedAccount>> {
        Ok(serde_json::from_value(
            self.call("devnet_getPredeployedAccounts", json!({}))
                .await?,
        )?)
    }

    /// Mints `amount` STRK (in FRI) to `address`. Returns the new balance.
    pub async fn mint_strk(&self, address: Felt, amount: u128) -> Result<u128> {
        let result = self
            .call(
                "devnet_mint",
                json!({"address": format!("{address:#x}"), "amount": amount, "unit": "FRI"}),
            )
            .await?;
        let balance = result["new_balance"]
            .as_str()
            .context("devnet_mint: new_balance")?;
        balance
            .parse()
            .with_context(|| format!("devnet_mint: new_balance {balance}"))
    }

    /// Moves the chain's clock forward by `seconds` (and creates a block).
    pub async fn increase_time(&self, seconds: u64) -> Result<()> {
        self.call("devnet_increaseTime", json!({"time": seconds}))
            .await
            .map(drop)
    }

    /// Sets the time of the next block to `timestamp` (and creates a block).
    pub async fn set_time(&self, timestamp: u64) -> Result<()> {
        self.call(
            "devnet_setTime",
            json!({"time": timestamp, "generate_block": true}),
        )
        .await
        .map(drop)
    }

    /// Creates an empty block.
    pub async fn create_block(&self) -> Result<()> {
        self.call("devnet_createBlock", json!({})).await.map(drop)
    }

    /// Takes a snapshot of the whole chain state; returns its id.
    pub async fn snapshot(&self) -> Result<String> {
        let id = self.call("devnet_snapshot", json!({})).await?;
        Ok(match id {
            Value::String(id) => id,
            other => other.to_string(),
        })
    }

    /// Puts the chain back to snapshot `id` (state and block number).
    pub async fn revert(&self, id: &str) -> Result<()> {
        self.call("devnet_revert", json!({"snapshot_id": id}))
            .await
            .map(drop)
    }
}
