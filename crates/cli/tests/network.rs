//! README command 1 as a test: `scripts/run-local.sh --keep` brings up a whole local network
//! (devnet, deployed and wired contracts, a sponsor, the coordinator, the relayer, two CPU
//! workers) and runs its jobs end to end, half of them gasless; the test checks the script's
//! table (every job finalized, paid 95/5, its output verified against the chain and Python
//! torch), then, against that live network, what a submitter can get wrong with `ciro job` and
//! `ciro model`: each is refused before anything is spent, with a message saying what to do,
//! and the submitter's balance is unchanged. Then a job no worker can take is explained and
//! cancelled for a full refund. The dashboard, open in headless Chromium, shows the run's jobs
//! and workers in their states and the new job live. A cheating worker is exposed by the
//! submitter's own run, disputed and slashed. Last, SIGTERM stops the script and everything
//! it started.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use starknet::core::types::Felt;

/// `holder`'s STRK (the fee token), in FRI, read with `starknet_call` through curl.
fn strk_of(rpc: &str, holder: &str) -> u128 {
    let request = serde_json::json!({
        "jsonrpc": "2.0",
        "id": 1,
        "method": "starknet_call",
        "params": {
            "request": {
                "contract_address": "0x04718f5a0fc34cc1af16a1cdee98ffb20c31f5cd61d6ab07201858f4287c938d",
                "entry_point_selector": format!("{:#x}", starknet::core::utils::get_selector_from_name("balance_of").expect("selector")),
                "calldata": [holder],
            },
            "block_id": "latest",
        },
    });
    let out = Command::new("curl")
        .args(["-fs", "-H", "content-type: application/json", "-d"])
        .arg(request.to_string())
        .arg(rpc)
        .output()
        .expect("curl");
    assert!(out.status.success(), "starknet_call through curl failed");
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let word = |i: usize| {
        let hex = answer["result"][i].as_str().expect("a felt");
        u128::from_str_radix(hex.trim_start_matches("0x"), 16).expect("hex")
    };
    assert_eq!(word(1), 0, "more STRK than a u128");
    word(0)
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Network {
    script: Child,
    log: PathBuf,
    env: HashMap<String, String>,
    _dir: tempfile::TempDir,
}

impl Drop for Network {
    /// A failing test still stops the network: SIGTERM to the script's process group (the
    /// script and everything it started), then SIGKILL after 30 s.
    fn drop(&mut self) {
        if let Ok(None) = self.script.try_wait() {
            let group = format!("-{}", self.script.id());
            let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while let Ok(None) = self.script.try_wait() {
                if Instant::now() > deadline {
                    let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
                    let _ = self.script.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// A child process killed when dropped (a failing test leaks none).
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Network {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `ciro ARGS` against the network.
    fn ciro(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_ciro"))
            .args(args)
            .envs(&self.env)
            .env("CIRO_LOG", "warn")
            .output()
            .expect("running ciro")
    }

    /// `ciro ARGS`, which must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.ciro(args);
        assert!(
            out.status.success(),
            "ciro {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// `ciro ARGS`, which must fail with `expected` in its message.
    fn refused(&self, args: &[&str], expected: &str) {
        let out = self.ciro(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "ciro {args:?} succeeded");
        assert!(
            stderr.contains(expected),
            "ciro {args:?}: expected {expected:?} in: {stderr}"
        );
    }
}

/// The dashboard open in headless Chromium, driven by `tests/js/dashboard.cjs` (puppeteer-core).
struct Dashboard {
    node: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Dashboard {
    /// Opens `url` and waits until it shows what `expect` says; a screenshot goes to `shot`.
    fn open(url: &str, shot: &Path, expect: &serde_json::Value) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js/dashboard.cjs");
        let mut node = Command::new("node")
            .arg(script)
            .arg(url)
            .arg(shot)
            .arg(expect.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("node (scripts/setup.sh installs it, puppeteer-core and chromium)");
        let stdout = node.stdout.take().expect("stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut page = Self { node, lines };
        page.expect_line("READY");
        page
    }

    fn expect_line(&mut self, wanted: &str) {
        match self.lines.recv_timeout(Duration::from_secs(120)) {
            Ok(line) => assert_eq!(line, wanted),
            Err(_) => {
                let status = self.node.try_wait().ok().flatten();
                panic!("the dashboard never printed {wanted:?} (node: {status:?}; its stderr is above)");
            }
        }
    }

    /// Tells the page driver to wait for job `id` to appear live.
    fn expect_live(&mut self, id: &str) {
        use std::io::Write;
        let stdin = self.node.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{id}").expect("writing to the page driver");
        self.expect_line(&format!("LIVE {id}"));
    }

    fn close(mut self) {
        drop(self.node.stdin.take());
        let status = self.node.wait().expect("node");
        assert!(status.success(), "the page driver failed: {status}");
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        let _ = self.node.kill();
        let _ = self.node.wait();
    }
}

fn start() -> Network {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("run-local.log");
    let env_file = dir.path().join("network.env");
    use std::os::unix::process::CommandExt;
    let script = Command::new("bash")
        .process_group(0)
        .arg(root().join("scripts/run-local.sh"))
        .args(["--no-setup", "--keep", "--jobs", "4", "--env-file"])
        .arg(&env_file)
        .env("TMPDIR", dir.path())
        .stdout(std::fs::File::create(&log).expect("log"))
        .stderr(std::fs::File::create(dir.path().join("run-local.err")).expect("log"))
        .spawn()
        .expect("bash scripts/run-local.sh");
    let mut network = Network {
        script,
        log,
        env: HashMap::new(),
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(900);
    while !env_file.exists() {
        if let Some(status) = network.script.try_wait().expect("wait") {
            let mut err = String::new();
            std::fs::File::open(network._dir.path().join("run-local.err"))
                .and_then(|mut f| f.read_to_string(&mut err))
                .ok();
            panic!(
                "run-local.sh exited ({status}) before its network was up:\n{}\n{err}",
                network.log()
            );
        }
        assert!(
            Instant::now() < deadline,
            "run-local.sh did not finish its jobs in 15 minutes:\n{}",
            network.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let text = std::fs::read_to_string(&env_file).expect("env file");
    network.env = text
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    network
}

/// The rows of the script's closing table, split on whitespace.
fn rows_of_table(log: &str) -> Vec<Vec<String>> {
    let table = log
        .split("==> the jobs\n")
        .nth(1)
        .expect("the script printed its table");
    table
        .lines()
        .skip(1)
        .take_while(|line| !line.starts_with("==>") && !line.trim().is_empty())
        .map(|line| line.split_whitespace().map(str::to_owned).collect())
        .collect()
}

#[test]
fn the_local_network_runs_jobs_end_to_end_and_the_cli_refuses_what_would_fail() {
    let mut net = start();
    let log = net.log();

    // The script's own checks passed (it exits on the first failure), and its table says
    // every job was finalized by a worker, paid fee − 5 %, and verified.
    let rows = rows_of_table(&log);
    assert_eq!(rows.len(), 4, "one row per job:\n{log}");
    let mut gas_payers = Vec::new();
    for row in &rows {
        // job, "account", N, gas paid, worker, fee, worker paid, protocol, latency, "s", ...
        assert_eq!(&row[5..8], ["1.0000", "0.9500", "0.0500"], "{row:?}");
        assert!(row.join(" ").ends_with("yes (chain, torch)"), "{row:?}");
        gas_payers.push(row[3].clone());
    }
    assert!(gas_payers.contains(&"sponsor".to_owned()), "{gas_payers:?}");
    assert!(
        gas_payers.contains(&"submitter".to_owned()),
        "{gas_payers:?}"
    );
    assert!(
        log.contains("the sponsor paid its gas"),
        "the gasless submitter's STRK is unchanged"
    );
    let ids: Vec<String> = net.env["CIRO_LOCAL_JOBS"]
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert_eq!(ids.len(), 4);
    for id in &ids {
        let status = net.ok(&["job", "status", id]);
        assert!(status.contains("finalized"), "{status}");
        assert!(status.contains("output yes, receipt yes"), "{status}");
    }
    let listed = net.ok(&["job", "list", "--all"]);
    assert_eq!(listed.matches("finalized").count(), 4, "{listed}");

    // The dashboard, in headless Chromium: the run's jobs and both workers with their states.
    let work = PathBuf::from(&net.env["CIRO_LOCAL_WORK"]);
    let accounts: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(work.join("accounts.json")).expect("accounts"),
    )
    .expect("accounts JSON");
    // An account's address as the API and the CLI write it (minimal hex).
    let address = |i: usize| {
        let text = accounts["result"][i]["address"].as_str().expect("address");
        format!("{:#x}", Felt::from_hex(text).expect("hex address"))
    };
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let expect = serde_json::json!({
        "jobs": ids.iter().map(|id| (id.clone(), "finalized")).collect::<HashMap<_, _>>(),
        "workers": {address(5): "active", address(6): "active"},
        "counts": {"finalized": ids.len(), "queued": 0},
    });
    let mut page = Dashboard::open(
        &format!("{}/", net.env["CIRO_COORDINATOR_URL"]),
        &shot,
        &expect,
    );
    assert!(
        std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0) > 10_000,
        "no screenshot at {}",
        shot.display()
    );

    // What a submitter can get wrong: refused before anything is spent.
    let input = work.join("jobs/job1.x.safetensors");
    let input = input.to_str().expect("utf-8 path");
    let model = net.env["CIRO_LOCAL_MODEL"].clone();
    let model_file = work.join("models/encoder.pt");
    let model_file = model_file.to_str().expect("utf-8 path");
    // `ciro job submit` as `account`; `extra` may replace the model or the input.
    let submit = |account: &str, extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = ["job", "submit", "--devnet-account", account]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for (flag, default) in [("--model", model.as_str()), ("--input", input)] {
            if !extra.contains(&flag) {
                args.extend([flag.to_owned(), default.to_owned()]);
            }
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let refused = |args: Vec<String>, expected: &str| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        net.refused(&args, expected);
    };
    let jobs_before = net.ok(&["job", "list", "--devnet-account", "3"]);
    let tokens_before = net.ok(&["token", "balance", "--of", &address(3)]);
    // Account 7 was never given payment tokens.
    refused(submit("7", &[]), "get more tokens first");
    refused(submit("3", &["--fee", "0.1"]), "below model");
    refused(submit("3", &["--fee", "1e3"]), "is not an amount of tokens");
    refused(
        submit("3", &["--deadline", "999999"]),
        "beyond the network's longest",
    );
    refused(submit("3", &["--deadline", "30"]), "leaves no worker time");
    refused(submit("3", &["--model", "99"]), "no model 99 (there are 1)");
    refused(
        submit(
            "3",
            &[
                "--model",
                "0000000000000000000000000000000000000000000000000000000000000001",
            ],
        ),
        "no registered model has file hash",
    );
    refused(
        submit("3", &["--input", model_file]),
        "is not a safetensors file",
    );
    refused(
        submit("3", &["--input", "/nonexistent"]),
        "reading the input",
    );
    // A URL that is no SNIP-29 relayer (the coordinator's): a clear error, nothing sent.
    let coordinator = net.env["CIRO_COORDINATOR_URL"].clone();
    refused(
        submit("4", &["--gasless", "--relayer", &coordinator]),
        "sending the job through the paymaster relayer",
    );
    net.refused(
        &["job", "cancel", &ids[0], "--devnet-account", "4"],
        "only its submitter may cancel it",
    );
    net.refused(
        &["job", "cancel", &ids[0], "--devnet-account", "3"],
        "only a queued job",
    );
    let evidence = work.join("jobs/job1.y.safetensors");
    net.refused(
        &[
            "job",
            "dispute",
            &ids[0],
            "--devnet-account",
            "3",
            "--evidence",
            evidence.to_str().expect("utf-8"),
        ],
        "only a completed job",
    );
    net.refused(
        &[
            "job",
            "result",
            "99",
            "--devnet-account",
            "3",
            "--out",
            "/dev/null",
        ],
        "no job 99 on chain",
    );
    net.refused(
        &[
            "model",
            "add",
            input,
            "--devnet-account",
            "0",
            "--price",
            "1",
        ],
        "is not a TorchScript file",
    );
    net.refused(&["job", "list", "--state", "done"], "is not a job state");
    // A batch: a fee below the model's price per input (0.15 for two inputs: 0.075 each,
    // where a single job's 0.1 is below it already), and more inputs than JobMgr takes.
    let two: Vec<String> = submit("3", &["--input", input, input, "--fee", "0.15"]);
    refused(two, "below model");
    let mut many: Vec<String> = submit("3", &["--input"]);
    many.extend(std::iter::repeat_n(input.to_owned(), 1001));
    refused(many, "a batch holds at most 1000");
    // Nothing of the above created a job.
    assert_eq!(
        net.ok(&["job", "list", "--devnet-account", "3"]),
        jobs_before
    );
    assert_eq!(
        net.ok(&["token", "balance", "--of", &address(3)]),
        tokens_before,
        "a refused submission spent tokens"
    );

    // The challenge window's time jump left devnet's clock an hour ahead of the wall clock;
    // the executions' windows are on the chain's clock, so a gasless job still goes through
    // the relayer and a gasless worker still commits its result through it.
    let relayer = net.env["CIRO_RELAYER_URL"].clone();
    let late_input = work.join("jobs/job2.x.safetensors");
    let late = net.ok(&[
        "job",
        "submit",
        "--devnet-account",
        "4",
        "--model",
        &model,
        "--input",
        late_input.to_str().expect("utf-8"),
        "--gasless",
        "--relayer",
        &relayer,
    ]);
    net.ok(&[
        "job",
        "watch",
        &late,
        "--until",
        "completed",
        "--timeout",
        "120",
    ]);
    let late_out = work.join("out/late.safetensors");
    net.ok(&[
        "job",
        "result",
        &late,
        "--devnet-account",
        "4",
        "--out",
        late_out.to_str().expect("utf-8"),
        "--expect",
        work.join("jobs/job2.y.safetensors")
            .to_str()
            .expect("utf-8"),
        "--tolerance",
        "1e-4",
    ]);

    // A batch of the run's four inputs: one on-chain job, its outputs each checked against the
    // output manifest, the manifest against the chain, and each output against Python torch's.
    // Submits the run's first `inputs` inputs as one batch of account 3 (`extra`: more
    // arguments before them) and puts Python torch's output of each in `expect` as
    // NNNN.safetensors; the batch's id.
    let submit_batch = |extra: &[&str], inputs: usize, expect: &Path| -> String {
        std::fs::create_dir_all(expect).expect("a directory");
        let mut args: Vec<String> = ["job", "submit", "--devnet-account", "3"]
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect();
        args.push("--input".into());
        for i in 1..=inputs {
            let x = work.join(format!("jobs/job{i}.x.safetensors"));
            args.push(x.to_str().expect("utf-8").to_owned());
            std::fs::copy(
                work.join(format!("jobs/job{i}.y.safetensors")),
                expect.join(format!("{:04}.safetensors", i - 1)),
            )
            .expect("the expected output");
        }
        net.ok(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let expect_dir = work.join("out/batch-expect");
    let batch = submit_batch(&["--model", &model], 4, &expect_dir);
    net.ok(&[
        "job",
        "watch",
        &batch,
        "--until",
        "completed",
        "--timeout",
        "180",
    ]);
    let status = net.ok(&["job", "status", &batch]);
    assert!(
        status.contains("batch: 4 inputs, 4 uploaded by the submitter; 0 outputs"),
        "{status}"
    );
    let batch_out = work.join("out/batch");
    let fetched = net.ok(&[
        "job",
        "result",
        &batch,
        "--devnet-account",
        "3",
        "--out",
        batch_out.to_str().expect("utf-8"),
        "--expect",
        expect_dir.to_str().expect("utf-8"),
        "--tolerance",
        "1e-4",
    ]);
    assert!(fetched.contains("all 4 match"), "{fetched}");
    for i in 0..4 {
        assert!(batch_out.join(format!("{i:04}.safetensors")).exists());
    }

    // A job no worker can take (its model asks for the top stake tier): the coordinator says
    // why, and the submitter takes it back.
    let hungry = net.ok(&[
        "model",
        "add",
        model_file,
        "--devnet-account",
        "0",
        "--price",
        "0.5",
        "--min-tier",
        "3",
    ]);
    let job = net.ok(&[
        "job",
        "submit",
        "--devnet-account",
        "3",
        "--model",
        &hungry,
        "--input",
        input,
    ]);
    // The open dashboard shows the new job as it happens (server-sent events, no reload).
    page.expect_live(&job);
    page.close();
    let status = (0..40)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(500));
            net.ok(&["job", "status", &job])
        })
        .find(|s| s.contains("stake reaches tier 3"))
        .unwrap_or_else(|| panic!("job {job} was never explained"));
    assert!(status.contains("queued"), "{status}");
    let cancelled = net.ok(&["job", "cancel", &job, "--devnet-account", "3"]);
    assert!(cancelled.contains("0.500000 refunded"), "{cancelled}");
    net.refused(
        &["job", "cancel", &job, "--devnet-account", "3"],
        "only a queued job",
    );

    // A cheating worker (account 7, staked to tier 1, the only one a tier-1 model's jobs go
    // to) returns a wrong output, consistently hashed, signed and committed. The submitter's
    // own run exposes it, the dispute refunds the submitter and slashes the cheater; the
    // honest workers of the run are never disputed or slashed.
    let (cheater, submitter) = (address(7), address(3));
    net.ok(&[
        "token",
        "transfer",
        "--devnet-account",
        "0",
        "--to",
        &cheater,
        "--amount",
        "600",
    ]);
    let worker_bin = Path::new(env!("CARGO_BIN_EXE_ciro")).with_file_name("ciro-worker");
    let cheater_log = work.join("worker-7.log");
    let cheating = Killed(
        Command::new(&worker_bin)
            .args([
                "run",
                "--devnet-account",
                "7",
                "--stake-target",
                "500000000000000000000",
            ])
            .arg("--data-dir")
            .arg(work.join("worker-7"))
            .args(["--heartbeat-secs", "2", "--commit-window-ms", "300"])
            .args(["--listen", "127.0.0.1:0", "--test-corrupt-output"])
            .envs(&net.env)
            .stdout(std::fs::File::create(&cheater_log).expect("log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("ciro-worker"),
    );
    let strict = net.ok(&[
        "model",
        "add",
        model_file,
        "--devnet-account",
        "0",
        "--price",
        "0.5",
        "--min-tier",
        "1",
    ]);
    let balance = |who: &str| -> u128 {
        let line = net.ok(&["token", "balance", "--of", who]);
        line.split_whitespace()
            .nth(1)
            .expect("amount")
            .parse()
            .expect("number")
    };
    let before = balance(&submitter);
    let job = net.ok(&[
        "job",
        "submit",
        "--devnet-account",
        "3",
        "--model",
        &strict,
        "--input",
        input,
        "--fee",
        "1",
    ]);
    assert_eq!(balance(&submitter), before - 1_000_000_000_000_000_000);
    net.ok(&[
        "job",
        "watch",
        &job,
        "--until",
        "completed",
        "--timeout",
        "300",
    ]);
    let expected = work.join("jobs/job1.y.safetensors");
    let expected = expected.to_str().expect("utf-8");
    let out = work.join("cheated.safetensors");
    let checked = net.ciro(&[
        "job",
        "result",
        &job,
        "--devnet-account",
        "3",
        "--out",
        out.to_str().expect("utf-8"),
        "--expect",
        expected,
    ]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr),
    );
    assert!(
        !checked.status.success(),
        "the wrong output passed: {stdout}"
    );
    // It is the committed output, with a valid receipt: only the submitter's own run tells.
    assert!(stdout.contains("= on-chain output_hash"), "{stdout}");
    assert!(
        stdout.contains(&format!("signed by worker {cheater}")),
        "{stdout}"
    );
    assert!(stderr.contains("element 0"), "{stderr}");
    assert!(stderr.contains("ciro job dispute"), "{stderr}");
    net.ok(&[
        "job",
        "dispute",
        &job,
        "--devnet-account",
        "3",
        "--evidence",
        expected,
    ]);
    net.refused(
        &[
            "job",
            "dispute",
            &job,
            "--devnet-account",
            "3",
            "--evidence",
            expected,
        ],
        "is disputed",
    );
    // The submitter cannot decide its own dispute.
    net.refused(
        &[
            "job",
            "resolve",
            &job,
            "--devnet-account",
            "3",
            "--worker-at-fault",
        ],
        "is not an ARBITER",
    );
    // A batch of two inputs to the cheater: both outputs wrong. The submitter's own run
    // exposes it and it is disputed; the arbiter reads its manifests and its items (each side
    // in one request, each item checked against its manifest); another account is refused.
    let cheat_expect = work.join("out/cheat-expect");
    let cheated_batch = submit_batch(&["--model", &strict, "--fee", "1"], 2, &cheat_expect);
    net.ok(&[
        "job",
        "watch",
        &cheated_batch,
        "--until",
        "completed",
        "--timeout",
        "300",
    ]);
    let cheated_out = work.join("out/cheated-batch");
    let checked = net.ciro(&[
        "job",
        "result",
        &cheated_batch,
        "--devnet-account",
        "3",
        "--out",
        cheated_out.to_str().expect("utf-8"),
        "--expect",
        cheat_expect.to_str().expect("utf-8"),
    ]);
    let stderr = String::from_utf8_lossy(&checked.stderr);
    assert!(!checked.status.success(), "the wrong batch passed");
    assert!(
        stderr.contains(&format!("output 0 of job {cheated_batch} differs")),
        "{stderr}"
    );
    net.ok(&[
        "job",
        "dispute",
        &cheated_batch,
        "--devnet-account",
        "3",
        "--evidence",
        cheat_expect
            .join("0000.safetensors")
            .to_str()
            .expect("utf-8"),
    ]);
    let batch_files = work.join("batch-dispute-files");
    let read = net.ok(&[
        "job",
        "evidence",
        &cheated_batch,
        "--devnet-account",
        "0",
        "--out",
        batch_files.to_str().expect("utf-8"),
    ]);
    assert!(read.contains("2 items"), "{read}");
    for i in 0..2 {
        let name = format!("{i:04}.safetensors");
        assert_eq!(
            std::fs::read(batch_files.join("inputs").join(&name)).expect("an input"),
            std::fs::read(work.join(format!("jobs/job{}.x.safetensors", i + 1))).expect("x"),
        );
        assert_eq!(
            std::fs::read(batch_files.join("outputs").join(&name)).expect("an output"),
            std::fs::read(cheated_out.join(&name)).expect("the cheated output"),
        );
    }
    assert!(batch_files.join("output.manifest").is_file());
    net.refused(
        &[
            "job",
            "evidence",
            &cheated_batch,
            "--devnet-account",
            "4",
            "--out",
            work.join("stranger-batch-files").to_str().expect("utf-8"),
        ],
        "may read (an input, output or evidence is read",
    );
    let resolved = net.ok(&[
        "job",
        "resolve",
        &cheated_batch,
        "--devnet-account",
        "0",
        "--worker-at-fault",
        "--slash-bps",
        "1000",
    ]);
    assert!(resolved.contains("now refunded"), "{resolved}");

    // The arbiter reads the dispute's evidence, input and output from the coordinator, each
    // checked against the chain; another submitter (account 4) is refused them.
    let files = work.join("dispute-files");
    let files_arg = files.to_str().expect("utf-8");
    let read = net.ok(&[
        "job",
        "evidence",
        &job,
        "--devnet-account",
        "0",
        "--out",
        files_arg,
    ]);
    assert!(read.contains("evidence"), "{read}");
    assert_eq!(
        std::fs::read(files.join("evidence")).expect("evidence"),
        std::fs::read(expected).expect("expected"),
        "the arbiter's evidence is not what the submitter uploaded"
    );
    assert_eq!(
        std::fs::read(files.join("output.safetensors")).expect("output"),
        std::fs::read(&out).expect("the cheated output"),
    );
    assert!(files.join("input.safetensors").is_file());
    net.refused(
        &[
            "job",
            "evidence",
            &job,
            "--devnet-account",
            "4",
            "--out",
            work.join("stranger-files").to_str().expect("utf-8"),
        ],
        "may read (an input, output or evidence is read",
    );
    let resolved = net.ok(&[
        "job",
        "resolve",
        &job,
        "--devnet-account",
        "0",
        "--worker-at-fault",
        "--slash-bps",
        "1000",
    ]);
    assert!(resolved.contains("now refunded"), "{resolved}");
    // The fee and the bond came back (and any award from the slash on top).
    assert!(balance(&submitter) >= before, "the submitter lost money");
    let status_of = |account: &str| -> serde_json::Value {
        let out = Command::new(&worker_bin)
            .args(["status", "--devnet-account", account])
            .arg("--data-dir")
            .arg(work.join(format!("status-{account}")))
            .envs(&net.env)
            .output()
            .expect("ciro-worker status");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON")
    };
    let amount_of = |status: &serde_json::Value, field: &str| -> u128 {
        status[field]
            .as_str()
            .unwrap_or_else(|| panic!("no {field} in {status}"))
            .parse()
            .expect("number")
    };
    let stake_of = |account: &str| -> (u128, u64) {
        let status = status_of(account);
        (
            amount_of(&status, "stake"),
            status["reputation"]["failed"].as_u64().expect("failed"),
        )
    };
    let (cheater_stake, _) = stake_of("7");
    assert!(
        cheater_stake < 500_000_000_000_000_000_000,
        "the cheater kept its stake: {cheater_stake}"
    );
    for honest in ["5", "6"] {
        assert_eq!(
            stake_of(honest),
            (100_000_000_000_000_000_000, 0),
            "honest worker {honest} was slashed or marked failed"
        );
    }
    drop(cheating);

    // Rewards. The run's time jump passed the workers' one-hour warm-up: each agent activated
    // its own stake (gasless), so it earns from the reward stream. Funding the stream spreads
    // the tokens over the active stake (the protocol fees paid before any stake was active
    // went to the treasury): worker 5 has rewards pending; worker 7, staked after the jump, is
    // still warming.
    let warming_of = |account: &str| amount_of(&status_of(account)["warming"], "amount");
    let activated = (0..60).any(|_| {
        let warm = warming_of("5") == 0 && warming_of("6") == 0;
        if !warm {
            std::thread::sleep(Duration::from_secs(1));
        }
        warm
    });
    assert!(
        activated,
        "the workers never activated their stake after the warm-up"
    );
    assert!(
        warming_of("7") > 0,
        "the late staker's stake is not warming"
    );
    let funded = net.ok(&[
        "token",
        "fund-rewards",
        "--devnet-account",
        "0",
        "--amount",
        "10",
    ]);
    assert!(funded.contains("with 10.000000 tokens"), "{funded}");
    // A gasless claim from the command line, beside the running agent: worker 5's pending
    // rewards move to its token balance, exactly, and nothing is left pending; its STRK is
    // checked untouched below with the rest of the run. A second claim finds nothing.
    let claimer = address(5);
    let pending = amount_of(&status_of("5"), "pending_rewards");
    assert!(
        pending >= 5_000_000_000_000_000_000,
        "worker 5 (half the active stake at least) has {pending} pending, not half of 10 tokens"
    );
    let tokens = balance(&claimer);
    let claim = || {
        Command::new(&worker_bin)
            .args(["claim", "--devnet-account", "5", "--relayer"])
            .arg(&net.env["CIRO_RELAYER_URL"])
            .envs(&net.env)
            .output()
            .expect("ciro-worker claim")
    };
    let out = claim();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && said.contains(&format!("claimed {pending}")),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(balance(&claimer), tokens + pending, "{said}");
    assert_eq!(amount_of(&status_of("5"), "pending_rewards"), 0);
    let again = claim();
    assert!(
        again.status.success()
            && String::from_utf8_lossy(&again.stdout).contains("no rewards pending"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // The gasless workers paid no gas through the whole run (registration, stake, results
    // before and after the time jump, on-chain heartbeats, worker 5's claim): their STRK is
    // what it was before they started, as the script printed it.
    for honest in [5, 6] {
        let said = format!("worker account {honest} held ");
        let line = log
            .lines()
            .find(|l| l.starts_with(&said))
            .unwrap_or_else(|| panic!("no STRK line for worker {honest}:\n{log}"));
        let before: u128 = line[said.len()..]
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .expect("an amount");
        assert_eq!(
            strk_of(&net.env["CIRO_RPC_URL"], &address(honest)),
            before,
            "gasless worker {honest} paid gas"
        );
    }

    // SIGTERM stops the script and what it started: devnet no longer answers.
    let rpc = net.env["CIRO_RPC_URL"].clone();
    let pid = net.script.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill")
        .success());
    let deadline = Instant::now() + Duration::from_secs(60);
    while net.script.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "run-local.sh ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(200));
    }
    let alive = Command::new("curl")
        .args(["-fs", "--max-time", "2", &rpc.replace("/rpc", "/is_alive")])
        .stdout(Stdio::null())
        .status()
        .expect("curl");
    assert!(!alive.success(), "devnet outlived the script");
    for service in ["CIRO_COORDINATOR_URL", "CIRO_RELAYER_URL"] {
        let health = format!("{}/health", net.env[service].trim_end_matches('/'));
        let alive = Command::new("curl")
            .args(["-fs", "--max-time", "2", &health])
            .stdout(Stdio::null())
            .status()
            .expect("curl");
        assert!(!alive.success(), "{service} outlived the script");
    }
}
