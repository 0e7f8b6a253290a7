//! The HTTP server every service runs: its own routes plus `/health`, `/ready` and
//! `/metrics`, on one listen address, stopped gracefully by the shutdown token.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use clap::Args;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::{track_requests, Metrics, TEXT_CONTENT_TYPE};
use crate::ready::Readiness;

/// How long in-flight requests may run on after shutdown begins; then the server stops anyway.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a connection may take to send a request's headers, and an idle keep-alive
/// connection may wait for its next request, before it is closed.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Most connections a service keeps open at once; past it new ones are closed at once.
pub const MAX_CONNECTIONS: usize = 4_096;

/// Where a service listens.
///
/// The default is loopback; each service picks its port (`DEFAULT_PORT`) so that several can
/// run on one host with no flags.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs<const DEFAULT_PORT: u16> {
    /// Address to serve HTTP on (the service's API, /health, /ready, /metrics). Port 0 picks a
    /// free port, which is logged.
    #[arg(
        long = "listen",
        env = "CIRO_LISTEN",
        value_name = "ADDR:PORT",
        default_value_t = SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT))
    )]
    pub listen: SocketAddr,
}

/// `app` with the runtime's endpoints merged in and every request counted in `metrics`:
/// - `/health`: 200 while the process is up;
/// - `/ready`: runs `readiness`; 200 when every check passes, else 503, with the
///   [`crate::ReadinessReport`] as JSON either way (it names what failed and why: serve it to
///   operators, not to the public);
/// - `/metrics`: the registry in the Prometheus text format.
pub fn router(app: Router, metrics: &Metrics, readiness: Readiness) -> Router {
    let endpoints = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(render_metrics))
        .with_state(Endpoints {
            metrics: metrics.clone(),
            readiness,
        });
    app.merge(endpoints)
        .layer(axum::middleware::from_fn_with_state(
            metrics.clone(),
            track_requests,
        ))
}

/// Binds `listen` (logging the bound address), then serves `app` with the runtime's
/// endpoints ([`router`]) until `shutdown` is cancelled. [`Server`] splits the two steps for
/// a caller that needs the bound address itself.
pub async fn serve(
    listen: SocketAddr,
    app: Router,
    metrics: &Metrics,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> Result<()> {
    Server::bind(listen)
        .await?
        .serve(router(app, metrics, readiness), shutdown)
        .await
}

#[derive(Clone)]
struct Endpoints {
    metrics: Metrics,
    readiness: Readiness,
}

async fn health() -> &'static str {
    "ok\n"
}

async fn ready(State(endpoints): State<Endpoints>) -> Response {
    let report = endpoints.readiness.report().await;
    for check in &report.checks {
        endpoints.metrics.set_ready_check(&check.name, check.ok);
    }
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report)).into_response()
}

async fn render_metrics(State(endpoints): State<Endpoints>) -> Response {
    match endpoints.metrics.render() {
        Ok(text) => ([(header::CONTENT_TYPE, TEXT_CONTENT_TYPE)], text).into_response(),
        Err(err) => {
            tracing::error!("rendering /metrics: {err:#}");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// A connection's service: the router, with the peer's address in each request's extensions
/// (what `ConnectInfo<SocketAddr>` extracts).
#[derive(Clone)]
struct ConnectionService {
    router: Router,
    peer: SocketAddr,
}

impl tower_service::Service<axum::http::Request<hyper::body::Incoming>> for ConnectionService {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = <Router as tower_service::Service<axum::extract::Request>>::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        tower_service::Service::<axum::extract::Request>::poll_ready(&mut self.router, cx)
    }

    fn call(&mut self, request: axum::http::Request<hyper::body::Incoming>) -> Self::Future {
        let mut request = request.map(axum::body::Body::new);
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(self.peer));
        self.router.call(request)
    }
}

/// A bound listener, not serving yet: its address is known (useful with port 0).
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    address: SocketAddr,
    header_read_timeout: Duration,
    max_connections: usize,
}

impl Server {
    /// Binds `listen` and logs `listening on http://ADDR` with the bound address.
    pub async fn bind(listen: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        let address = listener.local_addr().context("reading the bound address")?;
        tracing::info!("listening on http://{address}");
        Ok(Self {
            listener,
            address,
            header_read_timeout: HEADER_READ_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
        })
    }

    /// Sets how long a connection may take to send a request's headers, or wait idle for its
    /// next request ([`HEADER_READ_TIMEOUT`]).
    pub fn with_header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// Sets the most connections kept open at once ([`MAX_CONNECTIONS`]).
    pub fn with_max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections.max(1);
        self
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// Serves `router` until `shutdown` is cancelled, then lets in-flight requests finish
    /// for up to [`DRAIN_TIMEOUT`]. Handlers may extract the peer's address
    /// (`ConnectInfo<SocketAddr>`), e.g. to rate-limit by client.
    ///
    /// A connection that takes longer than the header-read timeout to send a request's
    /// headers (or waits idle that long for its next one) is closed, and at most
    /// `max_connections` are open at once (past it a new one is closed at once): without
    /// these, connections that send nothing (or a byte now and then) would hold the process's
    /// file descriptors for ever, for anyone, without a request ever reaching a rate limit.
    pub async fn serve(self, router: Router, shutdown: CancellationToken) -> Result<()> {
        let slots = Arc::new(tokio::sync::Semaphore::new(self.max_connections));
        // Each connection's task holds a receiver: the sender sees them all closed.
        let (open_tx, open_rx) = tokio::sync::watch::channel(());
        let mut refused_at: Option<std::time::Instant> = None;
        let mut failed_at: Option<std::time::Instant> = None;
        loop {
            let (stream, peer) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of descriptors, or a connection reset before it was accepted:
                        // pause instead of spinning, and log it at most every 10 s.
                        if failed_at.is_none_or(|at| at.elapsed() > Duration::from_secs(10)) {
                            tracing::warn!(error = %e, "accepting a connection failed");
                            failed_at = Some(std::time::Instant::now());
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = shutdown.cancelled() => break,
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                if refused_at.is_none_or(|at| at.elapsed() > Duration::from_secs(10)) {
                    tracing::warn!(
                        max = self.max_connections,
                        "connections at their limit: new ones are closed"
                    );
                    refused_at = Some(std::time::Instant::now());
                }
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let service = ConnectionService {
                router: router.clone(),
                peer,
            };
            let header_read_timeout = self.header_read_timeout;
            let stopping = shutdown.clone();
            let open = open_rx.clone();
            tokio::spawn(async move {
                let _slot = slot;
                let _open = open;
                // HTTP/1 only: the header-read timer runs from the connection's first moment
                // (a version-sniffing server reads the first bytes with no timer at all, and
                // an idle HTTP/2 connection has none either). Clients reach the services over
                // HTTP/1.1; TLS and HTTP/2 are a proxy's.
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(header_read_timeout)
                    .serve_connection(
                        hyper_util::rt::TokioIo::new(stream),
                        hyper_util::service::TowerToHyperService::new(service),
                    );
                tokio::pin!(connection);
                tokio::select! {
                    served = connection.as_mut() => {
                        if let Err(e) = served {
                            tracing::trace!(%peer, error = %e, "connection ended");
                        }
                    }
                    () = stopping.cancelled() => {
                        connection.as_mut().graceful_shutdown();
                        let _ = connection.await;
                    }
                }
            });
        }
        // New connections are refused from now on, not left waiting in the backlog.
        drop(self.listener);
        drop(open_rx);
        tokio::select! {
            () = open_tx.closed() => {}
            () = tokio::time::sleep(DRAIN_TIMEOUT) => tracing::warn!("requests still running {DRAIN_TIMEOUT:?} after shutdown began: stopping anyway"),
        }
        tracing::info!("stopped serving http://{}", self.address);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;
    use clap::Parser;

    use super::*;
    use crate::ready::{ReadinessCheck, ReadinessReport};
    use crate::test_env::parse_with;

    struct Switch(bool);

    #[async_trait]
    impl ReadinessCheck for Switch {
        fn name(&self) -> &str {
            "switch"
        }

        async fn check(&self) -> Result<String> {
            anyhow::ensure!(self.0, "switched off");
            Ok("on".to_owned())
        }
    }

    /// Serves `readiness` and an app route on a free port; returns its base URL.
    async fn start(readiness: Readiness, shutdown: &CancellationToken) -> Result<String> {
        let metrics = Metrics::new("ciro-test", "0.0.0")?;
        let app = Router::new().route("/hello/{name}", get(|| async { "hello" }));
        let server = Server::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let url = format!("http://{}", server.local_addr());
        tokio::spawn(server.serve(router(app, &metrics, readiness), shutdown.clone()));
        Ok(url)
    }

    async fn get_ready(url: &str) -> Result<(StatusCode, ReadinessReport)> {
        let response = reqwest::get(format!("{url}/ready")).await?;
        Ok((response.status(), response.json().await?))
    }

    #[tokio::test]
    async fn ready_is_503_with_the_failing_check_named_and_200_when_all_pass() -> Result<()> {
        let shutdown = CancellationToken::new();
        let failing = start(Readiness::new().with_check(Switch(false)), &shutdown).await?;
        let (status, report) = get_ready(&failing).await?;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(!report.ready);
        assert_eq!(report.checks.len(), 1);
        assert_eq!(report.checks[0].name, "switch");
        assert!(!report.checks[0].ok);
        assert_eq!(report.checks[0].detail, "switched off");

        let passing = start(Readiness::new().with_check(Switch(true)), &shutdown).await?;
        let (status, report) = get_ready(&passing).await?;
        assert_eq!(status, StatusCode::OK);
        assert!(report.ready);
        assert_eq!(report.checks[0].detail, "on");
        shutdown.cancel();
        Ok(())
    }

    #[tokio::test]
    async fn health_app_routes_and_metrics_by_route_template() -> Result<()> {
        let shutdown = CancellationToken::new();
        let url = start(Readiness::new().with_check(Switch(false)), &shutdown).await?;
        let health = reqwest::get(format!("{url}/health")).await?;
        assert_eq!(health.status(), StatusCode::OK);
        assert_eq!(
            reqwest::get(format!("{url}/hello/ann"))
                .await?
                .text()
                .await?,
            "hello"
        );
        reqwest::get(format!("{url}/hello/bob")).await?;
        get_ready(&url).await?;
        let missing = reqwest::get(format!("{url}/nowhere")).await?;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);

        let metrics = reqwest::get(format!("{url}/metrics")).await?;
        assert_eq!(metrics.status(), StatusCode::OK);
        assert_eq!(
            metrics.headers()[header::CONTENT_TYPE].to_str()?,
            TEXT_CONTENT_TYPE
        );
        let text = metrics.text().await?;
        for line in [
            r#"ciro_http_requests_total{method="GET",route="/hello/{name}",status="200"} 2"#,
            r#"ciro_http_requests_total{method="GET",route="/health",status="200"} 1"#,
            r#"ciro_http_requests_total{method="GET",route="/ready",status="503"} 1"#,
            r#"ciro_http_requests_total{method="GET",route="unmatched",status="404"} 1"#,
            r#"ciro_ready_check_ok{check="switch"} 0"#,
        ] {
            assert!(text.contains(line), "no `{line}` in\n{text}");
        }
        shutdown.cancel();
        Ok(())
    }

    /// Connections that send no request (or half of one) must not hold the process's file
    /// descriptors for ever: one is closed once the header-read timeout passes, and past the
    /// limit of open connections new ones are closed at once, until some end.
    #[tokio::test]
    async fn silent_connections_are_closed_and_open_connections_are_bounded() -> Result<()> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        use tokio::net::TcpStream;
        let shutdown = CancellationToken::new();
        let metrics = Metrics::new("ciro-test", "0.0.0")?;
        let server = Server::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await?
            .with_header_read_timeout(Duration::from_millis(300))
            .with_max_connections(2);
        let address = server.local_addr();
        tokio::spawn(server.serve(
            router(Router::new(), &metrics, Readiness::new()),
            shutdown.clone(),
        ));
        let answered = |bytes: &[u8]| String::from_utf8_lossy(bytes).contains(" 200 OK");
        let mut buffer = [0u8; 512];

        // Nothing sent at all: closed after the timeout.
        let mut silent = TcpStream::connect(address).await?;
        let read = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buffer))
            .await
            .context("a connection sending nothing was not closed")?;
        assert!(!matches!(read, Ok(n) if answered(&buffer[..n])));
        drop(silent);

        // Half a request: closed after the timeout (at most an error status first).
        let mut slow = TcpStream::connect(address).await?;
        slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            .await?;
        let read = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut buffer))
            .await
            .context("a connection sending half a request was not closed")?;
        assert!(!matches!(read, Ok(n) if answered(&buffer[..n])));
        drop(slow);

        // Two silent connections take both places: a third is closed without an answer.
        let first = TcpStream::connect(address).await?;
        let second = TcpStream::connect(address).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut third = TcpStream::connect(address).await?;
        let _ = third
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .await;
        let read = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buffer))
            .await
            .context("a connection past the limit was kept open")?;
        assert!(
            !matches!(read, Ok(n) if answered(&buffer[..n])),
            "a connection past the limit was served"
        );
        // Once they end, the places are free again.
        drop((first, second));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let health = reqwest::get(format!("http://{address}/health")).await?;
        assert_eq!(health.status(), StatusCode::OK);
        shutdown.cancel();
        Ok(())
    }

    #[tokio::test]
    async fn serve_returns_once_shutdown_is_cancelled() -> Result<()> {
        let shutdown = CancellationToken::new();
        let address = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let metrics = Metrics::new("ciro-test", "0.0.0")?;
        let serving = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { serve(address, Router::new(), &metrics, Readiness::new(), shutdown).await }
        });
        let mut health = reqwest::get(format!("http://{address}/health")).await;
        for _ in 0..50 {
            if health.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            health = reqwest::get(format!("http://{address}/health")).await;
        }
        assert_eq!(health?.status(), StatusCode::OK);
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), serving).await???;
        assert!(tokio::net::TcpStream::connect(address).await.is_err());
        Ok(())
    }

    fn free_port() -> Result<u16> {
        Ok(std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port())
    }

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs<7070>,
    }

    fn listen(args: &[&str], env: &[(&str, &str)]) -> Result<SocketAddr> {
        parse_with(args, env, |cli: Cli| Ok(cli.serve.listen))
    }

    #[test]
    fn listen_defaults_to_loopback_on_the_services_port() -> Result<()> {
        assert_eq!(listen(&[], &[])?, "127.0.0.1:7070".parse()?);
        assert_eq!(
            listen(&[], &[("CIRO_LISTEN", "0.0.0.0:9000")])?,
            "0.0.0.0:9000".parse()?
        );
        assert_eq!(
            listen(&["--listen", "[::1]:0"], &[("CIRO_LISTEN", "0.0.0.0:9000")])?,
            "[::1]:0".parse()?
        );
        assert!(listen(&["--listen", "localhost"], &[]).is_err());
        Ok(())
    }
}
