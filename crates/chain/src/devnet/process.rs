//! A `starknet-devnet` child process (its extension RPC is [`super::DevnetRpc`]), started with
//! the project's fixed seed, account count and balances.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use url::Url;

/// The devnet version the harness is written against (installed by scripts/setup.sh).
pub const DEVNET_VERSION: &str = "0.10.1";
/// Seed of the predeployed accounts' keys: fixed, so addresses are stable across runs.
pub const SEED: u32 = 20261121;
/// Predeployed accounts: one per actor of the test harness (`ciro_tests::Actor`).
pub const ACCOUNTS: usize = 13;
/// Each predeployed account starts with this much STRK and ETH (in FRI / WEI): 1,000,000.
pub const INITIAL_BALANCE: &str = "1000000000000000000000000";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
const LOG_LINES_KEPT: usize = 60;

/// How to start a devnet: the seed, accounts and balances are always the project's.
#[derive(Debug, Clone)]
pub struct DevnetOptions {
    /// The address to listen on (default loopback).
    pub host: String,
    /// The port; 0 picks a free one (read back from devnet's log).
    pub port: u16,
    /// More `starknet-devnet` flags.
    pub extra_args: Vec<String>,
}

impl Default for DevnetOptions {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 0,
            extra_args: vec![],
        }
    }
}

/// A running `starknet-devnet`. Dropping it kills the process.
pub struct Devnet {
    child: Child,
    url: Url,
    log: Arc<Mutex<VecDeque<String>>>,
}

impl std::fmt::Debug for Devnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Devnet")
            .field("pid", &self.child.id())
            .field("url", &self.url.as_str())
            .finish()
    }
}

/// The devnet binary: `$STARKNET_DEVNET`, else `starknet-devnet` on `PATH`.
pub fn devnet_binary() -> String {
    std::env::var("STARKNET_DEVNET").unwrap_or_else(|_| "starknet-devnet".to_owned())
}

impl Devnet {
    /// Starts a devnet on a free loopback port and waits until it answers.
    ///
    /// Fails (never skips) when the binary is missing: scripts/setup.sh installs it.
    pub fn start() -> Result<Self> {
        Self::start_with(&[])
    }

    /// [`Devnet::start`] with extra command-line flags (e.g. `--block-generation-on demand`).
    pub fn start_with(extra_args: &[&str]) -> Result<Self> {
        Self::start_options(&DevnetOptions {
            extra_args: extra_args.iter().map(|a| (*a).to_owned()).collect(),
            ..DevnetOptions::default()
        })
    }

    /// Starts a devnet as `options` say and waits until it answers.
    pub fn start_options(options: &DevnetOptions) -> Result<Self> {
        let binary = devnet_binary();
        let mut command = Command::new(&binary);
        command
            .args(["--host", &options.host, "--port", &options.port.to_string()])
            .args(["--seed", &SEED.to_string()])
            .args(["--accounts", &ACCOUNTS.to_string()])
            .args(["--initial-balance", INITIAL_BALANCE])
            .args(&options.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = spawn_tied_to_process(command).with_context(|| {
            format!(
                "starting `{binary}` (install it with scripts/setup.sh, or set STARKNET_DEVNET)"
            )
        })?;

        let log = Arc::new(Mutex::new(VecDeque::with_capacity(LOG_LINES_KEPT)));
        let (address_tx, address_rx) = mpsc::channel();
        let stdout = child.stdout.take().context("devnet stdout")?;
        let stderr = child.stderr.take().context("devnet stderr")?;
        drain(stdout, log.clone(), Some(address_tx));
        drain(stderr, log.clone(), None);

        let started = Instant::now();
        let address = loop {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "starknet-devnet exited with {status} before listening:\n{}",
                    tail(&log)
                );
            }
            match address_rx.recv_timeout(Duration::from_millis(100)) {
                Ok(address) => break address,
                Err(mpsc::RecvTimeoutError::Timeout) if started.elapsed() < STARTUP_TIMEOUT => {}
                Err(_) => {
                    let _ = child.kill();
                    bail!(
                        "starknet-devnet did not listen within {STARTUP_TIMEOUT:?}:\n{}",
                        tail(&log)
                    );
                }
            }
        };
        let url = Url::parse(&format!("http://{address}/"))
            .with_context(|| format!("devnet's listening address {address:?}"))?;
        Ok(Self { child, url, log })
    }

    /// The JSON-RPC endpoint (`/rpc`).
    pub fn rpc_url(&self) -> Url {
        self.url.join("rpc").expect("static path")
    }

    /// The base URL (`/is_alive`, `/rpc`, ...).
    pub fn base_url(&self) -> &Url {
        &self.url
    }

    /// The process id (for tests of the harness itself).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the process has ended (it should not while the value lives).
    pub fn exited(&mut self) -> Result<Option<std::process::ExitStatus>> {
        self.child.try_wait().context("checking on starknet-devnet")
    }

    /// The last lines devnet printed.
    pub fn recent_log(&self) -> String {
        tail(&self.log)
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail(log: &Mutex<VecDeque<String>>) -> String {
    log.lock()
        .map(|lines| lines.iter().cloned().collect::<Vec<_>>().join("\n"))
        .unwrap_or_default()
}

/// Reads a pipe to its end (devnet would block on a full pipe), keeping the last lines and
/// reporting the listening address.
fn drain(
    pipe: impl Read + Send + 'static,
    log: Arc<Mutex<VecDeque<String>>>,
    address: Option<mpsc::Sender<String>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if let (Some(tx), Some(at)) = (&address, line.find("listening on ")) {
                let _ = tx.send(line[at + "listening on ".len()..].trim().to_owned());
            }
            if let Ok(mut lines) = log.lock() {
                if lines.len() == LOG_LINES_KEPT {
                    lines.pop_front();
                }
                lines.push_back(line);
            }
        }
    });
}

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Spawns `command` so that it gets SIGKILL when this process dies, however it dies.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, and test threads
/// come and go (devnets are pooled across tests), so children are forked from one thread
/// that lives as long as the process.
fn spawn_tied_to_process(mut command: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("devnet-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("spawning the devnet spawner thread");
        Mutex::new(tx)
    });
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner
        .lock()
        .map_err(|_| std::io::Error::other("devnet spawner poisoned"))?
        .send((command, reply_tx))
        .map_err(|_| std::io::Error::other("devnet spawner gone"))?;
    reply_rx
        .recv()
        .map_err(|_| std::io::Error::other("devnet spawner gone"))?
}
