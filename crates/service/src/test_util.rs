//! What the services' integration tests share (feature `test-util`): a service binary run as a
//! child process, and the scenarios every service binary must pass, which
//! [`service_binary_tests!`](crate::service_binary_tests) turns into tests.

use std::future::Future;
use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
use ciro_chain::devnet::Devnet;
use reqwest::StatusCode;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

use crate::ready::ReadinessReport;

/// How long a service may take to start and log its address.
pub const PROCESS_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a service may take to exit after SIGTERM: it has nothing to drain in the tests.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(5);

const LISTENING: &str = "listening on http://";

/// A service binary running as a child process, killed on drop.
#[derive(Debug)]
pub struct ServiceProcess {
    child: Child,
    address: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl ServiceProcess {
    /// Starts `binary` with `args` plus `--listen 127.0.0.1:0 --log info --log-format text`,
    /// and waits for the address it logs.
    pub async fn start(binary: &str, args: &[&str]) -> Result<Self> {
        let mut child = Command::new(binary)
            .args(args)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--log",
                "info",
                "--log-format",
                "text",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {binary}"))?;
        let stderr = child.stderr.take().context("the child's stderr")?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let (address_tx, address_rx) = oneshot::channel();
        tokio::spawn(collect_log(
            BufReader::new(stderr),
            Arc::clone(&log),
            address_tx,
        ));
        let address = match tokio::time::timeout(PROCESS_TIMEOUT, address_rx).await {
            Ok(Ok(address)) => address,
            Ok(Err(_)) => bail!("{binary} closed stderr before listening:\n{}", lines(&log)),
            Err(_) => bail!(
                "{binary} did not listen within {PROCESS_TIMEOUT:?}:\n{}",
                lines(&log)
            ),
        };
        Ok(Self {
            child,
            address,
            log,
        })
    }

    /// The address the service bound.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `GET path` on the service.
    pub async fn get(&self, path: &str) -> Result<reqwest::Response> {
        let url = format!("http://{}{path}", self.address);
        reqwest::get(&url)
            .await
            .with_context(|| format!("GET {url}\nservice log:\n{}", self.log()))
    }

    /// `GET /ready`, decoded.
    pub async fn ready(&self) -> Result<(StatusCode, ReadinessReport)> {
        let response = self.get("/ready").await?;
        let status = response.status();
        let report = response.json().await.context("decoding /ready")?;
        Ok((status, report))
    }

    /// What the service has logged so far.
    pub fn log(&self) -> String {
        lines(&self.log)
    }

    /// Sends SIGTERM and waits up to [`EXIT_TIMEOUT`] for the process to exit.
    pub async fn terminate(mut self) -> Result<ExitStatus> {
        let pid = self.child.id().context("the service has already exited")?;
        let pid = libc::pid_t::try_from(pid).context("pid out of range")?;
        // SAFETY: kill has no memory effects; the pid is our own child's, not yet reaped.
        if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
            return Err(std::io::Error::last_os_error()).context("sending SIGTERM");
        }
        match tokio::time::timeout(EXIT_TIMEOUT, self.child.wait()).await {
            Ok(status) => status.context("waiting for the service"),
            Err(_) => bail!(
                "still running {EXIT_TIMEOUT:?} after SIGTERM:\n{}",
                self.log()
            ),
        }
    }
}

async fn collect_log(
    stderr: BufReader<tokio::process::ChildStderr>,
    log: Arc<Mutex<Vec<String>>>,
    address: oneshot::Sender<SocketAddr>,
) {
    let mut address = Some(address);
    let mut stderr = stderr.lines();
    while let Ok(Some(line)) = stderr.next_line().await {
        if let Some(at) = line.find(LISTENING) {
            let bound = line[at + LISTENING.len()..]
                .split(|c: char| c.is_whitespace() || c == '"')
                .next()
                .and_then(|text| text.parse().ok());
            if let (Some(bound), Some(tx)) = (bound, address.take()) {
                let _ = tx.send(bound);
            }
        }
        if let Ok(mut log) = log.lock() {
            log.push(line);
        }
    }
}

fn lines(log: &Mutex<Vec<String>>) -> String {
    log.lock().map(|lines| lines.join("\n")).unwrap_or_default()
}

/// A loopback port nothing listens on (bound, then released).
pub fn unused_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Runs a scenario on a fresh multi-threaded runtime; panics with the whole error chain.
pub fn run(scenario: impl Future<Output = Result<()>>) {
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting a tokio runtime")
        .and_then(|runtime| runtime.block_on(scenario));
    if let Err(err) = result {
        panic!("{err:#}");
    }
}

/// With `--rpc-url` on a port nobody listens on: `/health` is 200, `/ready` 503 naming the
/// failing `rpc` check, `/metrics` has the runtime's metrics in the text format; SIGTERM
/// then ends the process with status 0.
pub async fn unready_without_a_node(binary: &str, service: &str, extra: &[String]) -> Result<()> {
    let rpc_url = format!("http://127.0.0.1:{}/rpc", unused_port()?);
    let process =
        ServiceProcess::start(binary, &with_extra(&["--rpc-url", &rpc_url], extra)).await?;

    let health = process.get("/health").await?;
    ensure!(
        health.status() == StatusCode::OK,
        "/health: {}",
        health.status()
    );

    let (status, report) = process.ready().await?;
    ensure!(
        status == StatusCode::SERVICE_UNAVAILABLE && !report.ready,
        "/ready without a node: {status} {report:?}"
    );
    let rpc = report
        .checks
        .iter()
        .find(|check| check.name == "rpc")
        .ok_or_else(|| anyhow!("no rpc check in {report:?}"))?;
    ensure!(
        !rpc.ok && rpc.detail.contains(&rpc_url),
        "the rpc check should fail naming {rpc_url}: {rpc:?}"
    );

    let metrics = process.get("/metrics").await?;
    let content_type = metrics
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    ensure!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "/metrics content type: {content_type}"
    );
    let text = metrics.text().await?;
    for expected in [
        format!(r#"ciro_build_info{{service="{service}",version="#),
        "# TYPE ciro_http_requests_total counter".to_owned(),
        r#"ciro_http_requests_total{method="GET",route="/health",status="200"} 1"#.to_owned(),
        r#"ciro_http_requests_total{method="GET",route="/ready",status="503"} 1"#.to_owned(),
        "# TYPE ciro_http_request_duration_seconds histogram".to_owned(),
        r#"ciro_ready_check_ok{check="rpc"} 0"#.to_owned(),
    ] {
        ensure!(
            text.contains(&expected),
            "no `{expected}` in /metrics:\n{text}"
        );
    }

    expect_clean_exit(process).await
}

/// Against a live starknet-devnet: `/ready` becomes 200 (within 15 s) with the `rpc` check
/// passed; SIGTERM then ends the process with status 0.
pub async fn ready_with_a_live_node(binary: &str, extra: &[String]) -> Result<()> {
    let devnet = tokio::task::spawn_blocking(Devnet::start)
        .await
        .context("starting devnet")??;
    let rpc_url = devnet.rpc_url().to_string();
    let process =
        ServiceProcess::start(binary, &with_extra(&["--rpc-url", &rpc_url], extra)).await?;
    // A service may need a moment after it listens (e.g. a first pass over the chain).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    let (status, report) = loop {
        let (status, report) = process.ready().await?;
        if status == StatusCode::OK || tokio::time::Instant::now() >= deadline {
            break (status, report);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    ensure!(
        status == StatusCode::OK && report.ready,
        "/ready against devnet: {status} {report:?}\nservice log:\n{}",
        process.log()
    );
    ensure!(
        report
            .checks
            .iter()
            .any(|check| check.name == "rpc" && check.ok && check.detail.starts_with("chain ")),
        "no passed rpc check in {report:?}"
    );
    expect_clean_exit(process).await
}

/// An invalid `--rpc-url` is refused before anything starts: status 1, and stderr says
/// `SERVICE: error:` and what is wrong.
pub async fn invalid_configuration_exits_with_status_1(binary: &str, service: &str) -> Result<()> {
    let output = Command::new(binary)
        .args([
            "--rpc-url",
            "ws://127.0.0.1:5050/ws",
            "--listen",
            "127.0.0.1:0",
        ])
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("running {binary}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        output.status.code() == Some(1),
        "status {}:\n{stderr}",
        output.status
    );
    let expected =
        format!("{service}: error: --rpc-url / CIRO_RPC_URL must be an http:// or https:// URL");
    ensure!(stderr.contains(&expected), "no `{expected}` in:\n{stderr}");
    Ok(())
}

/// `args` followed by the service's own `extra` arguments.
fn with_extra<'a>(args: &[&'a str], extra: &'a [String]) -> Vec<&'a str> {
    args.iter()
        .copied()
        .chain(extra.iter().map(String::as_str))
        .collect()
}

async fn expect_clean_exit(process: ServiceProcess) -> Result<()> {
    let status = process.terminate().await?;
    ensure!(status.success(), "exit after SIGTERM: {status}");
    Ok(())
}

/// The tests every service binary runs (in its `tests/service.rs`):
/// `service_binary_tests!(env!("CARGO_BIN_EXE_ciro-x"), "ciro-x");`, or with a third
/// argument, an expression giving the extra arguments (`Vec<String>`) the service needs to
/// start (e.g. a deployment manifest and a database). See the scenarios in
/// [`crate::test_util`].
#[macro_export]
macro_rules! service_binary_tests {
    ($binary:expr, $service:expr) => {
        $crate::service_binary_tests!($binary, $service, ::std::vec::Vec::<String>::new());
    };
    ($binary:expr, $service:expr, $extra:expr) => {
        #[test]
        fn unready_without_a_node() {
            let extra: ::std::vec::Vec<String> = $extra;
            $crate::test_util::run($crate::test_util::unready_without_a_node(
                $binary, $service, &extra,
            ));
        }

        #[test]
        fn ready_with_a_live_node() {
            let extra: ::std::vec::Vec<String> = $extra;
            $crate::test_util::run($crate::test_util::ready_with_a_live_node($binary, &extra));
        }

        #[test]
        fn invalid_configuration_exits_with_status_1() {
            $crate::test_util::run(
                $crate::test_util::invalid_configuration_exits_with_status_1($binary, $service),
            );
        }
    };
}
