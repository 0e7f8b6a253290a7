//! The API fuzzed from its own OpenAPI document with `schemathesis` (PyPI; scripts/setup.sh
//! installs it in `$CIRO_CACHE_DIR/fuzz-venv`): every operation, generated and boundary
//! inputs, against a coordinator indexing a devnet with a model, a worker and jobs. No answer
//! may be a 5xx, and every answer must be one the document declares.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use ciro_tests::system::*;
use ciro_tests::Actor;
use common::{eventually, Options, Running};

fn schemathesis() -> PathBuf {
    let cache = std::env::var("CIRO_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/ciro")
        });
    let bin = cache.join("fuzz-venv/bin/schemathesis");
    assert!(
        bin.exists(),
        "{} is missing: run scripts/setup.sh (it installs schemathesis from PyPI)",
        bin.display()
    );
    bin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_api_answers_fuzzed_requests_without_a_server_error() {
    let bin = schemathesis();
    let s = System::deploy().await.expect("deploy");
    let c = Running::start(&s, Options::default()).await;
    // Something to find: a model, a worker, a finalized job and a queued one.
    let model = s.model().await;
    s.active_worker(Actor::WorkerA).await;
    let done = s.job(model).await;
    s.complete(done, Actor::WorkerA).await;
    s.job(model).await;
    eventually("the jobs are indexed", Duration::from_secs(60), || async {
        c.client().job(2).await.ok()
    })
    .await;
    let report = c.dir.path().join("fuzz-report");
    let output = tokio::process::Command::new(bin)
        .arg("run")
        .arg(format!("{}/openapi.json", c.base))
        .args(["--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"])
        // The event streams never end by design: their behaviour is the lifecycle test's.
        .args(["--exclude-path-regex", "/events$"])
        .args(["--max-examples", "25", "--seed", "1", "--workers", "4"])
        .args(["--request-timeout", "20", "--no-color"])
        .arg("--report-dir")
        .arg(&report)
        .output()
        .await
        .expect("running schemathesis");
    let text = String::from_utf8_lossy(&output.stdout);
    println!("{text}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "schemathesis found failures (above)"
    );
    c.stop().await;
}
