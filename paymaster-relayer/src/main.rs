//! `ciro-paymaster-relayer`: parses its flags into a [`Config`] and runs the service until
//! SIGINT or SIGTERM, or prints the operator's `status`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use ciro_chain::account::{AccountSource, KeySource};
use ciro_chain::starknet::core::types::Felt;
use ciro_paymaster_relayer::{
    parse_sponsorship, read_api_keys, run, status, Config, Limits, DEFAULT_PORT, SERVICE,
};
use ciro_service::{run_main, run_service, ChainArgs, LogArgs, ServeArgs};
use clap::{Parser, Subcommand};

/// CIRO paymaster relayer: serves the SNIP-29 paymaster API (what starknet.js'
/// `PaymasterRpc` speaks) and submits users' signed SNIP-9 outside executions, sponsored
/// through the Paymaster contract or paid by the user in a gas token, from a pool of its own
/// accounts.
#[derive(Parser)]
#[command(name = "ciro-paymaster-relayer", version)]
struct Cli {
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    serve: ServeArgs<DEFAULT_PORT>,
    #[command(flatten)]
    chain: ChainArgs,
    /// A relayer account from devnet's predeployed ones (devnet only); repeat for a pool.
    #[arg(long = "devnet-account", value_name = "N")]
    devnet_accounts: Vec<usize>,
    /// A relayer account: its address and a file holding its private key (hex); repeat for a
    /// pool.
    #[arg(long = "account", value_name = "ADDRESS=KEY_FILE")]
    accounts: Vec<String>,
    /// JSON file of API keys: {"<key>": {"sponsor": "0x...", "policy": N}}.
    #[arg(long = "api-keys", env = "CIRO_RELAYER_API_KEYS")]
    api_keys: Option<PathBuf>,
    /// The sponsorship of sponsored requests without an API key: SPONSOR_ADDRESS:POLICY_ID,
    /// or SPONSOR_ADDRESS:POLICY_ID:deployments if it also pays for new accounts.
    #[arg(long = "default-policy", env = "CIRO_RELAYER_DEFAULT_POLICY")]
    default_policy: Option<String>,
    /// FRI per whole payment token (sponsored charges and default-mode fees in it).
    #[arg(
        long = "payment-token-price",
        default_value_t = 1_000_000_000_000_000_000
    )]
    payment_token_price: u128,
    /// Who default-mode fee transfers pay (default: the first relayer account).
    #[arg(long = "fee-recipient")]
    fee_recipient: Option<Felt>,
    /// An account with less STRK than this (FRI) is taken out of rotation.
    #[arg(long = "min-balance", default_value_t = 100_000_000_000_000_000)]
    min_balance: u128,
    /// Seconds between balance reads.
    #[arg(long = "balance-interval-secs", default_value_t = 30)]
    balance_interval_secs: u64,
    /// Timeout of every node call, in milliseconds.
    #[arg(long = "node-timeout-ms", default_value_t = 10_000)]
    node_timeout_ms: u64,
    /// Largest request body, in bytes.
    #[arg(long = "max-body-bytes", default_value_t = 64 * 1024)]
    max_body_bytes: usize,
    /// Most calls in one transaction.
    #[arg(long = "max-calls", default_value_t = 16)]
    max_calls: usize,
    /// Most calldata felts over all calls of a transaction.
    #[arg(long = "max-calldata", default_value_t = 512)]
    max_calldata: usize,
    /// Builds and executes per user per minute (0: no limit).
    #[arg(long = "per-user-per-minute", default_value_t = 60)]
    per_user_per_minute: u32,
    /// Requests per client IP per minute (0: no limit).
    #[arg(long = "per-ip-per-minute", default_value_t = 600)]
    per_ip_per_minute: u32,
    /// Charge = simulated fee × this (sponsored); the least a default-mode fee must cover.
    #[arg(long = "charge-margin", default_value_t = 1.2)]
    charge_margin: f64,
    /// A default-mode quote (the fee transfer the user signs) = estimate × this.
    #[arg(long = "quote-margin", default_value_t = 2.0)]
    quote_margin: f64,
    /// Milliseconds a sponsored execution waits for others to go out with it in one
    /// transaction, simulated as a whole first (0: each goes alone).
    #[arg(long = "batch-window-ms", default_value_t = 0)]
    batch_window_ms: u64,
    /// Most executions in one batch.
    #[arg(long = "batch-max", default_value_t = 16)]
    batch_max: usize,
    /// An account class users may have (repeatable; default: OpenZeppelin's account 1.0.0).
    #[arg(long = "account-class", value_name = "CLASS_HASH")]
    account_classes: Vec<Felt>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Prints the accounts (balances, nonces, rotation), each sponsor's deposit and budget,
    /// the policies and each account's standing as the sponsors' relayer.
    Status,
}

fn config(cli: &Cli) -> Result<Config> {
    let chain = cli.chain.config()?;
    let mut accounts: Vec<AccountSource> = cli
        .devnet_accounts
        .iter()
        .map(|&n| AccountSource::DevnetPredeployed(n))
        .collect();
    for entry in &cli.accounts {
        let Some((address, file)) = entry.split_once('=') else {
            bail!("--account takes ADDRESS=KEY_FILE, got {entry:?}");
        };
        accounts.push(AccountSource::Key {
            address: Felt::from_hex(address)
                .with_context(|| format!("{address:?} is not a hex address"))?,
            key: KeySource::File(file.into()),
        });
    }
    if accounts.is_empty() {
        bail!("give the relayer's accounts: --account ADDRESS=KEY_FILE or --devnet-account N (repeatable)");
    }
    if !(1.0..=10.0).contains(&cli.charge_margin) || !(1.0..=10.0).contains(&cli.quote_margin) {
        bail!("--charge-margin and --quote-margin must be between 1 and 10");
    }
    if cli.batch_window_ms > 10_000 || !(1..=64).contains(&cli.batch_max) {
        bail!("--batch-window-ms must be at most 10000 and --batch-max between 1 and 64");
    }
    if cli.payment_token_price == 0 {
        bail!("--payment-token-price must not be 0");
    }
    let mut config = Config::new(chain, cli.serve.listen, accounts);
    if let Some(path) = &cli.api_keys {
        config.api_keys = read_api_keys(path)?;
    }
    config.default_sponsorship = cli
        .default_policy
        .as_deref()
        .map(parse_sponsorship)
        .transpose()?;
    config.payment_token_price_fri = cli.payment_token_price;
    config.fee_recipient = cli.fee_recipient;
    config.min_balance_fri = cli.min_balance;
    config.balance_interval = Duration::from_secs(cli.balance_interval_secs.max(1));
    config.node_timeout = Duration::from_millis(cli.node_timeout_ms.max(100));
    config.max_body_bytes = cli.max_body_bytes;
    if !cli.account_classes.is_empty() {
        config.account_classes = cli.account_classes.clone();
    }
    config.limits = Limits {
        max_calls: cli.max_calls,
        max_calldata: cli.max_calldata,
        per_user_per_minute: cli.per_user_per_minute,
        per_ip_per_minute: cli.per_ip_per_minute,
        charge_margin: cli.charge_margin,
        quote_margin: cli.quote_margin,
        batch_window: Duration::from_millis(cli.batch_window_ms),
        batch_max: cli.batch_max,
        ..Limits::default()
    };
    Ok(config)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Status) => run_main(SERVICE, &cli.log, async {
            let report = status(&config(&cli)?).await?;
            print!("{report}");
            Ok(())
        }),
        None => {
            let config = config(&cli);
            run_service(SERVICE, &cli.log, |shutdown| async move {
                run(config?, shutdown).await
            })
        }
    }
}
