//! Each job's forward pass in a process of its own, sandboxed ([`crate::sandbox`]), that holds
//! nothing worth stealing.
//!
//! A TorchScript model is code its submitter wrote, and libtorch's loader trusts the model's
//! pickled records: a crafted tensor record that runs past its storage, or an attribute of
//! another class, corrupts memory (demonstrated against torch 2.11 with models the
//! [`crate::screen`] passes). In the worker's own process that memory holds its account key.
//! So with isolation the worker never loads a model itself.
//!
//! **A fork server.** The engine starts one helper process (the worker's own binary, a hidden
//! subcommand that calls [`child_main`]) with a cleared environment. Its only thread enters
//! the sandbox first (reading the libraries, `/proc` and `/sys`, not the worker's files),
//! and never touches libtorch. For each job the engine makes three pipes, opens the model file,
//! and sends the four descriptors with the job over a Unix socket; the server forks a child
//! onto them and hands back its pidfd. The child forbids itself new processes and signals
//! outside itself, reads the input, then verifies, screens, loads and runs the model once and
//! answers on its standard output. Forking skips the process start (libtorch's start alone takes about 0.4 s on this
//! kind of machine); each job still loads its model afresh, so no state a model keeps in its
//! attributes reaches the next job (a dispute's re-run sees what the job saw).
//!
//! The engine trusts nothing a child says: it reads at most the output limit and a little
//! more, checks that the answer is one safetensors tensor named `output` within the limit, and
//! hashes the input and output itself. A child that dies (a crash, a signal) or answers
//! garbage is the job's failure. A child is killed (through a pidfd, so never another process
//! that got its number) when its job's future ends: answered, or dropped by the worker's
//! watchdog. A child whose worker died ends itself (its standard input closes), and the
//! server ends when the engine's socket closes.

use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::anyhow;
use serde::{Deserialize, Serialize};
use tch::{CModule, Device, Tensor};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::digest::Digest;
use crate::error::EngineError;
use crate::sandbox;
use crate::tensors::{decode_input, encode_output, OUTPUT_NAME};

/// Variables a model's process keeps from the worker's environment (device selection and
/// thread counts; none holds a secret). Everything else is cleared.
/// (Never OpenMP's CPU binding, `OMP_PROC_BIND`, `OMP_PLACES`, `GOMP_CPU_AFFINITY`,
/// `KMP_AFFINITY`: binding a thread by its id is refused in the sandbox.)
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

/// How long a child's diagnostics are read after its answer (a child that answered and then
/// holds its standard error open does not hold the job).
const DIAGNOSTICS_AFTER_ANSWER: Duration = Duration::from_secs(2);

/// Room for the safetensors header around an output's data.
const HEADER_ROOM: u64 = 1 << 20;

/// Most bytes of one message between the engine and the fork server.
const MAX_MESSAGE: usize = 64 * 1024;

/// How long a sandbox check may take in all.
const CHECK_DEADLINE: Duration = Duration::from_secs(60);

/// How long the engine waits for the fork server to start a child.
const SERVER_ANSWER: Duration = Duration::from_secs(30);

/// How the engine runs a job's pass in a process of its own.
#[derive(Debug, Clone)]
pub struct Isolation {
    /// The program, and the arguments before the request, that run [`child_main`] (the
    /// worker: its own executable and its hidden `pass` subcommand).
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// Whether the processes enter the sandbox (`false`: processes of their own only, for a
    /// kernel without Landlock, at the operator's risk).
    pub sandbox: bool,
    /// More paths the processes may read beneath (where a GPU driver's libraries live outside
    /// the defaults of [`sandbox::default_read_paths`]).
    pub read: Vec<PathBuf>,
    /// Whether a child screens the model ([`crate::screen`]); `false` only in the sandbox's
    /// own tests, which run a model that reads a file to show the sandbox stops it.
    pub screen: bool,
    /// The newest Landlock ABI the sandbox may use (`None`: the kernel's): the sandbox an older
    /// kernel gives, whose missing rules other layers stand in for, built on a newer one (the
    /// tests check it holds on every ABI).
    pub landlock_abi: Option<i32>,
    /// Most bytes of memory a pass may take beyond what its process starts with (libtorch,
    /// loaded once by the fork server): an allocation past it fails in the pass (the job's
    /// error) rather than taking the machine's memory. `None`: no limit.
    pub pass_memory: Option<u64>,
    /// The fork server, started at the first job (shared by clones).
    server: Servers,
}

impl Isolation {
    /// Passes run by `program args...`, sandboxed and screening.
    pub fn new(program: impl Into<PathBuf>, args: &[&str]) -> Self {
        Self {
            program: program.into(),
            args: args.iter().map(OsString::from).collect(),
            sandbox: true,
            read: Vec::new(),
            screen: true,
            landlock_abi: None,
            pass_memory: None,
            server: Servers::default(),
        }
    }
}

#[derive(Clone, Default)]
struct Servers(Arc<Mutex<Option<Server>>>);

impl std::fmt::Debug for Servers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("fork server")
    }
}

/// The fork server's start (its last argument, JSON).
#[derive(Debug, Serialize, Deserialize)]
struct ServerRequest {
    /// `cpu` or `cuda:N`: the device files it may use.
    device: String,
    sandbox: bool,
    /// What it may read beneath besides the defaults (the operator's `--sandbox-read`).
    read: Vec<PathBuf>,
    /// The newest Landlock ABI its sandbox may use ([`Isolation::landlock_abi`]).
    landlock_abi: Option<i32>,
    /// [`Isolation::pass_memory`].
    #[serde(default)]
    pass_memory: Option<u64>,
}

/// What a child of the fork server runs.
#[derive(Debug, Serialize, Deserialize)]
enum Job {
    Pass(PassRequest),
    Probe(ProbeRequest),
}

/// A job's pass.
#[derive(Debug, Serialize, Deserialize)]
struct PassRequest {
    model_hash: Digest,
    /// `cpu` or `cuda:N`.
    device: String,
    seed: Option<u64>,
    max_output_bytes: u64,
    /// The input's length: the child reads exactly this much of its standard input, which
    /// the engine then keeps open until the answer (its end is how the child learns that the
    /// worker is gone).
    input_bytes: u64,
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
            // The child is not believed on a fault of the worker's: the worker opened the
            // file it handed over. Its word would move the blame off the job.
            Self::UnknownModel => {
                EngineError::Forward("the model's process could not read the model".into())
            }
            Self::HashMismatch(actual) => EngineError::HashMismatch {
                expected: hash,
                actual,
            },
            Self::Corrupt(reason) => EngineError::CorruptModel { hash, reason },
            Self::Unsafe(reason) => EngineError::UnsafeModel { hash, reason },
            Self::InvalidInput(message) => EngineError::InvalidInput(message),
            Self::Forward(message) => EngineError::Forward(message),
            Self::Internal(message) => {
                EngineError::Forward(format!("the model's process failed: {message}"))
            }
        }
    }
}

/// The answer's first byte: an output follows, or a refusal (JSON).
const ANSWER_OUTPUT: u8 = 0;
const ANSWER_REFUSAL: u8 = 1;

/// What a child writes first, once its own set-up is done (its streams, its death signal, its
/// layers of the sandbox, the job read) and before it reads the input or the model: what
/// follows is the job's doing, its model's or its input's. A child that answers or ends
/// without it failed in the worker's own machinery, which is no fault of the job's (and no
/// model's code has run in it to say otherwise).
const READY: u8 = 2;

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

/// A running fork server.
struct Server {
    /// The engine's end of the server's Unix socket (its standard input).
    control: OwnedFd,
    process: std::process::Child,
    /// What it was started for: its device, and what it may read.
    device: String,
    read: Vec<PathBuf>,
}

impl Server {
    fn start(isolation: &Isolation, device: &str, read: Vec<PathBuf>) -> std::io::Result<Self> {
        let (control, theirs) = seqpacket_pair()?;
        let timeout = libc::timeval {
            tv_sec: SERVER_ANSWER.as_secs() as libc::time_t,
            tv_usec: 0,
        };
        // SAFETY: a valid timeval for SO_RCVTIMEO on a socket this function owns.
        if unsafe {
            libc::setsockopt(
                control.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        } != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        let request = serde_json::to_string(&ServerRequest {
            device: device.to_owned(),
            sandbox: isolation.sandbox,
            read: read.clone(),
            landlock_abi: isolation.landlock_abi,
            pass_memory: isolation.pass_memory,
        })
        .map_err(std::io::Error::other)?;
        let process =
            std::process::Command::new(&isolation.program)
                .args(&isolation.args)
                .arg(request)
                .env_clear()
                .envs(KEPT_ENVIRONMENT.iter().filter_map(|name| {
                    std::env::var_os(name).map(|value| (name.to_string(), value))
                }))
                .current_dir("/")
                .stdin(Stdio::from(theirs))
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!("starting {}: {e}", isolation.program.display()),
                    )
                })?;
        tracing::info!(
            pid = process.id(),
            sandbox = isolation.sandbox,
            "model fork server started"
        );
        Ok(Self {
            control,
            process,
            device: device.to_owned(),
            read,
        })
    }

    /// Has the server fork a child that runs `job` with `fds` (its standard streams, then the
    /// file it reads: the model); the child's pidfd, opened by the server before it could
    /// reap the child, so it names that child and no other. A server that answers a refusal
    /// (a fork or pidfd that failed) is alive: [`Forked::Refused`], not a reason to replace
    /// it (replacing it ends the passes it runs).
    fn fork(&self, job: &[u8], fds: [BorrowedFd<'_>; 4]) -> Forked {
        if let Err(e) = send(self.control.as_fd(), job, &fds) {
            return Forked::Gone(e);
        }
        let (reply, pidfds) = match receive(self.control.as_fd()) {
            Ok(Some(message)) => message,
            Ok(None) => {
                return Forked::Gone(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the fork server ended",
                ))
            }
            Err(e) => return Forked::Gone(e),
        };
        match serde_json::from_slice::<Result<(), String>>(&reply) {
            Ok(Ok(())) => match pidfds.into_iter().next() {
                Some(pidfd) => Forked::Started(pidfd),
                None => Forked::Refused("the fork server sent no pidfd".into()),
            },
            Ok(Err(why)) => Forked::Refused(why),
            Err(e) => Forked::Gone(std::io::Error::other(format!("a garbled reply: {e}"))),
        }
    }
}

/// What became of a request to fork.
enum Forked {
    Started(OwnedFd),
    /// The server answered that it could not (it lives on).
    Refused(String),
    /// No answer: the server is gone or stuck.
    Gone(std::io::Error),
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// A pipe: its read end, then its write end (both closed on exec).
fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds: [RawFd; 2] = [-1; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`, which this function then owns.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by no one else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A Unix socket pair that keeps message boundaries (each job one message).
fn seqpacket_pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds: [RawFd; 2] = [-1; 2];
    // SAFETY: socketpair writes two descriptors into `fds`, which this function then owns.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    } != 0
    {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by no one else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Control-message room for up to 4 descriptors, aligned as `cmsghdr` needs.
const CONTROL_WORDS: usize = 8;

/// Sends `bytes` as one message on `socket`, with `fds` attached.
fn send(socket: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> std::io::Result<()> {
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let payload = std::mem::size_of_val(raw.as_slice()) as u32;
    let mut control = [0u64; CONTROL_WORDS];
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: a zeroed msghdr is valid; every pointer set below outlives the sendmsg call,
    // and the control buffer holds CMSG_SPACE(payload) bytes (checked).
    unsafe {
        let mut message: libc::msghdr = std::mem::zeroed();
        message.msg_iov = &mut iov;
        message.msg_iovlen = 1;
        if !raw.is_empty() {
            let space = libc::CMSG_SPACE(payload) as usize;
            if space > std::mem::size_of_val(&control) {
                return Err(std::io::Error::other("too many descriptors"));
            }
            message.msg_control = control.as_mut_ptr().cast();
            message.msg_controllen = space as _;
            let header = libc::CMSG_FIRSTHDR(&message);
            (*header).cmsg_level = libc::SOL_SOCKET;
            (*header).cmsg_type = libc::SCM_RIGHTS;
            (*header).cmsg_len = libc::CMSG_LEN(payload) as _;
            std::ptr::copy_nonoverlapping(
                raw.as_ptr().cast::<u8>(),
                libc::CMSG_DATA(header),
                payload as usize,
            );
        }
        loop {
            let sent = libc::sendmsg(socket.as_raw_fd(), &message, libc::MSG_NOSIGNAL);
            if sent >= 0 {
                return if sent as usize == bytes.len() {
                    Ok(())
                } else {
                    Err(std::io::Error::other("a message was cut short"))
                };
            }
            let error = std::io::Error::last_os_error();
            if error.kind() != std::io::ErrorKind::Interrupted {
                return Err(error);
            }
        }
    }
}

/// Receives one message from `socket` with the descriptors attached to it; `None` at the end
/// of the stream.
#[allow(clippy::type_complexity)]
fn receive(socket: BorrowedFd<'_>) -> std::io::Result<Option<(Vec<u8>, Vec<OwnedFd>)>> {
    let mut buffer = vec![0u8; MAX_MESSAGE];
    let mut control = [0u64; CONTROL_WORDS];
    let mut iov = libc::iovec {
        iov_base: buffer.as_mut_ptr().cast(),
        iov_len: buffer.len(),
    };
    // SAFETY: a zeroed msghdr is valid; its buffers outlive the call; the descriptors read
    // from the control messages were just received, so this function owns them.
    unsafe {
        let mut message: libc::msghdr = std::mem::zeroed();
        message.msg_iov = &mut iov;
        message.msg_iovlen = 1;
        message.msg_control = control.as_mut_ptr().cast();
        message.msg_controllen = std::mem::size_of_val(&control) as _;
        let received = loop {
            let received = libc::recvmsg(socket.as_raw_fd(), &mut message, libc::MSG_CMSG_CLOEXEC);
            if received >= 0 {
                break received as usize;
            }
            let error = std::io::Error::last_os_error();
            if error.kind() != std::io::ErrorKind::Interrupted {
                return Err(error);
            }
        };
        let mut fds = Vec::new();
        let mut header = libc::CMSG_FIRSTHDR(&message);
        while !header.is_null() {
            if (*header).cmsg_level == libc::SOL_SOCKET && (*header).cmsg_type == libc::SCM_RIGHTS {
                let bytes = (*header).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let data = libc::CMSG_DATA(header).cast::<RawFd>();
                for i in 0..bytes / std::mem::size_of::<RawFd>() {
                    fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            }
            header = libc::CMSG_NXTHDR(&message, header);
        }
        if message.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0 {
            return Err(std::io::Error::other("a message too long"));
        }
        if received == 0 && fds.is_empty() {
            return Ok(None);
        }
        buffer.truncate(received);
        Ok(Some((buffer, fds)))
    }
}

/// A child of the fork server, killed when dropped, through its pidfd (a process that ended
/// is never confused with another that got its number).
struct Kill(OwnedFd);

impl Drop for Kill {
    fn drop(&mut self) {
        // SAFETY: a pidfd owned by this guard; no siginfo.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
    }
}

/// A job's child, started: its killer and the engine's ends of its standard streams.
struct Started {
    kill: Kill,
    stdin: tokio::net::unix::pipe::Sender,
    stdout: tokio::net::unix::pipe::Receiver,
    stderr: tokio::net::unix::pipe::Receiver,
}

impl Isolation {
    /// Starts a child of the fork server (started, or restarted once when it is gone) for
    /// `job`, handing it `file` (the model) open for reading: the only file of the worker's
    /// it can read.
    async fn start(
        &self,
        job: &Job,
        device: Device,
        file: std::fs::File,
    ) -> Result<Started, EngineError> {
        let internal = |what: &str, e: std::io::Error| {
            EngineError::from(anyhow!("the model fork server: {what}: {e}"))
        };
        let job = serde_json::to_vec(job)
            .map_err(|e| EngineError::from(anyhow!("encoding a job for the fork server: {e}")))?;
        let (child_stdin, stdin) = pipe().map_err(|e| internal("a pipe", e))?;
        let (stdout, child_stdout) = pipe().map_err(|e| internal("a pipe", e))?;
        let (stderr, child_stderr) = pipe().map_err(|e| internal("a pipe", e))?;
        let read = self.read.clone();
        let device = device_name(device);
        let isolation = self.clone();
        let pidfd = tokio::task::spawn_blocking(move || {
            let fds = [
                child_stdin.as_fd(),
                child_stdout.as_fd(),
                child_stderr.as_fd(),
                file.as_fd(),
            ];
            let mut server = isolation
                .server
                .0
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let mut last = None;
            for _ in 0..2 {
                let fits = server
                    .as_ref()
                    .is_some_and(|s| s.device == device && s.read == read);
                if !fits {
                    *server = None;
                    *server = Some(
                        Server::start(&isolation, &device, read.clone())
                            .map_err(|e| internal("starting it", e))?,
                    );
                }
                let Some(running) = server.as_ref() else {
                    continue;
                };
                match running.fork(&job, fds) {
                    Forked::Started(pidfd) => return Ok(pidfd),
                    Forked::Refused(why) => {
                        return Err(internal("starting a pass", std::io::Error::other(why)))
                    }
                    // Gone (a crash, a kill): one new server, one more try.
                    Forked::Gone(e) => {
                        tracing::warn!(error = %e, "the model fork server did not answer; starting a new one");
                        *server = None;
                        last = Some(e);
                    }
                }
            }
            Err(internal(
                "starting a pass",
                last.unwrap_or_else(|| std::io::Error::other("no server")),
            ))
        })
        .await
        .map_err(|e| EngineError::from(anyhow!("the fork server's task: {e}")))??;
        let kill = Kill(pidfd);
        let pipe_error = |e: std::io::Error| internal("a pipe", e);
        Ok(Started {
            kill,
            stdin: tokio::net::unix::pipe::Sender::from_owned_fd(stdin).map_err(pipe_error)?,
            stdout: tokio::net::unix::pipe::Receiver::from_owned_fd(stdout).map_err(pipe_error)?,
            stderr: tokio::net::unix::pipe::Receiver::from_owned_fd(stderr).map_err(pipe_error)?,
        })
    }

    /// Runs one job's pass in a child; returns the output file (checked: one tensor named
    /// `output` of at most `max_output_bytes` of data).
    pub(crate) async fn run(&self, pass: Pass<'_>) -> Result<Vec<u8>, EngineError> {
        let file = std::fs::File::open(pass.model_path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                EngineError::UnknownModel(pass.model_hash)
            } else {
                EngineError::from(anyhow!("opening the model file: {e}"))
            }
        })?;
        let job = Job::Pass(PassRequest {
            model_hash: pass.model_hash,
            device: device_name(pass.device),
            seed: pass.seed,
            max_output_bytes: pass.max_output_bytes,
            input_bytes: pass.input.len() as u64,
            screen: self.screen,
        });
        let started = self.start(&job, pass.device, file).await?;
        let limit = pass.max_output_bytes.saturating_add(HEADER_ROOM);
        let (answer, diagnostics) = exchange(started, pass.input, limit).await;
        if !diagnostics.is_empty() {
            tracing::debug!(model = %pass.model_hash, diagnostics = %diagnostics.trim_end(), "the model's process said");
        }
        if !answer.ready || answer.frame.is_err() {
            let why = answer.frame.as_ref().err().map_or("", String::as_str);
            tracing::warn!(model = %pass.model_hash, ready = answer.ready, %why, diagnostics = %diagnostics.trim_end(), "the model's process gave no answer to the job");
        }
        judge(answer, pass.model_hash, pass.max_output_bytes)
    }

    /// Tries, from a child in the sandbox a pass on `device` would run in, what a model that
    /// took control of it would try (reading, writing, listing and opening up files of the
    /// worker's in `scratch`, listing the model store `store`, a TCP connection to a port
    /// this process listens on, a UDP socket, a signal to this process and to the fork
    /// server, this process's memory, environment, limits and priority, its process group's
    /// priority, a process of its own, a lower OOM score), and what a pass needs (reading the
    /// file it is handed, a tensor operation on `device`, a thread). A worker checks it
    /// before serving; the report lists each attempt.
    pub async fn check_sandbox(
        &self,
        scratch: &Path,
        store: &Path,
        device: Device,
    ) -> Result<SandboxReport, EngineError> {
        let internal = |what: &str, e: std::io::Error| {
            EngineError::from(anyhow!("checking the sandbox: {what}: {e}"))
        };
        let store = std::path::absolute(store).map_err(|e| internal("the store's path", e))?;
        let scratch = std::path::absolute(scratch).map_err(|e| internal("a scratch path", e))?;
        let tag = format!("sandbox-check-{}", std::process::id());
        let secret = scratch.join(format!("{tag}-secret"));
        let planted = scratch.join(format!("{tag}-planted"));
        let granted = scratch.join(format!("{tag}-granted"));
        std::fs::write(&secret, b"a worker's secret").map_err(|e| internal("a scratch file", e))?;
        std::fs::write(&granted, b"a model file").map_err(|e| internal("a scratch file", e))?;
        let handed = std::fs::File::open(&granted).map_err(|e| internal("a scratch file", e))?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| internal("a listening port", e))?;
        let port = listener
            .local_addr()
            .map_err(|e| internal("a listening port", e))?
            .port();
        let job = Job::Probe(ProbeRequest {
            secret: secret.clone(),
            store: store.clone(),
            device: device_name(device),
            plant: planted.clone(),
            port,
            parent: std::process::id(),
        });
        let check = async {
            match self.start(&job, device, handed).await {
                Ok(started) => {
                    let (answer, diagnostics) = exchange(started, &[], HEADER_ROOM).await;
                    Ok(Answer {
                        frame: answer
                            .frame
                            .map_err(|why| format!("{why}; it said: {}", diagnostics.trim_end())),
                        ..answer
                    })
                }
                Err(e) => Err(e.to_string()),
            }
        };
        let answer = tokio::time::timeout(CHECK_DEADLINE, check)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {CHECK_DEADLINE:?}")));
        drop(listener);
        for file in [&secret, &granted, &planted] {
            let _ = std::fs::remove_file(file);
        }
        match answer.and_then(|answer| answer.frame) {
            Ok((ANSWER_OUTPUT, report)) => serde_json::from_slice(&report)
                .map_err(|e| EngineError::from(anyhow!("the sandbox check answered garbage: {e}"))),
            Ok((_, refusal)) => Err(EngineError::from(anyhow!(
                "the sandbox check failed: {}",
                String::from_utf8_lossy(&refusal)
            ))),
            Err(why) => Err(EngineError::from(anyhow!(
                "the sandbox check gave no answer: {why}"
            ))),
        }
    }
}

/// Gives a started child its input, reads its answer (at most `limit` bytes) and its
/// diagnostics, then kills it (it has ended by then, unless it misbehaves).
async fn exchange(started: Started, input: &[u8], limit: u64) -> (Answer, String) {
    let Started {
        kill,
        mut stdin,
        stdout,
        stderr,
    } = started;
    let diagnostics = tokio::spawn(read_diagnostics(stderr));
    let feed = async {
        // A child that ended early (a refusal) stops reading: its answer says why.
        let _ = stdin.write_all(input).await;
    };
    let (_, answer) = tokio::join!(feed, read_answer(stdout, limit));
    let diagnostics = match tokio::time::timeout(DIAGNOSTICS_AFTER_ANSWER, diagnostics).await {
        Ok(Ok(text)) => text,
        Ok(Err(_)) => String::new(),
        Err(_) => "(its diagnostics did not end)".to_owned(),
    };
    drop(kill);
    drop(stdin);
    (answer, diagnostics)
}

/// A child's answer as read.
#[derive(Debug)]
struct Answer {
    /// Whether it said [`READY`] first.
    ready: bool,
    /// Its answer's kind and body, or why there is none.
    frame: Result<(u8, Vec<u8>), String>,
}

/// Reads a child's answer: [`READY`], then its kind byte, its length and at most `limit` bytes
/// of it.
async fn read_answer(mut stdout: impl AsyncRead + Unpin, limit: u64) -> Answer {
    let mut first = [0u8; 1];
    if let Err(e) = stdout.read_exact(&mut first).await {
        return Answer {
            ready: false,
            frame: Err(format!("it ended before it was ready: {e}")),
        };
    }
    if first[0] != READY {
        return Answer {
            ready: false,
            frame: read_frame(first[0], stdout, limit).await,
        };
    }
    let frame = match stdout.read_exact(&mut first).await {
        Ok(_) => read_frame(first[0], stdout, limit).await,
        Err(e) => Err(format!("reading its answer: {e}")),
    };
    Answer { ready: true, frame }
}

/// Reads the rest of an answer of kind `kind`: its length and at most `limit` bytes of it.
async fn read_frame(
    kind: u8,
    mut stdout: impl AsyncRead + Unpin,
    limit: u64,
) -> Result<(u8, Vec<u8>), String> {
    let mut length = [0u8; 8];
    stdout
        .read_exact(&mut length)
        .await
        .map_err(|e| format!("reading its answer: {e}"))?;
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

/// A pass's result from its child's answer, for the model `hash` and an output of at most
/// `max_output_bytes`. Before [`READY`] only the worker's machinery ran: an answer or an end
/// there is the worker's failure ([`EngineError::Internal`]). After it, the child is not
/// believed on a fault of the worker's ([`Refusal::into_error`]), and its output is checked.
fn judge(answer: Answer, hash: Digest, max_output_bytes: u64) -> Result<Vec<u8>, EngineError> {
    if !answer.ready {
        let why = match answer.frame {
            Ok((ANSWER_REFUSAL, refusal)) => match serde_json::from_slice::<Refusal>(&refusal) {
                Ok(Refusal::Internal(message)) => message,
                Ok(other) => format!("{other:?}"),
                Err(_) => String::from_utf8_lossy(&refusal).into_owned(),
            },
            Ok((kind, _)) => format!("an answer of kind {kind} before it was ready"),
            Err(why) => why,
        };
        return Err(EngineError::from(anyhow!(
            "the model's process failed before the job began: {why}"
        )));
    }
    match answer.frame {
        Ok((ANSWER_OUTPUT, output)) => {
            check_output(&output, max_output_bytes)?;
            Ok(output)
        }
        Ok((_, refusal)) => Err(serde_json::from_slice::<Refusal>(&refusal)
            .map_err(|e| {
                EngineError::Forward(format!("the model's process answered garbage: {e}"))
            })?
            .into_error(hash)),
        Err(why) => Err(EngineError::Forward(format!(
            "the model's process ended without an answer: {why}"
        ))),
    }
}

/// Reads a child's standard error, keeping the first [`MAX_DIAGNOSTICS`] bytes.
async fn read_diagnostics(mut stderr: impl AsyncRead + Unpin) -> String {
    let mut kept = Vec::new();
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

/// A sandbox check's child.
#[derive(Debug, Serialize, Deserialize)]
struct ProbeRequest {
    secret: PathBuf,
    store: PathBuf,
    /// `cpu` or `cuda:N`: where the tensor operation runs.
    device: String,
    plant: PathBuf,
    port: u16,
    parent: u32,
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

/// The sandbox check's child: tries each thing from the sandbox it was forked into.
fn probe(request: ProbeRequest, granted: std::fs::File) -> Result<Vec<u8>, EngineError> {
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
        "read the file it is handed",
        true,
        std::io::Read::read_to_end(&mut { granted }, &mut Vec::new()).map(drop),
    );
    attempt(
        &format!("run a tensor operation on {}", request.device),
        true,
        parse_device(&request.device)
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|device| {
                Tensor::ones([2, 2], (tch::Kind::Float, device))
                    .f_matmul(&Tensor::ones([2, 2], (tch::Kind::Float, device)))
                    .and_then(|product| product.f_to(Device::Cpu))
                    .map(drop)
                    .map_err(std::io::Error::other)
            }),
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
        "list the model store",
        false,
        std::fs::read_dir(&request.store).map(drop),
    );
    attempt(
        "change the mode of a file of the worker's",
        false,
        std::fs::set_permissions(
            &request.secret,
            std::os::unix::fs::PermissionsExt::from_mode(0o644),
        ),
    );
    attempt("truncate a file of the worker's", false, {
        // To the length it has: where the call works, nothing changes.
        std::fs::metadata(&request.secret).and_then(|metadata| {
            let path = std::ffi::CString::new(request.secret.as_os_str().as_encoded_bytes())
                .map_err(std::io::Error::other)?;
            // SAFETY: a NUL-terminated path alive for the call.
            match unsafe { libc::truncate(path.as_ptr(), metadata.len() as libc::off_t) } {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        })
    });
    attempt(
        "direct a file's I/O signals at the worker",
        false,
        // SAFETY: fcntl on this process's standard output with an integer argument; without
        // `O_ASYNC` on it, no signal is ever sent.
        match unsafe { libc::fcntl(1, libc::F_SETOWN, request.parent as libc::c_int) } {
            0 => Ok(()),
            _ => Err(std::io::Error::last_os_error()),
        },
    );
    attempt(
        "queue a signal to the worker",
        false,
        // SAFETY: a zeroed siginfo with the queued-signal code, signal 0: the permission is
        // checked, nothing is sent.
        unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            info.si_code = libc::SI_QUEUE;
            match libc::syscall(
                libc::SYS_rt_sigqueueinfo,
                request.parent as libc::pid_t,
                0,
                &info,
            ) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        },
    );
    attempt(
        "map memory that grows down (its memory limit would count it as stack)",
        false,
        // SAFETY: a new anonymous mapping of 1 MiB, unmapped at once if made.
        unsafe {
            let size = 1 << 20;
            match libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_GROWSDOWN,
                -1,
                0,
            ) {
                libc::MAP_FAILED => Err(std::io::Error::last_os_error()),
                mapped => {
                    libc::munmap(mapped, size);
                    Ok(())
                }
            }
        },
    );
    attempt("signal the worker through a pidfd", false, {
        // SAFETY: pidfd_open of the worker's pid; signal 0 through it checks the permission
        // and sends nothing; the descriptor is closed after.
        unsafe {
            match libc::syscall(libc::SYS_pidfd_open, request.parent as libc::pid_t, 0) {
                -1 => Err(std::io::Error::last_os_error()),
                fd => {
                    let sent = libc::syscall(
                        libc::SYS_pidfd_send_signal,
                        fd as libc::c_int,
                        0,
                        std::ptr::null::<libc::siginfo_t>(),
                        0u32,
                    );
                    let result = match sent {
                        0 => Ok(()),
                        _ => Err(std::io::Error::last_os_error()),
                    };
                    libc::close(fd as libc::c_int);
                    result
                }
            }
        }
    });
    attempt(
        "queue the user's pending signals up to 1,000",
        false,
        queue_signals_to_itself(1_000),
    );
    attempt("read the worker's limits", false, {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: prlimit only reads (no new limit) into a valid rlimit.
        match unsafe {
            libc::prlimit(
                request.parent as libc::pid_t,
                libc::RLIMIT_NOFILE,
                std::ptr::null(),
                &mut limit,
            )
        } {
            0 => Ok(()),
            _ => Err(std::io::Error::last_os_error()),
        }
    });
    attempt("set the worker's priority", false, {
        // SAFETY: getpriority and setpriority with integer arguments; the priority set is
        // the one read, so the attempt changes nothing even where it works.
        unsafe {
            *libc::__errno_location() = 0;
            let now = libc::getpriority(libc::PRIO_PROCESS, request.parent);
            match libc::setpriority(libc::PRIO_PROCESS, request.parent, now) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        }
    });
    attempt("set the priority of the worker's process group", false, {
        // SAFETY: as above, the priority set is the one read.
        unsafe {
            *libc::__errno_location() = 0;
            let now = libc::getpriority(libc::PRIO_PGRP, 0);
            match libc::setpriority(libc::PRIO_PGRP, 0, now) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        }
    });
    attempt(
        "signal the fork server",
        false,
        // SAFETY: kill with signal 0 only checks the permission; nothing is sent.
        match unsafe { libc::kill(libc::getppid(), 0) } {
            0 => Ok(()),
            _ => Err(std::io::Error::last_os_error()),
        },
    );
    attempt(
        "lower its out-of-memory score below the worker's",
        false,
        std::fs::write("/proc/self/oom_score_adj", "0"),
    );
    serde_json::to_vec(&SandboxReport { attempts })
        .map_err(|e| EngineError::from(anyhow!("encoding the report: {e}")))
}

/// Queues `count` real-time signals to this thread, blocked so that none is taken: what a pass
/// could do to use up its user's pending-signal allowance (the worker's too).
fn queue_signals_to_itself(count: usize) -> std::io::Result<()> {
    let signal = libc::SIGRTMIN() + 1;
    // SAFETY: blocks one signal in this thread (a sigset built by the C library's calls);
    // queues thread-directed signals with a zeroed siginfo of the queued-signal code to this
    // thread of this process; the process ends after its answer, the signals unhandled.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::other("blocking the signal"));
        }
        let (pid, tid) = (libc::getpid(), libc::gettid());
        for _ in 0..count {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            info.si_code = libc::SI_QUEUE;
            info.si_signo = signal;
            if libc::syscall(libc::SYS_rt_tgsigqueueinfo, pid, tid, signal, &info) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(())
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

/// The fork server or, forked from it, a pass: `request` is the engine's JSON (the fork
/// server's start). Must be called first thing in `main`, before any other thread starts (the
/// sandbox applies to the calling thread and to the threads and processes it starts later).
pub fn child_main(request: &str) -> ExitCode {
    // Nothing the worker's launcher left open (without close-on-exec) reaches a pass.
    // SAFETY: closes this process's descriptors from 3 up; none is in use yet.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    // A session of its own: no controlling terminal (the worker's) for a pass to type into.
    // SAFETY: setsid has no preconditions; a freshly started process leads no group.
    unsafe { libc::setsid() };
    match serde_json::from_str(request) {
        Ok(request) => fork_server(request),
        Err(e) => {
            eprintln!("ciro model fork server: reading its request: {e}");
            ExitCode::from(2)
        }
    }
}

/// Enters the sandbox, then forks a child per job received on its standard input (a Unix
/// socket) until the engine closes it.
fn fork_server(request: ServerRequest) -> ExitCode {
    let device = match parse_device(&request.device) {
        Ok(device) => device,
        Err(e) => {
            eprintln!("ciro model fork server: {e}");
            return ExitCode::from(2);
        }
    };
    if request.sandbox {
        match sandbox::enter(&pass_policy(device, &request.read), request.landlock_abi) {
            Ok(_) => {}
            Err(e) => {
                eprintln!("ciro model fork server: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    // Children are reaped by this loop only (a disposition of "ignore" inherited from the
    // worker's supervisor would reap them at once, before their pidfds are opened).
    // SAFETY: restoring a signal's default disposition.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_DFL) };
    // SAFETY: descriptor 0 is the engine's socket for the life of this process.
    let control = unsafe { BorrowedFd::borrow_raw(0) };
    loop {
        // Children that ended are reaped here, between jobs, never before the engine holds
        // their pidfds (a reaped child's number could name another process).
        // SAFETY: waitpid with no status pointer, not blocking.
        while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
        let (job, fds) = match receive(control) {
            Ok(Some(message)) => message,
            Ok(None) => return ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ciro model fork server: receiving a job: {e}");
                return ExitCode::FAILURE;
            }
        };
        // SAFETY: getpid has no preconditions.
        let server = unsafe { libc::getpid() };
        let (reply, pidfd): (Result<(), String>, Option<OwnedFd>) =
            match <[OwnedFd; 4]>::try_from(fds) {
                Err(fds) => (
                    Err(format!("{} descriptors with the job, not 4", fds.len())),
                    None,
                ),
                // SAFETY: this process runs one thread, so the child is a whole copy of it.
                Ok(fds) => match unsafe { libc::fork() } {
                    0 => run_job(&job, fds, &request, server),
                    -1 => (Err(std::io::Error::last_os_error().to_string()), None),
                    // Not reaped before this (see the top of the loop): the pid is the child's.
                    // SAFETY: pidfd_open returns a new descriptor (owned here) or -1.
                    child => match unsafe { libc::syscall(libc::SYS_pidfd_open, child, 0) } {
                        -1 => {
                            let error = std::io::Error::last_os_error();
                            // SAFETY: killing the child just forked, not yet reaped.
                            unsafe { libc::kill(child, libc::SIGKILL) };
                            (Err(format!("a pidfd for the pass: {error}")), None)
                        }
                        // SAFETY: a descriptor just returned, owned by no one else.
                        fd => (Ok(()), Some(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })),
                    },
                },
            };
        let reply = serde_json::to_vec(&reply).unwrap_or_default();
        let pidfds: Vec<BorrowedFd<'_>> = pidfd.iter().map(AsFd::as_fd).collect();
        if let Err(e) = send(control, &reply, &pidfds) {
            eprintln!("ciro model fork server: answering: {e}");
            return ExitCode::FAILURE;
        }
    }
}

/// A forked child: the first three of `fds` become its standard streams, the fourth is the
/// file it reads (the model); it ends with the server (`PR_SET_PDEATHSIG`, which it may not
/// change), forbids itself new processes and signals outside itself, says [`READY`], runs
/// `job`, answers, and ends.
fn run_job(job: &[u8], fds: [OwnedFd; 4], request: &ServerRequest, server: libc::pid_t) -> ! {
    let [stdin, stdout, stderr, file] = fds;
    for (fd, target) in [&stdin, &stdout, &stderr].into_iter().zip(0..) {
        // SAFETY: duplicating a descriptor this process owns onto a standard one.
        if unsafe { libc::dup2(fd.as_raw_fd(), target) } < 0 {
            // SAFETY: ends this child at once.
            unsafe { libc::_exit(3) }
        }
    }
    drop((stdin, stdout, stderr));
    // SAFETY: prctl and getppid with integer arguments only; the server is single-threaded,
    // so its death is this thread's parent's.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        if libc::getppid() != server {
            libc::_exit(4)
        }
    }
    let file = std::fs::File::from(file);
    let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        if let Some(bytes) = request.pass_memory {
            sandbox::limit_memory(bytes)
                .map_err(|e| EngineError::from(anyhow!("the pass's memory limit: {e}")))?;
        }
        if request.sandbox {
            sandbox::limit_shared_resources()
                .and_then(|()| sandbox::confine_pass().map_err(std::io::Error::other))
                .map_err(|e| EngineError::from(anyhow!("the sandbox: {e}")))?;
        }
        let job = serde_json::from_slice(job)
            .map_err(|e| EngineError::from(anyhow!("reading the job: {e}")))?;
        // The set-up is done: what follows is the job's.
        std::io::Write::write_all(&mut std::io::stdout().lock(), &[READY])
            .map_err(|e| EngineError::from(anyhow!("saying it is ready: {e}")))?;
        match job {
            Job::Pass(pass) => serve(pass, file),
            Job::Probe(check) => probe(check, file),
        }
    }))
    .unwrap_or_else(|_| Err(EngineError::Forward("the pass panicked".into())));
    let code = answer_with(answer);
    // SAFETY: ends this child without running the fork server's exit handlers.
    unsafe { libc::_exit(code) }
}

/// Writes the answer to standard output; the exit code.
fn answer_with(answer: Result<Vec<u8>, EngineError>) -> i32 {
    let (kind, body) = match answer {
        Ok(output) => (ANSWER_OUTPUT, output),
        Err(error) => (
            ANSWER_REFUSAL,
            serde_json::to_vec(&Refusal::of(error)).unwrap_or_default(),
        ),
    };
    let mut stdout = std::io::stdout().lock();
    let written = std::io::Write::write_all(&mut stdout, &[kind])
        .and_then(|()| std::io::Write::write_all(&mut stdout, &(body.len() as u64).to_le_bytes()))
        .and_then(|()| std::io::Write::write_all(&mut stdout, &body))
        .and_then(|()| std::io::Write::flush(&mut stdout));
    match written {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("writing the answer: {e}");
            1
        }
    }
}

fn serve(request: PassRequest, model: std::fs::File) -> Result<Vec<u8>, EngineError> {
    let device = parse_device(&request.device)?;
    let mut input = vec![0u8; usize::try_from(request.input_bytes).unwrap_or(usize::MAX)];
    std::io::Read::read_exact(&mut std::io::stdin().lock(), &mut input)
        .map_err(|e| EngineError::from(anyhow!("reading the input: {e}")))?;
    // Started in the sandbox, so that the thread is in it too.
    watch_parent();
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut { model }, &mut bytes)
        .map_err(|e| EngineError::from(anyhow!("reading the model file: {e}")))?;
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
    // One pass: the graph executor's profiling and optimization runs, which pay off over
    // many calls, would cost a fresh process more than the pass (130 ms against 12 for the
    // benchmark's encoder). The result is the same (`an_isolated_job_gives_the_in_process_output_and_errors`).
    tch::jit::set_graph_executor_optimize(false);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A pass's process may be the model's: its word on a fault of the worker's (an unknown
    /// model, an internal error) would move the blame off the job, so it is the job's failure.
    #[test]
    fn a_childs_claim_of_a_workers_fault_is_the_jobs_failure() {
        let hash = Digest::of(b"model");
        for claim in [Refusal::UnknownModel, Refusal::Internal("x".into())] {
            assert!(matches!(claim.into_error(hash), EngineError::Forward(_)));
        }
        assert!(matches!(
            Refusal::Unsafe("fork".into()).into_error(hash),
            EngineError::UnsafeModel { .. }
        ));
    }

    /// Frames a child's answer of `kind` with `body`.
    fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut bytes = vec![kind];
        bytes.extend((body.len() as u64).to_le_bytes());
        bytes.extend(body);
        bytes
    }

    /// Blame follows the ready byte: a child that fails or ends before it (its own set-up:
    /// streams, sandbox, the job's request) fails in the worker's machinery, whatever it
    /// says; after it, a claim of the worker's fault and an early end are the job's, and a
    /// second ready byte from the model is garbage, not a way back to the worker's fault.
    #[tokio::test]
    async fn a_failure_before_the_ready_byte_is_the_workers_and_after_it_the_jobs() {
        let hash = Digest::of(b"model");
        let internal =
            serde_json::to_vec(&Refusal::Internal("the sandbox: denied".into())).unwrap();
        let judged = |bytes: Vec<u8>| async move {
            judge(read_answer(bytes.as_slice(), 1 << 20).await, hash, 1 << 20)
        };
        match judged(frame(ANSWER_REFUSAL, &internal)).await {
            Err(EngineError::Internal(e)) => {
                let message = format!("{e:#}");
                assert!(message.contains("before the job began"), "{message}");
                assert!(message.contains("the sandbox: denied"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            judged(Vec::new()).await,
            Err(EngineError::Internal(_))
        ));
        let ready = |rest: Vec<u8>| [vec![READY], rest].concat();
        assert!(matches!(
            judged(ready(frame(ANSWER_REFUSAL, &internal))).await,
            Err(EngineError::Forward(_))
        ));
        assert!(matches!(
            judged(ready(Vec::new())).await,
            Err(EngineError::Forward(_))
        ));
        assert!(matches!(
            judged(ready(ready(frame(ANSWER_REFUSAL, &internal)))).await,
            Err(EngineError::Forward(_))
        ));
        // An output after the ready byte is checked as before.
        assert!(matches!(
            judged(ready(frame(ANSWER_OUTPUT, b"not a tensor file"))).await,
            Err(EngineError::Forward(_))
        ));
    }
}
