//! Each job's forward pass in a process of its own, sandboxed ([`crate::sandbox`]), that holds
//! nothing worth stealing.
//!
//! A TorchScript model is code its submitter wrote, and libtorch's loader trusts the model's
//! pickled records: a crafted tensor record that runs past its storage, or an attribute of
//! another class, corrupts memory (demonstrated against torch 2.11 with models the
//! [`crate::screen`] passes). In the worker's own process that memory holds its account key.
//! So with isolation the worker never loads a model itself: per job it starts a child (its own
//! binary, a hidden subcommand that calls [`child_main`]) with a cleared environment, which
//! enters the sandbox as its first act, then verifies, screens, loads and runs the model once
//! and answers on its standard output. The child loads the model afresh for each job, so no
//! state a model keeps in its attributes reaches the next job (a dispute's re-run sees what the
//! job saw).
//!
//! The parent trusts nothing the child says: it reads at most the output limit and a little
//! more, checks that the answer is one safetensors tensor named `output` within the limit, and
//! hashes the input and output itself. A child that dies (a crash, a signal) or answers
//! garbage is the job's failure; one that runs too long is killed when the job's future is
//! dropped (the worker's watchdog).
//!
//! The cost: a process start, libtorch's start and a model load per job (the worker benchmark
//! measures it against the in-process engine).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};

use anyhow::anyhow;
use serde::{Deserialize, Serialize};
use tch::{CModule, Device, Tensor};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::digest::Digest;
use crate::error::EngineError;
use crate::sandbox;
use crate::tensors::{decode_input, encode_output, OUTPUT_NAME};

/// Variables a model's process keeps from the worker's environment (device selection and
/// thread counts; none holds a secret). Everything else is cleared.
const KEPT_ENVIRONMENT: &[&str] = &[
    "CUDA_VISIBLE_DEVICES",
    "CUDA_DEVICE_ORDER",
    "CUBLAS_WORKSPACE_CONFIG",
    "NVIDIA_VISIBLE_DEVICES",
    "NVIDIA_DRIVER_CAPABILITIES",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "LD_LIBRARY_PATH",
];

/// Most bytes of a child's diagnostics kept for the worker's log.
const MAX_DIAGNOSTICS: u64 = 16 * 1024;

/// Room for the safetensors header around an output's data.
const HEADER_ROOM: u64 = 1 << 20;

/// How the engine starts a job's process.
#[derive(Debug, Clone)]
pub struct Isolation {
    /// The program, and the arguments before the request, that run [`child_main`] (the
    /// worker: its own executable and its hidden `pass` subcommand).
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// Whether the child enters the sandbox (`false`: a process of its own only, for a kernel
    /// without Landlock, at the operator's risk).
    pub sandbox: bool,
    /// More paths the child may read beneath (where a GPU driver's libraries live outside
    /// the defaults of [`sandbox::default_read_paths`]).
    pub read: Vec<PathBuf>,
    /// Whether the child screens the model ([`crate::screen`]); `false` only in the sandbox's
    /// own tests, which run a model that reads a file to show the sandbox stops it.
    pub screen: bool,
}

impl Isolation {
    /// The child as `program args...`, sandboxed and screening.
    pub fn new(program: impl Into<PathBuf>, args: &[&str]) -> Self {
        Self {
            program: program.into(),
            args: args.iter().map(OsString::from).collect(),
            sandbox: true,
            read: Vec::new(),
            screen: true,
        }
    }
}

/// What the parent asks of a child (its last argument, JSON).
#[derive(Debug, Serialize, Deserialize)]
enum ChildRequest {
    Pass(PassRequest),
    Probe(ProbeRequest),
}

/// A job's pass.
#[derive(Debug, Serialize, Deserialize)]
struct PassRequest {
    model_path: PathBuf,
    model_hash: Digest,
    /// `cpu` or `cuda:N`.
    device: String,
    seed: Option<u64>,
    max_output_bytes: u64,
    /// The input's length: the child reads exactly this much of its standard input, which
    /// the parent then keeps open until the answer (its end is how the child learns that the
    /// parent is gone).
    input_bytes: u64,
    sandbox: bool,
    read: Vec<PathBuf>,
    screen: bool,
}

/// A child's refusal, as it crosses the pipe.
#[derive(Debug, Serialize, Deserialize)]
enum Refusal {
    UnknownModel,
    HashMismatch(Digest),
    Corrupt(String),
    Unsafe(String),
    InvalidInput(String),
    Forward(String),
    Internal(String),
}

impl Refusal {
    fn of(error: EngineError) -> Self {
        match error {
            EngineError::UnknownModel(_) => Self::UnknownModel,
            EngineError::HashMismatch { actual, .. } => Self::HashMismatch(actual),
            EngineError::CorruptModel { reason, .. } => Self::Corrupt(reason),
            EngineError::UnsafeModel { reason, .. } => Self::Unsafe(reason),
            EngineError::Forward(message) => Self::Forward(message),
            EngineError::Internal(e) => Self::Internal(format!("{e:#}")),
            other => Self::InvalidInput(other.to_string()),
        }
    }

    fn into_error(self, hash: Digest) -> EngineError {
        match self {
            Self::UnknownModel => EngineError::UnknownModel(hash),
            Self::HashMismatch(actual) => EngineError::HashMismatch {
                expected: hash,
                actual,
            },
            Self::Corrupt(reason) => EngineError::CorruptModel { hash, reason },
            Self::Unsafe(reason) => EngineError::UnsafeModel { hash, reason },
            Self::InvalidInput(message) => EngineError::InvalidInput(message),
            Self::Forward(message) => EngineError::Forward(message),
            Self::Internal(message) => {
                EngineError::from(anyhow!("the model's process failed: {message}"))
            }
        }
    }
}

/// The answer's first byte: an output follows, or a refusal (JSON).
const ANSWER_OUTPUT: u8 = 0;
const ANSWER_REFUSAL: u8 = 1;

fn device_name(device: Device) -> String {
    match device {
        Device::Cuda(index) => format!("cuda:{index}"),
        _ => "cpu".to_owned(),
    }
}

fn parse_device(name: &str) -> Result<Device, EngineError> {
    match name.strip_prefix("cuda:") {
        None if name == "cpu" => Ok(Device::Cpu),
        Some(index) => index
            .parse()
            .map(Device::Cuda)
            .map_err(|_| EngineError::from(anyhow!("unknown device {name:?}"))),
        None => Err(EngineError::from(anyhow!("unknown device {name:?}"))),
    }
}

/// What a job's run in a child needs besides the isolation.
pub(crate) struct Pass<'a> {
    pub model_path: &'a Path,
    pub model_hash: Digest,
    pub device: Device,
    pub seed: Option<u64>,
    pub max_output_bytes: u64,
    pub input: &'a [u8],
}

impl Isolation {
    /// Starts a child with `request`, its environment cleared but for
    /// [`KEPT_ENVIRONMENT`], killed if dropped.
    #[allow(clippy::type_complexity)]
    fn spawn(
        &self,
        request: &str,
    ) -> Result<
        (
            tokio::process::Child,
            tokio::process::ChildStdin,
            tokio::process::ChildStdout,
            tokio::process::ChildStderr,
        ),
        EngineError,
    > {
        let mut command = tokio::process::Command::new(&self.program);
        command
            .args(&self.args)
            .arg(request)
            .env_clear()
            .envs(
                KEPT_ENVIRONMENT.iter().filter_map(|name| {
                    std::env::var_os(name).map(|value| (name.to_string(), value))
                }),
            )
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|e| {
            EngineError::from(anyhow!(
                "starting the model's process {}: {e}",
                self.program.display()
            ))
        })?;
        match (child.stdin.take(), child.stdout.take(), child.stderr.take()) {
            (Some(stdin), Some(stdout), Some(stderr)) => Ok((child, stdin, stdout, stderr)),
            _ => Err(EngineError::from(anyhow!(
                "the model's process has no pipes"
            ))),
        }
    }

    /// Tries, from a child in the sandbox a pass would run in, what a model that took control
    /// of it would try (reading and writing files of the worker's in `scratch`, a TCP
    /// connection to a port this process listens on, a UDP socket, a signal to this process,
    /// its memory and environment, a process of its own, a lower OOM score than this
    /// process's), and what a pass needs (reading a file it is granted, a tensor operation, a
    /// thread). A worker checks it before serving; the report lists each attempt.
    pub async fn check_sandbox(&self, scratch: &Path) -> Result<SandboxReport, EngineError> {
        let internal = |what: &str, e: std::io::Error| {
            EngineError::from(anyhow!("checking the sandbox: {what}: {e}"))
        };
        let secret = scratch.join(format!("sandbox-check-secret-{}", std::process::id()));
        let granted = scratch.join(format!("sandbox-check-granted-{}", std::process::id()));
        let plant = scratch.join(format!("sandbox-check-planted-{}", std::process::id()));
        std::fs::write(&secret, b"a worker's secret").map_err(|e| internal("a scratch file", e))?;
        std::fs::write(&granted, b"a model file").map_err(|e| internal("a scratch file", e))?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| internal("a listening port", e))?;
        let port = listener
            .local_addr()
            .map_err(|e| internal("a listening port", e))?
            .port();
        let request = ChildRequest::Probe(ProbeRequest {
            secret: secret.clone(),
            granted: granted.clone(),
            plant: plant.clone(),
            port,
            parent: std::process::id(),
            sandbox: self.sandbox,
            read: self.read.clone(),
        });
        let request = serde_json::to_string(&request)
            .map_err(|e| EngineError::from(anyhow!("encoding a probe request: {e}")))?;
        let (mut child, stdin, stdout, stderr) = self.spawn(&request)?;
        drop(stdin);
        let (answer, diagnostics) =
            tokio::join!(read_answer(stdout, HEADER_ROOM), read_diagnostics(stderr));
        let _ = child.start_kill();
        let _ = child.wait().await;
        drop(listener);
        for file in [&secret, &granted, &plant] {
            let _ = std::fs::remove_file(file);
        }
        match answer {
            Ok((ANSWER_OUTPUT, report)) => serde_json::from_slice(&report)
                .map_err(|e| EngineError::from(anyhow!("the sandbox check answered garbage: {e}"))),
            Ok((_, refusal)) => Err(EngineError::from(anyhow!(
                "the sandbox check failed: {}",
                String::from_utf8_lossy(&refusal)
            ))),
            Err(why) => Err(EngineError::from(anyhow!(
                "the sandbox check gave no answer: {why}; it said: {}",
                diagnostics.trim_end()
            ))),
        }
    }

    /// Runs one job's pass in a child; returns the output file (checked: one tensor named
    /// `output` of at most `max_output_bytes` of data).
    pub(crate) async fn run(&self, pass: Pass<'_>) -> Result<Vec<u8>, EngineError> {
        // The child starts in `/`: a store opened at a relative path is resolved here.
        let model_path = std::path::absolute(pass.model_path)
            .map_err(|e| EngineError::from(anyhow!("resolving the model's path: {e}")))?;
        let request = ChildRequest::Pass(PassRequest {
            model_path,
            model_hash: pass.model_hash,
            device: device_name(pass.device),
            seed: pass.seed,
            max_output_bytes: pass.max_output_bytes,
            input_bytes: pass.input.len() as u64,
            sandbox: self.sandbox,
            read: self.read.clone(),
            screen: self.screen,
        });
        let request = serde_json::to_string(&request)
            .map_err(|e| EngineError::from(anyhow!("encoding a pass request: {e}")))?;
        let (mut child, mut stdin, stdout, stderr) = self.spawn(&request)?;
        let input = pass.input;
        let feed = async move {
            // A child that ended early (a refusal) stops reading: its answer says why.
            let _ = stdin.write_all(input).await;
            stdin
        };
        let limit = pass.max_output_bytes.saturating_add(HEADER_ROOM);
        let (stdin, answer, diagnostics) =
            tokio::join!(feed, read_answer(stdout, limit), read_diagnostics(stderr));
        drop(stdin);
        // An answer over the limit leaves the child writing: it is killed, not waited for.
        if answer.is_err() {
            let _ = child.start_kill();
        }
        let status = child
            .wait()
            .await
            .map_err(|e| EngineError::from(anyhow!("waiting for the model's process: {e}")))?;
        if !diagnostics.is_empty() {
            tracing::debug!(model = %pass.model_hash, %status, diagnostics = %diagnostics.trim_end(), "the model's process said");
        }
        match answer {
            Ok((ANSWER_OUTPUT, output)) => {
                check_output(&output, pass.max_output_bytes)?;
                Ok(output)
            }
            Ok((_, refusal)) => Err(serde_json::from_slice::<Refusal>(&refusal)
                .map_err(|e| {
                    EngineError::Forward(format!("the model's process answered garbage: {e}"))
                })?
                .into_error(pass.model_hash)),
            Err(why) => {
                tracing::warn!(model = %pass.model_hash, %status, %why, diagnostics = %diagnostics.trim_end(), "the model's process gave no answer");
                Err(EngineError::Forward(format!(
                    "the model's process ended without an answer ({status}): {why}"
                )))
            }
        }
    }
}

/// Reads a child's answer: its kind byte, its length and at most `limit` bytes of it.
async fn read_answer(
    mut stdout: tokio::process::ChildStdout,
    limit: u64,
) -> Result<(u8, Vec<u8>), String> {
    let mut head = [0u8; 9];
    stdout
        .read_exact(&mut head)
        .await
        .map_err(|e| format!("reading its answer: {e}"))?;
    let kind = head[0];
    let mut length = [0u8; 8];
    length.copy_from_slice(&head[1..]);
    let length = u64::from_le_bytes(length);
    if length > limit {
        return Err(format!(
            "its answer is {length} bytes, more than the output limit allows"
        ));
    }
    let mut body = Vec::with_capacity(usize::try_from(length.min(1 << 26)).unwrap_or(0));
    (&mut stdout)
        .take(length)
        .read_to_end(&mut body)
        .await
        .map_err(|e| format!("reading its answer: {e}"))?;
    if body.len() as u64 != length {
        return Err(format!(
            "its answer ended after {} of {length} bytes",
            body.len()
        ));
    }
    Ok((kind, body))
}

/// Reads a child's standard error, keeping the first [`MAX_DIAGNOSTICS`] bytes.
async fn read_diagnostics(stderr: tokio::process::ChildStderr) -> String {
    let mut kept = Vec::new();
    let mut stderr = stderr;
    let _ = (&mut stderr)
        .take(MAX_DIAGNOSTICS)
        .read_to_end(&mut kept)
        .await;
    // The rest is drained, so that a chatty child never blocks on a full pipe.
    let _ = tokio::io::copy(&mut stderr, &mut tokio::io::sink()).await;
    String::from_utf8_lossy(&kept).into_owned()
}

/// Checks a child's output: a safetensors file of one tensor named `output`, its data at most
/// `max_output_bytes`.
fn check_output(output: &[u8], max_output_bytes: u64) -> Result<(), EngineError> {
    let garbage = |why: String| EngineError::Forward(format!("the model's output {why}"));
    let file = safetensors::SafeTensors::deserialize(output)
        .map_err(|e| garbage(format!("is not a tensor file: {e:?}")))?;
    let names = file.names();
    if names.as_slice() != [OUTPUT_NAME] {
        return Err(garbage(format!(
            "holds tensors {names:?}, not one {OUTPUT_NAME:?}"
        )));
    }
    let data = file
        .tensor(OUTPUT_NAME)
        .map_err(|e| garbage(format!("is unreadable: {e:?}")))?
        .data()
        .len() as u64;
    if data > max_output_bytes {
        return Err(EngineError::Forward(format!(
            "the model's output is {data} bytes, more than the {max_output_bytes} this worker \
             accepts"
        )));
    }
    Ok(())
}

/// A sandbox check.
#[derive(Debug, Serialize, Deserialize)]
struct ProbeRequest {
    secret: PathBuf,
    granted: PathBuf,
    plant: PathBuf,
    port: u16,
    parent: u32,
    sandbox: bool,
    read: Vec<PathBuf>,
}

/// One attempt of a sandbox check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// What was tried.
    pub what: String,
    /// Whether a pass may do it (a granted read, a tensor operation) or must not.
    pub allowed: bool,
    /// Whether it worked.
    pub worked: bool,
    /// The error, when it did not.
    pub error: Option<String>,
}

/// What a sandbox check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxReport {
    pub attempts: Vec<Attempt>,
}

impl SandboxReport {
    /// The attempts that worked and must not have (empty: the sandbox holds).
    pub fn escapes(&self) -> Vec<&Attempt> {
        self.attempts
            .iter()
            .filter(|a| a.worked && !a.allowed)
            .collect()
    }

    /// The attempts a pass needs that failed (empty: passes can run).
    pub fn broken(&self) -> Vec<&Attempt> {
        self.attempts
            .iter()
            .filter(|a| !a.worked && a.allowed)
            .collect()
    }
}

/// The sandbox check's child: enters the sandbox as a pass would, then tries each thing.
fn probe(request: ProbeRequest) -> Result<Vec<u8>, EngineError> {
    if request.sandbox {
        let mut policy = pass_policy(Device::Cpu, &request.read);
        policy.read.push(request.granted.clone());
        sandbox::enter(&policy).map_err(|e| EngineError::from(anyhow!("the sandbox: {e}")))?;
    }
    let mut attempts = Vec::new();
    let mut attempt = |what: &str, allowed: bool, result: std::io::Result<()>| {
        attempts.push(Attempt {
            what: what.to_owned(),
            allowed,
            worked: result.is_ok(),
            error: result.err().map(|e| e.to_string()),
        })
    };
    attempt(
        "read a file the pass is granted",
        true,
        std::fs::read(&request.granted).map(drop),
    );
    attempt(
        "run a tensor operation",
        true,
        Tensor::ones([2, 2], (tch::Kind::Float, Device::Cpu))
            .f_sum(tch::Kind::Float)
            .map(drop)
            .map_err(std::io::Error::other),
    );
    attempt(
        "start a thread",
        true,
        std::thread::Builder::new()
            .spawn(|| ())
            .and_then(|thread| thread.join().map_err(|_| std::io::Error::other("panicked"))),
    );
    attempt(
        "read a file of the worker's",
        false,
        std::fs::read(&request.secret).map(drop),
    );
    attempt(
        "write a file of the worker's",
        false,
        std::fs::write(&request.plant, b"planted"),
    );
    attempt(
        "list the worker's files",
        false,
        std::fs::read_dir(request.secret.parent().unwrap_or(Path::new("/"))).map(drop),
    );
    attempt(
        "connect over TCP",
        false,
        std::net::TcpStream::connect(("127.0.0.1", request.port)).map(drop),
    );
    attempt(
        "open a UDP socket",
        false,
        std::net::UdpSocket::bind("127.0.0.1:0").map(drop),
    );
    attempt(
        "signal the worker",
        false,
        // SAFETY: kill with signal 0 only checks the permission; nothing is sent.
        match unsafe { libc::kill(request.parent as libc::pid_t, 0) } {
            0 => Ok(()),
            _ => Err(std::io::Error::last_os_error()),
        },
    );
    attempt(
        "read the worker's memory",
        false,
        std::fs::File::open(format!("/proc/{}/mem", request.parent)).map(drop),
    );
    attempt(
        "read the worker's environment",
        false,
        std::fs::read(format!("/proc/{}/environ", request.parent)).map(drop),
    );
    attempt("start another process", false, {
        // SAFETY: the child only ends itself at once; the probe's process is single-threaded
        // but for libtorch's idle workers, which the child does not touch.
        match unsafe { libc::fork() } {
            0 => unsafe { libc::_exit(0) },
            -1 => Err(std::io::Error::last_os_error()),
            child => {
                // SAFETY: waits for the child just started.
                unsafe { libc::waitpid(child, std::ptr::null_mut(), 0) };
                Ok(())
            }
        }
    });
    attempt(
        "lower its out-of-memory score below the worker's",
        false,
        std::fs::write("/proc/self/oom_score_adj", "0"),
    );
    serde_json::to_vec(&SandboxReport { attempts })
        .map_err(|e| EngineError::from(anyhow!("encoding the report: {e}")))
}

/// Ends this process once its parent is gone: a worker killed with `SIGKILL` cannot kill its
/// children, and a model that never returns would run on, orphaned, holding the machine. The
/// parent keeps the child's standard input open until it has the answer; the kernel closes it
/// when the parent dies, whoever the child is re-parented to. (`PR_SET_PDEATHSIG` follows the
/// thread that started the child, one of the worker's runtime threads, which may end while the
/// worker lives.)
fn watch_parent() {
    let watching = std::thread::Builder::new()
        .name("ciro-parent-watch".into())
        .spawn(|| {
            let mut stdin = std::io::stdin().lock();
            let mut byte = [0u8; 1];
            loop {
                match std::io::Read::read(&mut stdin, &mut byte) {
                    Ok(0) | Err(_) => {
                        // SAFETY: `_exit` ends the process at once, without running
                        // destructors that could wait on the pass.
                        unsafe { libc::_exit(1) }
                    }
                    Ok(_) => continue,
                }
            }
        });
    if let Err(e) = watching {
        eprintln!("warning: not watching the worker (a pass may outlive it): {e}");
    }
}

/// The sandbox of a pass on `device`, with `read` added to the defaults.
fn pass_policy(device: Device, read: &[PathBuf]) -> sandbox::Policy {
    let mut policy = sandbox::Policy {
        read: sandbox::default_read_paths(),
        devices: if device.is_cuda() {
            sandbox::default_devices()
        } else {
            Vec::new()
        },
    };
    policy.read.extend(read.iter().cloned());
    policy
}

/// The child: `request` is the parent's JSON; the input comes on standard input; the answer
/// goes to standard output. Must be called first thing in `main`, before any other thread
/// starts (the sandbox applies to the calling thread and those it starts later).
pub fn child_main(request: &str) -> ExitCode {
    let served = serde_json::from_str(request)
        .map_err(|e| EngineError::from(anyhow!("reading the request: {e}")))
        .and_then(|request| match request {
            ChildRequest::Pass(pass) => serve(pass),
            ChildRequest::Probe(check) => probe(check),
        });
    let answer = match served {
        Ok(output) => (ANSWER_OUTPUT, output),
        Err(error) => (
            ANSWER_REFUSAL,
            serde_json::to_vec(&Refusal::of(error)).unwrap_or_default(),
        ),
    };
    let mut stdout = std::io::stdout().lock();
    let written = std::io::Write::write_all(&mut stdout, &[answer.0])
        .and_then(|()| {
            std::io::Write::write_all(&mut stdout, &(answer.1.len() as u64).to_le_bytes())
        })
        .and_then(|()| std::io::Write::write_all(&mut stdout, &answer.1))
        .and_then(|()| std::io::Write::flush(&mut stdout));
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("writing the answer: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(request: PassRequest) -> Result<Vec<u8>, EngineError> {
    let device = parse_device(&request.device)?;
    if request.sandbox {
        let mut policy = pass_policy(device, &request.read);
        policy.read.push(request.model_path.clone());
        let entered =
            sandbox::enter(&policy).map_err(|e| EngineError::from(anyhow!("the sandbox: {e}")))?;
        if !entered.landlock_full {
            eprintln!(
                "warning: this kernel's Landlock (ABI {}) enforces only part of the sandbox's \
                 rules",
                entered.landlock_abi
            );
        }
    }
    let mut input = vec![0u8; usize::try_from(request.input_bytes).unwrap_or(usize::MAX)];
    std::io::Read::read_exact(&mut std::io::stdin().lock(), &mut input)
        .map_err(|e| EngineError::from(anyhow!("reading the input: {e}")))?;
    // Started in the sandbox, so that the thread is in it too.
    watch_parent();
    let bytes = std::fs::read(&request.model_path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            EngineError::UnknownModel(request.model_hash)
        } else {
            EngineError::from(anyhow!("reading the model file: {e}"))
        }
    })?;
    let actual = Digest::of(&bytes);
    if actual != request.model_hash {
        return Err(EngineError::HashMismatch {
            expected: request.model_hash,
            actual,
        });
    }
    let hash = request.model_hash;
    if request.screen {
        crate::store::screen(&hash, &bytes)?;
    }
    let input = decode_input(&input)?;
    if let Some(seed) = request.seed {
        crate::engine::seed_generators(seed, device.is_cuda());
        if device.is_cuda() {
            tch::Cuda::cudnn_set_benchmark(false);
        }
    }
    let mut module = CModule::load_data_on_device(&mut std::io::Cursor::new(bytes), device)
        .map_err(|e| EngineError::CorruptModel {
            hash,
            reason: e.to_string(),
        })?;
    module.set_eval();
    let rows = input.size().first().copied().unwrap_or(0);
    let output = crate::engine::forward(&module, device, &input)
        .map_err(|e| EngineError::Forward(e.to_string()))?;
    if output.size().first() != Some(&rows) {
        return Err(EngineError::Forward(format!(
            "model output {:?} does not have the batch's {rows} rows first",
            output.size()
        )));
    }
    let output: Tensor = output;
    crate::engine::check_output_size(&output, request.max_output_bytes)?;
    encode_output(&output)
}
