//! The compiled contract classes (`target/dev/ciro_<Contract>.contract_class.json`) and the
//! two hashes a declaration needs.
//!
//! The compiled class hash is computed the way the network checks it (Starknet >= 0.14.1):
//! CASM from `universal-sierra-compiler` (the compiler devnet and the sequencer run, not the
//! Cairo 2.1 one the classes were built with), hashed with Blake2s.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

/// What identifies a loaded class file: path, size, modification time, contract name.
type LoadKey = (PathBuf, u64, Option<SystemTime>, String);

use anyhow::{Context, Result};
use starknet::core::types::contract::SierraClass;
use starknet::core::types::{Felt, FlattenedSierraClass};
use starknet_rust_core::crypto::HashFunction;
use starknet_rust_core::types::contract::CompiledClass;

/// A compiled contract class, ready to declare.
///
/// The compiled (CASM) class hash is computed on first use, since it needs a Sierra-to-CASM
/// compilation (seconds for a large class): a deployment that finds a class already declared
/// needs only the class hash.
#[derive(Clone)]
pub struct ContractArtifact {
    /// The contract's name in Cairo (`TestToken`).
    pub name: String,
    /// The class as declared (Sierra program, entry points, ABI).
    pub sierra: FlattenedSierraClass,
    /// The Sierra class hash.
    pub class_hash: Felt,
    /// The class JSON, for the CASM compilation.
    source: Arc<serde_json::Value>,
    /// The compiled class hash (Blake2s) and CASM bytecode length, once computed.
    casm: Arc<OnceLock<(Felt, usize)>>,
}

impl std::fmt::Debug for ContractArtifact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContractArtifact")
            .field("name", &self.name)
            .field("class_hash", &format_args!("{:#x}", self.class_hash))
            .finish_non_exhaustive()
    }
}

/// Where the classes are: `$CIRO_CLASSES_DIR`, else the workspace's `target/dev`.
pub fn classes_dir() -> PathBuf {
    std::env::var_os("CIRO_CLASSES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/dev"))
}

impl ContractArtifact {
    /// Loads `ciro_<name>.contract_class.json` from `dir` and computes its class hash.
    ///
    /// Loaded classes are kept for the life of the process, keyed by path, size and
    /// modification time (parsing and hashing a large class takes a while, and the test suite
    /// deploys hundreds of times), so a rebuilt class file is loaded afresh.
    pub fn load(dir: &Path, name: &str) -> Result<Self> {
        static LOADED: OnceLock<Mutex<HashMap<LoadKey, ContractArtifact>>> = OnceLock::new();
        let path = dir.join(format!("ciro_{name}.contract_class.json"));
        let meta = std::fs::metadata(&path)
            .with_context(|| format!("reading {} (built by `ciro-cairo build`)", path.display()))?;
        let key = (
            path.clone(),
            meta.len(),
            meta.modified().ok(),
            name.to_owned(),
        );
        let cache = LOADED.get_or_init(Default::default);
        if let Some(found) = cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return Ok(found);
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {} (built by `ciro-cairo build`)", path.display()))?;
        let artifact =
            Self::from_json(name, &text).with_context(|| format!("loading {}", path.display()))?;
        if let Ok(mut cache) = cache.lock() {
            cache.insert(key, artifact.clone());
        }
        Ok(artifact)
    }

    /// Builds the artifact from a contract class JSON (Scarb's format).
    pub fn from_json(name: &str, text: &str) -> Result<Self> {
        let class: SierraClass = serde_json::from_str(text).context("parsing the Sierra class")?;
        let sierra = class.flatten().context("flattening the Sierra class")?;
        let class_hash = sierra.class_hash();
        let source = serde_json::from_str(text).context("parsing the class JSON")?;
        Ok(Self {
            name: name.to_owned(),
            sierra,
            class_hash,
            source: Arc::new(source),
            casm: Arc::new(OnceLock::new()),
        })
    }

    fn casm(&self) -> Result<(Felt, usize)> {
        if let Some(done) = self.casm.get() {
            return Ok(*done);
        }
        let computed = compiled_class_hash((*self.source).clone())
            .with_context(|| format!("the compiled class hash of {}", self.name))?;
        Ok(*self.casm.get_or_init(|| computed))
    }

    /// The compiled (CASM) class hash, Blake2s: what a declaration carries.
    pub fn compiled_class_hash(&self) -> Result<Felt> {
        Ok(self.casm()?.0)
    }

    /// Length of the CASM bytecode in felts (Starknet's limit: 81,920).
    pub fn casm_bytecode_len(&self) -> Result<usize> {
        Ok(self.casm()?.1)
    }
}

/// CASM by universal-sierra-compiler, then the Blake2s compiled class hash. Returns the hash
/// and the bytecode length.
pub fn compiled_class_hash(sierra_json: serde_json::Value) -> Result<(Felt, usize)> {
    let casm = universal_sierra_compiler::compile_contract(sierra_json)
        .context("compiling Sierra to CASM with universal-sierra-compiler")?;
    let compiled: CompiledClass = serde_json::from_value(casm).context("parsing the CASM class")?;
    let hash = compiled
        .class_hash_with_hash_function(HashFunction::blake2s())
        .context("hashing the CASM class")?;
    // starknet-rust-core and starknet-rs share starknet-types-core's Felt.
    Ok((
        Felt::from_bytes_be(&hash.to_bytes_be()),
        compiled.bytecode.len(),
    ))
}
