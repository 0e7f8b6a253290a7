//! The inference engine: validated inputs, inference in `spawn_blocking` under `no_grad`,
//! dynamic batching per model, and job execution from safetensors bytes to an output hash.
//!
//! **Dynamic batching.** Each model has a queue and one batching task. The task takes the
//! oldest request and keeps adding queued requests (whole, never split) until the batch
//! holds `max_batch` rows or the oldest request has waited `max_wait`; then it concatenates
//! the inputs along the leading dimension, runs one forward pass, and hands each caller its
//! own rows. A request never waits more than `max_wait` for its batch to form; while a batch
//! runs, new requests queue for the next one.
//!
//! **One inference thread.** Forward passes run on one dedicated OS thread per engine, not on
//! tokio's `spawn_blocking` pool: libtorch's CPU kernels use OpenMP, which keeps a thread
//! team per calling thread and lets it spin between parallel regions. Hopping between pool
//! threads left idle teams spinning against the working one and halved the transformer's
//! batch-1 throughput against Python (README, worker benchmark). The async runtime is never
//! blocked either way; model loading, which is rare, still uses `spawn_blocking`.
//!
//! **Deterministic mode** (`deterministic_seed`): libtorch's RNGs are seeded, cuDNN's
//! autotuner is off, and [`Engine::execute`] runs each job alone (a batch's composition
//! changes which kernels run and so the low bits of the result). Two honest workers then
//! produce identical output hashes when they run the same model and input on the same
//! hardware class with the same libtorch build and thread count; across GPU generations,
//! CUDA versions or CPU/GPU the results agree to float tolerance, not bit for bit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use tch::{Device, Tensor};
use tokio::sync::{mpsc, oneshot};

use crate::digest::Digest;
use crate::error::EngineError;
use crate::store::{LoadedModel, ModelStore};
use crate::tensors::{decode_input, encode_output, validate};

/// How the engine runs models.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Where inference runs.
    pub device: Device,
    /// Most rows in one forward pass (a model's own `max_batch` may lower it).
    pub max_batch: i64,
    /// Longest time a request waits for its batch to form.
    pub max_wait: Duration,
    /// Seed for deterministic mode; `None` for throughput mode.
    pub deterministic_seed: Option<u64>,
    /// Whether [`Engine::execute`] puts a job's rows in one forward pass with other jobs'
    /// (throughput mode only) or runs each job alone. Sharing a pass is exact only for models
    /// whose rows do not affect each other: a model that mixes rows (a mean over the batch,
    /// batch norm in training mode, anything its author wrote to) gives a job an output that
    /// depends on the other jobs in its pass, which a re-run of the job alone, as in a
    /// dispute, does not reproduce. So a submitter owning such a model could have an honest
    /// worker's result found wrong. Off by default; a worker that serves only models it
    /// trusts may turn it on for throughput.
    pub batch_jobs: bool,
    /// A model's batching task ends after this long without a request; the next request
    /// starts a new one. (The task holds no module: each request holds its own until its
    /// pass ends, so the store's bounded cache bounds what stays loaded.)
    pub idle_unload: Duration,
    /// The largest output a job may have, in bytes of tensor data (at most
    /// [`crate::tensors::MAX_ENCODED_BYTES`]): a larger one is the job's failure, refused
    /// before it is encoded. A worker sets it to what its coordinator accepts, so that an
    /// output no one can upload is never written to its disk.
    pub max_output_bytes: u64,
    /// Each job's pass in a sandboxed process of its own ([`crate::isolation`]); `None` runs
    /// models in this process (batching, a warm cache), for models the worker trusts. With
    /// isolation this process never loads a model: [`Engine::execute`] is the only way in
    /// (not [`Engine::infer`] or [`Engine::model`]), and `batch_jobs` does not apply.
    pub isolation: Option<crate::isolation::Isolation>,
    /// With isolation, the longest a job's pass may take (its process started, the model
    /// loaded and run): past it the process is killed and the job fails. Timed per job.
    pub pass_limit: Option<Duration>,
}

/// The device inference runs on by default: the first CUDA device when libtorch sees one,
/// else the CPU.
pub fn default_device() -> tch::Device {
    tch::Device::cuda_if_available()
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            device: default_device(),
            max_batch: 64,
            max_wait: Duration::from_millis(2),
            deterministic_seed: None,
            batch_jobs: false,
            idle_unload: Duration::from_secs(60),
            max_output_bytes: crate::tensors::MAX_ENCODED_BYTES,
            isolation: None,
            pass_limit: None,
        }
    }
}

/// The result of a job: what gets stored and committed on-chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOutput {
    /// SHA-256 of the input file (the on-chain `input_hash`).
    pub input_hash: Digest,
    /// The output as a safetensors file (one tensor, `output`).
    pub output: Vec<u8>,
    /// SHA-256 of `output` (the value committed on-chain).
    pub output_hash: Digest,
}

/// Counters of what the engine ran (for metrics, and to see batching at work).
#[derive(Debug, Default)]
pub struct EngineStats {
    /// Forward passes run.
    pub batches: AtomicU64,
    /// Requests served by them.
    pub requests: AtomicU64,
    /// Input rows processed.
    pub rows: AtomicU64,
}

impl EngineStats {
    /// (batches, requests, rows) so far.
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.batches.load(Ordering::Relaxed),
            self.requests.load(Ordering::Relaxed),
            self.rows.load(Ordering::Relaxed),
        )
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// The thread every forward pass of an engine runs on.
struct InferenceThread {
    jobs: std::sync::mpsc::Sender<Job>,
    /// What the engine works on (the thread's pass, and loads beside it).
    activity: Arc<Activity>,
}

/// What an engine is working on, per model, and since when: loads (on the blocking pool) and
/// the forward pass on the inference thread. Neither can be interrupted; a caller that waits
/// too long on a model reads here whether the engine itself is stuck on it
/// ([`Engine::busy_with`]).
#[derive(Default)]
struct Activity {
    /// Each load running, by model: its own start (loads of one model may overlap; the
    /// oldest still running is how long the engine has been loading it).
    loads: Mutex<HashMap<Digest, Vec<(u64, Instant)>>>,
    next_load: AtomicU64,
    pass: Mutex<Option<(Digest, Instant)>>,
}

impl Activity {
    /// A load of `hash` from now until the guard drops (a panic included).
    fn loading(self: &Arc<Self>, hash: Digest) -> impl Drop {
        let id = self.next_load.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut loads) = self.loads.lock() {
            loads.entry(hash).or_default().push((id, Instant::now()));
        }
        Ended(self.clone(), move |activity: &Activity| {
            if let Ok(mut loads) = activity.loads.lock() {
                if let Some(running) = loads.get_mut(&hash) {
                    running.retain(|(load, _)| *load != id);
                    if running.is_empty() {
                        loads.remove(&hash);
                    }
                }
            }
        })
    }

    /// How long the engine has been loading `hash` or running a pass of it (the longer).
    fn busy_with(&self, hash: &Digest) -> Option<Duration> {
        let load = self.loads.lock().ok().and_then(|loads| {
            loads
                .get(hash)
                .and_then(|running| running.iter().map(|(_, since)| since.elapsed()).max())
        });
        let pass = self.pass.lock().ok().and_then(|pass| {
            pass.as_ref()
                .filter(|(model, _)| model == hash)
                .map(|(_, since)| since.elapsed())
        });
        load.max(pass)
    }

    /// A pass of `hash` on the inference thread from now until the guard drops.
    fn passing(self: &Arc<Self>, hash: Digest) -> impl Drop {
        if let Ok(mut pass) = self.pass.lock() {
            *pass = Some((hash, Instant::now()));
        }
        Ended(self.clone(), |activity: &Activity| {
            if let Ok(mut pass) = activity.pass.lock() {
                *pass = None;
            }
        })
    }
}

/// Runs its closure on the activity when dropped.
struct Ended<F: FnMut(&Activity)>(Arc<Activity>, F);

impl<F: FnMut(&Activity)> Drop for Ended<F> {
    fn drop(&mut self) {
        (self.1)(&self.0);
    }
}

impl InferenceThread {
    fn spawn() -> Result<Self, EngineError> {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("ciro-inference".into())
            .spawn(move || {
                for job in queue {
                    // A panic fails that job's callers (their reply channels drop), not the
                    // thread.
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                        tracing::error!("an inference job panicked");
                    }
                }
            })
            .map_err(|e| EngineError::from(anyhow!("starting the inference thread: {e}")))?;
        Ok(Self {
            jobs,
            activity: Arc::default(),
        })
    }

    /// Runs `job` on the inference thread and waits (asynchronously) for it to finish.
    async fn run(&self, job: impl FnOnce() + Send + 'static) -> Result<(), EngineError> {
        let (done, finished) = oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                job();
                let _ = done.send(());
            }))
            .map_err(|_| EngineError::from(anyhow!("the inference thread stopped")))?;
        finished
            .await
            .map_err(|_| EngineError::from(anyhow!("an inference job panicked")))
    }
}

struct Request {
    /// The module it runs on, held by the request, not by the batching task: a module the
    /// store's cache let go is freed once its last pass ends.
    model: Arc<LoadedModel>,
    input: Tensor,
    rows: i64,
    arrived: Instant,
    reply: oneshot::Sender<Result<Tensor, EngineError>>,
    span: tracing::Span,
}

/// Seeds libtorch's random generators (the CPU's, and every CUDA device's with `cuda`).
pub(crate) fn seed_generators(seed: u64, cuda: bool) {
    tch::manual_seed(seed as i64);
    if cuda {
        tch::Cuda::manual_seed_all(seed);
    }
}

/// Runs models from a [`ModelStore`] on one device. Must be used inside a tokio runtime.
pub struct Engine {
    store: Arc<ModelStore>,
    config: EngineConfig,
    queues: Mutex<HashMap<Digest, mpsc::UnboundedSender<Request>>>,
    stats: Arc<EngineStats>,
    thread: Arc<InferenceThread>,
}

impl Engine {
    /// Starts an engine (and its inference thread).
    pub fn new(store: Arc<ModelStore>, config: EngineConfig) -> Result<Self, EngineError> {
        if let Some(seed) = config.deterministic_seed {
            seed_generators(seed, config.device.is_cuda());
            if config.device.is_cuda() {
                tch::Cuda::cudnn_set_benchmark(false);
            }
        }
        let thread = Arc::new(InferenceThread::spawn()?);
        Ok(Self {
            store,
            config,
            queues: Mutex::new(HashMap::new()),
            stats: Arc::default(),
            thread,
        })
    }

    /// How long the engine has been loading model `hash` or running a forward pass of it,
    /// whichever began first; `None` when it does neither. (A request waiting for the thread
    /// or for a batch is not counted: only the work that cannot be interrupted.)
    pub fn busy_with(&self, hash: &Digest) -> Option<Duration> {
        self.thread.activity.busy_with(hash)
    }

    /// What the engine has run so far.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Finds a loaded model in the cache, or loads it off the async threads.
    pub async fn model(&self, hash: Digest) -> Result<Arc<LoadedModel>, EngineError> {
        if let Some(model) = self.store.cached(&hash, self.config.device) {
            return Ok(model);
        }
        let store = self.store.clone();
        let device = self.config.device;
        let span = tracing::Span::current();
        let activity = self.thread.activity.clone();
        tokio::task::spawn_blocking(move || {
            span.in_scope(|| {
                // Room under the loaded-model bound first, untimed: the watchdog times the
                // load, not the wait for other models' passes to end.
                store.make_room_for(&hash, device);
                let _loading = activity.loading(hash);
                store.load(&hash, device)
            })
        })
        .await
        .map_err(|e| EngineError::from(anyhow!("model loading task failed: {e}")))?
    }

    /// Runs `input` alone through the model (no batching with other requests).
    pub async fn infer_unbatched(
        &self,
        hash: Digest,
        input: Tensor,
    ) -> Result<Tensor, EngineError> {
        let (_, request, result) = self.request(hash, input).await?;
        let stats = self.stats.clone();
        let activity = self.thread.activity.clone();
        let (seed, cuda) = (self.config.deterministic_seed, self.config.device.is_cuda());
        self.thread
            .run(move || {
                // Each pass starts from the seed, as a re-run does (`ciro-worker exec`, a
                // dispute's check): a model drawing random numbers gives the same output
                // whatever ran before it in this process.
                if let Some(seed) = seed {
                    seed_generators(seed, cuda);
                }
                run_batch(vec![request], &stats, &activity)
            })
            .await?;
        result
            .await
            .map_err(|_| EngineError::from(anyhow!("inference task dropped the request")))?
    }

    /// Runs `input` through the model, batched with concurrent requests for the same model.
    pub async fn infer(&self, hash: Digest, input: Tensor) -> Result<Tensor, EngineError> {
        let (model, mut request, result) = self.request(hash, input).await?;
        // A batching task that ended idle between the lookup and the send hands the request
        // back: the second lookup starts a new task.
        for attempt in 0..2 {
            match self.queue(&model)?.send(request) {
                Ok(()) => break,
                Err(mpsc::error::SendError(back)) if attempt == 0 => request = back,
                Err(_) => return Err(EngineError::from(anyhow!("batching task stopped"))),
            }
        }
        result
            .await
            .map_err(|_| EngineError::from(anyhow!("batching task dropped the request")))?
    }

    /// The model, and a validated request for it with the channel its result comes back on.
    async fn request(
        &self,
        hash: Digest,
        input: Tensor,
    ) -> Result<
        (
            Arc<LoadedModel>,
            Request,
            oneshot::Receiver<Result<Tensor, EngineError>>,
        ),
        EngineError,
    > {
        let model = self.model(hash).await?;
        let rows = validate(&input, &model.spec, self.config.max_batch)?;
        let (reply, result) = oneshot::channel();
        let request = Request {
            model: model.clone(),
            input,
            rows,
            arrived: Instant::now(),
            reply,
            span: tracing::Span::current(),
        };
        Ok((model, request, result))
    }

    /// Executes a job: decodes the safetensors input, runs it (batched with other jobs only
    /// with `batch_jobs` in throughput mode, else alone), encodes the output and hashes both.
    pub async fn execute(&self, hash: Digest, input: &[u8]) -> Result<JobOutput, EngineError> {
        if let Some(isolation) = &self.config.isolation {
            return self.execute_isolated(isolation, hash, input).await;
        }
        // The model first: an unknown or broken model is the error to report whatever the
        // input is.
        self.model(hash).await?;
        let (input_hash, tensor) =
            off_the_runtime(|| Ok::<_, EngineError>((Digest::of(input), decode_input(input)?)))?;
        let output = if self.config.deterministic_seed.is_some() || !self.config.batch_jobs {
            self.infer_unbatched(hash, tensor).await?
        } else {
            self.infer(hash, tensor).await?
        };
        check_output_size(&output, self.config.max_output_bytes)?;
        let (output, output_hash) = off_the_runtime(|| {
            let output = encode_output(&output)?;
            let output_hash = Digest::of(&output);
            Ok::<_, EngineError>((output, output_hash))
        })?;
        Ok(JobOutput {
            input_hash,
            output,
            output_hash,
        })
    }

    /// [`Self::execute`] in a child process: the input is checked against the stored spec
    /// here (a wrong shape or type is reported as it is in this process), then the child
    /// verifies, screens, loads and runs the model, within [`EngineConfig::pass_limit`]
    /// (not counted by [`Self::busy_with`], which times the work this process cannot
    /// interrupt).
    async fn execute_isolated(
        &self,
        isolation: &crate::isolation::Isolation,
        hash: Digest,
        input: &[u8],
    ) -> Result<JobOutput, EngineError> {
        let (path, spec) = self.store.file_of(&hash)?;
        let (input_hash, rows) = off_the_runtime(|| {
            let tensor = decode_input(input)?;
            let rows = validate(&tensor, &spec, self.config.max_batch)?;
            Ok::<_, EngineError>((Digest::of(input), rows))
        })?;
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        self.stats.rows.fetch_add(rows as u64, Ordering::Relaxed);
        let started = Instant::now();
        let run = isolation.run(crate::isolation::Pass {
            model_path: &path,
            model_hash: hash,
            device: self.config.device,
            seed: self.config.deterministic_seed,
            max_output_bytes: self.config.max_output_bytes,
            input,
        });
        let ran = match self.config.pass_limit {
            // Dropped at the limit, the run kills its process.
            Some(limit) => tokio::time::timeout(limit, run).await.unwrap_or_else(|_| {
                Err(EngineError::Forward(format!(
                    "the model's pass ran past this worker's limit of {} s and was killed",
                    limit.as_secs()
                )))
            }),
            None => run.await,
        };
        tracing::debug!(model = %hash, rows, elapsed_ms = started.elapsed().as_millis() as u64, ok = ran.is_ok(), "isolated pass ran");
        let output = match ran {
            // The child's word is checked: a file that does hash to its name stays, and the
            // claim is the job's failure (a model's code could make it, to move the blame
            // off the job onto the worker).
            Err(EngineError::HashMismatch { expected, actual }) => {
                let store = self.store.clone();
                let intact = tokio::task::spawn_blocking(move || store.verify(&hash))
                    .await
                    .map_err(|e| EngineError::from(anyhow!("checking a model file: {e}")))?;
                return Err(if intact {
                    EngineError::Forward(format!(
                        "the model's process claimed the model file damaged ({actual}); it \
                         is not"
                    ))
                } else {
                    EngineError::HashMismatch { expected, actual }
                });
            }
            other => other?,
        };
        let output_hash = off_the_runtime(|| Digest::of(&output));
        Ok(JobOutput {
            input_hash,
            output,
            output_hash,
        })
    }

    fn queue(&self, model: &LoadedModel) -> Result<mpsc::UnboundedSender<Request>, EngineError> {
        let mut queues = self
            .queues
            .lock()
            .map_err(|_| EngineError::from(anyhow!("queue map poisoned")))?;
        if let Some(queue) = queues.get(&model.hash).filter(|q| !q.is_closed()) {
            return Ok(queue.clone());
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let max_batch = self.config.max_batch.min(model.spec.max_batch);
        queues.insert(model.hash, tx.clone());
        tokio::spawn(batch_loop(
            rx,
            max_batch,
            self.config.max_wait,
            self.config.idle_unload,
            self.stats.clone(),
            self.thread.clone(),
        ));
        Ok(tx)
    }
}

/// Runs `work` (decoding, encoding and hashing tensors of up to the input limit: tens of
/// milliseconds) where it does not hold up the async runtime's other tasks: on a
/// multi-threaded runtime the current worker thread hands its tasks over first
/// (`block_in_place`); elsewhere (a current-thread runtime, no runtime) it runs in place.
fn off_the_runtime<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

async fn batch_loop(
    mut rx: mpsc::UnboundedReceiver<Request>,
    max_batch: i64,
    max_wait: Duration,
    idle: Duration,
    stats: Arc<EngineStats>,
    thread: Arc<InferenceThread>,
) {
    let mut carried: Option<Request> = None;
    loop {
        let first = match carried.take() {
            Some(request) => request,
            None => match tokio::time::timeout(idle, rx.recv()).await {
                Ok(Some(request)) => request,
                // The engine is gone.
                Ok(None) => return,
                // Idle: new sends now fail and start a new task (see `Engine::infer`); one that
                // got in before the close is served first.
                Err(_) => {
                    rx.close();
                    match rx.try_recv() {
                        Ok(request) => request,
                        Err(_) => return,
                    }
                }
            },
        };
        let deadline = tokio::time::Instant::from_std(first.arrived + max_wait);
        let mut rows = first.rows;
        let mut batch = vec![first];
        while rows < max_batch {
            // A request already queued is taken even past the deadline (the inner future is
            // polled before the timer).
            let next = match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(request)) => request,
                Ok(None) | Err(_) => break,
            };
            // One forward pass takes rows of one shape and type: a request whose rows differ
            // (the model's spec changed between them) waits for the next batch.
            let alike = next.input.kind() == batch[0].input.kind()
                && next.input.size().get(1..) == batch[0].input.size().get(1..);
            if rows + next.rows > max_batch || !alike {
                carried = Some(next);
                break;
            }
            rows += next.rows;
            batch.push(next);
        }
        let stats = stats.clone();
        let activity = thread.activity.clone();
        if let Err(e) = thread
            .run(move || run_batch(batch, &stats, &activity))
            .await
        {
            tracing::error!(error = %e, "a batch failed; its callers get an internal error");
        }
    }
}

/// One forward pass over the concatenated inputs; each request gets its rows back (on the
/// CPU) or the error.
fn run_batch(batch: Vec<Request>, stats: &EngineStats, activity: &Arc<Activity>) {
    // Every request of a batch is for one model (one task per model); their modules are
    // loads of one verified file, so the first's serves the batch.
    let model = batch[0].model.clone();
    let _span = batch[0].span.clone().entered();
    let passing = activity.passing(model.hash);
    let sizes: Vec<i64> = batch.iter().map(|r| r.rows).collect();
    let total: i64 = sizes.iter().sum();
    stats.batches.fetch_add(1, Ordering::Relaxed);
    stats
        .requests
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
    stats.rows.fetch_add(total as u64, Ordering::Relaxed);
    let started = Instant::now();
    let result = (|| {
        let inputs: Vec<&Tensor> = batch.iter().map(|r| &r.input).collect();
        let input = if inputs.len() == 1 {
            inputs[0].shallow_clone()
        } else {
            Tensor::f_cat(&inputs, 0)?
        };
        forward(&model.module, model.device, &input)
    })();
    drop(passing);
    tracing::debug!(model = %model.hash, requests = batch.len(), rows = total, elapsed_us = started.elapsed().as_micros() as u64, "batch ran");
    match result {
        Ok(output) if output.size().first() == Some(&total) => {
            let parts = if batch.len() == 1 {
                Ok(vec![output])
            } else {
                output.f_split_with_sizes(&sizes, 0)
            };
            match parts {
                Ok(parts) => {
                    for (request, part) in batch.into_iter().zip(parts) {
                        let _ = request.reply.send(Ok(part));
                    }
                }
                Err(e) => {
                    let message = format!("splitting the model's output by job: {e}");
                    for request in batch {
                        let _ = request
                            .reply
                            .send(Err(EngineError::Forward(message.clone())));
                    }
                }
            }
        }
        Ok(output) => {
            let message = format!(
                "model output {:?} does not have the batch's {total} rows first",
                output.size()
            );
            for request in batch {
                let _ = request
                    .reply
                    .send(Err(EngineError::Forward(message.clone())));
            }
        }
        Err(e) => {
            let message = e.to_string();
            for request in batch {
                let _ = request
                    .reply
                    .send(Err(EngineError::Forward(message.clone())));
            }
        }
    }
}

/// One forward pass of `module` on `device` under `no_grad`: the output, on the CPU. An
/// output larger than a file may hold is refused before the copy (a view on the device may
/// stand for far more memory than the host has; the encoder refuses it too, once on the CPU).
pub(crate) fn forward(
    module: &tch::CModule,
    device: Device,
    input: &Tensor,
) -> Result<Tensor, tch::TchError> {
    tch::no_grad(|| {
        let output = module.forward_ts(&[input.f_to(device)?])?;
        let bytes = output.f_kind().ok().and_then(|kind| {
            output
                .size()
                .iter()
                .try_fold(kind.elt_size_in_bytes() as u64, |n, &d| {
                    n.checked_mul(u64::try_from(d).ok()?)
                })
        });
        if bytes.is_none_or(|bytes| bytes > crate::tensors::MAX_ENCODED_BYTES) {
            return Err(tch::TchError::Shape(format!(
                "the model's output {:?} is more than the {} bytes a file may hold",
                output.size(),
                crate::tensors::MAX_ENCODED_BYTES
            )));
        }
        output.f_to(Device::Cpu)
    })
}

/// Refuses an output of more than `max_output_bytes` of tensor data, before it is encoded.
pub(crate) fn check_output_size(output: &Tensor, max_output_bytes: u64) -> Result<(), EngineError> {
    let bytes = u64::try_from(output.numel())
        .unwrap_or(u64::MAX)
        .saturating_mul(output.kind().elt_size_in_bytes() as u64);
    if bytes > max_output_bytes {
        return Err(EngineError::Forward(format!(
            "the model's output {:?} is {bytes} bytes, more than the {max_output_bytes} this \
             worker accepts",
            output.size(),
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_time_is_the_oldest_running_load_or_the_pass_of_that_model() {
        let activity = Arc::new(Activity::default());
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        assert_eq!(activity.busy_with(&a), None);
        let first = activity.loading(a);
        std::thread::sleep(Duration::from_millis(400));
        let second = activity.loading(a);
        assert!(activity.busy_with(&a).unwrap() >= Duration::from_millis(400));
        // Overlapping loads: once the first ends, only the second's own time counts.
        drop(first);
        assert!(activity.busy_with(&a).unwrap() < Duration::from_millis(400));
        drop(second);
        assert_eq!(activity.busy_with(&a), None);
        // A pass counts for its model only, and ends with its guard.
        let pass = activity.passing(b);
        assert!(activity.busy_with(&b).is_some());
        assert_eq!(activity.busy_with(&a), None);
        drop(pass);
        assert_eq!(activity.busy_with(&b), None);
    }
}
