//! `ciro-worker`: the worker's command line over the inference engine (`ciro-engine`), on the
//! service runtime (logging, one exit path). Today: the hardware report, the model store and
//! running one job locally. Registration, staking and pulling jobs from the coordinator come
//! with the worker agent.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use ciro_engine::{hardware, Digest, Engine, EngineConfig, ModelSpec, ModelStore};
use ciro_service::{run_main, LogArgs};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "ciro-worker", version, about = "CIRO GPU worker")]
struct Cli {
    #[command(flatten)]
    log: LogArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print this machine's hardware report as JSON (GPUs from NVML, or a CPU-only profile).
    Hardware,
    /// Add a TorchScript file to the model store; prints its hash (the on-chain model_hash).
    AddModel(AddModelArgs),
    /// Run one job: a safetensors input through a stored model; prints the hashes as JSON.
    Exec(ExecArgs),
}

#[derive(Args)]
struct StoreArgs {
    /// Model store directory.
    #[arg(long, env = "WORKER_MODEL_STORE", default_value = "models")]
    store: PathBuf,
}

#[derive(Args)]
struct AddModelArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The TorchScript file (torch.jit.save).
    #[arg(long)]
    file: PathBuf,
    /// Shape of one input row, comma-separated (e.g. 16 or 3,224,224).
    #[arg(long, value_delimiter = ',', required = true)]
    shape: Vec<i64>,
    /// Input element type as safetensors names it.
    #[arg(long, default_value = "F32")]
    dtype: String,
    /// Most rows per forward pass.
    #[arg(long, default_value_t = 64)]
    max_batch: i64,
}

#[derive(Args)]
struct ExecArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Model hash (SHA-256 hex).
    #[arg(long)]
    model: Digest,
    /// Input safetensors file.
    #[arg(long)]
    input: PathBuf,
    /// Where to write the output safetensors file.
    #[arg(long)]
    output: PathBuf,
    /// Deterministic mode with this seed.
    #[arg(long, env = "WORKER_DETERMINISTIC_SEED")]
    deterministic_seed: Option<u64>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    run_main("ciro-worker", &cli.log, run(cli.command))
}

async fn run(command: Command) -> Result<()> {
    match command {
        Command::Hardware => println!("{}", serde_json::to_string_pretty(&hardware::detect())?),
        Command::AddModel(args) => {
            let store = ModelStore::open(&args.store.store, 1)?;
            let spec = ModelSpec {
                input_shape: args.shape,
                input_dtype: args.dtype,
                max_batch: args.max_batch,
            };
            println!("{}", store.insert_file(&args.file, &spec)?);
        }
        Command::Exec(args) => {
            let store = Arc::new(ModelStore::open(&args.store.store, 1)?);
            let input = std::fs::read(&args.input)
                .with_context(|| format!("reading {}", args.input.display()))?;
            let config = EngineConfig {
                deterministic_seed: args.deterministic_seed,
                max_wait: Duration::ZERO,
                ..EngineConfig::default()
            };
            let device = config.device;
            let output = Engine::new(store, config)?
                .execute(args.model, &input)
                .await?;
            std::fs::write(&args.output, &output.output)
                .with_context(|| format!("writing {}", args.output.display()))?;
            let report = serde_json::json!({
                "model": args.model,
                "input_hash": output.input_hash,
                "output_hash": output.output_hash,
                "device": format!("{device:?}"),
            });
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
    }
    Ok(())
}
