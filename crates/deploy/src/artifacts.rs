//! The compiled contract classes (`target/dev/ciro_<Contract>.contract_class.json`) and the
//! two hashes a declaration needs.
//!
//! The compiled class hash is computed the way the network checks it (Starknet >= 0.14.1):
//! CASM from `universal-sierra-compiler` (the compiler devnet and the sequencer run, not the
//! Cairo 2.1 one the classes were built with), hashed with Blake2s.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use starknet::core::types::contract::SierraClass;
use starknet::core::types::{Felt, FlattenedSierraClass};
use starknet_rust_core::crypto::HashFunction;
use starknet_rust_core::types::contract::CompiledClass;

/// A compiled contract class, ready to declare.
#[derive(Debug, Clone)]
pub struct ContractArtifact {
    /// The contract's name in Cairo (`TestToken`).
    pub name: String,
    /// The class as declared (Sierra program, entry points, ABI).
    pub sierra: FlattenedSierraClass,
    /// The Sierra class hash.
    pub class_hash: Felt,
    /// The compiled (CASM) class hash, Blake2s.
    pub compiled_class_hash: Felt,
    /// Length of the CASM bytecode in felts (Starknet's limit: 81,920).
    pub casm_bytecode_len: usize,
}

/// Where the classes are: `$CIRO_CLASSES_DIR`, else the workspace's `target/dev`.
pub fn classes_dir() -> PathBuf {
    std::env::var_os("CIRO_CLASSES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/dev"))
}

impl ContractArtifact {
    /// Loads `ciro_<name>.contract_class.json` from `dir` and computes both hashes.
    pub fn load(dir: &Path, name: &str) -> Result<Self> {
        let path = dir.join(format!("ciro_{name}.contract_class.json"));
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {} (built by `ciro-cairo build`)", path.display()))?;
        Self::from_json(name, &text).with_context(|| format!("loading {}", path.display()))
    }

    /// Builds the artifact from a contract class JSON (Scarb's format).
    pub fn from_json(name: &str, text: &str) -> Result<Self> {
        let class: SierraClass = serde_json::from_str(text).context("parsing the Sierra class")?;
        let sierra = class.flatten().context("flattening the Sierra class")?;
        let class_hash = sierra.class_hash();
        let json: serde_json::Value = serde_json::from_str(text)?;
        let (compiled_class_hash, casm_bytecode_len) = compiled_class_hash(json)?;
        Ok(Self {
            name: name.to_owned(),
            sierra,
            class_hash,
            compiled_class_hash,
            casm_bytecode_len,
        })
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
