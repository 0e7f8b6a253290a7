//! The HTTP server every service runs: its own routes plus `/health`, `/ready` and
//! `/metrics`, on one listen address, stopped gracefully by the shutdown token.

use std::future::IntoFuture;
use std::net::SocketAddr;
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

/// A bound listener, not serving yet: its address is known (useful with port 0).
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    address: SocketAddr,
}

impl Server {
    /// Binds `listen` and logs `listening on http://ADDR` with the bound address.
    pub async fn bind(listen: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        let address = listener.local_addr().context("reading the bound address")?;
        tracing::info!("listening on http://{address}");
        Ok(Self { listener, address })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// Serves `router` until `shutdown` is cancelled, then lets in-flight requests finish
    /// for up to [`DRAIN_TIMEOUT`]. Handlers may extract the peer's address
    /// (`ConnectInfo<SocketAddr>`), e.g. to rate-limit by client.
    pub async fn serve(self, router: Router, shutdown: CancellationToken) -> Result<()> {
        let stopping = shutdown.clone();
        let server = axum::serve(
            self.listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { stopping.cancelled().await })
        .into_future();
        tokio::pin!(server);
        tokio::select! {
            served = &mut server => served.context("serving HTTP")?,
            () = async {
                shutdown.cancelled().await;
                tokio::time::sleep(DRAIN_TIMEOUT).await;
            } => tracing::warn!("requests still running {DRAIN_TIMEOUT:?} after shutdown began: stopping anyway"),
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
