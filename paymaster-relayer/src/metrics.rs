//! The relayer's Prometheus metrics.

use anyhow::Result;
use ciro_service::Metrics;
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts};

/// Counters and gauges of the relayer (cheap to clone: they share their values).
#[derive(Clone)]
pub struct RelayerMetrics {
    requests: IntCounterVec,
    refused: IntCounterVec,
    passed_over: IntCounterVec,
    built: IntCounter,
    submitted: IntCounterVec,
    charged: IntCounter,
    landed: IntCounterVec,
    batches: IntCounterVec,
    batched: IntCounterVec,
    in_rotation: IntGauge,
    balance: IntGaugeVec,
}

impl RelayerMetrics {
    /// Registers the relayer's metrics with the service's registry.
    pub fn register(metrics: &Metrics) -> Result<Self> {
        let this = Self {
            requests: IntCounterVec::new(
                Opts::new("ciro_relayer_requests_total", "JSON-RPC requests by method and outcome"),
                &["method", "outcome"],
            )?,
            refused: IntCounterVec::new(
                Opts::new(
                    "ciro_relayer_refused_total",
                    "Requests refused before anything was sent, by rule",
                ),
                &["rule"],
            )?,
            passed_over: IntCounterVec::new(
                Opts::new(
                    "ciro_relayer_accounts_passed_over_total",
                    "Relayer accounts set aside for an execution, which went on from another, by why",
                ),
                &["why"],
            )?,
            built: IntCounter::new("ciro_relayer_built_total", "Typed data built for users")?,
            submitted: IntCounterVec::new(
                Opts::new("ciro_relayer_submitted_total", "Transactions sent, by fee mode"),
                &["mode"],
            )?,
            charged: IntCounter::new(
                "ciro_relayer_charged_total",
                "Payment-token base units charged to sponsors or paid by users (saturating at 2^63)",
            )?,
            landed: IntCounterVec::new(
                Opts::new(
                    "ciro_relayer_landed_total",
                    "Sent executions by their transaction's on-chain result",
                ),
                &["result"],
            )?,
            batches: IntCounterVec::new(
                Opts::new(
                    "ciro_relayer_batches_total",
                    "Batches of several executions: sent as one transaction, or split because their simulation failed",
                ),
                &["outcome"],
            )?,
            batched: IntCounterVec::new(
                Opts::new(
                    "ciro_relayer_batched_executions_total",
                    "Executions in batches of several, by the batch's outcome",
                ),
                &["outcome"],
            )?,
            in_rotation: IntGauge::new(
                "ciro_relayer_accounts_in_rotation",
                "Relayer accounts whose STRK balance is above the threshold",
            )?,
            balance: IntGaugeVec::new(
                Opts::new(
                    "ciro_relayer_account_balance_strk_milli",
                    "Each relayer account's STRK balance, in thousandths of a STRK",
                ),
                &["account"],
            )?,
        };
        let registry = metrics.registry();
        registry.register(Box::new(this.requests.clone()))?;
        registry.register(Box::new(this.refused.clone()))?;
        registry.register(Box::new(this.passed_over.clone()))?;
        registry.register(Box::new(this.built.clone()))?;
        registry.register(Box::new(this.submitted.clone()))?;
        registry.register(Box::new(this.charged.clone()))?;
        registry.register(Box::new(this.landed.clone()))?;
        registry.register(Box::new(this.batches.clone()))?;
        registry.register(Box::new(this.batched.clone()))?;
        registry.register(Box::new(this.in_rotation.clone()))?;
        registry.register(Box::new(this.balance.clone()))?;
        Ok(this)
    }

    pub(crate) fn request(&self, method: &str, outcome: &str) {
        self.requests.with_label_values(&[method, outcome]).inc();
    }

    pub(crate) fn refused(&self, rule: &str) {
        self.refused.with_label_values(&[rule]).inc();
    }

    pub(crate) fn passed_over(&self, why: &str) {
        self.passed_over.with_label_values(&[why]).inc();
    }

    pub(crate) fn built(&self) {
        self.built.inc();
    }

    pub(crate) fn submitted(&self, mode: &str, charge: u128) {
        self.submitted.with_label_values(&[mode]).inc();
        self.charged
            .inc_by(u64::try_from(charge).unwrap_or(i64::MAX as u64));
    }

    pub(crate) fn landed(&self, result: &str) {
        self.landed.with_label_values(&[result]).inc();
    }

    pub(crate) fn batch(&self, outcome: &str, executions: usize) {
        self.batches.with_label_values(&[outcome]).inc();
        self.batched
            .with_label_values(&[outcome])
            .inc_by(executions as u64);
    }

    pub(crate) fn accounts(&self, in_rotation: usize) {
        self.in_rotation.set(in_rotation as i64);
    }

    pub(crate) fn balance(&self, account: &str, fri: u128) {
        let milli = fri / 1_000_000_000_000_000;
        self.balance
            .with_label_values(&[account])
            .set(i64::try_from(milli).unwrap_or(i64::MAX));
    }
}
