//! The deployment manifest, `deployments/<network>.json`: where a network's contracts are.
//! Written by the deploy tooling (`ciro-deploy`), read by every service and client.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use starknet::core::types::Felt;

/// `deployments/<network>.json`.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub network: String,
    /// The chain id as text (`SN_SEPOLIA`), or hex when it is not a short string.
    pub chain_id: String,
    pub rpc_url: String,
    /// Block of the first deployment recorded in this manifest (where indexers start).
    pub deploy_block: Option<u64>,
    /// Class hash per contract name.
    pub classes: BTreeMap<String, Felt>,
    /// Address per deployed contract.
    pub contracts: BTreeMap<String, Felt>,
}

impl Manifest {
    /// Reads `path`, or an empty manifest when there is no file yet.
    pub fn read(path: &Path) -> Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Writes the manifest (creating its folder).
    pub fn write(&self, path: &Path) -> Result<()> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(path, serde_json::to_string_pretty(self)? + "\n")
            .with_context(|| format!("writing {}", path.display()))
    }

    /// The address of the contract named `name` (`JobMgr`, `CdcPool`, `Paymaster`,
    /// `TestToken`), or an error naming the manifest's network.
    pub fn contract(&self, name: &str) -> Result<Felt> {
        self.contracts.get(name).copied().with_context(|| {
            format!(
                "the deployment manifest of network {:?} has no {name}",
                self.network
            )
        })
    }
}
