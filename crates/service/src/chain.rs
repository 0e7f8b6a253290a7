//! The chain a service talks to, and the account it acts as: flags and `CIRO_*` variables,
//! validated into [`ChainConfig`] and [`AccountSource`].

use std::path::PathBuf;

use anyhow::{bail, ensure, Result};
use ciro_chain::account::{AccountSource, KeySource};
use ciro_chain::starknet::core::types::Felt;
use clap::Args;
use url::Url;

/// The environment variable a keystore's password is read from.
pub const KEYSTORE_PASSWORD_ENV: &str = "CIRO_KEYSTORE_PASSWORD";
/// The environment variable a private key is read from when no file names it.
pub const PRIVATE_KEY_ENV: &str = "CIRO_PRIVATE_KEY";

/// Which Starknet node, and which deployment of the contracts.
#[derive(Debug, Clone, Args)]
pub struct ChainArgs {
    /// Starknet JSON-RPC endpoint.
    #[arg(
        long = "rpc-url",
        env = "CIRO_RPC_URL",
        default_value = "http://127.0.0.1:5050/rpc"
    )]
    pub rpc_url: Url,
    /// The deployment manifest (`ciro deploy` writes it): contract addresses, deploy block.
    #[arg(
        long = "manifest",
        env = "CIRO_MANIFEST",
        default_value = "deployments/devnet.json"
    )]
    pub manifest: PathBuf,
}

impl ChainArgs {
    /// Checks that the endpoint is an HTTP(S) URL with a host and the manifest path is not
    /// empty. The manifest is not read here: the service reads it when it needs it.
    pub fn config(&self) -> Result<ChainConfig> {
        ensure!(
            matches!(self.rpc_url.scheme(), "http" | "https") && self.rpc_url.has_host(),
            "--rpc-url / CIRO_RPC_URL must be an http:// or https:// URL, not `{}`",
            self.rpc_url
        );
        ensure!(
            !self.manifest.as_os_str().is_empty(),
            "--manifest / CIRO_MANIFEST must not be empty"
        );
        Ok(ChainConfig {
            rpc_url: self.rpc_url.clone(),
            manifest: self.manifest.clone(),
        })
    }
}

/// Validated chain configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainConfig {
    /// Starknet JSON-RPC endpoint (http or https).
    pub rpc_url: Url,
    /// Path of the deployment manifest (`ciro_chain::deployment::Manifest`).
    pub manifest: PathBuf,
}

/// The account a binary acts as: a devnet predeployed account, or an address with its key
/// from a keystore, a file or the environment (never from the command line).
///
/// A binary flattens this group at most once (the flags have fixed names).
#[derive(Debug, Clone, Args)]
pub struct AccountArgs {
    /// Use devnet's predeployed account number N (devnet only).
    #[arg(
        long = "devnet-account",
        env = "CIRO_DEVNET_ACCOUNT",
        value_name = "N",
        conflicts_with_all = ["account_address", "keystore", "private_key_file"]
    )]
    pub devnet_account: Option<usize>,
    /// Account contract address.
    #[arg(long = "account-address", env = "CIRO_ACCOUNT_ADDRESS")]
    pub account_address: Option<Felt>,
    /// Encrypted JSON keystore with the account's key; its password is read from
    /// CIRO_KEYSTORE_PASSWORD.
    #[arg(
        long = "keystore",
        env = "CIRO_KEYSTORE",
        conflicts_with = "private_key_file"
    )]
    pub keystore: Option<PathBuf>,
    /// File holding the account's private key (hex). Without this or --keystore, the key is
    /// read from CIRO_PRIVATE_KEY.
    #[arg(long = "private-key-file", env = "CIRO_PRIVATE_KEY_FILE")]
    pub private_key_file: Option<PathBuf>,
}

impl AccountArgs {
    /// Where the account and its key come from. The key itself is read later, by
    /// `ciro_chain::account::connect`.
    pub fn source(&self) -> Result<AccountSource> {
        Ok(match (self.devnet_account, self.account_address) {
            (Some(index), _) => AccountSource::DevnetPredeployed(index),
            (None, Some(address)) => {
                let key = match (&self.keystore, &self.private_key_file) {
                    (Some(path), _) => KeySource::Keystore {
                        path: path.clone(),
                        password_env: KEYSTORE_PASSWORD_ENV.into(),
                    },
                    (None, Some(path)) => KeySource::File(path.clone()),
                    (None, None) => KeySource::Env(PRIVATE_KEY_ENV.into()),
                };
                AccountSource::Key { address, key }
            }
            (None, None) if self.keystore.is_some() || self.private_key_file.is_some() => {
                bail!("a key was given without its account: add --account-address (CIRO_ACCOUNT_ADDRESS)")
            }
            (None, None) => {
                bail!("choose an account: --devnet-account N, or --account-address with its key")
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::test_env::parse_with;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        chain: ChainArgs,
        #[command(flatten)]
        account: AccountArgs,
    }

    fn chain(args: &[&str], env: &[(&str, &str)]) -> Result<ChainConfig> {
        parse_with(args, env, |cli: Cli| cli.chain.config())
    }

    fn account(args: &[&str], env: &[(&str, &str)]) -> Result<AccountSource> {
        parse_with(args, env, |cli: Cli| cli.account.source())
    }

    fn error(result: Result<impl std::fmt::Debug>) -> String {
        format!("{:#}", result.unwrap_err())
    }

    #[test]
    fn chain_defaults_to_a_local_devnet() {
        let config = chain(&[], &[]).unwrap();
        assert_eq!(config.rpc_url.as_str(), "http://127.0.0.1:5050/rpc");
        assert_eq!(config.manifest, PathBuf::from("deployments/devnet.json"));
    }

    #[test]
    fn chain_reads_the_environment_and_flags_win() {
        let env = [
            ("CIRO_RPC_URL", "https://node.example/rpc/v0_9"),
            ("CIRO_MANIFEST", "deployments/sepolia.json"),
        ];
        let config = chain(&[], &env).unwrap();
        assert_eq!(config.rpc_url.as_str(), "https://node.example/rpc/v0_9");
        assert_eq!(config.manifest, PathBuf::from("deployments/sepolia.json"));
        let config = chain(&["--rpc-url", "http://10.0.0.1:9545/"], &env).unwrap();
        assert_eq!(config.rpc_url.as_str(), "http://10.0.0.1:9545/");
    }

    #[test]
    fn chain_rejects_urls_that_are_not_http_and_empty_manifests() {
        let err = error(chain(&["--rpc-url", "ws://127.0.0.1:5050/ws"], &[]));
        assert!(err.contains("must be an http:// or https:// URL"), "{err}");
        assert!(chain(&["--rpc-url", "not a url"], &[]).is_err());
        let err = error(chain(&["--manifest", ""], &[]));
        assert!(err.contains("--manifest"), "{err}");
    }

    #[test]
    fn devnet_account_from_the_flag_or_the_environment() {
        assert_eq!(
            account(&["--devnet-account", "3"], &[]).unwrap(),
            AccountSource::DevnetPredeployed(3)
        );
        assert_eq!(
            account(&[], &[("CIRO_DEVNET_ACCOUNT", "0")]).unwrap(),
            AccountSource::DevnetPredeployed(0)
        );
    }

    #[test]
    fn an_address_takes_its_key_from_a_keystore_a_file_or_the_environment() {
        let key = |source: AccountSource| match source {
            AccountSource::Key { address, key } => {
                assert_eq!(address, Felt::from(0xabcu32));
                key
            }
            other => panic!("not a key account: {other:?}"),
        };
        assert_eq!(
            key(account(&["--account-address", "0xabc", "--keystore", "k.json"], &[]).unwrap()),
            KeySource::Keystore {
                path: "k.json".into(),
                password_env: KEYSTORE_PASSWORD_ENV.into()
            }
        );
        assert_eq!(
            key(account(
                &["--private-key-file", "key.hex"],
                &[("CIRO_ACCOUNT_ADDRESS", "0xabc")]
            )
            .unwrap()),
            KeySource::File("key.hex".into())
        );
        assert_eq!(
            key(account(&["--account-address", "0xabc"], &[]).unwrap()),
            KeySource::Env(PRIVATE_KEY_ENV.into())
        );
    }

    #[test]
    fn contradictory_or_missing_accounts_are_rejected() {
        let err = error(account(&[], &[]));
        assert!(err.contains("choose an account"), "{err}");
        let err = error(account(&["--keystore", "k.json"], &[]));
        assert!(err.contains("add --account-address"), "{err}");
        for (args, env) in [
            (
                &["--devnet-account", "1", "--account-address", "0x1"][..],
                &[][..],
            ),
            (
                &["--devnet-account", "1"],
                &[("CIRO_ACCOUNT_ADDRESS", "0x1")],
            ),
            (&["--devnet-account", "1", "--keystore", "k.json"], &[]),
            (
                &[
                    "--account-address",
                    "0x1",
                    "--keystore",
                    "k",
                    "--private-key-file",
                    "f",
                ],
                &[],
            ),
        ] {
            let err = error(account(args, env));
            assert!(
                err.contains("cannot be used with"),
                "{args:?} {env:?}: {err}"
            );
        }
    }

    #[test]
    fn a_private_key_is_not_a_flag() {
        let err = error(account(
            &["--account-address", "0x1", "--private-key", "0x2"],
            &[],
        ));
        assert!(err.contains("unexpected argument '--private-key'"), "{err}");
    }
}
