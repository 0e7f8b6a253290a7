//! The inference engine on CPU: results equal Python's; each invalid model or input gets its
//! own error; dynamic batching hands each caller its own rows; deterministic mode repeats
//! output hashes; the model cache is bounded.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ciro_engine::tensors::{decode_input, encode_input};
use ciro_engine::{Digest, Engine, EngineConfig, EngineError, ModelSpec, ModelStore};
use common::{max_abs_diff, sample, shape, shared_models};
use serde_json::Value;
use tch::{Device, Kind, Tensor};

struct Fixture {
    _dir: tempfile::TempDir,
    described: &'static Value,
    models: &'static std::path::Path,
    store: Arc<ModelStore>,
    mlp: Digest,
    encoder: Digest,
}

fn fixture(cache_capacity: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (models, described) = shared_models();
    let models = models.as_path();
    let store = Arc::new(ModelStore::open(dir.path().join("store"), cache_capacity).unwrap());
    let add = |name: &str, max_batch| {
        let spec = ModelSpec {
            input_shape: shape(&described[name]["row_shape"]),
            input_dtype: "F32".into(),
            max_batch,
        };
        store
            .insert_file(&models.join(format!("{name}.pt")), &spec)
            .unwrap()
    };
    let mlp = add("mlp", 16);
    let encoder = add("encoder", 16);
    Fixture {
        _dir: dir,
        described,
        models,
        store,
        mlp,
        encoder,
    }
}

impl Fixture {
    /// The size of model `hash`'s file in the fixture's store.
    fn file_size(&self, hash: &Digest) -> u64 {
        std::fs::metadata(self._dir.path().join("store").join(format!("{hash}.pt")))
            .unwrap()
            .len()
    }

    /// Adds the fixture's MLP and encoder files, with their specs, to `store`.
    fn copy_models(&self, store: &ModelStore) {
        for (name, hash) in [("mlp", &self.mlp), ("encoder", &self.encoder)] {
            let spec = self.store.load(hash, Device::Cpu).unwrap().spec.clone();
            store
                .insert_file(&self.models.join(format!("{name}.pt")), &spec)
                .unwrap();
        }
    }
}

fn cpu(max_batch: i64, max_wait: Duration) -> EngineConfig {
    EngineConfig {
        device: Device::Cpu,
        max_batch,
        max_wait,
        deterministic_seed: None,
        batch_jobs: true,
        idle_unload: Duration::from_secs(60),
        max_output_bytes: ciro_engine::tensors::MAX_ENCODED_BYTES,
        isolation: None,
        pass_limit: None,
    }
}

#[tokio::test]
async fn execute_matches_python_and_hashes_what_it_returns() {
    let f = fixture(4);
    let engine = Engine::new(f.store.clone(), cpu(16, Duration::from_millis(1))).unwrap();
    for (name, hash) in [("mlp", f.mlp), ("encoder", f.encoder)] {
        let (x, expected) = sample(f.models, f.described, name);
        let input = encode_input(&x).unwrap();

        let output = engine.execute(hash, &input).await.unwrap();

        assert_eq!(output.input_hash, Digest::of(&input));
        assert_eq!(output.output_hash, Digest::of(&output.output));
        let y = decode_input(&output.output).unwrap();
        let diff = max_abs_diff(&y, &expected);
        assert!(diff <= 1e-5, "{name}: max |engine - python| = {diff}");
    }
}

#[test]
fn the_default_device_is_what_libtorch_sees() {
    let expected = if tch::Cuda::is_available() {
        tch::Device::Cuda(0)
    } else {
        tch::Device::Cpu
    };
    assert_eq!(ciro_engine::default_device(), expected);
}

#[tokio::test]
async fn unknown_model_is_reported_by_hash() {
    let f = fixture(4);
    let engine = Engine::new(f.store.clone(), cpu(16, Duration::ZERO)).unwrap();
    let missing = Digest::of(b"no such model");
    let result = engine
        .infer(missing, Tensor::zeros([1, 16], (Kind::Float, Device::Cpu)))
        .await;
    assert!(
        matches!(result, Err(EngineError::UnknownModel(h)) if h == missing),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_tampered_model_file_is_a_hash_mismatch() {
    let f = fixture(4);
    let path = f.store_path(f.mlp);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let engine = Engine::new(f.store.clone(), cpu(16, Duration::ZERO)).unwrap();

    let result = engine
        .infer(f.mlp, Tensor::zeros([1, 16], (Kind::Float, Device::Cpu)))
        .await;

    match result {
        Err(EngineError::HashMismatch { expected, actual }) => {
            assert_eq!(expected, f.mlp);
            assert_eq!(actual, Digest::of(&bytes));
        }
        other => panic!("expected a hash mismatch, got {other:?}"),
    }
    // The damaged file is removed: the store no longer holds the model, so the worker fetches
    // it again instead of refusing every later job of it.
    assert!(!f.store.contains(&f.mlp));
    assert!(!path.exists());
    assert!(matches!(
        engine
            .infer(f.mlp, Tensor::zeros([1, 16], (Kind::Float, Device::Cpu)))
            .await,
        Err(EngineError::UnknownModel(_))
    ));
}

impl Fixture {
    fn store_path(&self, hash: Digest) -> std::path::PathBuf {
        self._dir.path().join("store").join(format!("{hash}.pt"))
    }
}

#[tokio::test]
async fn a_file_with_the_right_hash_that_is_not_torchscript_is_corrupt() {
    let f = fixture(4);
    let spec = ModelSpec {
        input_shape: vec![16],
        input_dtype: "F32".into(),
        max_batch: 4,
    };
    let junk = f.store.insert(b"not a zip archive at all", &spec).unwrap();
    let engine = Engine::new(f.store.clone(), cpu(16, Duration::ZERO)).unwrap();
    let result = engine
        .infer(junk, Tensor::zeros([1, 16], (Kind::Float, Device::Cpu)))
        .await;
    assert!(
        matches!(result, Err(EngineError::CorruptModel { hash, .. }) if hash == junk),
        "{result:?}"
    );
}

#[tokio::test]
async fn invalid_inputs_each_get_their_own_error() {
    let f = fixture(4);
    let engine = Engine::new(f.store.clone(), cpu(8, Duration::ZERO)).unwrap();
    let float = (Kind::Float, Device::Cpu);

    let wrong_shape = engine.infer(f.mlp, Tensor::zeros([2, 15], float)).await;
    assert!(
        matches!(&wrong_shape, Err(EngineError::WrongShape { expected, actual }) if expected == &[16] && actual == &[2, 15]),
        "{wrong_shape:?}"
    );
    let wrong_rank = engine.infer(f.mlp, Tensor::zeros([16], float)).await;
    assert!(
        matches!(wrong_rank, Err(EngineError::WrongShape { .. })),
        "{wrong_rank:?}"
    );

    let wrong_dtype = engine
        .infer(f.mlp, Tensor::zeros([2, 16], (Kind::Double, Device::Cpu)))
        .await;
    assert!(
        matches!(&wrong_dtype, Err(EngineError::WrongDtype { expected, actual }) if expected == "F32" && actual == "F64"),
        "{wrong_dtype:?}"
    );

    let empty = engine.infer(f.mlp, Tensor::zeros([0, 16], float)).await;
    assert!(matches!(empty, Err(EngineError::EmptyInput)), "{empty:?}");

    // The engine's limit (8) is below the model's (16): the lower one applies.
    let oversized = engine.infer(f.mlp, Tensor::zeros([9, 16], float)).await;
    assert!(
        matches!(
            oversized,
            Err(EngineError::BatchTooLarge { rows: 9, max: 8 })
        ),
        "{oversized:?}"
    );

    let not_safetensors = engine.execute(f.mlp, b"{\"not\": \"safetensors\"}").await;
    assert!(
        matches!(not_safetensors, Err(EngineError::InvalidInput(_))),
        "{not_safetensors:?}"
    );
}

#[tokio::test]
async fn concurrent_requests_are_batched_and_each_caller_gets_its_own_rows() {
    let f = fixture(4);
    // A long max_wait makes the batch fill up to max_batch rows.
    let engine =
        Arc::new(Engine::new(f.store.clone(), cpu(16, Duration::from_millis(200))).unwrap());
    let requests: Vec<Tensor> = (0..12)
        .map(|i| Tensor::randn([1 + i % 3, 16], (Kind::Float, Device::Cpu)))
        .collect();
    let expected: Vec<Tensor> = {
        let mut out = Vec::new();
        for x in &requests {
            out.push(
                engine
                    .infer_unbatched(f.mlp, x.shallow_clone())
                    .await
                    .unwrap(),
            );
        }
        out
    };
    let (batches_before, requests_before, _) = engine.stats().snapshot();

    let handles: Vec<_> = requests
        .iter()
        .map(|x| {
            let engine = engine.clone();
            let x = x.copy();
            let hash = f.mlp;
            tokio::spawn(async move { engine.infer(hash, x).await })
        })
        .collect();
    let mut results = Vec::new();
    for handle in handles {
        results.push(handle.await.unwrap().unwrap());
    }

    for (i, (got, want)) in results.iter().zip(&expected).enumerate() {
        assert_eq!(
            got.size(),
            want.size(),
            "request {i} got another request's rows"
        );
        let diff = max_abs_diff(got, want);
        assert!(
            diff <= 1e-5,
            "request {i}: batched differs from alone by {diff}"
        );
    }
    let (batches, served, _) = engine.stats().snapshot();
    assert_eq!(served - requests_before, 12);
    assert!(
        batches - batches_before < 12,
        "no batching happened: {} batches",
        batches - batches_before
    );
}

/// A model whose rows affect each other (each row less the pass's mean): a job run in a pass
/// shared with another job's rows gets an output that depends on them, which a re-run of the
/// job alone (what an arbiter does in a dispute) does not reproduce: the model's owner could
/// have an honest worker's result found wrong. By default `execute` runs each job alone.
#[tokio::test]
async fn jobs_share_a_forward_pass_only_when_batch_jobs_is_on() {
    let f = fixture(4);
    let dir = tempfile::tempdir().unwrap();
    let centered = scripted(&f, &dir, "centered");
    let inputs: Vec<Vec<u8>> = (0..4)
        .map(|i| encode_input(&(Tensor::ones([2, 4], (Kind::Float, Device::Cpu)) * i)).unwrap())
        .collect();
    // Each job alone: its two equal rows less their own mean, all zeros.
    let alone = Engine::new(f.store.clone(), cpu(16, Duration::from_millis(200))).unwrap();
    let alone_hashes: Vec<Digest> = {
        let mut hashes = Vec::new();
        for input in &inputs {
            hashes.push(alone.execute(centered, input).await.unwrap().output_hash);
        }
        hashes
    };
    let run_concurrently = |batch_jobs: bool| {
        let engine = Arc::new(
            Engine::new(
                f.store.clone(),
                EngineConfig {
                    batch_jobs,
                    ..cpu(16, Duration::from_millis(200))
                },
            )
            .unwrap(),
        );
        let inputs = inputs.clone();
        async move {
            let handles: Vec<_> = inputs
                .into_iter()
                .map(|input| {
                    let engine = engine.clone();
                    tokio::spawn(async move { engine.execute(centered, &input).await })
                })
                .collect();
            let mut hashes = Vec::new();
            for handle in handles {
                hashes.push(handle.await.unwrap().unwrap().output_hash);
            }
            hashes
        }
    };
    // Off (the default): four concurrent jobs each get what they get alone,
    assert_eq!(
        run_concurrently(EngineConfig::default().batch_jobs).await,
        alone_hashes
    );
    // while shared passes would give them outputs that depend on each other.
    assert_ne!(run_concurrently(true).await, alone_hashes);
}

#[tokio::test]
async fn a_respecified_model_runs_each_row_shape_in_its_own_batch() {
    let f = fixture(4);
    let engine =
        Arc::new(Engine::new(f.store.clone(), cpu(16, Duration::from_millis(300))).unwrap());
    // Rows of 16 under the fixture's spec, then the spec changes to rows of [3, 16] (what a
    // worker does when a job's rows differ from its guess) while the first waits for batch
    // mates: the two must not be concatenated into one forward pass.
    let flat = Tensor::randn([2, 16], (Kind::Float, Device::Cpu));
    let nested = Tensor::randn([1, 3, 16], (Kind::Float, Device::Cpu));
    let first = {
        let engine = engine.clone();
        let x = flat.copy();
        tokio::spawn(async move { engine.infer(f.mlp, x).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let spec = ModelSpec {
        input_shape: vec![3, 16],
        input_dtype: "F32".into(),
        max_batch: 16,
    };
    let loaded = f
        .store
        .cached(&f.mlp, Device::Cpu)
        .expect("loaded by the first");
    f.store.respec(&f.mlp, &spec).unwrap();
    // The module stays loaded under the new spec: no reload, no second copy.
    let respecified = f.store.cached(&f.mlp, Device::Cpu).expect("still loaded");
    assert_eq!(respecified.spec, spec);
    assert!(Arc::ptr_eq(&loaded.module, &respecified.module));
    let second = engine.infer(f.mlp, nested.copy()).await.unwrap();
    let first = first.await.unwrap().unwrap();
    assert_eq!(first.size(), vec![2, 4]);
    assert_eq!(second.size(), vec![1, 3, 4]);
    // The old rows are now refused with the spec's own error, and respec needs the model.
    assert!(matches!(
        engine.infer(f.mlp, flat.copy()).await,
        Err(EngineError::WrongShape { .. })
    ));
    assert!(f.store.respec(&Digest::of(b"unknown"), &spec).is_err());
    let after = f.store.cached(&f.mlp, Device::Cpu).expect("still loaded");
    assert!(Arc::ptr_eq(&loaded.module, &after.module), "reloaded");
}

#[tokio::test]
async fn a_module_out_of_the_cache_is_freed_once_its_passes_end() {
    // A cache of one module: loading the encoder evicts the MLP from the store's cache.
    let f = fixture(1);
    let engine = Engine::new(f.store.clone(), cpu(16, Duration::from_millis(1))).unwrap();
    let rows = Tensor::randn([2, 16], (Kind::Float, Device::Cpu));
    assert_eq!(
        engine.infer(f.mlp, rows.copy()).await.unwrap().size(),
        vec![2, 4]
    );
    let mlp = Arc::downgrade(&f.store.load(&f.mlp, Device::Cpu).unwrap());
    f.store.load(&f.encoder, Device::Cpu).unwrap();
    // The MLP's batching task is still alive (idle for a minute), but it holds no module: out
    // of the cache, the MLP is freed at once. (A task that held it until idle let a submitter
    // with many models keep one loaded per model for a minute each, whatever the cache's
    // bound.)
    assert!(
        mlp.upgrade().is_none(),
        "a module out of the cache is still held"
    );
    // The next request loads it again and runs on the same batching task.
    assert_eq!(engine.infer(f.mlp, rows).await.unwrap().size(), vec![2, 4]);
    assert_eq!(f.store.disk_loads(), 3);
}

#[test]
fn the_model_cache_is_bounded_by_the_bytes_of_its_models() {
    let f = fixture(8);
    let (mlp, encoder) = (f.file_size(&f.mlp), f.file_size(&f.encoder));
    assert!(mlp > 0 && encoder > 0);
    // Room for both but one byte: by count (8) both would stay.
    let dir = tempfile::tempdir().unwrap();
    let store = ModelStore::open(dir.path(), 8)
        .unwrap()
        .with_max_loaded_bytes(mlp + encoder - 1);
    f.copy_models(&store);
    store.load(&f.mlp, Device::Cpu).unwrap();
    assert_eq!(store.loaded_bytes(), mlp);
    let held = Arc::downgrade(&store.cached(&f.mlp, Device::Cpu).unwrap());
    store.load(&f.encoder, Device::Cpu).unwrap();
    assert_eq!(store.loaded(), 1, "the two models' bytes exceed the bound");
    assert_eq!(store.loaded_bytes(), encoder);
    assert!(store.cached(&f.mlp, Device::Cpu).is_none());
    assert!(held.upgrade().is_none(), "the evicted module was freed");
    // A model larger than the whole bound is still loaded (a job needs it), alone.
    let tiny = ModelStore::open(dir.path(), 8)
        .unwrap()
        .with_max_loaded_bytes(1);
    tiny.load(&f.mlp, Device::Cpu).unwrap();
    tiny.load(&f.encoder, Device::Cpu).unwrap();
    assert_eq!(tiny.loaded(), 1);
    assert!(tiny.cached(&f.encoder, Device::Cpu).is_some());
}

#[test]
fn a_load_waits_for_running_passes_to_free_the_room_it_needs() {
    let f = fixture(8);
    let (mlp, encoder) = (f.file_size(&f.mlp), f.file_size(&f.encoder));
    let dir = tempfile::tempdir().unwrap();
    let store = |wait: Duration| {
        let store = ModelStore::open(dir.path(), 8)
            .unwrap()
            .with_max_loaded_bytes(mlp + encoder - 1)
            .with_room_wait(wait);
        f.copy_models(&store);
        Arc::new(store)
    };
    // A pass holds the MLP (a request carries its module until its pass ends): the cache may
    // let it go, but its memory stays until the pass ends, so the encoder waits for it.
    let patient = store(Duration::from_secs(30));
    let in_pass = patient.load(&f.mlp, Device::Cpu).unwrap();
    let loader = {
        let (store, encoder) = (patient.clone(), f.encoder);
        std::thread::spawn(move || store.load(&encoder, Device::Cpu).unwrap())
    };
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !loader.is_finished(),
        "the encoder loaded beside a module a pass holds, over the bound"
    );
    assert_eq!(patient.loaded_bytes(), mlp, "the pass's module is counted");
    drop(in_pass);
    loader.join().unwrap();
    assert_eq!(patient.loaded_bytes(), encoder);
    // A pass that does not end within the wait does not stop the job: it loads anyway.
    let hurried = store(Duration::from_millis(200));
    let _in_pass = hurried.load(&f.mlp, Device::Cpu).unwrap();
    let started = Instant::now();
    hurried.load(&f.encoder, Device::Cpu).unwrap();
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(hurried.loaded_bytes(), mlp + encoder);
}

#[test]
fn the_store_keeps_the_most_recently_used_model_files_within_its_disk_bound() {
    let f = fixture(8);
    let (mlp, encoder) = (f.file_size(&f.mlp), f.file_size(&f.encoder));
    let junk = vec![7u8; 64];
    let dir = tempfile::tempdir().unwrap();
    // Room for the two models and the junk file but one byte.
    let store = ModelStore::open(dir.path(), 8)
        .unwrap()
        .with_max_stored_bytes(mlp + encoder + junk.len() as u64 - 1)
        .with_recently_used(Duration::ZERO);
    let spec_of = |hash: &Digest| f.store.load(hash, Device::Cpu).unwrap().spec.clone();
    let settle = || std::thread::sleep(Duration::from_millis(30));
    store
        .insert_file(&f.models.join("mlp.pt"), &spec_of(&f.mlp))
        .unwrap();
    settle();
    store
        .insert_file(&f.models.join("encoder.pt"), &spec_of(&f.encoder))
        .unwrap();
    settle();
    // A job uses the MLP: it is now the most recently used.
    store.load(&f.mlp, Device::Cpu).unwrap();
    settle();
    let junk_hash = store.insert(&junk, &spec_of(&f.mlp)).unwrap();
    assert!(store.contains(&junk_hash), "the file just fetched is kept");
    assert!(store.contains(&f.mlp), "the recently used model is kept");
    assert!(
        !store.contains(&f.encoder),
        "the least recently used model is removed past the bound"
    );
    assert_eq!(store.hashes().len(), 2);
    // A heartbeat lists the most recently used first (the junk file was fetched last).
    assert_eq!(store.recent_hashes(1), vec![junk_hash]);
    assert_eq!(store.recent_hashes(5), vec![junk_hash, f.mlp]);
    // Files used within the guard (a job may have found one and be about to load it) stay,
    // whatever the bound, until the guard passes.
    let guarded = ModelStore::open(dir.path(), 8)
        .unwrap()
        .with_max_stored_bytes(1);
    guarded
        .insert_file(&f.models.join("encoder.pt"), &spec_of(&f.encoder))
        .unwrap();
    assert_eq!(guarded.hashes().len(), 3);
    // A file larger than the whole bound is still kept (a job needs it), alone.
    let tiny = ModelStore::open(dir.path(), 8)
        .unwrap()
        .with_max_stored_bytes(1)
        .with_recently_used(Duration::ZERO);
    settle();
    tiny.insert_file(&f.models.join("encoder.pt"), &spec_of(&f.encoder))
        .unwrap();
    assert_eq!(tiny.hashes(), vec![f.encoder]);
}

#[test]
fn concurrent_first_loads_of_a_model_load_it_once() {
    // A new model's first jobs arrive together: each asking the store for it must not load a
    // copy of its own (a burst of jobs would hold one copy per job on the device).
    let f = fixture(4);
    let barrier = std::sync::Barrier::new(8);
    let loaded: Vec<Arc<ciro_engine::LoadedModel>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    f.store.load(&f.mlp, Device::Cpu).unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        f.store.disk_loads(),
        1,
        "the model was loaded more than once"
    );
    assert!(loaded
        .iter()
        .all(|m| Arc::ptr_eq(&m.module, &loaded[0].module)));
    assert_eq!(f.store.loaded(), 1);
}

#[tokio::test]
async fn a_lone_request_waits_for_batch_mates_at_most_max_wait() {
    let f = fixture(4);
    let max_wait = Duration::from_millis(300);
    let engine = Engine::new(f.store.clone(), cpu(16, max_wait)).unwrap();
    engine.model(f.mlp).await.unwrap(); // load outside the measurement
    let started = Instant::now();
    let y = engine
        .infer(f.mlp, Tensor::zeros([1, 16], (Kind::Float, Device::Cpu)))
        .await
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(y.size(), vec![1, 4]);
    // It waited for company (the batch was not full) and was then served: the bound is
    // max_wait plus one forward pass of a tiny model, with a wide margin for a loaded machine.
    assert!(
        waited >= Duration::from_millis(250),
        "served after {waited:?}, before max_wait"
    );
    assert!(
        waited < max_wait + Duration::from_secs(3),
        "served after {waited:?}"
    );
}

/// `ciro_models.py NAME` (a model of 4-float rows) added to `f`'s store.
fn scripted(f: &Fixture, dir: &tempfile::TempDir, name: &str) -> Digest {
    scripted_with(f, dir, name, &[])
}

/// [`scripted`] with more arguments to `ciro_models.py NAME OUT`.
fn scripted_with(f: &Fixture, dir: &tempfile::TempDir, name: &str, args: &[&str]) -> Digest {
    let file = dir.path().join(format!("{name}.pt"));
    let made = std::process::Command::new(common::python())
        .arg(common::models_script())
        .arg(name)
        .arg(&file)
        .args(args)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    f.store
        .insert_file(
            &file,
            &ModelSpec {
                input_shape: vec![4],
                input_dtype: "F32".into(),
                max_batch: 16,
            },
        )
        .unwrap()
}

/// A model that draws random numbers: in deterministic mode each pass starts from the seed,
/// so a job's output is what a re-run (a fresh `ciro-worker exec`, an arbiter's check) gives,
/// whatever the process ran before. Seeded once at start, a second job got other numbers,
/// and a dispute's re-run would find an honest worker's result wrong.
#[tokio::test]
async fn a_model_drawing_random_numbers_repeats_its_output_in_deterministic_mode() {
    let f = fixture(4);
    let dir = tempfile::tempdir().unwrap();
    let noisy = scripted(&f, &dir, "noisy");
    let seeded = |seed| EngineConfig {
        deterministic_seed: Some(seed),
        ..cpu(16, Duration::from_millis(5))
    };
    let input = encode_input(&Tensor::zeros([2, 4], (Kind::Float, Device::Cpu))).unwrap();
    let engine = Engine::new(f.store.clone(), seeded(42)).unwrap();
    let first = engine.execute(noisy, &input).await.unwrap();
    let second = engine.execute(noisy, &input).await.unwrap();
    assert_eq!(first, second, "the second job drew other numbers");
    let rerun = Engine::new(f.store.clone(), seeded(42)).unwrap();
    assert_eq!(rerun.execute(noisy, &input).await.unwrap(), first);
    // The output is noise indeed: another seed draws other numbers.
    let other = Engine::new(f.store.clone(), seeded(43)).unwrap();
    assert_ne!(
        other.execute(noisy, &input).await.unwrap().output_hash,
        first.output_hash
    );
}

/// Outputs a submitter's model can return that no file holds: a sparse tensor, and a view of
/// a few bytes standing for 4 TB. Each is the job's error (the job fails, counted against it),
/// not a panic that ends the job's task or an allocation that aborts the worker, and the
/// engine serves the next job.
#[tokio::test]
async fn outputs_no_file_can_hold_are_the_jobs_errors_not_panics_or_aborts() {
    let f = fixture(4);
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::new(f.store.clone(), cpu(16, Duration::from_millis(1))).unwrap();
    let input = encode_input(&Tensor::ones([2, 4], (Kind::Float, Device::Cpu))).unwrap();
    for (name, says) in [("sparse", "not dense"), ("huge", "more than")] {
        let model = scripted(&f, &dir, name);
        match engine.execute(model, &input).await {
            Err(EngineError::Forward(message)) => {
                assert!(message.contains(says), "{name}: {message}")
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    assert_serves_the_next_job(&f, &engine).await;
}

/// `engine` still runs `f`'s MLP on a valid input (after refusing another job).
async fn assert_serves_the_next_job(f: &Fixture, engine: &Engine) {
    let (x, _) = sample(f.models, f.described, "mlp");
    assert!(engine
        .execute(f.mlp, &encode_input(&x).unwrap())
        .await
        .is_ok());
}

/// The attack: a submitter's model reads a file of the worker's (its key, another job's
/// output) into the output the submitter downloads, or writes one (the worker's journal, a
/// shell profile). libtorch would run both (`torch.from_file`, `torch.save`); the engine
/// refuses such a model before loading it, as the job's failure, nothing read or written,
/// and serves the next job.
#[tokio::test]
async fn a_model_that_reads_or_writes_the_workers_files_is_refused_before_it_loads() {
    let f = fixture(4);
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("key");
    std::fs::write(&secret, b"\x01\x02\x03\x04 the worker's key").unwrap();
    let planted = dir.path().join("planted");
    let engine = Engine::new(f.store.clone(), cpu(16, Duration::from_millis(1))).unwrap();
    let input = encode_input(&Tensor::zeros([1, 4], (Kind::Float, Device::Cpu))).unwrap();
    for (name, path, says) in [
        ("reader", &secret, "from_file"),
        ("writer", &planted, "save"),
    ] {
        let model = scripted_with(&f, &dir, name, &["--path", &path.display().to_string()]);
        match engine.execute(model, &input).await {
            Err(EngineError::UnsafeModel { hash, reason }) => {
                assert_eq!(hash, model);
                assert!(reason.contains(says), "{name}: {reason}");
            }
            other => panic!("{name} was not refused: {other:?}"),
        }
    }
    assert!(!planted.exists(), "the writer wrote its file");
    assert_serves_the_next_job(&f, &engine).await;
}

/// An ordinary model whose own names are also names a model may not reach (a layer list
/// `save`, as YOLOv5 keeps; a `ModuleList` named `ops`; a list of `classes`: in its code as
/// declarations, `self.` attributes and locals, in its pickle as attribute names) passes the
/// screen and runs, in process and isolated alike: `relu(linear(x))` times its two classes.
#[tokio::test]
async fn a_model_with_attributes_named_save_ops_and_classes_is_not_refused() {
    let f = fixture(4);
    let dir = tempfile::tempdir().unwrap();
    let named = scripted(&f, &dir, "named");
    let input = encode_input(&Tensor::ones([1, 4], (Kind::Float, Device::Cpu))).unwrap();
    let here = Engine::new(f.store.clone(), cpu(16, Duration::from_millis(1))).unwrap();
    let result = here.execute(named, &input).await.unwrap();
    let output = decode_input(&result.output).unwrap();
    assert_eq!(output.size(), [1, 4]);
    let values = Vec::<f32>::try_from(output.flatten(0, -1)).unwrap();
    assert!(
        values.iter().all(|v| v.is_finite() && *v >= 0.0),
        "{values:?}"
    );
    let apart = Engine::new(f.store.clone(), isolated(true, true)).unwrap();
    assert_eq!(apart.execute(named, &input).await.unwrap(), result);
}

/// An output larger than the engine's limit (a worker sets it to what its coordinator
/// accepts) is the job's failure before it is encoded, so a worker never writes an output no
/// one can upload (a submitter's model could otherwise fill its disk, one refused upload at a
/// time); one within it runs.
#[tokio::test]
async fn an_output_over_the_limit_is_the_jobs_failure_before_it_is_encoded() {
    let f = fixture(4);
    let (x, _) = sample(f.models, f.described, "mlp");
    let input = encode_input(&x).unwrap();
    let unlimited = Engine::new(f.store.clone(), cpu(16, Duration::from_millis(1))).unwrap();
    let data = unlimited.execute(f.mlp, &input).await.unwrap();
    let bytes = decode_input(&data.output).unwrap();
    let exact = (bytes.numel() * bytes.kind().elt_size_in_bytes()) as u64;
    let limited = |max_output_bytes| EngineConfig {
        max_output_bytes,
        ..cpu(16, Duration::from_millis(1))
    };
    let within = Engine::new(f.store.clone(), limited(exact)).unwrap();
    assert_eq!(within.execute(f.mlp, &input).await.unwrap(), data);
    let over = Engine::new(f.store.clone(), limited(exact - 1)).unwrap();
    match over.execute(f.mlp, &input).await {
        Err(EngineError::Forward(message)) => {
            assert!(message.contains(&format!("{exact} bytes")), "{message}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn deterministic_mode_repeats_the_output_hash() {
    let f = fixture(4);
    let config = EngineConfig {
        deterministic_seed: Some(42),
        ..cpu(16, Duration::from_millis(5))
    };
    let engine = Engine::new(f.store.clone(), config).unwrap();
    let (x, _) = sample(f.models, f.described, "encoder");
    let input = encode_input(&x).unwrap();
    let first = engine.execute(f.encoder, &input).await.unwrap();
    let second = engine.execute(f.encoder, &input).await.unwrap();
    assert_eq!(first, second);
    // A different input gives a different hash: the hash is of the output, not a constant.
    let other = engine
        .execute(f.encoder, &encode_input(&(&x + 1.0)).unwrap())
        .await
        .unwrap();
    assert_ne!(other.output_hash, first.output_hash);
}

#[tokio::test]
async fn the_model_cache_is_bounded_and_reuses_loaded_modules() {
    let f = fixture(1);
    let engine = Engine::new(f.store.clone(), cpu(16, Duration::ZERO)).unwrap();
    let first = engine.model(f.mlp).await.unwrap();
    let again = engine.model(f.mlp).await.unwrap();
    assert!(
        Arc::ptr_eq(&first, &again),
        "a cached module was loaded again"
    );
    assert_eq!(f.store.loaded(), 1);
    engine.model(f.encoder).await.unwrap();
    assert_eq!(f.store.loaded(), 1, "capacity 1 keeps one module");
    let reloaded = engine.model(f.mlp).await.unwrap();
    assert!(
        !Arc::ptr_eq(&first, &reloaded),
        "the evicted module came back from the cache"
    );
}

#[tokio::test]
async fn a_job_input_written_by_python_runs_like_one_written_by_rust() {
    let f = fixture(4);
    let bytes = std::fs::read(f.models.join("mlp.x.safetensors")).unwrap();
    let engine = Engine::new(f.store.clone(), cpu(16, Duration::ZERO)).unwrap();
    let (x, expected) = sample(f.models, f.described, "mlp");
    let from_python = engine.execute(f.mlp, &bytes).await.unwrap();
    let from_rust = engine
        .execute(f.mlp, &encode_input(&x).unwrap())
        .await
        .unwrap();
    assert!(max_abs_diff(&decode_input(&from_python.output).unwrap(), &expected) <= 1e-5);
    assert_eq!(from_python.output_hash, from_rust.output_hash);
}

#[test]
fn concurrent_inserts_of_one_model_all_succeed_and_leave_it_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(ModelStore::open(dir.path(), 2).unwrap());
    // Stand-in bytes: the store addresses files by hash; loading is tested above.
    let bytes: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    let spec = ModelSpec {
        input_shape: vec![4],
        input_dtype: "F32".into(),
        max_batch: 8,
    };
    let expected = Digest::of(&bytes);
    // Two jobs of a model not yet stored fetch it at once; here eight threads, ten times each.
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                for _ in 0..10 {
                    assert_eq!(store.insert(&bytes, &spec).unwrap(), expected);
                }
            });
        }
    });
    assert!(store.contains(&expected));
    assert_eq!(store.hashes(), vec![expected]);
    let on_disk = std::fs::read(dir.path().join(format!("{expected}.pt"))).unwrap();
    assert_eq!(Digest::of(&on_disk), expected);
    let spec_on_disk: ModelSpec = serde_json::from_slice(
        &std::fs::read(dir.path().join(format!("{expected}.spec.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(spec_on_disk, spec);
    // No temporary file is left behind.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

/// An engine that runs each job in a process of its own (the engine's `ciro-pass`, as the
/// worker's `pass` subcommand), sandboxed or not, screening models or not.
fn isolated(sandbox: bool, screen: bool) -> EngineConfig {
    let mut isolation = ciro_engine::Isolation::new(env!("CARGO_BIN_EXE_ciro-pass"), &[]);
    isolation.sandbox = sandbox;
    isolation.screen = screen;
    EngineConfig {
        isolation: Some(isolation),
        ..cpu(16, Duration::from_millis(1))
    }
}

/// The attack: a submitter's model takes memory until the machine has none (here 1 GiB, which
/// this machine gives). Under a pass memory limit the allocation fails inside the pass, as the
/// job's error (counted against it), and the engine serves the next job; without one, the same
/// model runs, so it is the limit that refused it.
#[tokio::test]
async fn a_pass_over_its_memory_limit_fails_as_the_jobs_error() {
    let f = fixture(4);
    let dir = tempfile::tempdir().unwrap();
    let hungry = scripted(&f, &dir, "hungry");
    let input = encode_input(&Tensor::ones([1, 4], (Kind::Float, Device::Cpu))).unwrap();
    let limited = |sandbox: bool| {
        let mut config = isolated(sandbox, true);
        if let Some(isolation) = config.isolation.as_mut() {
            isolation.pass_memory = Some(512 << 20);
        }
        config
    };
    for sandbox in [true, false] {
        let engine = Engine::new(f.store.clone(), limited(sandbox)).unwrap();
        match engine.execute(hungry, &input).await {
            Err(EngineError::Forward(message)) => {
                assert!(message.contains("allocate"), "sandbox {sandbox}: {message}")
            }
            other => panic!("sandbox {sandbox}: {other:?}"),
        }
        assert_serves_the_next_job(&f, &engine).await;
    }
    let unlimited = Engine::new(f.store.clone(), isolated(true, true)).unwrap();
    let output = unlimited.execute(hungry, &input).await.unwrap();
    let sum = decode_input(&output.output).unwrap();
    // 1 plus the 2^28 ones, in 32-bit floats (where the 1 is lost).
    assert_eq!(
        sum.double_value(&[0, 0]),
        f64::from(1.0f32 + 268_435_456.0f32),
        "the model summed its 1 GiB of ones"
    );
}

/// A job run in its own sandboxed process gives the output the engine gives in this process,
/// bit for bit (the hash the worker commits), and the same errors: a wrong input is refused
/// before a process starts, with the shape error the worker corrects its spec from; an
/// unsafe model is refused by the screen in the child too.
#[tokio::test]
async fn an_isolated_job_gives_the_in_process_output_and_errors() {
    let f = fixture(4);
    let dir = tempfile::tempdir().unwrap();
    let seeded = |config: EngineConfig| EngineConfig {
        deterministic_seed: Some(7),
        ..config
    };
    let here = Engine::new(f.store.clone(), seeded(cpu(16, Duration::from_millis(1)))).unwrap();
    let apart = Engine::new(f.store.clone(), seeded(isolated(true, true))).unwrap();
    for (name, model) in [("mlp", f.mlp), ("encoder", f.encoder)] {
        let (x, _) = sample(f.models, f.described, name);
        let input = encode_input(&x).unwrap();
        // Warm in this process (the graph executor optimizes from the second call), and a
        // single pass apart: the same bits.
        let expected = here.execute(model, &input).await.unwrap();
        for _ in 0..3 {
            assert_eq!(
                here.execute(model, &input).await.unwrap(),
                expected,
                "{name}"
            );
        }
        assert_eq!(
            apart.execute(model, &input).await.unwrap(),
            expected,
            "{name}"
        );
    }
    // The isolated engine loaded nothing in this process.
    let loads = f.store.disk_loads();
    let (x, _) = sample(f.models, f.described, "mlp");
    apart
        .execute(f.mlp, &encode_input(&x).unwrap())
        .await
        .unwrap();
    assert_eq!(f.store.disk_loads(), loads);
    let wrong = encode_input(&Tensor::zeros([2, 3], (Kind::Float, Device::Cpu))).unwrap();
    assert!(matches!(
        apart.execute(f.mlp, &wrong).await,
        Err(EngineError::WrongShape { .. })
    ));
    let unknown = Digest::of(b"no such model");
    assert!(matches!(
        apart.execute(unknown, &encode_input(&x).unwrap()).await,
        Err(EngineError::UnknownModel(hash)) if hash == unknown
    ));
    let reader = scripted_with(&f, &dir, "reader", &["--path", "/etc/hostname"]);
    let input = encode_input(&Tensor::zeros([1, 4], (Kind::Float, Device::Cpu))).unwrap();
    match apart.execute(reader, &input).await {
        Err(EngineError::UnsafeModel { reason, .. }) => assert!(reason.contains("from_file")),
        other => panic!("the reader was not refused: {other:?}"),
    }
}

/// The attack the screen cannot stop (a model that corrupts libtorch's memory and so runs
/// code of its author's), played by a model that calls file operations directly, with the
/// screen off: in a process of its own but unsandboxed it reads the worker's key into its
/// output and plants a file (the attack is real); in the sandbox the read is the job's error,
/// the file is not written, and the engine serves the next job.
#[tokio::test]
async fn a_model_that_takes_over_its_process_reads_and_writes_none_of_the_workers_files() {
    let f = fixture(4);
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("key");
    std::fs::write(&secret, [1u8, 2, 3, 4]).unwrap();
    let planted = dir.path().join("planted");
    let reader = scripted_with(
        &f,
        &dir,
        "reader",
        &["--path", &secret.display().to_string()],
    );
    let writer = scripted_with(
        &f,
        &dir,
        "writer",
        &["--path", &planted.display().to_string()],
    );
    let input = encode_input(&Tensor::zeros([1, 4], (Kind::Float, Device::Cpu))).unwrap();

    let bare = Engine::new(f.store.clone(), isolated(false, false)).unwrap();
    let stolen = decode_input(&bare.execute(reader, &input).await.unwrap().output).unwrap();
    assert_eq!(
        Vec::<f32>::try_from(stolen.flatten(0, -1)).unwrap(),
        [1.0, 2.0, 3.0, 4.0]
    );
    bare.execute(writer, &input).await.unwrap();
    assert!(planted.exists(), "the unsandboxed writer wrote nothing");
    std::fs::remove_file(&planted).unwrap();

    let sandboxed = Engine::new(f.store.clone(), isolated(true, false)).unwrap();
    match sandboxed.execute(reader, &input).await {
        Err(EngineError::Forward(message)) => {
            assert!(message.contains("Permission denied"), "{message}")
        }
        other => panic!("the sandboxed reader was not stopped: {other:?}"),
    }
    // libtorch's `save` does not report a file it could not open: the job ends as the model
    // wrote it, and the file is not there.
    let _ = sandboxed.execute(writer, &input).await;
    assert!(!planted.exists(), "the sandboxed writer wrote its file");
    assert_serves_the_next_job(&f, &sandboxed).await;
}

/// A sandbox check's scratch and store directories, in `dir`.
fn sandbox_check(dir: &Path) -> (PathBuf, PathBuf) {
    let (scratch, store) = (dir.join("scratch"), dir.join("store"));
    std::fs::create_dir_all(&scratch).unwrap();
    std::fs::create_dir_all(&store).unwrap();
    (scratch, store)
}

/// Passes of the test binary, with the sandbox or without, built on the Landlock ABI `abi` at
/// most (`None`: the kernel's).
fn checking(sandbox: bool, abi: Option<i32>) -> ciro_engine::Isolation {
    let mut isolation = ciro_engine::Isolation::new(env!("CARGO_BIN_EXE_ciro-pass"), &[]);
    isolation.sandbox = sandbox;
    isolation.landlock_abi = abi;
    isolation
}

/// The check a worker runs before serving: from the sandbox, every escape a model that took
/// control would try fails (the worker's files read, written, listed, made readable or
/// truncated, the model store listed, a TCP connection, a UDP socket, a signal to the worker,
/// to the fork server, a file's I/O signals directed at the worker, the worker's memory,
/// environment, limits and priority, its process group's priority, a process that would
/// outlive the pass, an OOM score that would have the kernel end the worker first), and what a
/// pass needs works. Without the sandbox every attempt works, so each is a real attack.
#[tokio::test]
async fn the_sandbox_check_finds_every_escape_blocked_and_a_pass_unhindered() {
    let dir = tempfile::tempdir().unwrap();
    let (scratch, store) = sandbox_check(dir.path());
    let report = checking(true, None)
        .check_sandbox(&scratch, &store, Device::Cpu)
        .await
        .unwrap();
    assert_eq!(report.attempts.len(), 25, "{report:#?}");
    assert!(report.escapes().is_empty(), "{report:#?}");
    assert!(report.broken().is_empty(), "{report:#?}");
    let open = checking(false, None)
        .check_sandbox(&scratch, &store, Device::Cpu)
        .await
        .unwrap();
    assert!(open.attempts.iter().all(|a| a.worked), "{open:#?}");
    assert_eq!(open.escapes().len(), 22);
    // Nothing was left behind.
    assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(&store).unwrap().count(), 0);
}

/// The sandbox an older kernel gives (Landlock ABI 1, Linux 5.13, to 5, Linux 6.10: stock
/// Ubuntu 22.04 speaks 1, 24.04 speaks 4), built on this one: Landlock then controls no
/// truncation (before 3), no TCP (before 4), no device control (before 5), and no signal or
/// abstract socket outside the sandbox (before 6), and every escape still fails, held by the
/// layers that stand in (the seccomp filters: truncation, sockets, and signals to any process
/// but the pass itself), while a pass runs unhindered.
#[tokio::test]
async fn the_sandbox_holds_on_every_landlock_abi_the_worker_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let (scratch, store) = sandbox_check(dir.path());
    for abi in 1..=5 {
        let report = checking(true, Some(abi))
            .check_sandbox(&scratch, &store, Device::Cpu)
            .await
            .unwrap();
        assert_eq!(report.attempts.len(), 25, "ABI {abi}: {report:#?}");
        assert!(report.escapes().is_empty(), "ABI {abi}: {report:#?}");
        assert!(report.broken().is_empty(), "ABI {abi}: {report:#?}");
    }
    assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0);
}

/// A model that keeps one job's data in an attribute for the next: in one process the second
/// job's output carries the first job's input (and no re-run reproduces it); isolated, each
/// job starts from the model's file and two runs of one input agree.
#[tokio::test]
async fn an_isolated_job_starts_from_the_models_file_not_from_the_last_jobs_state() {
    let f = fixture(4);
    let dir = tempfile::tempdir().unwrap();
    let remembering = scripted(&f, &dir, "remembering");
    let input = encode_input(&Tensor::ones([1, 4], (Kind::Float, Device::Cpu))).unwrap();
    let here = Engine::new(f.store.clone(), cpu(16, Duration::from_millis(1))).unwrap();
    let first = here.execute(remembering, &input).await.unwrap();
    let second = here.execute(remembering, &input).await.unwrap();
    assert_ne!(
        first.output_hash, second.output_hash,
        "the control kept no state"
    );
    let apart = Engine::new(f.store.clone(), isolated(true, true)).unwrap();
    let first_apart = apart.execute(remembering, &input).await.unwrap();
    assert_eq!(first_apart, first);
    assert_eq!(apart.execute(remembering, &input).await.unwrap(), first);
}

/// A model file damaged on the worker's disk: the pass's process reports it, the worker checks
/// the file itself, and it is the worker's fault (a hash mismatch, which the agent gives back
/// as unable), the file forgotten so that it is fetched again. (A pass's claim that the worker
/// finds false is the job's failure: `a_childs_claim_of_a_workers_fault_is_the_jobs_failure`.)
#[tokio::test]
async fn an_isolated_pass_on_a_damaged_model_file_is_found_damaged_by_the_worker_itself() {
    let f = fixture(4);
    let dir = tempfile::tempdir().unwrap();
    let noisy = scripted(&f, &dir, "noisy");
    let path = f._dir.path().join("store").join(format!("{noisy}.pt"));
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let apart = Engine::new(f.store.clone(), isolated(true, true)).unwrap();
    let input = encode_input(&Tensor::zeros([1, 4], (Kind::Float, Device::Cpu))).unwrap();
    match apart.execute(noisy, &input).await {
        Err(EngineError::HashMismatch { expected, actual }) => {
            assert_eq!(expected, noisy);
            assert_eq!(actual, Digest::of(&bytes));
        }
        other => panic!("{other:?}"),
    }
    assert!(!f.store.contains(&noisy), "the damaged file was kept");
}

/// Isolated passes are timed each on its own, by the engine: a job whose input makes its model
/// loop is killed at the pass limit and fails, while a job of the same model started 2.5 s
/// later, whose input lets it return, completes (a clock per model, as the in-process
/// watchdog keeps, would have killed it half a second in); and no isolated pass counts as the
/// engine's own busy time, which the worker's in-process watchdog acts on.
#[tokio::test]
async fn isolated_passes_are_timed_each_on_its_own() {
    let f = fixture(4);
    let dir = tempfile::tempdir().unwrap();
    let stalling = scripted(&f, &dir, "stalling");
    let engine = Engine::new(
        f.store.clone(),
        EngineConfig {
            pass_limit: Some(Duration::from_secs(3)),
            ..isolated(true, true)
        },
    )
    .unwrap();
    let looping = encode_input(&Tensor::ones([1, 4], (Kind::Float, Device::Cpu))).unwrap();
    let returning = encode_input(&Tensor::zeros([1, 4], (Kind::Float, Device::Cpu))).unwrap();
    let later = async {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(engine.busy_with(&stalling), None);
        engine.execute(stalling, &returning).await
    };
    let (looped, returned) = tokio::join!(engine.execute(stalling, &looping), later);
    match looped {
        Err(EngineError::Forward(message)) => {
            assert!(
                message.contains("past this worker's limit of 3 s"),
                "{message}"
            )
        }
        other => panic!("the looping pass was not stopped: {other:?}"),
    }
    assert!(returned.is_ok(), "{returned:?}");
}
