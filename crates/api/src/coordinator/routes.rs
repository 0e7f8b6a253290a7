//! The coordinator's routes, in one place: the server's router mounts these templates (axum's
//! `{param}` syntax) and the client fills them with the builders below, so the two cannot
//! drift. [`ROUTES`] lists each with its method and whether a signature is required.

use std::fmt::Display;

use crate::wire::{Digest, Felt};

/// Liveness: the process is up (no dependency checked).
pub const HEALTH: &str = "/health";
/// Readiness: the chain node and the database answer and the indexer is not too far behind.
pub const READY: &str = "/ready";
/// Prometheus metrics.
pub const METRICS: &str = "/metrics";
/// The OpenAPI document of the REST API.
pub const OPENAPI: &str = "/openapi.json";

/// The live dashboard (an HTML page on the public API below).
pub const DASHBOARD: &str = "/";

/// A blob: `PUT` the raw bytes (the digest must be their SHA-256), `GET` them back.
pub const BLOB: &str = "/v1/blobs/{digest}";
/// A blob's metadata ([`super::types::BlobInfo`]).
pub const BLOB_META: &str = "/v1/blobs/{digest}/meta";
/// Registered models, paginated.
pub const MODELS: &str = "/v1/models";
/// One model by its on-chain id.
pub const MODEL: &str = "/v1/models/{model_id}";
/// Jobs, filtered by submitter, worker or state, paginated.
pub const JOBS: &str = "/v1/jobs";
/// One job: chain state, data availability and why it is not matched yet.
pub const JOB: &str = "/v1/jobs/{job_id}";
/// Server-sent events: one job's state changes.
pub const JOB_EVENTS: &str = "/v1/jobs/{job_id}/events";
/// The assigned worker uploads a job's output (raw bytes whose SHA-256 is the digest).
pub const JOB_OUTPUT: &str = "/v1/jobs/{job_id}/output/{digest}";
/// A batch's inputs in one body, in its input manifest's order ([`super::items`]): its
/// submitter, its worker and, while it is disputed, JobMgr's arbiters read them (`?from=N`:
/// from position N on).
pub const JOB_INPUTS: &str = "/v1/jobs/{job_id}/inputs";
/// A batch's outputs in one body, in its output manifest's order ([`super::items`]): the
/// assigned worker `PUT`s them once its output manifest is uploaded ([`JOB_OUTPUT`]); the
/// submitter, the worker and, while it is disputed, JobMgr's arbiters `GET` them.
pub const JOB_OUTPUTS: &str = "/v1/jobs/{job_id}/outputs";
/// A job's signed receipt: the assigned worker `PUT`s it, anyone `GET`s it.
pub const JOB_RECEIPT: &str = "/v1/jobs/{job_id}/receipt";
/// A disputed job's evidence: the blob its disputer uploaded whose SHA-256 begins with the
/// 31 bytes the chain records ([`super::types::BlobInfo`]; its bytes are read from [`BLOB`]
/// by the job's submitter, worker and disputer, and by JobMgr's arbiters).
pub const JOB_EVIDENCE: &str = "/v1/jobs/{job_id}/evidence";
/// The assigned worker gives a job back (it cannot run it): the coordinator releases it.
pub const JOB_RELEASE: &str = "/v1/jobs/{job_id}/release";
/// Server-sent events: state changes of every job of one submitter.
pub const SUBMITTER_EVENTS: &str = "/v1/submitters/{address}/events";
/// Server-sent events: every job's state changes (after `?after=N` or `Last-Event-ID`).
pub const EVENTS: &str = "/v1/events";
/// The network at a glance: jobs by state, workers, the last minutes' flow and latencies, and
/// the contracts' accounting totals.
pub const STATS: &str = "/v1/stats";
/// Workers, filtered by state or liveness, paginated.
pub const WORKERS: &str = "/v1/workers";
/// One worker by its account address.
pub const WORKER: &str = "/v1/workers/{address}";
/// A worker's heartbeat to the coordinator (signed by that worker).
pub const WORKER_HEARTBEAT: &str = "/v1/workers/{address}/heartbeat";
/// A worker's long-poll for its assignments (signed by that worker).
pub const WORKER_ASSIGNMENTS: &str = "/v1/workers/{address}/assignments";

/// An HTTP method the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HttpMethod {
    /// `GET`.
    Get,
    /// `POST`.
    Post,
    /// `PUT`.
    Put,
}

impl HttpMethod {
    /// The method's name, as it is sent and signed.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
        }
    }

    /// The method as the `http` crate's type (shared by reqwest and axum).
    pub fn to_http(self) -> reqwest::Method {
        match self {
            Self::Get => reqwest::Method::GET,
            Self::Post => reqwest::Method::POST,
            Self::Put => reqwest::Method::PUT,
        }
    }
}

/// Whether a route needs a signed request ([`super::auth`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Anyone, unsigned.
    Public,
    /// Public for public data (model files), signed for private data (a job's input, only
    /// for its submitter and assigned worker; its output, only for its submitter and worker).
    SignedIfPrivate,
    /// Always signed; the server then checks the signer may do it.
    Signed,
}

/// One route of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The method.
    pub method: HttpMethod,
    /// The path template.
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    /// One line on what it does (for the OpenAPI document and the README).
    pub summary: &'static str,
}

const fn route(
    method: HttpMethod,
    path: &'static str,
    access: Access,
    summary: &'static str,
) -> Route {
    Route {
        method,
        path,
        access,
        summary,
    }
}

/// Every route of the versioned API (the operational `/health`, `/ready`, `/metrics` and
/// `/openapi.json` are public `GET`s beside them).
pub const ROUTES: &[Route] = {
    use Access::*;
    use HttpMethod::*;
    &[
        route(
            Put,
            BLOB,
            Signed,
            "Upload a blob (raw body; digest = its SHA-256)",
        ),
        route(Get, BLOB, SignedIfPrivate, "Download a blob"),
        route(
            Get,
            BLOB_META,
            SignedIfPrivate,
            "A blob's size and latest upload time (404 for a blob the caller may not read)",
        ),
        route(Get, MODELS, Public, "List registered models"),
        route(Get, MODEL, Public, "Get a model"),
        route(Get, JOBS, Public, "List jobs by submitter, worker or state"),
        route(
            Get,
            JOB,
            Public,
            "Get a job, its data availability and why it is unmatched",
        ),
        route(
            Get,
            JOB_EVENTS,
            Public,
            "Stream a job's state changes (SSE)",
        ),
        route(
            Put,
            JOB_OUTPUT,
            Signed,
            "Upload a job's output (assigned worker)",
        ),
        route(
            Get,
            JOB_INPUTS,
            Signed,
            "Download a batch's inputs in one body (submitter, worker; arbiters while disputed)",
        ),
        route(
            Put,
            JOB_OUTPUTS,
            Signed,
            "Upload a batch's outputs in one body (assigned worker, after the output manifest)",
        ),
        route(
            Get,
            JOB_OUTPUTS,
            Signed,
            "Download a batch's outputs in one body (submitter, worker; arbiters while disputed)",
        ),
        route(
            Put,
            JOB_RECEIPT,
            Signed,
            "Upload a job's signed receipt (assigned worker)",
        ),
        route(Get, JOB_RECEIPT, Public, "Get a job's signed receipt"),
        route(
            Get,
            JOB_EVIDENCE,
            Public,
            "Find a disputed job's evidence blob (its digest and size)",
        ),
        route(
            Post,
            JOB_RELEASE,
            Signed,
            "Give an assigned job back (assigned worker): the coordinator releases it",
        ),
        route(
            Get,
            SUBMITTER_EVENTS,
            Public,
            "Stream a submitter's job state changes (SSE)",
        ),
        route(
            Get,
            EVENTS,
            Public,
            "Stream every job's state changes (SSE)",
        ),
        route(
            Get,
            STATS,
            Public,
            "The network at a glance: jobs by state, workers, recent flow and latency, accounting",
        ),
        route(Get, WORKERS, Public, "List workers"),
        route(Get, WORKER, Public, "Get a worker"),
        route(
            Post,
            WORKER_HEARTBEAT,
            Signed,
            "Worker heartbeat (that worker)",
        ),
        route(
            Get,
            WORKER_ASSIGNMENTS,
            Signed,
            "Long-poll for assignments (that worker)",
        ),
    ]
};

/// The route of `method` on `path` template, if the API has one.
pub fn find(method: HttpMethod, path: &str) -> Option<&'static Route> {
    ROUTES
        .iter()
        .find(|route| route.method == method && route.path == path)
}

/// `template` with each `{name}` replaced by its value.
fn fill(template: &str, params: &[(&str, &dyn Display)]) -> String {
    params
        .iter()
        .fold(template.to_owned(), |path, (name, value)| {
            path.replace(&format!("{{{name}}}"), &value.to_string())
        })
}

/// Path of [`BLOB`].
pub fn blob(digest: &Digest) -> String {
    fill(BLOB, &[("digest", digest)])
}

/// Path of [`BLOB_META`].
pub fn blob_meta(digest: &Digest) -> String {
    fill(BLOB_META, &[("digest", digest)])
}

/// Path of [`MODEL`].
pub fn model(model_id: u64) -> String {
    fill(MODEL, &[("model_id", &model_id)])
}

/// Path of [`JOB`].
pub fn job(job_id: u64) -> String {
    fill(JOB, &[("job_id", &job_id)])
}

/// Path of [`JOB_EVENTS`].
pub fn job_events(job_id: u64) -> String {
    fill(JOB_EVENTS, &[("job_id", &job_id)])
}

/// Path of [`JOB_OUTPUT`].
pub fn job_output(job_id: u64, digest: &Digest) -> String {
    fill(JOB_OUTPUT, &[("job_id", &job_id), ("digest", digest)])
}

/// Path of [`JOB_INPUTS`].
pub fn job_inputs(job_id: u64) -> String {
    fill(JOB_INPUTS, &[("job_id", &job_id)])
}

/// Path of [`JOB_OUTPUTS`].
pub fn job_outputs(job_id: u64) -> String {
    fill(JOB_OUTPUTS, &[("job_id", &job_id)])
}

/// Path of [`JOB_EVIDENCE`].
pub fn job_evidence(job_id: u64) -> String {
    fill(JOB_EVIDENCE, &[("job_id", &job_id)])
}

/// Path of [`JOB_RELEASE`].
pub fn job_release(job_id: u64) -> String {
    fill(JOB_RELEASE, &[("job_id", &job_id)])
}

/// Path of [`JOB_RECEIPT`].
pub fn job_receipt(job_id: u64) -> String {
    fill(JOB_RECEIPT, &[("job_id", &job_id)])
}

/// Path of [`SUBMITTER_EVENTS`].
pub fn submitter_events(address: Felt) -> String {
    fill(SUBMITTER_EVENTS, &[("address", &HexFelt(address))])
}

/// Path of [`WORKER`].
pub fn worker(address: Felt) -> String {
    fill(WORKER, &[("address", &HexFelt(address))])
}

/// Path of [`WORKER_HEARTBEAT`].
pub fn worker_heartbeat(address: Felt) -> String {
    fill(WORKER_HEARTBEAT, &[("address", &HexFelt(address))])
}

/// Path of [`WORKER_ASSIGNMENTS`].
pub fn worker_assignments(address: Felt) -> String {
    fill(WORKER_ASSIGNMENTS, &[("address", &HexFelt(address))])
}

/// An address in a path: `0x`-hex, as everywhere on the wire.
struct HexFelt(Felt);

impl Display for HexFelt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_fill_every_placeholder_of_their_template() {
        let digest = Digest::of(b"model");
        let address = Felt::from(0xabcu32);
        let built = [
            (BLOB, blob(&digest)),
            (BLOB_META, blob_meta(&digest)),
            (MODEL, model(7)),
            (JOB, job(42)),
            (JOB_EVENTS, job_events(42)),
            (JOB_OUTPUT, job_output(42, &digest)),
            (JOB_RECEIPT, job_receipt(42)),
            (JOB_INPUTS, job_inputs(42)),
            (JOB_OUTPUTS, job_outputs(42)),
            (JOB_EVIDENCE, job_evidence(42)),
            (JOB_RELEASE, job_release(42)),
            (SUBMITTER_EVENTS, submitter_events(address)),
            (WORKER, worker(address)),
            (WORKER_HEARTBEAT, worker_heartbeat(address)),
            (WORKER_ASSIGNMENTS, worker_assignments(address)),
        ];
        for (template, path) in &built {
            assert!(
                !path.contains(['{', '}']),
                "{template} left a placeholder: {path}"
            );
            // Same shape: as many segments, and the fixed ones equal.
            let (a, b): (Vec<_>, Vec<_>) =
                (template.split('/').collect(), path.split('/').collect());
            assert_eq!(a.len(), b.len(), "{template} vs {path}");
            for (t, p) in a.iter().zip(&b) {
                if !t.starts_with('{') {
                    assert_eq!(t, p, "{template} vs {path}");
                }
            }
        }
        assert_eq!(
            job_output(42, &digest),
            format!("/v1/jobs/42/output/{digest}")
        );
        assert_eq!(worker(address), "/v1/workers/0xabc");
        // Every templated route has a builder, and every route is listed once.
        for route in ROUTES {
            assert!(
                !route.path.contains('{') || built.iter().any(|(t, _)| *t == route.path),
                "no builder for {}",
                route.path
            );
            assert_eq!(find(route.method, route.path), Some(route));
        }
        let mut keys: Vec<_> = ROUTES.iter().map(|r| (r.method.as_str(), r.path)).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), ROUTES.len(), "a route is listed twice");
    }
}
