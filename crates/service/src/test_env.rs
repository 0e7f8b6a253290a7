//! Unit tests that parse arguments read `CIRO_*` variables, which are process-wide: they run
//! one at a time, each from a clean slate.

use std::sync::Mutex;

use clap::Parser;

/// Every variable the crate's argument groups read.
const VARIABLES: &[&str] = &[
    "CIRO_LOG",
    "CIRO_LOG_FORMAT",
    "CIRO_LISTEN",
    "CIRO_RPC_URL",
    "CIRO_MANIFEST",
    "CIRO_DEVNET_ACCOUNT",
    "CIRO_ACCOUNT_ADDRESS",
    "CIRO_KEYSTORE",
    "CIRO_PRIVATE_KEY_FILE",
];

static ENV: Mutex<()> = Mutex::new(());

/// Runs `f` with exactly `vars` set among [`VARIABLES`], then unsets them again.
pub(crate) fn with_env<T>(vars: &[(&str, &str)], f: impl FnOnce() -> T) -> T {
    let _guard = ENV.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    for name in VARIABLES {
        std::env::remove_var(name);
    }
    for (name, value) in vars {
        assert!(VARIABLES.contains(name), "{name} is not in VARIABLES");
        std::env::set_var(name, value);
    }
    let result = f();
    for (name, _) in vars {
        std::env::remove_var(name);
    }
    result
}

/// Parses `args` (without the program name) into `C` with exactly `vars` set, then turns the
/// result into a config with `config`.
pub(crate) fn parse_with<C: Parser, T>(
    args: &[&str],
    vars: &[(&str, &str)],
    config: impl FnOnce(C) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    with_env(vars, || {
        config(C::try_parse_from(
            std::iter::once("test").chain(args.iter().copied()),
        )?)
    })
}
