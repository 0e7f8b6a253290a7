//! The contracts' ABIs, committed beside the Rust bindings (`crates/chain/abi/`), so that the
//! Rust workspace builds from a fresh clone with no Cairo step.
//!
//! `ciro-cairo abi` extracts them from the compiled classes (`target/dev`); `ciro-cairo abi
//! --check` fails when a committed ABI differs from what the classes give, or when a class has
//! no committed ABI or an ABI has no class (drift: the bindings would not match the contracts).
//!
//! cainome binds functions and events but not constructors. So that constructor calldata is
//! serialized by the same generated code as every other call (never by hand), each extracted
//! ABI carries one extra function named `constructor` with the constructor's inputs: the
//! binding's `constructor_getcall(..)` yields exactly the constructor calldata.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{json, Value};

const CLASS_SUFFIX: &str = ".contract_class.json";
const ABI_SUFFIX: &str = ".abi.json";
/// The project's classes and ABIs are `ciro_<Contract>`; other ABIs in the directory (foreign
/// contracts' interfaces) are not the tool's.
const PREFIX: &str = "ciro_";

/// The ABI file text of a compiled class: its ABI plus the `constructor` function.
pub fn abi_of_class(class_json: &str) -> Result<String> {
    let class: Value = serde_json::from_str(class_json).context("contract class JSON")?;
    let mut abi = class["abi"]
        .as_array()
        .context("the contract class has no ABI array")?
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
    Ok(serde_json::to_string_pretty(&abi)? + "\n")
}

/// `ciro_<Contract>` -> ABI text, for every class in `classes_dir`.
fn expected(classes_dir: &Path) -> Result<BTreeMap<String, String>> {
    let mut abis = BTreeMap::new();
    for entry in
        fs::read_dir(classes_dir).with_context(|| format!("reading {}", classes_dir.display()))?
    {
        let path = entry?.path();
        let Some(name) = file_name(&path).and_then(|n| n.strip_suffix(CLASS_SUFFIX)) else {
            continue;
        };
        if !name.starts_with(PREFIX) {
            continue;
        }
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let abi = abi_of_class(&text).with_context(|| format!("{}", path.display()))?;
        abis.insert(name.to_owned(), abi);
    }
    anyhow::ensure!(
        !abis.is_empty(),
        "no compiled classes in {} (run `ciro-cairo build` first)",
        classes_dir.display()
    );
    Ok(abis)
}

fn file_name(path: &Path) -> Option<&str> {
    path.file_name().and_then(|n| n.to_str())
}

/// Writes the ABIs of the classes in `classes_dir` to `abi_dir`; returns how many.
pub fn write(classes_dir: &Path, abi_dir: &Path) -> Result<usize> {
    let abis = expected(classes_dir)?;
    fs::create_dir_all(abi_dir).with_context(|| format!("creating {}", abi_dir.display()))?;
    for (name, abi) in &abis {
        let path = abi_dir.join(format!("{name}{ABI_SUFFIX}"));
        fs::write(&path, abi).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(abis.len())
}

/// Compares the committed ABIs in `abi_dir` with the classes in `classes_dir`; returns one line
/// per difference (empty: no drift).
pub fn drift(classes_dir: &Path, abi_dir: &Path) -> Result<Vec<String>> {
    let expected = expected(classes_dir)?;
    let mut problems = Vec::new();
    for (name, abi) in &expected {
        let path = abi_dir.join(format!("{name}{ABI_SUFFIX}"));
        match fs::read_to_string(&path) {
            Ok(committed) if committed == *abi => {}
            Ok(_) => problems.push(format!(
                "{} differs from the compiled class {name}",
                path.display()
            )),
            Err(_) => problems.push(format!("{} is missing", path.display())),
        }
    }
    for entry in fs::read_dir(abi_dir).with_context(|| format!("reading {}", abi_dir.display()))? {
        let path = entry?.path();
        if let Some(name) = file_name(&path).and_then(|n| n.strip_suffix(ABI_SUFFIX)) {
            if name.starts_with(PREFIX) && !expected.contains_key(name) {
                problems.push(format!(
                    "{} has no compiled class (a removed contract?)",
                    path.display()
                ));
            }
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLASS: &str = r#"{"sierra_program": [], "abi": [
        {"type": "constructor", "name": "constructor", "inputs": [{"name": "admin", "type": "core::starknet::contract_address::ContractAddress"}]},
        {"type": "function", "name": "admin", "inputs": [], "outputs": [], "state_mutability": "view"}
    ]}"#;

    fn dirs(tag: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let base = std::env::temp_dir().join(format!("ciro-abi-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let (classes, abis) = (base.join("classes"), base.join("abi"));
        fs::create_dir_all(&classes).expect("temp dir");
        fs::write(classes.join("ciro_Thing.contract_class.json"), CLASS).expect("class");
        (classes, abis)
    }

    #[test]
    fn the_constructor_becomes_a_function_with_its_inputs() {
        let abi: Value = serde_json::from_str(&abi_of_class(CLASS).expect("abi")).expect("json");
        let last = abi.as_array().and_then(|a| a.last()).expect("entries");
        assert_eq!(last["type"], "function");
        assert_eq!(last["name"], "constructor");
        assert_eq!(last["inputs"][0]["name"], "admin");
    }

    #[test]
    fn drift_is_empty_after_write_and_names_an_altered_missing_or_orphan_abi() {
        let (classes, abis) = dirs("drift");
        assert_eq!(write(&classes, &abis).expect("write"), 1);
        assert_eq!(drift(&classes, &abis).expect("check"), Vec::<String>::new());

        // A stale ABI: someone changed the contract and did not refresh.
        let path = abis.join("ciro_Thing.abi.json");
        let text = fs::read_to_string(&path).expect("abi");
        fs::write(&path, text.replace("\"admin\"", "\"owner\"")).expect("alter");
        let problems = drift(&classes, &abis).expect("check");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("ciro_Thing.abi.json differs"),
            "{problems:?}"
        );

        fs::remove_file(&path).expect("remove");
        let problems = drift(&classes, &abis).expect("check");
        assert!(problems[0].contains("is missing"), "{problems:?}");

        write(&classes, &abis).expect("write");
        fs::write(abis.join("ciro_Gone.abi.json"), "[]").expect("orphan");
        // A foreign contract's ABI is not the tool's business.
        fs::write(abis.join("src9_account.abi.json"), "[]").expect("foreign");
        let problems = drift(&classes, &abis).expect("check");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("ciro_Gone.abi.json has no compiled class"));
    }

    /// The repository's committed ABIs match the classes `ciro-cairo build` wrote (the test
    /// command builds them first).
    #[test]
    fn the_committed_abis_match_the_built_classes() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let problems = drift(&root.join("target/dev"), &root.join("crates/chain/abi"))
            .expect("classes built by `ciro-cairo build`");
        assert!(
            problems.is_empty(),
            "ABI drift; run `ciro-cairo abi`:\n{}",
            problems.join("\n")
        );
    }
}
