//! Declaring classes and deploying contracts.

use std::sync::Arc;

use starknet::accounts::ConnectedAccount;
use starknet::contract::{ContractFactory, UdcSelector};
use starknet::core::types::{BlockId, BlockTag, Felt, StarknetError};
use starknet::providers::{Provider, ProviderError};

use ciro_chain::tx::wait_for_receipt;
use ciro_chain::ChainError;

use crate::artifacts::ContractArtifact;

/// The outcome of [`declare`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Declared {
    /// Declared by this call, in this transaction.
    Now { class_hash: Felt, tx_hash: Felt },
    /// The network already knew the class; nothing was sent.
    Already { class_hash: Felt },
}

impl Declared {
    pub fn class_hash(&self) -> Felt {
        match self {
            Declared::Now { class_hash, .. } | Declared::Already { class_hash } => *class_hash,
        }
    }
}

/// Declares `artifact` unless the network already has its class hash.
pub async fn declare<A>(account: &A, artifact: &ContractArtifact) -> Result<Declared, ChainError>
where
    A: ConnectedAccount + Sync,
{
    let provider = account.provider();
    match provider
        .get_class(BlockId::Tag(BlockTag::PreConfirmed), artifact.class_hash)
        .await
    {
        Ok(_) => {
            return Ok(Declared::Already {
                class_hash: artifact.class_hash,
            })
        }
        Err(ProviderError::StarknetError(StarknetError::ClassHashNotFound)) => {}
        Err(e) => return Err(e.into()),
    }
    let sent = account
        .declare_v3(
            Arc::new(artifact.sierra.clone()),
            artifact
                .compiled_class_hash()
                .map_err(ChainError::internal)?,
        )
        .send()
        .await
        .map_err(|e| {
            let error = ChainError::from(e);
            tracing::warn!(contract = %artifact.name, %error, "declaration failed");
            error
        })?;
    wait_for_receipt(provider, sent.transaction_hash).await?;
    tracing::info!(contract = %artifact.name, class_hash = %format!("{:#x}", sent.class_hash), "declared");
    Ok(Declared::Now {
        class_hash: sent.class_hash,
        tx_hash: sent.transaction_hash,
    })
}

/// A deployed contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deployed {
    pub address: Felt,
    pub tx_hash: Felt,
}

/// Deploys an instance of `class_hash` through the Universal Deployer Contract.
/// `constructor_calldata` comes from a binding's `constructor_getcall(..)`.
pub async fn deploy<A>(
    account: &A,
    class_hash: Felt,
    constructor_calldata: Vec<Felt>,
    salt: Felt,
) -> Result<Deployed, ChainError>
where
    A: ConnectedAccount + Sync,
{
    let factory = ContractFactory::new_with_udc(class_hash, account, UdcSelector::New);
    let deployment = factory.deploy_v3(constructor_calldata, salt, false);
    let address = deployment.deployed_address();
    let sent = deployment.send().await.map_err(ChainError::from)?;
    wait_for_receipt(account.provider(), sent.transaction_hash).await?;
    Ok(Deployed {
        address,
        tx_hash: sent.transaction_hash,
    })
}
