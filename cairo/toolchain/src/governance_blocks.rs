//! The hosted governance blocks must not drift.
//!
//! Cairo 2.1 has no components, so each contract that hosts the shared governance library
//! (`common::governance`) carries its own copy of the block that exposes it:
//! `#[external(v0)] impl GovernanceImpl of IGovernance<ContractState> { ... }`, every function
//! forwarding to `Governance::unsafe_new_contract_state()`. The copies are forced by the
//! language; this check makes sure they stay copies. It parses the sources with the Cairo
//! 2.1.0 parser (so braces in comments or short strings cannot fool it) and requires, for
//! every host:
//!
//! 1. exactly one impl of `IGovernance`;
//! 2. that it implements every function declared in `trait IGovernance`, and nothing else;
//! 3. that every function forwards to the library function of the same name;
//! 4. that the block, from its attributes to its closing brace, is the same text in every host
//!    once whitespace is normalised (each line's runs of whitespace collapsed, blank lines
//!    dropped). The attributes are part of it because `#[external(v0)]` is what exposes the
//!    functions: a host that lost it would drift in the way that matters most.
//!
//! Nothing here lists the functions: they come from the trait, so adding one to `IGovernance`
//! and to every host passes, and adding it to some hosts only fails.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use cairo_lang_filesystem::db::FilesGroup;
use cairo_lang_filesystem::ids::{FileLongId, VirtualFile};
use cairo_lang_filesystem::span::TextOffset;
use cairo_lang_parser::utils::{get_syntax_file_and_diagnostics, SimpleParserDatabase};
use cairo_lang_syntax::node::ast::{
    ImplItem, Item, ItemImpl, ItemList, ItemTrait, MaybeImplBody, MaybeModuleBody, MaybeTraitBody,
    TraitItem,
};
use cairo_lang_syntax::node::db::SyntaxGroup;
use cairo_lang_syntax::node::{Terminal, TypedSyntaxNode};

/// The file that declares `trait IGovernance`, relative to the repository root.
pub const TRAIT_FILE: &str = "cairo/src/common/governance.cairo";
/// The contracts that host the governance block, relative to the repository root.
pub const HOSTS: [&str; 3] = [
    "cairo/src/job_mgr/job_mgr.cairo",
    "cairo/src/cdc_pool/cdc_pool.cairo",
    "cairo/src/paymaster/paymaster.cairo",
];
/// The trait the blocks implement.
const TRAIT_NAME: &str = "IGovernance";
/// What every delegating function calls into.
const LIBRARY_STATE: &str = "Governance::unsafe_new_contract_state()";

/// One Cairo source: the name errors show (a path) and its text.
pub struct Source {
    pub name: String,
    pub text: String,
}

impl Source {
    fn read(root: &Path, relative: &str) -> Result<Self> {
        let path = root.join(relative);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        Ok(Self {
            name: relative.to_string(),
            text,
        })
    }
}

/// Runs the check over the repository at `root`; returns a one-line summary.
pub fn check_repo(root: &Path) -> Result<String> {
    let declaring = Source::read(root, TRAIT_FILE)?;
    let hosts = HOSTS
        .iter()
        .map(|host| Source::read(root, host))
        .collect::<Result<Vec<_>>>()?;
    let functions = check(&declaring, &hosts)?;
    Ok(format!(
        "governance blocks: {} hosts identical, each implements the {functions} functions of {TRAIT_NAME}",
        hosts.len()
    ))
}

/// Checks the hosts' blocks against each other and against the trait declared in
/// `declaring`; returns how many functions the trait declares. Every problem found is in the
/// error, one per line.
pub fn check(declaring: &Source, hosts: &[Source]) -> Result<usize> {
    let db = SimpleParserDatabase::default();
    let trait_functions = trait_functions(&db, declaring)?;
    let mut problems = Vec::new();
    let mut blocks = Vec::new();
    for host in hosts {
        match host_block(&db, host) {
            Ok(block) => {
                check_functions(host, &block, &trait_functions, &mut problems);
                blocks.push(block);
            }
            Err(err) => problems.push(format!("{err:#}")),
        }
    }
    if problems.is_empty() {
        check_identical(&blocks, &mut problems);
    }
    if !problems.is_empty() {
        bail!(
            "the contracts' governance blocks (`impl ... of {TRAIT_NAME}<ContractState>`) must be \
             identical and delegate every function of `trait {TRAIT_NAME}` ({}):\n  {}",
            declaring.name,
            problems.join("\n  ")
        );
    }
    Ok(trait_functions.len())
}

/// A host's governance block.
struct Block<'a> {
    host: &'a Source,
    /// The block's lines, whitespace-normalised, with their 1-based line numbers in the host.
    lines: Vec<(usize, String)>,
    /// Each function: its name and its body's text.
    functions: Vec<(String, String)>,
}

impl Block<'_> {
    /// Whether the two blocks read the same, line numbers aside.
    fn same_text(&self, other: &Block<'_>) -> bool {
        self.lines.len() == other.lines.len()
            && self
                .lines
                .iter()
                .zip(&other.lines)
                .all(|((_, a), (_, b))| a == b)
    }
}

fn parse(db: &SimpleParserDatabase, source: &Source) -> Result<ItemList> {
    // A virtual file, so that synthetic sources need nothing on disk and diagnostics can
    // still quote the text.
    let file_id = db.intern_file(FileLongId::Virtual(VirtualFile {
        parent: None,
        name: source.name.as_str().into(),
        content: Arc::new(source.text.clone()),
    }));
    let (file, diagnostics) = get_syntax_file_and_diagnostics(db, file_id, &source.text);
    if !diagnostics.is_empty() {
        let files: &dyn FilesGroup = db;
        bail!(
            "{} does not parse:\n{}",
            source.name,
            diagnostics.format(files)
        );
    }
    Ok(file.items(db))
}

/// Every item of `items`, modules' contents included (contracts are modules).
fn walk_items(db: &dyn SyntaxGroup, items: ItemList, visit: &mut dyn FnMut(&Item)) {
    for item in items.elements(db) {
        visit(&item);
        if let Item::Module(module) = &item {
            if let MaybeModuleBody::Some(body) = module.body(db) {
                walk_items(db, body.items(db), visit);
            }
        }
    }
}

fn trait_functions(db: &SimpleParserDatabase, declaring: &Source) -> Result<Vec<String>> {
    let mut traits: Vec<ItemTrait> = Vec::new();
    walk_items(db, parse(db, declaring)?, &mut |item| {
        if let Item::Trait(item_trait) = item {
            if item_trait.name(db).text(db) == TRAIT_NAME {
                traits.push(item_trait.clone());
            }
        }
    });
    let [item_trait] = traits.as_slice() else {
        bail!(
            "{} declares {} `trait {TRAIT_NAME}`, expected one",
            declaring.name,
            traits.len()
        );
    };
    let MaybeTraitBody::Some(body) = item_trait.body(db) else {
        bail!("{}: `trait {TRAIT_NAME}` has no body", declaring.name);
    };
    let functions: Vec<String> = body
        .items(db)
        .elements(db)
        .into_iter()
        .filter_map(|item| match item {
            TraitItem::Function(function) => {
                Some(function.declaration(db).name(db).text(db).to_string())
            }
            TraitItem::Missing(_) => None,
        })
        .collect();
    if functions.is_empty() {
        bail!(
            "{}: `trait {TRAIT_NAME}` declares no functions",
            declaring.name
        );
    }
    Ok(functions)
}

/// Whether an impl's trait path names `IGovernance` (bare or qualified, any generic args).
fn implements_governance(db: &dyn SyntaxGroup, item_impl: &ItemImpl) -> bool {
    let path = item_impl
        .trait_path(db)
        .as_syntax_node()
        .get_text_without_trivia(db);
    let without_args = path.split('<').next().unwrap_or_default();
    without_args.rsplit("::").next().map(str::trim) == Some(TRAIT_NAME)
}

fn byte_offset(text: &str, offset: TextOffset) -> usize {
    text.len() - offset.take_from(text).len()
}

fn host_block<'a>(db: &SimpleParserDatabase, host: &'a Source) -> Result<Block<'a>> {
    let mut impls: Vec<ItemImpl> = Vec::new();
    walk_items(db, parse(db, host)?, &mut |item| {
        if let Item::Impl(item_impl) = item {
            if implements_governance(db, item_impl) {
                impls.push(item_impl.clone());
            }
        }
    });
    let [item_impl] = impls.as_slice() else {
        bail!(
            "{}: {} impls of {TRAIT_NAME}, expected one",
            host.name,
            impls.len()
        );
    };
    let node = item_impl.as_syntax_node();
    let start = byte_offset(&host.text, node.span_start_without_trivia(db));
    let end = byte_offset(&host.text, node.span_end_without_trivia(db));
    let first_line = host.text[..start].matches('\n').count() + 1;
    let lines = host.text[start..end]
        .lines()
        .enumerate()
        .map(|(index, line)| {
            (
                first_line + index,
                line.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        })
        .filter(|(_, line)| !line.is_empty())
        .collect();
    let MaybeImplBody::Some(body) = item_impl.body(db) else {
        bail!("{}: the impl of {TRAIT_NAME} has no body", host.name);
    };
    let mut functions = Vec::new();
    for item in body.items(db).elements(db) {
        match item {
            ImplItem::Function(function) => functions.push((
                function.declaration(db).name(db).text(db).to_string(),
                function.body(db).as_syntax_node().get_text(db),
            )),
            ImplItem::Missing(_) => {}
            _ => bail!(
                "{}: the impl of {TRAIT_NAME} holds something other than functions",
                host.name
            ),
        }
    }
    Ok(Block {
        host,
        lines,
        functions,
    })
}

fn check_functions(
    host: &Source,
    block: &Block<'_>,
    trait_functions: &[String],
    problems: &mut Vec<String>,
) {
    let implemented: Vec<&str> = block.functions.iter().map(|(n, _)| n.as_str()).collect();
    let missing: Vec<&str> = trait_functions
        .iter()
        .map(String::as_str)
        .filter(|f| !implemented.contains(f))
        .collect();
    if !missing.is_empty() {
        problems.push(format!(
            "{}: the block does not implement {}",
            host.name,
            missing.join(", ")
        ));
    }
    for (name, body) in &block.functions {
        if !trait_functions.contains(name) {
            problems.push(format!(
                "{}: `{name}` is not a function of `trait {TRAIT_NAME}`",
                host.name
            ));
        } else if !(body.contains(LIBRARY_STATE) && body.contains(&format!(".{name}("))) {
            problems.push(format!(
                "{}: `{name}` does not forward to `{LIBRARY_STATE}.{name}(..)`",
                host.name
            ));
        }
    }
}

/// Compares the blocks against the one most hosts share (the first host's on a tie), so that a
/// single drifted host is the one named.
fn check_identical(blocks: &[Block<'_>], problems: &mut Vec<String>) {
    let Some(reference) = blocks
        .iter()
        .enumerate()
        .max_by_key(|(index, block)| {
            let agreeing = blocks.iter().filter(|b| b.same_text(block)).count();
            // max_by_key keeps the last maximum: prefer earlier hosts on a tie.
            (agreeing, std::cmp::Reverse(*index))
        })
        .map(|(_, block)| block)
    else {
        return;
    };
    for block in blocks {
        if block.same_text(reference) {
            continue;
        }
        let mut message = format!("{} drifted from {}: ", block.host.name, reference.host.name);
        let first_difference = block
            .lines
            .iter()
            .zip(&reference.lines)
            .find(|((_, ours), (_, theirs))| ours != theirs);
        let _ = match first_difference {
            Some(((our_line, ours), (their_line, theirs))) => write!(
                message,
                "first differing line is {}:{our_line} `{ours}` against {}:{their_line} `{theirs}`",
                block.host.name, reference.host.name
            ),
            None => {
                let (longer, shorter) = if block.lines.len() > reference.lines.len() {
                    (block, reference)
                } else {
                    (reference, block)
                };
                let (line, extra) = &longer.lines[shorter.lines.len()];
                write!(
                    message,
                    "{}:{line} `{extra}` has no counterpart in {} (its block ends earlier)",
                    longer.host.name, shorter.host.name
                )
            }
        };
        problems.push(message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRAIT: &str = r#"
use starknet::ContractAddress;

#[starknet::interface]
trait IGovernance<TContractState> {
    /// The admin.
    fn admin(self: @TContractState) -> ContractAddress;
    /// Stops new business.
    fn pause(ref self: TContractState);
}

#[starknet::contract]
mod Governance {
    #[storage]
    struct Storage {}
}
"#;

    const BLOCK: &str = r#"
    /// Governance, delegated to the shared library (see `common::governance`).
    #[external(v0)]
    impl GovernanceImpl of IGovernance<ContractState> {
        fn admin(self: @ContractState) -> ContractAddress {
            Governance::unsafe_new_contract_state().admin()
        }

        fn pause(ref self: ContractState) {
            // A brace in a comment: }
            let mut governance = Governance::unsafe_new_contract_state();
            governance.pause();
        }
    }
"#;

    fn declaring() -> Source {
        Source {
            name: "common/governance.cairo".into(),
            text: TRAIT.into(),
        }
    }

    /// A contract named `name` whose module holds some code, then `block`, then more code.
    fn host(name: &str, block: &str) -> Source {
        Source {
            name: format!("{name}.cairo"),
            text: format!(
                r#"
#[starknet::contract]
mod {name} {{
    use ciro::common::governance::{{Governance, IGovernance}};

    #[storage]
    struct Storage {{}}

    #[generate_trait]
    impl InternalImpl of InternalTrait {{
        fn helper(self: @ContractState) -> felt252 {{
            '}}'
        }}
    }}
{block}
    fn after() {{}}
}}
"#
            ),
        }
    }

    fn hosts(blocks: [&str; 3]) -> Vec<Source> {
        ["JobMgr", "CdcPool", "Paymaster"]
            .iter()
            .zip(blocks)
            .map(|(name, block)| host(name, block))
            .collect()
    }

    fn error_of(hosts: &[Source]) -> String {
        format!("{:#}", check(&declaring(), hosts).unwrap_err())
    }

    #[test]
    fn identical_blocks_pass() {
        assert_eq!(check(&declaring(), &hosts([BLOCK; 3])).unwrap(), 2);
    }

    #[test]
    fn whitespace_differences_are_not_drift() {
        let reindented = BLOCK
            .replace("        fn admin", "\tfn  admin")
            .replace("\n\n", "\n\n\n");
        check(&declaring(), &hosts([BLOCK, &reindented, BLOCK])).unwrap();
    }

    #[test]
    fn a_drifted_block_fails_naming_the_file_and_the_first_differing_line() {
        let drifted = BLOCK.replace("governance.pause();", "governance.pause();\n            0;");
        let err = error_of(&hosts([BLOCK, BLOCK, &drifted]));
        assert!(
            err.contains("Paymaster.cairo drifted from JobMgr.cairo"),
            "{err}"
        );
        // Line numbers are the host's: the synthetic block starts at its line 17.
        assert!(
            err.contains("first differing line is Paymaster.cairo:27 `0;`"),
            "{err}"
        );
        assert!(!err.contains("CdcPool.cairo"), "{err}");
    }

    #[test]
    fn the_drifted_host_is_named_even_when_it_is_the_first() {
        let drifted = BLOCK.replace("#[external(v0)]", "");
        let err = error_of(&hosts([&drifted, BLOCK, BLOCK]));
        assert!(
            err.contains("JobMgr.cairo drifted from CdcPool.cairo"),
            "{err}"
        );
        assert!(err.contains("`#[external(v0)]`"), "{err}");
        assert!(!err.contains("Paymaster.cairo"), "{err}");
    }

    #[test]
    fn a_block_missing_a_trait_function_fails_naming_the_file_and_the_function() {
        let start = BLOCK.find("        fn pause").unwrap();
        let end = BLOCK.rfind("    }\n").unwrap();
        let missing = format!("{}{}", &BLOCK[..start], &BLOCK[end..]);
        let err = error_of(&hosts([BLOCK, &missing, BLOCK]));
        assert!(
            err.contains("CdcPool.cairo: the block does not implement pause"),
            "{err}"
        );
        // The same omission in every host is still caught: the trait is the reference.
        let err = error_of(&hosts([&missing, &missing, &missing]));
        for name in ["JobMgr", "CdcPool", "Paymaster"] {
            assert!(
                err.contains(&format!("{name}.cairo: the block does not implement pause")),
                "{err}"
            );
        }
    }

    #[test]
    fn a_function_that_does_not_forward_fails() {
        let local = BLOCK.replace(
            "Governance::unsafe_new_contract_state().admin()",
            "starknet::contract_address_const::<0>()",
        );
        let err = error_of(&hosts([&local, &local, &local]));
        assert!(
            err.contains("JobMgr.cairo: `admin` does not forward to"),
            "{err}"
        );
    }

    #[test]
    fn a_host_without_the_block_fails() {
        let err = error_of(&hosts([BLOCK, BLOCK, ""]));
        assert!(
            err.contains("Paymaster.cairo: 0 impls of IGovernance, expected one"),
            "{err}"
        );
    }

    #[test]
    fn the_repository_blocks_are_identical() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let summary = check_repo(&root).unwrap_or_else(|err| panic!("{err:#}"));
        assert!(summary.contains("3 hosts identical"), "{summary}");
    }
}
