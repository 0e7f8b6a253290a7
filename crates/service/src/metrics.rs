//! One Prometheus registry per service: the runtime's own metrics, and whatever the service
//! registers into [`Metrics::registry`].
//!
//! The runtime's metrics:
//! - `ciro_build_info{service, version}`: always 1 while the process is up;
//! - `ciro_http_requests_total{method, route, status}` and
//!   `ciro_http_request_duration_seconds{method, route, status}`: every HTTP request, by its
//!   route template (`/jobs/{id}`, never the concrete path, so that the label set stays
//!   bounded; `unmatched` for requests no route took);
//! - `ciro_ready_check_ok{check}`: 1 or 0, what the last `/ready` found for each check.

use std::time::Instant;

use anyhow::{Context, Result};
use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// The `Content-Type` of the Prometheus text exposition format.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A service's registry and the runtime's metrics in it. Cloning shares them.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    ready_checks: IntGaugeVec,
}

impl Metrics {
    /// A registry holding the runtime's metrics, with `ciro_build_info` set for `service`
    /// at `version`.
    pub fn new(service: &str, version: &str) -> Result<Self> {
        let registry = Registry::new();
        let build_info = IntGauge::with_opts(
            Opts::new("ciro_build_info", "Always 1: the service and its version.")
                .const_label("service", service)
                .const_label("version", version),
        )?;
        build_info.set(1);
        let requests = IntCounterVec::new(
            Opts::new("ciro_http_requests_total", "HTTP requests served."),
            &["method", "route", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "ciro_http_request_duration_seconds",
                "Time to produce an HTTP response, in seconds.",
            ),
            &["method", "route", "status"],
        )?;
        let ready_checks = IntGaugeVec::new(
            Opts::new(
                "ciro_ready_check_ok",
                "1 if the readiness check passed when /ready last ran it, else 0.",
            ),
            &["check"],
        )?;
        for metric in [
            Box::new(build_info) as Box<dyn prometheus::core::Collector>,
            Box::new(requests.clone()),
            Box::new(latency.clone()),
            Box::new(ready_checks.clone()),
        ] {
            registry
                .register(metric)
                .context("registering the runtime's metrics")?;
        }
        Ok(Self {
            registry,
            requests,
            latency,
            ready_checks,
        })
    }

    /// The registry a service adds its own metrics to (`registry().register(Box::new(..))`).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Every registered metric in the Prometheus text format.
    pub fn render(&self) -> Result<String> {
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .context("encoding the metrics")?;
        String::from_utf8(buffer).context("the metrics are not UTF-8")
    }

    /// Records what a readiness check found.
    pub(crate) fn set_ready_check(&self, check: &str, ok: bool) {
        self.ready_checks
            .with_label_values(&[check])
            .set(i64::from(ok));
    }

    fn observe(&self, method: &Method, route: &str, status: u16, started: Instant) {
        let status = status.to_string();
        let labels = [method_label(method), route, &status];
        self.requests.with_label_values(&labels).inc();
        self.latency
            .with_label_values(&labels)
            .observe(started.elapsed().as_secs_f64());
    }
}

/// The standard methods by name, anything else as `other`: a client cannot grow the label set.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// Axum middleware counting and timing each request (install with
/// `axum::middleware::from_fn_with_state(metrics, track_requests)` through `Router::layer`,
/// which runs it after routing, so that the matched route is known).
pub async fn track_requests(
    State(metrics): State<Metrics>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    metrics.observe(&method, &route, response.status().as_u16(), started);
    response
}

#[cfg(test)]
mod tests {
    use prometheus::IntCounter;

    use super::*;

    #[test]
    fn renders_build_info_and_what_the_service_registers() {
        let metrics = Metrics::new("ciro-test", "1.2.3").unwrap();
        let jobs = IntCounter::new("ciro_test_jobs_total", "Jobs.").unwrap();
        metrics.registry().register(Box::new(jobs.clone())).unwrap();
        jobs.inc_by(2);
        metrics.observe(&Method::GET, "/jobs/{id}", 200, Instant::now());
        metrics.observe(
            &Method::from_bytes(b"BREW").unwrap(),
            "unmatched",
            404,
            Instant::now(),
        );
        let text = metrics.render().unwrap();
        assert!(
            text.contains(r#"ciro_build_info{service="ciro-test",version="1.2.3"} 1"#),
            "{text}"
        );
        assert!(text.contains("ciro_test_jobs_total 2"), "{text}");
        assert!(
            text.contains(
                r#"ciro_http_requests_total{method="GET",route="/jobs/{id}",status="200"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"ciro_http_requests_total{method="other",route="unmatched",status="404"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains("# TYPE ciro_http_request_duration_seconds histogram"),
            "{text}"
        );
    }

    #[test]
    fn a_metric_name_cannot_be_registered_twice() {
        let metrics = Metrics::new("ciro-test", "0").unwrap();
        let again = IntGauge::new("ciro_ready_check_ok", "again").unwrap();
        assert!(metrics.registry().register(Box::new(again)).is_err());
    }
}
