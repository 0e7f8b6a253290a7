//! Accounts from configuration: a key never comes from the command line.
//!
//! A signer is read from a keystore file (encrypted, password from an environment
//! variable), a private-key file, an environment variable, or devnet's predeployed accounts.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use starknet::accounts::{ExecutionEncoding, SingleOwnerAccount};
use starknet::core::types::{BlockId, BlockTag, Felt, FunctionCall};
use starknet::core::utils::get_selector_from_name;
use starknet::providers::jsonrpc::HttpTransport;
use starknet::providers::{JsonRpcClient, Provider, ProviderError};
use starknet::signers::{LocalWallet, SigningKey};
use url::Url;

use crate::devnet::DevnetRpc;
use crate::{ChainError, RpcAccount};

/// What an SRC-6 account's `is_valid_signature` returns for a good signature: `'VALID'`
/// (older accounts return 1).
pub const VALID: Felt = Felt::from_hex_unchecked("0x56414c4944");

/// Where an account's key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// An encrypted JSON keystore; its password is in the environment variable named.
    Keystore { path: PathBuf, password_env: String },
    /// A file holding the private key in hex.
    File(PathBuf),
    /// An environment variable holding the private key in hex.
    Env(String),
}

impl KeySource {
    /// Reads the signing key.
    pub fn signing_key(&self) -> Result<SigningKey> {
        match self {
            KeySource::Keystore { path, password_env } => {
                let password = std::env::var(password_env).with_context(|| {
                    format!("the keystore password variable {password_env} is not set")
                })?;
                SigningKey::from_keystore(path, &password)
                    .with_context(|| format!("opening keystore {}", path.display()))
            }
            KeySource::File(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                parse_key(&text).with_context(|| format!("the key in {}", path.display()))
            }
            KeySource::Env(name) => {
                let text = std::env::var(name).with_context(|| format!("{name} is not set"))?;
                parse_key(&text).with_context(|| format!("the key in {name}"))
            }
        }
    }
}

fn parse_key(text: &str) -> Result<SigningKey> {
    let scalar = Felt::from_hex(text.trim()).context("not a hex felt")?;
    if scalar == Felt::ZERO {
        bail!("the private key is zero");
    }
    Ok(SigningKey::from_secret_scalar(scalar))
}

/// Which account to act as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountSource {
    /// An account contract at `address` whose key comes from `key`.
    Key { address: Felt, key: KeySource },
    /// Devnet's predeployed account number `index` (devnet only).
    DevnetPredeployed(usize),
}

/// The configured account's address and signing key (devnet's predeployed accounts are read
/// from the node at `rpc_url`): what signs requests to the coordinator and receipts.
pub async fn address_and_key(source: &AccountSource, rpc_url: &Url) -> Result<(Felt, SigningKey)> {
    Ok(match source {
        AccountSource::Key { address, key } => (*address, key.signing_key()?),
        AccountSource::DevnetPredeployed(index) => {
            let accounts = DevnetRpc::new(rpc_url.clone())
                .predeployed_accounts()
                .await?;
            let account = accounts
                .get(*index)
                .with_context(|| format!("devnet has {} predeployed accounts", accounts.len()))?;
            (
                account.address,
                SigningKey::from_secret_scalar(account.private_key),
            )
        }
    })
}

/// Connects to `rpc_url` as the configured account.
pub async fn connect(source: &AccountSource, rpc_url: &Url, chain_id: Felt) -> Result<RpcAccount> {
    Ok(connect_with_key(source, rpc_url, chain_id).await?.0)
}

/// [`connect`], and the account's signing key too (for signing requests and outside
/// executions beside the account's own transactions), the key read once.
pub async fn connect_with_key(
    source: &AccountSource,
    rpc_url: &Url,
    chain_id: Felt,
) -> Result<(RpcAccount, SigningKey)> {
    let (address, key) = address_and_key(source, rpc_url).await?;
    let provider = JsonRpcClient::new(HttpTransport::new(rpc_url.clone()));
    let mut account = SingleOwnerAccount::new(
        provider,
        LocalWallet::from(key.clone()),
        address,
        chain_id,
        ExecutionEncoding::New,
    );
    // Nonces and estimates at the pre-confirmed block, where the next transaction lands
    // (the same as the latest block when every transaction closes one).
    account.set_block_id(BlockId::Tag(BlockTag::PreConfirmed));
    Ok((account, key))
}

/// Whether `account`'s contract accepts `signature` of `hash` (SRC-6 `is_valid_signature`,
/// so any account type works): a refusal (a revert on a bad signature, or no account there)
/// is `false`; a node that cannot be asked is an error.
pub async fn is_valid_signature<P>(
    provider: &P,
    account: Felt,
    hash: Felt,
    signature: &[Felt],
) -> Result<bool, ChainError>
where
    P: Provider + Sync,
{
    let selector = get_selector_from_name("is_valid_signature")
        .map_err(|e| ChainError::internal(anyhow::anyhow!("selector: {e}")))?;
    let mut calldata = vec![hash, Felt::from(signature.len())];
    calldata.extend_from_slice(signature);
    let answer = provider
        .call(
            FunctionCall {
                contract_address: account,
                entry_point_selector: selector,
                calldata,
            },
            BlockId::Tag(BlockTag::Latest),
        )
        .await;
    match answer {
        Ok(values) => Ok(values.first() == Some(&VALID) || values.first() == Some(&Felt::ONE)),
        Err(ProviderError::StarknetError(_)) => Ok(false),
        Err(error) => Err(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keystore_round_trip_and_wrong_password() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.json");
        let key = SigningKey::from_secret_scalar(Felt::from(0xc1a0u32));
        key.save_as_keystore(&path, "correct horse").unwrap();
        // SAFETY of the test: the variable names are unique to this test.
        std::env::set_var("CIRO_TEST_KEYSTORE_PASSWORD_OK", "correct horse");
        std::env::set_var("CIRO_TEST_KEYSTORE_PASSWORD_BAD", "wrong");
        let ok = KeySource::Keystore {
            path: path.clone(),
            password_env: "CIRO_TEST_KEYSTORE_PASSWORD_OK".into(),
        };
        assert_eq!(
            ok.signing_key().unwrap().secret_scalar(),
            key.secret_scalar()
        );
        let bad = KeySource::Keystore {
            path,
            password_env: "CIRO_TEST_KEYSTORE_PASSWORD_BAD".into(),
        };
        assert!(bad.signing_key().is_err());
        let unset = KeySource::Keystore {
            path: "x".into(),
            password_env: "CIRO_TEST_UNSET_VARIABLE".into(),
        };
        let err = format!("{:#}", unset.signing_key().unwrap_err());
        assert!(err.contains("CIRO_TEST_UNSET_VARIABLE is not set"), "{err}");
    }

    #[test]
    fn key_files_and_variables_are_parsed_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "0x1234\n").unwrap();
        assert_eq!(
            KeySource::File(path.clone())
                .signing_key()
                .unwrap()
                .secret_scalar(),
            Felt::from(0x1234u32)
        );
        std::fs::write(&path, "not hex").unwrap();
        assert!(KeySource::File(path.clone()).signing_key().is_err());
        std::fs::write(&path, "0x0").unwrap();
        assert!(format!("{:#}", KeySource::File(path).signing_key().unwrap_err()).contains("zero"));
        std::env::set_var("CIRO_TEST_KEY_VAR", "0xabc");
        assert_eq!(
            KeySource::Env("CIRO_TEST_KEY_VAR".into())
                .signing_key()
                .unwrap()
                .secret_scalar(),
            Felt::from(0xabcu32)
        );
    }
}
