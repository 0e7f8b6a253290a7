//! From hardware to an eligible worker on chain: the hardware report becomes the on-chain
//! capabilities and attestation hash; the worker is registered if it is not, its capabilities
//! updated if they changed, reactivated if it deactivated itself, and its own stake topped up
//! to the configured target (never beyond). Each step is logged, and skipped when already done.

use anyhow::{bail, Context, Result};
use ciro_chain::bindings::cdc_pool::{self, WorkerState};
use ciro_chain::cainome::cairo_serde::U256;
use ciro_chain::clients::{balance_of, u256, PoolClient};
use ciro_chain::starknet::accounts::ConnectedAccount;
use ciro_chain::starknet::core::types::Felt;
use ciro_chain::starknet::core::utils::cairo_short_string_to_felt;
use ciro_chain::RpcAccount;
use ciro_engine::hardware::HardwareReport;
use ciro_engine::Digest;
use serde_json::json;

/// What the worker declares on chain, and the report it is derived from.
#[derive(Debug, Clone, PartialEq)]
pub struct Declared {
    /// The on-chain capabilities.
    pub capabilities: cdc_pool::Capabilities,
    /// The first 31 bytes of the canonical report's SHA-256, as a felt.
    pub attestation_hash: Felt,
    /// The canonical report (JSON): what the hash is over; uploaded for anyone to check.
    pub canonical_report: Vec<u8>,
    /// Its SHA-256.
    pub report_digest: Digest,
}

/// The report's stable facts (no load, temperature or memory in use), as canonical JSON: the
/// same machine declares the same hash on every start.
pub fn canonical_report(report: &HardwareReport) -> Vec<u8> {
    let gpus: Vec<_> = report
        .gpus
        .iter()
        .map(|g| {
            json!({
                "name": g.name,
                "uuid": g.uuid,
                "vram_mb": g.vram_mb,
                "compute_capability": [g.compute_capability.0, g.compute_capability.1],
                "confidential_compute": g.confidential_compute,
                "flags": g.flags,
            })
        })
        .collect();
    // serde_json's maps are sorted by key: the text is canonical.
    let value = json!({
        "gpus": gpus,
        "cpu": {"logical_cores": report.cpu.logical_cores, "ram_mb": report.cpu.ram_mb},
        "driver_version": report.driver_version,
        "cuda_version": report.cuda_version,
        "flags": report.flags,
    });
    value.to_string().into_bytes()
}

/// The capabilities and attestation `report` declares.
pub fn declare(report: &HardwareReport) -> Result<Declared> {
    let canonical = canonical_report(report);
    let digest = Digest::of(&canonical);
    let mut bytes = [0u8; 32];
    bytes[1..].copy_from_slice(&digest.0[..31]);
    let (name, vram_mb, compute_capability) = match report.best_gpu() {
        Some(gpu) => (
            gpu.name.clone(),
            gpu.vram_mb,
            u32::try_from(gpu.compute_capability.0 * 10 + gpu.compute_capability.1).unwrap_or(0),
        ),
        None => ("CPU".to_owned(), 0, 0),
    };
    let short: String = name.chars().filter(char::is_ascii).take(31).collect();
    Ok(Declared {
        capabilities: cdc_pool::Capabilities {
            gpu_model: cairo_short_string_to_felt(&short)
                .with_context(|| format!("the GPU name {short:?} as a short string"))?,
            vram_mb: u32::try_from(vram_mb).unwrap_or(u32::MAX),
            compute_capability,
            flags: report.flags,
        },
        attestation_hash: Felt::from_bytes_be(&bytes),
        canonical_report: canonical,
        report_digest: digest,
    })
}

fn as_u128(value: &U256) -> u128 {
    if value.high > 0 {
        u128::MAX
    } else {
        value.low
    }
}

/// What [`onboard`] did, step by step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Onboarding {
    /// Each step and its transaction (or why it was skipped).
    pub steps: Vec<String>,
}

/// Registers, updates, reactivates and stakes as needed so that the account works with
/// `declared` and `stake_target` of own stake.
pub async fn onboard(
    pool: &PoolClient<RpcAccount>,
    account: &RpcAccount,
    token: Felt,
    declared: &Declared,
    stake_target: u128,
) -> Result<Onboarding> {
    let me = ciro_chain::starknet::accounts::Account::address(account);
    let mut done = Onboarding::default();
    let mut step = |text: String| {
        tracing::info!("{text}");
        done.steps.push(text);
    };
    let info = pool
        .worker(me)
        .await
        .context("reading the worker from the pool")?;
    let own = as_u128(&info.stake);
    let needed = stake_target.saturating_sub(own);
    if needed > 0 {
        let balance = as_u128(&balance_of(account.provider(), token, me).await?);
        if balance < needed {
            bail!(
                "the account {me:#x} holds {balance} of the payment token {token:#x}, and staking \
                 up to the target {stake_target} needs {needed} more (own stake now {own}): fund \
                 the account or lower --stake-target"
            );
        }
    }
    if info.state == WorkerState::Unregistered {
        let out = pool
            .register_and_stake(
                token,
                &declared.capabilities,
                declared.attestation_hash,
                u256(needed),
            )
            .await
            .context("registering the worker")?;
        step(format!(
            "registered with {} MB of VRAM, compute capability {}, flags {:#x}, and staked {needed} (tx {:#x})",
            declared.capabilities.vram_mb,
            declared.capabilities.compute_capability,
            declared.capabilities.flags,
            out.tx_hash
        ));
        return Ok(done);
    }
    if info.state == WorkerState::Banned {
        bail!("the worker {me:#x} is banned from the pool: it may only withdraw after its exit window");
    }
    step("registered already: skipped".into());
    if info.capabilities != declared.capabilities
        || info.attestation_hash != declared.attestation_hash
    {
        let out = pool
            .update_capabilities(&declared.capabilities, declared.attestation_hash)
            .await
            .context("updating the capabilities")?;
        step(format!("capabilities updated (tx {:#x})", out.tx_hash));
    } else {
        step("capabilities unchanged: skipped".into());
    }
    if info.record.deactivated {
        let out = pool.reactivate().await.context("reactivating")?;
        step(format!("reactivated (tx {:#x})", out.tx_hash));
    }
    if needed > 0 {
        let out = pool.stake(token, u256(needed)).await.context("staking")?;
        step(format!(
            "staked {needed} up to the target {stake_target} (tx {:#x})",
            out.tx_hash
        ));
    } else {
        step(format!(
            "own stake {own} meets the target {stake_target}: skipped"
        ));
    }
    Ok(done)
}
