//! `ciro-cairo`: the project's Cairo 2.1 build tool (what Scarb would be, from crates.io alone).
//!
//! - `corelib`: fetches the Cairo 2.1.0 core library from PyPI's `cairo-lang==0.12.3` into
//!   the cache (idempotent) and prints its path;
//! - `check`: the source checks the compiler cannot make (today: the hosted governance blocks
//!   are identical and delegate all of `IGovernance`, see [`governance_blocks`]);
//! - `build`: runs `check`, then compiles every `#[starknet::contract]` of the `ciro` crate
//!   (`cairo/src`) to a Sierra contract class, `target/dev/ciro_<Contract>.contract_class.json` (Scarb's layout),
//!   failing on any compiler diagnostic, warnings included, and prints each class's size
//!   against Starknet's limits;
//! - `abi` / `abi --check`: writes the classes' ABIs to `crates/chain/abi/` (what the Rust
//!   bindings are generated from, committed so the workspace builds with no Cairo step), or
//!   fails when the committed ones drifted from the classes (see [`abi`]);
//! - `fmt` / `fmt --check`: the Cairo 2.1.0 formatter over `cairo/src`.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;

use anyhow::{bail, ensure, Context, Result};
use cairo_lang_compiler::db::RootDatabase;
use cairo_lang_compiler::diagnostics::DiagnosticsReporter;
use cairo_lang_compiler::project::get_main_crate_ids_from_project;
use cairo_lang_compiler::CompilerConfig;
use cairo_lang_filesystem::ids::Directory;
use cairo_lang_formatter::{CairoFormatter, FormatOutcome, FormatterConfig};
use cairo_lang_project::{ProjectConfig, ProjectConfigContent};
use cairo_lang_starknet::casm_contract_class::CasmContractClass;
use cairo_lang_starknet::contract::find_contracts;
use cairo_lang_starknet::contract_class::compile_prepared_db;
use cairo_lang_starknet::plugin::StarkNetPlugin;
use clap::{Parser, Subcommand};

mod abi;
mod governance_blocks;

/// The PyPI release whose sdist carries the complete Cairo 2.1.0 corelib (TOOLCHAIN.md).
const CAIRO_LANG_PYPI: &str = "cairo-lang==0.12.3";
const CAIRO_LANG_ZIP: &str = "cairo-lang-0.12.3.zip";
const CORELIB_PREFIX_IN_ZIP: &str =
    "cairo-lang-0.12.3/starkware/starknet/compiler/v1/sierra-compiler-major-1/corelib/";
/// The name of the project's Cairo crate (also the prefix of the class file names).
const CRATE_NAME: &str = "ciro";
/// Starknet's limit on a declared contract class, in bytes of its JSON.
const MAX_CONTRACT_CLASS_BYTES: usize = 4_089_446;
/// Starknet's limit on a compiled (CASM) class's bytecode, in felts.
const MAX_CASM_BYTECODE_FELTS: usize = 81_920;

#[derive(Parser)]
#[command(
    name = "ciro-cairo",
    about = "Build and format CIRO's Cairo 2.1 contracts"
)]
struct Cli {
    /// Repository root (holds `cairo/src` and `target/`).
    #[arg(long, env = "CIRO_ROOT", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))]
    root: PathBuf,
    /// Cache directory for downloaded toolchain parts.
    #[arg(long, env = "CIRO_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Fetch the Cairo 2.1.0 corelib into the cache if needed and print its path.
    Corelib,
    /// Check what the compiler does not: the hosted governance blocks are identical copies
    /// that delegate every function of `IGovernance`.
    Check,
    /// Run `check`, then compile every contract to `target/dev/ciro_<Contract>.contract_class.json`.
    Build {
        /// Output directory (default: `<root>/target/dev`).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Write the compiled classes' ABIs to `crates/chain/abi/` (the Rust bindings' input), or
    /// with `--check` fail when the committed ones differ from the classes.
    Abi {
        #[arg(long)]
        check: bool,
        /// The compiled classes (default: `<root>/target/dev`).
        #[arg(long)]
        classes: Option<PathBuf>,
    },
    /// Format the Cairo sources in place, or with `--check` report files that differ.
    Fmt {
        #[arg(long)]
        check: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("ciro-cairo: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let root = cli
        .root
        .canonicalize()
        .with_context(|| format!("repository root {}", cli.root.display()))?;
    let cache = match cli.cache_dir {
        Some(dir) => dir,
        None => default_cache_dir()?,
    };
    match cli.command {
        Cmd::Corelib => {
            println!("{}", ensure_corelib(&cache)?.display());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Check => {
            println!("{}", governance_blocks::check_repo(&root)?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Build { out } => {
            // Before compiling: drift is a source problem, and a drifted tree must not produce
            // classes by any route (setup, CI, a developer's build).
            println!("{}", governance_blocks::check_repo(&root)?);
            let corelib = ensure_corelib(&cache)?;
            let out = out.unwrap_or_else(|| root.join("target/dev"));
            build(&root.join("cairo"), &corelib, &out)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Abi { check, classes } => {
            let classes = classes.unwrap_or_else(|| root.join("target/dev"));
            let abi_dir = root.join("crates/chain/abi");
            if !check {
                let count = abi::write(&classes, &abi_dir)?;
                println!("wrote {count} ABIs to {}", abi_dir.display());
                return Ok(ExitCode::SUCCESS);
            }
            let problems = abi::drift(&classes, &abi_dir)?;
            if problems.is_empty() {
                println!("ciro-cairo abi: the committed ABIs match the classes");
                return Ok(ExitCode::SUCCESS);
            }
            eprintln!(
                "ciro-cairo abi: the committed ABIs drifted from the contracts:\n  {}\n\
                 Refresh them with `cairo/toolchain/target/release/ciro-cairo abi` \
                 (after `ciro-cairo build`) and commit crates/chain/abi/.",
                problems.join("\n  ")
            );
            Ok(ExitCode::FAILURE)
        }
        Cmd::Fmt { check } => fmt(&root.join("cairo/src"), check),
    }
}

fn default_cache_dir() -> Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set; pass --cache-dir")?;
    Ok(PathBuf::from(home).join(".cache/ciro"))
}

/// Returns `<cache>/cairo-2.1.0/corelib`, downloading and unpacking it on first use.
///
/// The unpacked tree is only trusted once the `.complete` marker exists, so an interrupted
/// run is redone rather than leaving a half corelib behind.
fn ensure_corelib(cache: &Path) -> Result<PathBuf> {
    let dir = cache.join("cairo-2.1.0");
    let corelib = dir.join("corelib");
    let marker = dir.join(".complete");
    if marker.exists() {
        return Ok(corelib);
    }
    let downloads = cache.join("downloads");
    let zip_path = downloads.join(CAIRO_LANG_ZIP);
    if !zip_path.exists() {
        fs::create_dir_all(&downloads)
            .with_context(|| format!("creating {}", downloads.display()))?;
        eprintln!(
            "ciro-cairo: downloading {CAIRO_LANG_PYPI} (sdist, no dependencies) from PyPI into {}",
            downloads.display()
        );
        let status = Command::new("python3")
            .args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "-q",
                CAIRO_LANG_PYPI,
                "-d",
            ])
            .arg(&downloads)
            .status()
            .context("running `python3 -m pip download` (is python3 with pip installed?)")?;
        ensure!(
            status.success(),
            "pip download {CAIRO_LANG_PYPI} failed: {status}"
        );
        ensure!(
            zip_path.exists(),
            "pip did not produce {}",
            zip_path.display()
        );
    }
    eprintln!(
        "ciro-cairo: unpacking the Cairo 2.1.0 corelib into {}",
        corelib.display()
    );
    if corelib.exists() {
        fs::remove_dir_all(&corelib)
            .with_context(|| format!("removing partial {}", corelib.display()))?;
    }
    let file =
        fs::File::open(&zip_path).with_context(|| format!("opening {}", zip_path.display()))?;
    let mut archive =
        zip::ZipArchive::new(file).with_context(|| format!("reading {}", zip_path.display()))?;
    let mut unpacked = 0usize;
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index)?;
        let Some(relative) = entry
            .name()
            .strip_prefix(CORELIB_PREFIX_IN_ZIP)
            .map(str::to_owned)
        else {
            continue;
        };
        // Entry names come from a registry download: refuse anything that would escape.
        let relative = Path::new(&relative);
        ensure!(
            relative
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_))),
            "unexpected path in {CAIRO_LANG_ZIP}: {}",
            entry.name()
        );
        let target = corelib.join(relative);
        if entry.is_dir() {
            fs::create_dir_all(&target)?;
            continue;
        }
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)?;
        }
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry.read_to_end(&mut bytes)?;
        fs::write(&target, bytes).with_context(|| format!("writing {}", target.display()))?;
        unpacked += 1;
    }
    ensure!(
        corelib.join("src/lib.cairo").exists(),
        "{CAIRO_LANG_ZIP} has no corelib at {CORELIB_PREFIX_IN_ZIP}"
    );
    fs::write(&marker, format!("{CAIRO_LANG_PYPI}\n"))?;
    eprintln!("ciro-cairo: corelib ready ({unpacked} files)");
    Ok(corelib)
}

fn build(cairo_dir: &Path, corelib: &Path, out: &Path) -> Result<()> {
    let src = cairo_dir.join("src");
    ensure!(
        src.join("lib.cairo").exists(),
        "{} not found",
        src.join("lib.cairo").display()
    );
    let config = ProjectConfig {
        base_path: cairo_dir.to_path_buf(),
        corelib: Some(Directory(corelib.join("src"))),
        content: ProjectConfigContent {
            crate_roots: [(CRATE_NAME.into(), PathBuf::from("src"))]
                .into_iter()
                .collect(),
        },
    };
    let mut db = RootDatabase::builder()
        .with_project_config(config.clone())
        .with_semantic_plugin(Arc::new(StarkNetPlugin::default()))
        .build()?;
    let crate_ids = get_main_crate_ids_from_project(&mut db, &config);

    let mut diagnostics = String::new();
    let reporter = DiagnosticsReporter::write_to_string(&mut diagnostics);
    let contracts = find_contracts(&db, &crate_ids);
    ensure!(
        !contracts.is_empty(),
        "no #[starknet::contract] found under {}",
        src.display()
    );
    let refs: Vec<_> = contracts.iter().collect();
    let compiled = compile_prepared_db(
        &db,
        &refs,
        CompilerConfig {
            diagnostics_reporter: reporter,
            replace_ids: true,
            ..CompilerConfig::default()
        },
    );
    // Warnings are reported through the same channel as errors: any text fails the build.
    if !diagnostics.trim().is_empty() {
        bail!("the Cairo compiler reported diagnostics:\n{diagnostics}");
    }
    let classes = compiled?;

    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    println!(
        "{:<28} {:>14} {:>22}",
        "contract class", "class bytes", "CASM bytecode felts"
    );
    let mut over_limit = Vec::new();
    for (contract, class) in contracts.iter().zip(classes) {
        let name = contract.submodule_id.name(&db);
        let path = out.join(format!("{CRATE_NAME}_{name}.contract_class.json"));
        let json = serde_json::to_string_pretty(&class)?;
        // The network limits what is declared: the class without its debug info.
        let mut declared = class.clone();
        declared.sierra_program_debug_info = None;
        let declared_bytes = serde_json::to_string(&declared)?.len();
        let casm = CasmContractClass::from_contract_class(class, false)
            .with_context(|| format!("compiling {name} to CASM"))?;
        let casm_felts = casm.bytecode.len();
        fs::write(&path, json).with_context(|| format!("writing {}", path.display()))?;
        println!(
            "{:<28} {:>14} {:>22}",
            name,
            format!("{declared_bytes}/{MAX_CONTRACT_CLASS_BYTES}"),
            format!("{casm_felts}/{MAX_CASM_BYTECODE_FELTS}")
        );
        if declared_bytes > MAX_CONTRACT_CLASS_BYTES || casm_felts > MAX_CASM_BYTECODE_FELTS {
            over_limit.push(name.to_string());
        }
    }
    ensure!(
        over_limit.is_empty(),
        "classes over Starknet's size limits: {}",
        over_limit.join(", ")
    );
    println!(
        "wrote {} contract classes to {}",
        contracts.len(),
        out.display()
    );
    Ok(())
}

fn fmt(src: &Path, check: bool) -> Result<ExitCode> {
    let formatter = CairoFormatter::new(FormatterConfig::default());
    let mut files = Vec::new();
    for entry in formatter.walk(src).build() {
        let entry = entry?;
        if entry.file_type().is_some_and(|t| t.is_file()) {
            files.push(entry.into_path());
        }
    }
    files.sort();
    ensure!(!files.is_empty(), "no Cairo files under {}", src.display());
    let mut differing = Vec::new();
    for file in &files {
        let input: &Path = file;
        let outcome = if check {
            formatter.format_to_string(&input)
        } else {
            formatter.format_in_place(&input)
        }
        .with_context(|| format!("formatting {}", file.display()))?;
        if let FormatOutcome::DiffFound(diff) = outcome {
            if check {
                println!("Diff in {}:\n{}", file.display(), diff.display_colored());
            } else {
                println!("formatted {}", file.display());
            }
            differing.push(file);
        }
    }
    if check && !differing.is_empty() {
        eprintln!(
            "ciro-cairo: {} of {} Cairo files are not formatted; run `ciro-cairo fmt`",
            differing.len(),
            files.len()
        );
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "ciro-cairo fmt: {} Cairo files {}",
        files.len(),
        if check { "checked" } else { "formatted" }
    );
    Ok(ExitCode::SUCCESS)
}
