//! Readiness: whether the service can do its work now (its node answers, later its database
//! too). `/ready` runs every check concurrently, each within a timeout.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use async_trait::async_trait;
use ciro_chain::starknet::core::types::Felt;
use ciro_chain::starknet::core::utils::parse_cairo_short_string;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::task::JoinSet;
use url::Url;

/// How long `/ready` waits for any one check, unless [`Readiness::with_timeout`] says otherwise.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a report is answered again before the checks run anew, unless
/// [`Readiness::with_max_age`] says otherwise.
pub const DEFAULT_REPORT_MAX_AGE: Duration = Duration::from_secs(1);

/// Something the service needs before it can serve: a node, a database.
#[async_trait]
pub trait ReadinessCheck: Send + Sync {
    /// Short stable name, reported in `/ready` and as the `check` metric label (`rpc`, `db`).
    fn name(&self) -> &str;

    /// `Ok` with a short description of what was seen (`chain SN_SEPOLIA`), or the reason
    /// the dependency is not usable. `/ready` bounds it with its own timeout.
    async fn check(&self) -> Result<String>;
}

/// What one check found, as `/ready` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckStatus {
    /// The check's name.
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// What it saw, or why it failed (the whole error chain).
    pub detail: String,
}

/// The body of `/ready`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadinessReport {
    /// True when every check passed (and when there are none).
    pub ready: bool,
    /// One entry per check, in the order they were added.
    pub checks: Vec<CheckStatus>,
}

/// The checks `/ready` runs.
#[derive(Clone)]
pub struct Readiness {
    checks: Vec<Arc<dyn ReadinessCheck>>,
    timeout: Duration,
    /// The last report and when it was made, shared by clones: `/ready` is unauthenticated
    /// and each run of the checks calls the node and the database, so requests within
    /// `max_age` of a run get its report (and requests while one runs wait for it) rather than
    /// each running them.
    last: Arc<tokio::sync::Mutex<Option<(tokio::time::Instant, ReadinessReport)>>>,
    max_age: Duration,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness")
            .field(
                "checks",
                &self.checks.iter().map(|c| c.name()).collect::<Vec<_>>(),
            )
            .field("timeout", &self.timeout)
            .field("max_age", &self.max_age)
            .finish()
    }
}

impl Default for Readiness {
    fn default() -> Self {
        Self::new()
    }
}

impl Readiness {
    /// No checks yet, [`DEFAULT_CHECK_TIMEOUT`] each.
    pub fn new() -> Self {
        Self {
            checks: Vec::new(),
            timeout: DEFAULT_CHECK_TIMEOUT,
            last: Arc::default(),
            max_age: DEFAULT_REPORT_MAX_AGE,
        }
    }

    /// Sets how long a report is answered again before the checks run anew.
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// Adds a check.
    pub fn with_check(mut self, check: impl ReadinessCheck + 'static) -> Self {
        self.checks.push(Arc::new(check));
        self
    }

    /// Sets how long each check may take before it counts as failed.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The report: the last one if it is younger than the max age, else a new run of the
    /// checks (one at a time: concurrent callers wait for the run in progress).
    pub async fn report(&self) -> ReadinessReport {
        let mut last = self.last.lock().await;
        if let Some((at, report)) = last.as_ref() {
            if at.elapsed() < self.max_age {
                return report.clone();
            }
        }
        let report = self.run().await;
        *last = Some((tokio::time::Instant::now(), report.clone()));
        report
    }

    /// Runs every check concurrently. A check that times out or panics has failed.
    async fn run(&self) -> ReadinessReport {
        let mut running = JoinSet::new();
        for (index, check) in self.checks.iter().enumerate() {
            let check = Arc::clone(check);
            let timeout = self.timeout;
            running.spawn(async move {
                let outcome = match tokio::time::timeout(timeout, check.check()).await {
                    Ok(outcome) => outcome,
                    Err(_) => Err(anyhow::anyhow!("no answer within {timeout:?}")),
                };
                (index, outcome)
            });
        }
        let mut outcomes: Vec<Option<Result<String>>> = std::iter::repeat_with(|| None)
            .take(self.checks.len())
            .collect();
        while let Some(joined) = running.join_next().await {
            // A panicked task's slot stays empty and is reported below.
            if let Ok((index, outcome)) = joined {
                outcomes[index] = Some(outcome);
            }
        }
        let checks: Vec<CheckStatus> = self
            .checks
            .iter()
            .zip(outcomes)
            .map(|(check, outcome)| {
                let (ok, detail) = match outcome {
                    Some(Ok(detail)) => (true, detail),
                    Some(Err(err)) => (false, format!("{err:#}")),
                    None => (false, "the check panicked".to_owned()),
                };
                CheckStatus {
                    name: check.name().to_owned(),
                    ok,
                    detail,
                }
            })
            .collect();
        ReadinessReport {
            ready: checks.iter().all(|c| c.ok),
            checks,
        }
    }
}

/// The Starknet node answers `starknet_chainId` (named `rpc`).
///
/// A plain JSON-RPC request with reqwest rather than starknet-rs's provider, so that a failure
/// reports its whole cause (`tcp connect error: Connection refused`, an HTTP status, a
/// JSON-RPC error) in `/ready`.
#[derive(Debug, Clone)]
pub struct RpcCheck {
    url: Url,
    http: reqwest::Client,
}

impl RpcCheck {
    /// A check of the JSON-RPC endpoint at `url`.
    pub fn new(url: Url) -> Self {
        Self {
            url,
            http: reqwest::Client::new(),
        }
    }

    async fn chain_id(&self) -> Result<String> {
        let response = self
            .http
            .post(self.url.clone())
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "starknet_chainId", "params": []}))
            .send()
            .await?;
        let status = response.status();
        ensure!(status.is_success(), "HTTP {status}");
        let body: Value = response.json().await.context("the answer is not JSON")?;
        if let Some(error) = body.get("error") {
            bail!("JSON-RPC error {error}");
        }
        let chain_id = body
            .get("result")
            .and_then(Value::as_str)
            .and_then(|hex| Felt::from_hex(hex).ok())
            .with_context(|| format!("no chain id in {body}"))?;
        Ok(parse_cairo_short_string(&chain_id).unwrap_or_else(|_| format!("{chain_id:#x}")))
    }
}

#[async_trait]
impl ReadinessCheck for RpcCheck {
    fn name(&self) -> &str {
        "rpc"
    }

    async fn check(&self) -> Result<String> {
        let chain_id = self
            .chain_id()
            .await
            .with_context(|| format!("starknet_chainId at {}", self.url))?;
        Ok(format!("chain {chain_id}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed {
        name: &'static str,
        outcome: std::result::Result<&'static str, &'static str>,
        delay: Duration,
    }

    #[async_trait]
    impl ReadinessCheck for Fixed {
        fn name(&self) -> &str {
            self.name
        }

        async fn check(&self) -> Result<String> {
            tokio::time::sleep(self.delay).await;
            match self.outcome {
                Ok(detail) => Ok(detail.to_owned()),
                Err(reason) => Err(anyhow::anyhow!(reason)).context("checking"),
            }
        }
    }

    fn fixed(
        name: &'static str,
        outcome: std::result::Result<&'static str, &'static str>,
    ) -> Fixed {
        Fixed {
            name,
            outcome,
            delay: Duration::ZERO,
        }
    }

    struct Panics;

    #[async_trait]
    impl ReadinessCheck for Panics {
        fn name(&self) -> &str {
            "panics"
        }

        async fn check(&self) -> Result<String> {
            panic!("a bug in a check")
        }
    }

    struct Counting(Arc<std::sync::atomic::AtomicU32>);

    #[async_trait]
    impl ReadinessCheck for Counting {
        fn name(&self) -> &str {
            "counting"
        }

        async fn check(&self) -> Result<String> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok("counted".to_owned())
        }
    }

    /// `/ready` is unauthenticated and each run calls the node: a flood of requests must not
    /// become a flood of node calls. Within the max age one run answers every request.
    #[tokio::test]
    async fn a_flood_of_reports_within_the_max_age_runs_the_checks_once() {
        let runs = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let readiness = Readiness::new()
            .with_check(Counting(runs.clone()))
            .with_max_age(Duration::from_millis(400));
        let mut flood = JoinSet::new();
        for _ in 0..50 {
            let readiness = readiness.clone();
            flood.spawn(async move { readiness.report().await });
        }
        while let Some(report) = flood.join_next().await {
            assert!(report.unwrap().ready);
        }
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(450)).await;
        readiness.report().await;
        assert_eq!(
            runs.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "run anew once old"
        );
    }

    #[tokio::test]
    async fn ready_when_every_check_passes_and_with_no_checks() {
        assert_eq!(
            Readiness::new().report().await,
            ReadinessReport {
                ready: true,
                checks: vec![]
            }
        );
        let report = Readiness::new()
            .with_check(fixed("a", Ok("fine")))
            .with_check(fixed("b", Ok("also fine")))
            .report()
            .await;
        assert!(report.ready);
        assert_eq!(report.checks[1].detail, "also fine");
    }

    #[tokio::test]
    async fn one_failure_timeout_or_panic_makes_the_service_unready() {
        let report = Readiness::new()
            .with_check(fixed("good", Ok("fine")))
            .with_check(fixed("bad", Err("refused")))
            .with_check(Fixed {
                name: "slow",
                outcome: Ok("too late"),
                delay: Duration::from_secs(60),
            })
            .with_check(Panics)
            .with_timeout(Duration::from_millis(100))
            .report()
            .await;
        assert!(!report.ready);
        let found: Vec<(&str, bool, &str)> = report
            .checks
            .iter()
            .map(|c| (c.name.as_str(), c.ok, c.detail.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                ("good", true, "fine"),
                ("bad", false, "checking: refused"),
                ("slow", false, "no answer within 100ms"),
                ("panics", false, "the check panicked"),
            ]
        );
    }

    #[tokio::test]
    async fn checks_run_concurrently() {
        let slow = |name| Fixed {
            name,
            outcome: Ok("done"),
            delay: Duration::from_millis(400),
        };
        let started = std::time::Instant::now();
        let report = Readiness::new()
            .with_check(slow("a"))
            .with_check(slow("b"))
            .with_check(slow("c"))
            .report()
            .await;
        assert!(report.ready);
        let elapsed = started.elapsed();
        assert!(elapsed < Duration::from_millis(1000), "{elapsed:?}");
    }

    /// A JSON-RPC endpoint that answers every request with `answer` and `status`.
    async fn fake_node(status: u16, answer: Value) -> Result<Url> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/rpc", listener.local_addr()?).parse()?;
        let status = axum::http::StatusCode::from_u16(status)?;
        let app = axum::Router::new().route(
            "/rpc",
            axum::routing::post(move || async move { (status, axum::Json(answer)) }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(url)
    }

    #[tokio::test]
    async fn rpc_check_names_the_chain_or_says_what_the_node_answered() -> Result<()> {
        let sepolia = json!({"jsonrpc": "2.0", "id": 1, "result": "0x534e5f5345504f4c4941"});
        let check = RpcCheck::new(fake_node(200, sepolia).await?);
        assert_eq!(check.check().await?, "chain SN_SEPOLIA");

        for (status, answer, expected) in [
            (
                200,
                json!({"jsonrpc": "2.0", "id": 1, "error": {"code": -32601, "message": "Method not found"}}),
                "JSON-RPC error",
            ),
            (
                200,
                json!({"jsonrpc": "2.0", "id": 1, "result": 7}),
                "no chain id in",
            ),
            (502, json!({}), "HTTP 502 Bad Gateway"),
        ] {
            let check = RpcCheck::new(fake_node(status, answer).await?);
            let err = format!("{:#}", check.check().await.unwrap_err());
            assert!(err.contains(expected), "{err}");
            assert!(
                err.starts_with("starknet_chainId at http://127.0.0.1:"),
                "{err}"
            );
        }
        Ok(())
    }

    #[tokio::test]
    async fn rpc_check_fails_with_the_url_when_nothing_listens() -> Result<()> {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            listener.local_addr()?.port()
        };
        let url: Url = format!("http://127.0.0.1:{port}/rpc").parse()?;
        let check = RpcCheck::new(url.clone());
        assert_eq!(check.name(), "rpc");
        let err = format!("{:#}", check.check().await.unwrap_err());
        assert!(err.contains(&format!("starknet_chainId at {url}")), "{err}");
        assert!(err.contains("Connection refused"), "{err}");
        Ok(())
    }
}
