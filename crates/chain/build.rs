//! Generates the typed contract bindings with cainome from the compiled contract classes in
//! `target/dev/` (written by `ciro-cairo build`). One module per contract.
//!
//! cainome binds functions and events but not constructors. So that constructor calldata is
//! serialized by the same generated code as every other call (never by hand), the binding is
//! generated from the class's ABI plus one extra standalone function named `constructor`
//! with the constructor's inputs: its `constructor_getcall(..)` yields exactly the
//! constructor calldata.

use std::path::{Path, PathBuf};
use std::{env, fs};

use cainome::rs::{Abigen, ExecutionVersion};
use serde_json::{json, Value};

/// The contracts the crate binds: (contract name in Cairo, Rust module name).
const CONTRACTS: &[(&str, &str)] = &[
    ("Governance", "governance"),
    ("JobMgr", "job_mgr"),
    ("CdcPool", "cdc_pool"),
    ("Paymaster", "paymaster"),
    ("TestToken", "test_token"),
];

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let classes_dir = env::var_os("CIRO_CLASSES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir.join("../../target/dev"));
    println!("cargo:rerun-if-env-changed=CIRO_CLASSES_DIR");
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("set by cargo"));

    for (contract, module) in CONTRACTS {
        let class_path = classes_dir.join(format!("ciro_{contract}.contract_class.json"));
        println!("cargo:rerun-if-changed={}", class_path.display());
        let abi_path = out_dir.join(format!("{module}.abi.json"));
        fs::write(&abi_path, abi_with_constructor_function(&class_path)).expect("write ABI");
        generate(contract, module, &abi_path, &out_dir);
    }
    for (contract, module, file) in FOREIGN_ABIS {
        let abi_path = manifest_dir.join(file);
        println!("cargo:rerun-if-changed={}", abi_path.display());
        generate(contract, module, &abi_path, &out_dir);
    }
}

/// Bindings from ABI files kept in `abi/` for contracts that are not the project's: (contract
/// name, module, file).
const FOREIGN_ABIS: &[(&str, &str, &str)] =
    &[("Src9Account", "src9_account", "abi/src9_account.abi.json")];

/// Writes `<out_dir>/<module>.rs`: cainome's bindings for the ABI at `abi_path`. Written
/// without cainome's `write_to_file` header: its inner `#![allow]` attributes cannot be
/// `include!`d; the including module carries the allows instead.
fn generate(contract: &str, module: &str, abi_path: &Path, out_dir: &Path) {
    // Derives of the generated types (cainome's own serde attributes need the serde derives).
    let derives = [
        "Debug",
        "Clone",
        "PartialEq",
        "serde::Serialize",
        "serde::Deserialize",
    ]
    .map(String::from)
    .to_vec();
    let bindings = Abigen::new(contract, abi_path.to_str().expect("UTF-8 path"))
        .with_execution_version(ExecutionVersion::V3)
        .with_derives(derives)
        .with_contract_derives(vec!["Debug".into(), "Clone".into()])
        .generate()
        .unwrap_or_else(|e| panic!("cainome failed on {}: {e}", abi_path.display()));
    fs::write(out_dir.join(format!("{module}.rs")), bindings.to_string()).expect("write bindings");
}

fn abi_with_constructor_function(class_path: &Path) -> String {
    let text = fs::read_to_string(class_path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}\n\nThe contract classes are built by the project's Cairo tool. Run\n    \
             cargo run --release --manifest-path cairo/toolchain/Cargo.toml -- build\n\
             (scripts/setup.sh does it) before building the Rust workspace.",
            class_path.display()
        )
    });
    let class: Value = serde_json::from_str(&text).expect("contract class JSON");
    let mut abi = class["abi"]
        .as_array()
        .expect("contract class has an ABI array")
        .clone();
    let inputs = abi
        .iter()
        .find(|entry| entry["type"] == "constructor")
        .map(|entry| entry["inputs"].clone())
        .unwrap_or_else(|| json!([]));
    abi.push(json!({
        "type": "function",
        "name": "constructor",
        "inputs": inputs,
        "outputs": [],
        "state_mutability": "external",
    }));
    serde_json::to_string_pretty(&abi).expect("serialize ABI")
}
