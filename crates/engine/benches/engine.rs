//! The worker engine against Python TorchScript, in one run on one device:
//!
//! - (a) Python: `torch.jit.load`ed model, batch 1, one call after another;
//! - (b) the engine at batch 1: `infer_unbatched`, one request after another;
//! - (c) the engine with dynamic batching: 32 concurrent clients, each sending batch-1
//!   requests one after another through `infer`.
//!
//! - (d) a job (`execute`: a safetensors input to a hashed output), one after another, in
//!   this process;
//! - (e) the same jobs each in a sandboxed process of its own (the worker's default
//!   isolation: a process start, libtorch's start and a model load per job).
//!
//! Models (an MLP and a small transformer encoder) are made by `python/ciro_models.py` at
//! bench time. Prints throughput (rows/s), p50/p99 latency, and the ratios b/a and c/a
//! (targets: b/a >= 0.95, c/a >= 3), and e/d, what isolation costs (no target: it is the
//! price of a worker's key staying out of a model's reach).
//!
//! `cargo bench -p ciro-worker --bench engine` (after `source scripts/env.sh`). Environment:
//! `BENCH_SECONDS` (per measurement, default 3), `BENCH_DEVICE` (`cpu` or `cuda`, default:
//! CUDA when available), `BENCH_PYTHON` (the Python with torch).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ciro_engine::{Digest, Engine, EngineConfig, ModelSpec, ModelStore};
use serde_json::Value;
use tch::{Device, Kind, Tensor};

const CONCURRENCY: usize = 32;

struct Measured {
    throughput: f64,
    p50_us: f64,
    p99_us: f64,
}

fn percentile(sorted_us: &[f64], pct: usize) -> f64 {
    sorted_us[((sorted_us.len() * pct) / 100).min(sorted_us.len() - 1)]
}

fn summarize(mut latencies_us: Vec<f64>, rows: usize, elapsed: Duration) -> Measured {
    latencies_us.sort_by(f64::total_cmp);
    Measured {
        throughput: rows as f64 / elapsed.as_secs_f64(),
        p50_us: percentile(&latencies_us, 50),
        p99_us: percentile(&latencies_us, 99),
    }
}

fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("BENCH_PYTHON") {
        return PathBuf::from(python);
    }
    match std::env::var_os("VIRTUAL_ENV") {
        Some(venv) => Path::new(&venv).join("bin/python"),
        None => PathBuf::from("python3"),
    }
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python/ciro_models.py")
}

fn run_python(args: &[&str], device: Device) -> Result<Value> {
    let mut command = Command::new(python());
    command.arg(script()).args(args);
    if device == Device::Cpu {
        command.env("CUDA_VISIBLE_DEVICES", "");
    }
    let output = command
        .output()
        .with_context(|| format!("running {:?}", python()))?;
    if !output.status.success() {
        bail!(
            "ciro_models.py {args:?} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}

/// (b): one request after another, alone.
async fn engine_batch1(
    engine: &Engine,
    model: Digest,
    row: &Tensor,
    seconds: f64,
) -> Result<Measured> {
    for _ in 0..20 {
        let y = engine.infer_unbatched(model, row.shallow_clone()).await?;
        anyhow::ensure!(y.size()[0] == 1, "one row in, {:?} out", y.size());
    }
    let mut latencies = Vec::new();
    let started = Instant::now();
    while started.elapsed().as_secs_f64() < seconds {
        let t = Instant::now();
        let _row_out = engine.infer_unbatched(model, row.shallow_clone()).await?;
        latencies.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let rows = latencies.len();
    Ok(summarize(latencies, rows, started.elapsed()))
}

/// (c): `CONCURRENCY` clients, each one batch-1 request after another, batched by the engine.
async fn engine_dynamic(
    engine: Arc<Engine>,
    model: Digest,
    row: &Tensor,
    seconds: f64,
) -> Result<Measured> {
    let client = |deadline: Instant| {
        let engine = engine.clone();
        let row = row.copy();
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let _row_out = engine.infer(model, row.shallow_clone()).await?;
                latencies.push(t.elapsed().as_secs_f64() * 1e6);
            }
            Ok::<_, ciro_engine::EngineError>(latencies)
        })
    };
    // Warm-up round, then the measured one.
    for (round, secs) in [(0, 0.5), (1, seconds)] {
        let started = Instant::now();
        let deadline = started + Duration::from_secs_f64(secs);
        let clients: Vec<_> = (0..CONCURRENCY).map(|_| client(deadline)).collect();
        let mut latencies = Vec::new();
        for handle in clients {
            latencies.extend(handle.await??);
        }
        if round == 1 {
            let rows = latencies.len();
            return Ok(summarize(latencies, rows, started.elapsed()));
        }
    }
    unreachable!("the measured round returns")
}

/// (d) and (e): jobs one after another through `execute`, for at least `seconds` and 5 jobs.
async fn jobs(engine: &Engine, model: Digest, input: &[u8], seconds: f64) -> Result<Measured> {
    let expected = engine.execute(model, input).await?;
    let mut latencies = Vec::new();
    let started = Instant::now();
    while started.elapsed().as_secs_f64() < seconds || latencies.len() < 5 {
        let t = Instant::now();
        let output = engine.execute(model, input).await?;
        latencies.push(t.elapsed().as_secs_f64() * 1e6);
        anyhow::ensure!(
            output.output.len() == expected.output.len(),
            "another output"
        );
    }
    let rows = latencies.len();
    Ok(summarize(latencies, rows, started.elapsed()))
}

fn main() -> Result<()> {
    let seconds: f64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let device = match std::env::var("BENCH_DEVICE").as_deref() {
        Ok("cpu") => Device::Cpu,
        Ok("cuda") => Device::Cuda(0),
        _ => Device::cuda_if_available(),
    };
    let dir = tempfile::tempdir()?;
    let made = dir.path().join("made");
    std::fs::create_dir_all(&made)?;
    let described = run_python(
        &[
            "make",
            made.to_str().context("UTF-8 temp dir")?,
            "--size",
            "bench",
        ],
        device,
    )?;
    let store = Arc::new(ModelStore::open(dir.path().join("store"), 4)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let config = EngineConfig {
        device,
        max_batch: CONCURRENCY as i64,
        max_wait: Duration::from_millis(2),
        deterministic_seed: None,
        // The jobs measured are the benchmark's own: sharing passes is what it measures.
        batch_jobs: true,
        idle_unload: Duration::from_secs(60),
        max_output_bytes: ciro_engine::tensors::MAX_ENCODED_BYTES,
        isolation: None,
        pass_limit: None,
    };
    let engine = Arc::new(Engine::new(store.clone(), config.clone())?);

    println!(
        "device {device:?}; libtorch threads {}; torch {}; {seconds} s per measurement; dynamic batching: {CONCURRENCY} clients, max_batch {}, max_wait {:?}",
        tch::get_num_threads(),
        described["torch"].as_str().unwrap_or("?"),
        config.max_batch,
        config.max_wait
    );
    println!(
        "{:<8} {:<26} {:>12} {:>10} {:>10} {:>8}",
        "model", "path", "rows/s", "p50 us", "p99 us", "ratio"
    );
    for name in ["mlp", "encoder"] {
        let row_shape: Vec<i64> = described[name]["row_shape"]
            .as_array()
            .context("row_shape")?
            .iter()
            .filter_map(Value::as_i64)
            .collect();
        let spec = ModelSpec {
            input_shape: row_shape.clone(),
            input_dtype: "F32".into(),
            max_batch: 256,
        };
        let model = store.insert_file(&made.join(format!("{name}.pt")), &spec)?;
        let mut shape = vec![1];
        shape.extend(&row_shape);
        let row = Tensor::randn(shape.as_slice(), (Kind::Float, Device::Cpu));

        let row_shape_arg = row_shape
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let model_path = made.join(format!("{name}.pt"));
        // Python gets about the same wall time: iterations from a short calibration run.
        let calibrate = run_python(
            &[
                "bench",
                model_path.to_str().context("UTF-8")?,
                "--row-shape",
                &row_shape_arg,
                "--iters",
                "50",
                "--warmup",
                "10",
            ],
            device,
        )?;
        let iters = ((calibrate["throughput"].as_f64().unwrap_or(100.0) * seconds) as usize)
            .max(50)
            .to_string();
        let py = run_python(
            &[
                "bench",
                model_path.to_str().context("UTF-8")?,
                "--row-shape",
                &row_shape_arg,
                "--iters",
                &iters,
                "--warmup",
                "20",
            ],
            device,
        )?;
        let a = Measured {
            throughput: py["throughput"].as_f64().context("python throughput")?,
            p50_us: py["p50_us"].as_f64().context("python p50")?,
            p99_us: py["p99_us"].as_f64().context("python p99")?,
        };
        let b = runtime.block_on(engine_batch1(&engine, model, &row, seconds))?;
        let c = runtime.block_on(engine_dynamic(engine.clone(), model, &row, seconds))?;

        let line = |path: &str, m: &Measured, ratio: Option<f64>| {
            let ratio = ratio.map_or(String::from("-"), |r| format!("{r:.2}x"));
            println!(
                "{name:<8} {path:<26} {:>12.1} {:>10.1} {:>10.1} {:>8}",
                m.throughput, m.p50_us, m.p99_us, ratio
            );
        };
        line("(a) python, batch 1", &a, None);
        line("(b) engine, batch 1", &b, Some(b.throughput / a.throughput));
        line(
            &format!("(c) engine, dynamic x{CONCURRENCY}"),
            &c,
            Some(c.throughput / a.throughput),
        );
        // Made here, after (b) and (c): an engine's idle inference thread is not measured.
        let alone = Engine::new(
            store.clone(),
            EngineConfig {
                batch_jobs: false,
                ..config.clone()
            },
        )?;
        let isolated = Engine::new(
            store.clone(),
            EngineConfig {
                batch_jobs: false,
                isolation: Some(ciro_engine::Isolation::new(
                    env!("CARGO_BIN_EXE_ciro-pass"),
                    &[],
                )),
                ..config.clone()
            },
        )?;
        let input = ciro_engine::tensors::encode_input(&row)?;
        let d = runtime.block_on(jobs(&alone, model, &input, seconds))?;
        let e = runtime.block_on(jobs(&isolated, model, &input, seconds))?;
        line("(d) job, in process", &d, None);
        line(
            "(e) job, sandboxed process",
            &e,
            Some(e.throughput / d.throughput),
        );
    }
    let (batches, requests, rows) = engine.stats().snapshot();
    println!("engine ran {batches} forward passes for {requests} requests ({rows} rows)");
    Ok(())
}
