//! Generates the typed contract bindings with cainome from the ABI files committed in `abi/`.
//! One module per contract. No Cairo step is needed: the ABIs are extracted from the compiled
//! classes by `ciro-cairo abi` and checked against them by `ciro-cairo abi --check`.
//!
//! cainome binds functions and events but not constructors: each project ABI carries one
//! extra function named `constructor` with the constructor's inputs (added by the extraction),
//! so its `constructor_getcall(..)` yields exactly the constructor calldata.

use std::path::{Path, PathBuf};
use std::{env, fs};

use cainome::rs::{Abigen, ExecutionVersion};

/// The contracts the crate binds: (contract name, Rust module name, ABI file in `abi/`). The
/// project's own ABIs come from `ciro-cairo abi`; the last two are standard interfaces.
const ABIS: &[(&str, &str, &str)] = &[
    ("Governance", "governance", "ciro_Governance.abi.json"),
    ("JobMgr", "job_mgr", "ciro_JobMgr.abi.json"),
    ("CdcPool", "cdc_pool", "ciro_CdcPool.abi.json"),
    ("Paymaster", "paymaster", "ciro_Paymaster.abi.json"),
    ("TestToken", "test_token", "ciro_TestToken.abi.json"),
    // SNIP-9 v2 of OpenZeppelin's accounts (and devnet's predeployed ones).
    ("Src9Account", "src9_account", "src9_account.abi.json"),
    // The standard ERC-20 interface (snake_case, as STRK and OpenZeppelin's tokens serve it).
    ("Erc20", "erc20", "erc20.abi.json"),
];

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("set by cargo"));
    for (contract, module, file) in ABIS {
        let abi_path = manifest_dir.join("abi").join(file);
        println!("cargo:rerun-if-changed={}", abi_path.display());
        generate(contract, module, &abi_path, &out_dir);
    }
}

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
    let code = constant_selectors(&bindings.to_string())
        .unwrap_or_else(|e| panic!("bindings of {}: {e}", abi_path.display()));
    fs::write(out_dir.join(format!("{module}.rs")), code).expect("write bindings");
}

/// cainome computes each selector at run time (`get_selector_from_name`: a Keccak hash), and
/// its event decoding compares an event's key with each variant's selector in turn, so a
/// JobMgr event cost up to two dozen hashes: most of the indexer's own CPU (measured with
/// `perf`). Each call becomes `Ok(selector!(name))`, the same value computed at compile time,
/// so the code around it (`.unwrap()`, `.unwrap_or_else(..)`) is unchanged. An error if
/// cainome's output no longer has the shape this expects.
fn constant_selectors(code: &str) -> Result<String, String> {
    const CALL: &str = "starknet::core::utils::get_selector_from_name(\"";
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find(CALL) {
        out.push_str(&rest[..at]);
        let after = &rest[at + CALL.len()..];
        let end = after
            .find("\")")
            .ok_or_else(|| format!("an unterminated selector name after {CALL}"))?;
        let name = &after[..end];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("an unexpected selector name {name:?}"));
        }
        out.push_str(&format!(
            "Ok::<_, std::convert::Infallible>(starknet::macros::selector!(\"{name}\"))"
        ));
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    if out.contains("get_selector_from_name") {
        return Err("a get_selector_from_name call of another shape is left".into());
    }
    Ok(out)
}
