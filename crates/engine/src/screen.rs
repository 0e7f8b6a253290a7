//! What a TorchScript model may call, checked before libtorch loads it.
//!
//! A TorchScript archive is a zip file whose `code/` entries are source that libtorch compiles
//! at load, and that source may call any operation libtorch registers, some of which reach
//! outside the forward pass: `aten::from_file` reads any file the worker can read (the
//! worker's key, other jobs' outputs and private models) into a tensor the submitter then
//! downloads as its output, `aten::save` writes files, and operations and classes outside
//! ATen (`c10d` process groups and stores, `symm_mem`, debugging operators) open sockets and
//! shared memory. A model's hash proves it is the registered file, not that it is harmless.
//! So, before loading, every entry libtorch compiles or unpickles is read and the model is
//! refused when:
//! - a code file names `from_file` as a word, or `save` where it could reach the operation
//!   (the two ATen operations that touch files; a string or a comment saying so refuses the
//!   model too: a false refusal costs a model's author a rename, a missed call costs a worker
//!   its machine). `save` is also a name models give their own attributes (YOLOv5's layer
//!   list): as the module's own attribute (`self.save`), a local or a declaration it passes;
//!   as another object's attribute (`torch.save`, an alias's), a string, a call, or on a line
//!   continued from the one before, it is refused;
//! - code names an operator namespace other than `aten`, `prim`, `quantized` and
//!   `_quantized` (`ops.<namespace>`), or a class namespace other than `quantized`
//!   (`classes.<namespace>`, in code or in a pickle: quantized models keep their packed
//!   parameters as such classes), or could bind either namespace to another name (`o = ops`,
//!   `(ops).x`); the module's own attributes and locals named `ops` or `classes` pass, as do
//!   attribute names in a pickle;
//! - a pickle or code file names `aten::from_file` or `aten::save` (a lite-interpreter
//!   bytecode table);
//! - the archive is not a zip file the checker can read whole, holds two entries of one name
//!   (readers could disagree on which is the code), or its code and pickles unpack to more
//!   than [`MAX_SCREENED_BYTES`].
//!
//! The checks are on the bytes, not on a parse: a scanner's idea of where a string or a
//! comment ends could differ from libtorch's, and the difference could hide a call. Tensor
//! storages (`data/`) and debugging tables (`.debug_pkl`, which hold the author's original
//! Python source, comments included) are not compiled and not read.
//!
//! This closes what a model can *call*. It is not a sandbox: a model can still spend the
//! memory and time the engine's limits allow, and a flaw in libtorch itself stays libtorch's.

use std::collections::HashSet;
use std::io::{Cursor, Read};

/// The most bytes the code and pickles of one archive may unpack to.
pub const MAX_SCREENED_BYTES: u64 = 64 << 20;

/// Operator namespaces a model may call (`ops.<namespace>`): ATen's, the interpreter's, the
/// quantized kernels', and the profiler's markers (`record_function`).
const OPERATOR_NAMESPACES: [&str; 5] = ["aten", "prim", "quantized", "_quantized", "profiler"];

/// Class namespaces a model may hold or construct (`classes.<namespace>`): quantized
/// modules' packed parameters (`quantized`, and `rnn` for dynamically quantized recurrent
/// layers, repacked by C++ code), and the profiler's `record_function` marker.
const CLASS_NAMESPACES: [&str; 3] = ["quantized", "rnn", "profiler"];

/// Words no code or pickle may hold: the ATen operations that read or write files; the
/// built-ins that start work outliving the pass (`fork`, awaitables: a task still running
/// after the pass returns could change the output after it was hashed, or spin for ever) or
/// reach other machines (RPC); and the ATen operations that build views or sparse tensors
/// without checking them against their storage (a review read and wrote the worker's memory
/// through `_reshape_alias` and `_sparse_coo_tensor_unsafe`; `_unsafe_view` and
/// `_unsafe_index`, which traced models use, libtorch checks).
const FORBIDDEN_WORDS: [&str; 51] = [
    "__getattr__",
    "__getattribute__",
    // Segment reductions with their checks off (`unsafe=True` read the memory around a tensor,
    // another job's input with it) or none (the backward pass wrote past its storage).
    "segment_reduce",
    "_segment_reduce_backward",
    // Sparse tensors, whose indices libtorch checks against their sizes only on request: the
    // public constructors and conversions (a sparse tensor added to a dense one wrote past
    // its storage), and their indices and values edited in place.
    "sparse_coo_tensor",
    "sparse_compressed_tensor",
    "sparse_csr_tensor",
    "sparse_csc_tensor",
    "sparse_bsr_tensor",
    "sparse_bsc_tensor",
    "to_sparse",
    "to_sparse_coo",
    "to_sparse_csr",
    "to_sparse_csc",
    "to_sparse_bsr",
    "to_sparse_bsc",
    "_to_sparse",
    "_indices",
    "_values",
    "crow_indices",
    "col_indices",
    "ccol_indices",
    "row_indices",
    "sparse_resize_",
    "sparse_resize_and_clear_",
    "_coalesced_",
    "from_file",
    "save",
    "fork",
    "awaitable",
    "_awaitable",
    "_awaitable_wait",
    "_awaitable_nowait",
    "rpc_async",
    "rpc_sync",
    "rpc_remote",
    "_reshape_alias",
    "_reshape_alias_copy",
    "_sparse_coo_tensor_unsafe",
    "_sparse_compressed_tensor_unsafe",
    "_sparse_csr_tensor_unsafe",
    "_sparse_csc_tensor_unsafe",
    "_sparse_bsr_tensor_unsafe",
    "_sparse_bsc_tensor_unsafe",
    "_sparse_coo_tensor_with_dims",
    "_sparse_coo_tensor_with_dims_and_tensors",
    "_sparse_compressed_tensor_with_dims",
    "_unsafe_masked_index",
    "_unsafe_masked_index_put_accumulate",
    "_nested_view_from_buffer",
    "_nested_view_from_jagged",
];

/// Of [`FORBIDDEN_WORDS`], those a model may also use as names of its own (an attribute, a
/// local): refused only where they could reach the operation ([`reaches_builtin`]).
const OWN_NAMES_TOO: [&[u8]; 7] = [
    b"save",
    b"_indices",
    b"_values",
    b"crow_indices",
    b"col_indices",
    b"ccol_indices",
    b"row_indices",
];

/// Strings no code or pickle may hold, anywhere (a pickled name may run into the next
/// opcode's byte, so these are not matched as words): the file operations' own names, and the
/// pickled records the loader rebuilds without checks (sparse tensors, subclasses) or that
/// reach other processes (distributed references).
const FORBIDDEN_STRINGS: [&str; 5] = [
    "aten::from_file",
    "aten::save",
    "_rebuild_sparse",
    "_rebuild_from_type",
    "torch.distributed",
];

/// Why a model is not loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Screened {
    /// Not a zip archive the checker can read (libtorch could not load it either).
    Unreadable(String),
    /// It calls, or could call, what a model may not.
    Refused(String),
}

/// `Ok` when the TorchScript archive `bytes` calls only what a model may; otherwise why not.
pub fn check(bytes: &[u8]) -> Result<(), Screened> {
    // Only a plain zip file from its first byte: libtorch takes a file whose bytes 4 to 8
    // say `PTMF` for a flatbuffer module (with source of its own), and a zip reader finds an
    // archive behind any prefix, so a flatbuffer with a harmless zip appended would pass a
    // check of the zip and load the flatbuffer.
    if !bytes.starts_with(b"PK\x03\x04") || bytes.get(4..8) == Some(b"PTMF".as_slice()) {
        return Err(Screened::Unreadable(
            "not a TorchScript archive (a zip file from its first byte)".into(),
        ));
    }
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| {
        Screened::Unreadable(format!("not a TorchScript archive (a zip file): {e}"))
    })?;
    if archive.offset() != 0 {
        return Err(Screened::Unreadable(
            "not a TorchScript archive: data before the zip file".into(),
        ));
    }
    screen(&mut archive)
}

/// Whether libtorch never compiles or unpickles the entry `name` (lower case, its first
/// component removed): tensor storages, versions, the debugging tables (which hold the
/// author's original source, comments included) and extra files.
fn is_inert(name: &str) -> bool {
    let storage = name
        .strip_prefix("data/")
        .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()));
    storage
        || name.starts_with(".data/")
        || name.starts_with("extra/")
        || name == "version"
        || name == "byteorder"
        || name.ends_with(".debug_pkl")
}

fn screen(archive: &mut zip::ZipArchive<Cursor<&[u8]>>) -> Result<(), Screened> {
    let mut names = HashSet::new();
    let mut prefix: Option<String> = None;
    let mut budget = MAX_SCREENED_BYTES;
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index).map_err(|e| {
            Screened::Unreadable(format!("entry {index} of the archive cannot be read: {e}"))
        })?;
        let name = entry.name().to_owned();
        // libtorch's reader finds entries by name ignoring case: names are compared, and
        // told apart, in lower case.
        if !name.is_ascii() || name.contains(['\0', '\\']) {
            return Err(Screened::Refused(format!(
                "the archive holds an entry named {name:?}"
            )));
        }
        let lower = name.to_ascii_lowercase();
        if !names.insert(lower.clone()) {
            return Err(Screened::Refused(format!(
                "the archive holds two entries named {lower} (ignoring case)"
            )));
        }
        // Every entry under the archive's one top folder, which libtorch reads the rest in.
        let Some((top, rest)) = lower.split_once('/') else {
            return Err(Screened::Refused(format!(
                "the archive's entry {name} is outside its folder"
            )));
        };
        if prefix.get_or_insert_with(|| top.to_owned()) != top {
            return Err(Screened::Refused(format!(
                "the archive's entries are in more than one folder ({name})"
            )));
        }
        if is_inert(rest) {
            continue;
        }
        let mut text = Vec::new();
        (&mut entry)
            .take(budget + 1)
            .read_to_end(&mut text)
            .map_err(|e| Screened::Unreadable(format!("{name} cannot be unpacked: {e}")))?;
        if text.len() as u64 > budget {
            return Err(Screened::Refused(format!(
                "the archive's code and pickles unpack to more than {MAX_SCREENED_BYTES} bytes"
            )));
        }
        budget -= text.len() as u64;
        if let Some(named) = FORBIDDEN_STRINGS
            .iter()
            .find(|named| contains(&text, named.as_bytes()))
        {
            return Err(Screened::Refused(format!(
                "{name} names {named}, which a model may not use"
            )));
        }
        let pickle = rest.ends_with(".pkl");
        if !pickle {
            // libtorch's lexer reads these as blanks; the rules below read a line's blanks as
            // spaces and tabs only (torch writes neither).
            if let Some(byte) = text.iter().find(|b| matches!(b, b'\r' | b'\x0b' | b'\x0c')) {
                return Err(Screened::Refused(format!(
                    "{name} holds the byte {byte:#04x} (a carriage return, vertical tab or form \
                     feed), which models may not"
                )));
            }
            // An octal escape in a string (`"\163ave"`) builds a name the words above cannot
            // see; torch writes none.
            if text
                .windows(2)
                .any(|pair| pair[0] == b'\\' && pair[1].is_ascii_digit())
            {
                return Err(Screened::Refused(format!(
                    "{name} holds an octal escape in a string, which models may not"
                )));
            }
            // `self.` is what tells the module's own attributes from anything else's: `self`
            // bound to something else (`self = torch`) is refused.
            if occurrences(&text, b"self").any(|at| rebinds_self(&text, at)) {
                return Err(Screened::Refused(format!(
                    "{name} assigns to `self`, which models may not"
                )));
            }
            if !getattrs_are_plain(&text) {
                return Err(Screened::Refused(format!(
                    "{name} uses `getattr` other than as `getattr(name, \"plain_name\")`, or on \
                     a name no model may reach"
                )));
            }
        }
        // The entry's words, read once (not once per forbidden word).
        let present: HashSet<&[u8]> = words(&text).collect();
        let reached = |word: &&&str| {
            let word = word.as_bytes();
            if !present.contains(word) {
                return false;
            }
            if !OWN_NAMES_TOO.contains(&word) {
                return true;
            }
            // A pickle's strings are data (attribute names); its file operations are named
            // `aten::...`, refused above.
            !pickle && occurrences(&text, word).any(|at| reaches_builtin(&text, at, word.len()))
        };
        if let Some(word) = FORBIDDEN_WORDS.iter().find(reached) {
            return Err(Screened::Refused(format!(
                "{name} names `{word}`: models may not read or write files, start work that \
                 outlives the pass, or build unchecked views"
            )));
        }
        let class = namespaces_after(&text, b"classes", pickle)
            .find(|namespace| !CLASS_NAMESPACES.contains(&namespace.as_str()));
        if let Some(namespace) = class {
            return Err(Screened::Refused(format!(
                "{name} uses classes of the namespace {namespace:?}, which a model may not"
            )));
        }
        let operator = namespaces_after(&text, b"ops", pickle)
            .find(|namespace| !OPERATOR_NAMESPACES.contains(&namespace.as_str()));
        if let Some(namespace) = operator {
            return Err(Screened::Refused(format!(
                "{name} calls operators of the namespace {namespace:?}, which a model may not"
            )));
        }
    }
    Ok(())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

fn is_word_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

/// The maximal runs of identifier bytes in `text`.
fn words(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    text.split(|byte| !is_word_byte(*byte))
        .filter(|word| !word.is_empty())
}

/// The starts of the whole words `word` in `text`.
fn occurrences<'a>(text: &'a [u8], word: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
    let n = word.len();
    (0..text.len().saturating_sub(n - 1)).filter(move |&at| {
        &text[at..at + n] == word
            && !(at > 0 && is_word_byte(text[at - 1]))
            && !text.get(at + n).is_some_and(|b| is_word_byte(*b))
    })
}

/// The byte before `at` on its line past spaces and tabs (`None`: `at` starts its line, after
/// its indentation). Scanning stays on the line: what precedes a word of code on its own line
/// is code (a comment runs to the line's end), while across lines a comment could hide what
/// is there.
fn before_on_line(text: &[u8], at: usize) -> Option<(usize, u8)> {
    let mut i = at;
    while i > 0 {
        i -= 1;
        match text[i] {
            b' ' | b'\t' => continue,
            b'\n' | b'\r' => return None,
            byte => return Some((i, byte)),
        }
    }
    None
}

/// The index of the first byte from `i` on its line past spaces and tabs.
fn after_on_line(text: &[u8], mut i: usize) -> usize {
    while text.get(i).is_some_and(|b| matches!(b, b' ' | b'\t')) {
        i += 1;
    }
    i
}

/// Whether the word at `at` is an attribute of the module itself: `self.` before it on its
/// line (`self` not itself an attribute of something).
fn is_own_attribute(text: &[u8], at: usize) -> bool {
    let Some((dot, b'.')) = before_on_line(text, at) else {
        return false;
    };
    let Some((end, _)) = before_on_line(text, dot) else {
        return false;
    };
    end >= 3
        && &text[end - 3..=end] == b"self"
        && !(end >= 4 && is_word_byte(text[end - 4]))
        && !matches!(before_on_line(text, end - 3), Some((_, b'.')))
}

/// Whether `self` at `at` could be bound to something else: followed, past separators (blanks,
/// line continuations, comments, line ends) and closing brackets, by `=` (not `==`:
/// `self = torch`, `(self) = torch`, `self \` then `= torch`), or by `:` (an annotated
/// assignment) anywhere but as a method's first parameter (`def forward(self: T, ...`).
fn rebinds_self(text: &[u8], at: usize) -> bool {
    let mut next = skip_separators(text, at + 4);
    while text.get(next) == Some(&b')') {
        next = skip_separators(text, next + 1);
    }
    match text.get(next) {
        Some(b'=') => text.get(next + 1) != Some(&b'='),
        Some(b':') => text.get(next + 1) != Some(&b':') && !is_first_parameter(text, at),
        _ => false,
    }
}

/// Whether the word at `at` is a function's first parameter: `def NAME(` just before it.
fn is_first_parameter(text: &[u8], at: usize) -> bool {
    let Some((open, b'(')) = before_on_line(text, at) else {
        return false;
    };
    let mut start = open;
    while start > 0 && is_word_byte(text[start - 1]) {
        start -= 1;
    }
    start < open
        && start >= 4
        && &text[start - 4..start] == b"def "
        && (start == 4 || matches!(text[start - 5], b' ' | b'\t' | b'\n'))
}

/// Whether every `getattr` in `text` has the one form torch writes, `getattr(target, "name")`:
/// a target of names and dots (no brackets, no strings) and a plain name in one string
/// literal, neither a word no model may name (a forbidden word, `ops`, `classes`). A name
/// built any other way (adjacent literals, `"sa" "ve"`, which the parser joins; escapes,
/// `"\163ave"`, which it decodes) could be any attribute.
fn getattrs_are_plain(text: &[u8]) -> bool {
    occurrences(text, b"getattr").all(|at| {
        let mut i = after_on_line(text, at + 7);
        if text.get(i) != Some(&b'(') {
            return false;
        }
        i = after_on_line(text, i + 1);
        let target = i;
        while text.get(i).is_some_and(|b| is_word_byte(*b) || *b == b'.') {
            i += 1;
        }
        if i == target || &text[target..i] == b"ops" {
            return false;
        }
        i = after_on_line(text, i);
        if text.get(i) != Some(&b',') {
            return false;
        }
        i = after_on_line(text, i + 1);
        let Some(&quote) = text.get(i).filter(|b| matches!(b, b'"' | b'\'')) else {
            return false;
        };
        let start = i + 1;
        let mut end = start;
        while text.get(end).is_some_and(|b| is_word_byte(*b)) {
            end += 1;
        }
        let name = &text[start..end];
        end > start
            && text.get(end) == Some(&quote)
            && text.get(after_on_line(text, end + 1)) == Some(&b')')
            && !FORBIDDEN_WORDS.iter().any(|w| w.as_bytes() == name)
            && name != b"ops"
            && name != b"classes"
    })
}

/// Whether the word at `at` (of `n` bytes) starts its line as a declaration with nothing
/// assigned (`name : type`, as a class body declares its attributes).
fn is_pure_declaration(text: &[u8], at: usize, n: usize) -> bool {
    let next = after_on_line(text, at + n);
    before_on_line(text, at).is_none()
        && text.get(next) == Some(&b':')
        && text.get(next + 1) != Some(&b':')
        && !text[next..]
            .iter()
            .take_while(|b| **b != b'\n')
            .any(|b| *b == b'=')
}

/// Whether the word at `at` (of `n` bytes), starting its line, is declared or assigned there
/// (`name : type`, `name = value`): the model's own name.
fn is_declared(text: &[u8], at: usize, n: usize) -> bool {
    let next = after_on_line(text, at + n);
    match text.get(next) {
        Some(b':') => text.get(next + 1) != Some(&b':'),
        Some(b'=') => text.get(next + 1) != Some(&b'='),
        _ => false,
    }
}

/// Whether an occurrence at `at` (of `n` bytes) of a word that is both a file operation's name
/// and a name a model may give its own attributes and locals (`save`: YOLOv5's layer list)
/// could reach the operation: an attribute of anything but the module itself (`torch.save`,
/// an alias's `t.save`), a string (`getattr(torch, "save")`), a call (`save(...)`), or at the
/// start of a line that neither declares nor assigns it (a continued line: what came before is
/// not read). A local or an attribute of the module's (`save = self.save`, `x in save`,
/// `save : List[int]`) passes.
fn reaches_builtin(text: &[u8], at: usize, n: usize) -> bool {
    if text.get(after_on_line(text, at + n)) == Some(&b'(') {
        return true;
    }
    match before_on_line(text, at) {
        None => !is_declared(text, at, n),
        Some((_, b'"' | b'\'')) => true,
        Some((_, b'.')) => !is_own_attribute(text, at),
        Some(_) => false,
    }
}

/// For each whole word `word` in `text` that names a namespace (`ops`, `classes`), the name
/// that follows it after a `.` (with any whitespace, line continuations and comments between):
/// `ops.aten`, `classes.quantized`; an empty name where the word could be the namespace itself
/// reached some other way (an alias, `getattr`, brackets: any namespace): `ops` alone anywhere
/// but in a declaration (`ops : ModuleList`, nothing assigned); `classes` alone as another
/// object's attribute (`torch.classes`, an alias's), in quotes, or starting a line it does not
/// declare or assign (a continued line). Not a namespace: the module's own attribute
/// (`self.ops`, `self.classes`: code that assigns to `self` is refused), a local `classes`
/// (`classes = self.classes`, `len(classes)`, `(classes).forward(x)`), and in a pickle
/// (`pickle`), whose strings are data, any occurrence not followed by a `.` (an attribute's
/// name; a class is named with its namespace, `torch.classes.quantized.X`).
fn namespaces_after<'a>(
    text: &'a [u8],
    word: &'a [u8],
    pickle: bool,
) -> impl Iterator<Item = String> + 'a {
    let n = word.len();
    occurrences(text, word).filter_map(move |at| {
        if !pickle && is_own_attribute(text, at) {
            return None;
        }
        let mut i = skip_separators(text, at + n);
        if text.get(i) != Some(&b'.') {
            if pickle {
                return None;
            }
            let namespace = if word == b"ops" {
                // `ops` alone is the namespace itself (a global of libtorch's importer, which
                // names its locals `ops0`): only a declaration of the module's own attribute
                // (`ops : T`, nothing assigned) is not.
                !is_pure_declaration(text, at, n)
            } else {
                // `classes` alone is no global: a local or the module's own. It is the
                // namespace as another object's attribute (`torch.classes`, an alias's), a
                // string, or on a line continued from the one before.
                match before_on_line(text, at) {
                    None => !is_declared(text, at, n),
                    Some((_, b'"' | b'\'' | b'.')) => true,
                    Some(_) => false,
                }
            };
            return namespace.then(String::new);
        }
        i = skip_separators(text, i + 1);
        let start = i;
        while text.get(i).is_some_and(|b| is_word_byte(*b)) {
            i += 1;
        }
        // A name that does not follow (`ops.` then a bracket) is refused as a namespace of
        // its own: only names on the lists pass.
        Some(String::from_utf8_lossy(&text[start..i]).into_owned())
    })
}

/// The first index from `i` past whitespace, backslashes (line continuations) and comments.
fn skip_separators(text: &[u8], mut i: usize) -> usize {
    loop {
        match text.get(i) {
            Some(b' ' | b'\t' | b'\r' | b'\n' | b'\\' | b'\x0c') => i += 1,
            Some(b'#') => {
                while text.get(i).is_some_and(|b| *b != b'\n') {
                    i += 1;
                }
            }
            _ => return i,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(files: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        let mut zip = zip::ZipWriter::new(&mut out);
        for (name, text) in files {
            zip.start_file(*name, zip::write::FileOptions::default())
                .unwrap();
            std::io::Write::write_all(&mut zip, text.as_bytes()).unwrap();
        }
        zip.finish().unwrap();
        drop(zip);
        out.into_inner()
    }

    fn refusal(screened: Result<(), Screened>) -> String {
        match screened {
            Err(Screened::Refused(reason)) => reason,
            other => panic!("not refused: {other:?}"),
        }
    }

    fn code(text: &str) -> Result<(), Screened> {
        check(&archive(&[
            ("m/code/__torch__.py", text),
            ("m/data.pkl", "\u{80}\u{2}ctorch\n"),
        ]))
    }

    #[test]
    fn calls_that_reach_outside_the_pass_are_refused_however_written() {
        let ok = "def forward(self, x: Tensor) -> Tensor:\n  y = torch.relu(x)\n  \
                  return ops.quantized.add(y, y, 1.0, 0)\n";
        assert_eq!(code(ok), Ok(()));
        for (text, says) in [
            (
                "a = torch.from_file(\"/etc/hostname\", False, 4)",
                "from_file",
            ),
            ("torch.save(x, self.path)", "save"),
            ("a = torch . from_file(p)", "from_file"),
            ("a = (torch.  # hidden\n  from_file)(p)", "from_file"),
            ("a = torch.\\\nsave(x, p)", "save"),
            ("y = ops.aten.from_file(p)", "from_file"),
            ("y = ops.c10d.allreduce_(x)", "namespace \"c10d\""),
            ("y = ops . # c\n symm_mem.put(x)", "namespace \"symm_mem\""),
            (
                "y = torch.ops.debugprims.load_tensor(n)",
                "namespace \"debugprims\"",
            ),
            ("y = ops.(x)", "namespace \"\""),
            (
                "s = __torch__.torch.classes.c10d.Store()",
                "classes of the namespace \"c10d\"",
            ),
            // An alias of the namespace, or one in brackets, could reach any of them.
            (
                "o = ops\n  y = o.inductor._alloc_from_pool(s, 0, 0, [65536], [1])",
                "namespace \"\"",
            ),
            (
                "y = (ops).inductor._reinterpret_tensor(s, [64], [1], 0)",
                "namespace \"\"",
            ),
            // (A bare `classes` is no global: the importer answers "undefined value".)
            ("c = torch.classes", "namespace \"\""),
            // Work that outlives the pass, or reaches other machines.
            ("fut = fork(self.spin, y)", "fork"),
            ("r = rpc_async(\"w\", f, (x,))", "rpc_async"),
            // Views and sparse tensors built without checks against their storage.
            (
                "y = torch._reshape_alias(x, [65536], [1])",
                "_reshape_alias",
            ),
            (
                "y = ops.aten._sparse_coo_tensor_unsafe(i, v, [4])",
                "_sparse_coo_tensor_unsafe",
            ),
        ] {
            let refused = match code(text) {
                Err(Screened::Refused(reason)) => reason,
                other => panic!("{text:?} was not refused: {other:?}"),
            };
            assert!(refused.contains(says), "{text:?}: {refused}");
        }
        // Words that merely contain them pass: `saved`, `from_files_count`, `opsx.y`; and
        // the profiler's markers.
        assert_eq!(
            code(
                "saved = from_files_count + opsx.y + torch.ops.aten.add(x, x)\n  \
                 r = ops.profiler._record_function_enter_new(\"a\", None)"
            ),
            Ok(())
        );
    }

    /// A model's own names that are also names of what it may not reach (`save`, `ops`,
    /// `classes`), as torch 2.11 writes a module holding a layer list `save`, a `ModuleList`
    /// `ops` and a list of `classes`, pass; each way the same words could still reach the
    /// file operation or a namespace (through another object's attribute, an alias, a
    /// string, a call, brackets, a continued line) is refused.
    #[test]
    fn a_models_own_names_pass_where_they_cannot_reach_what_they_also_name() {
        let own = "class Named(Module):\n  __parameters__ = []\n  training : bool\n  \
                   save : List[int]\n  classes : List[str]\n  \
                   ops : __torch__.torch.nn.modules.container.ModuleList\n  \
                   def forward(self: __torch__.Named,\n    x: Tensor) -> Tensor:\n    \
                   ops0 = self.ops\n    _0 = getattr(ops0, \"0\")\n    \
                   x0 = (_0).forward(x, )\n    save = self.save\n    \
                   if torch.__contains__(save, 1):\n      classes = self.classes\n      \
                   x3 = torch.mul(x0, float(torch.len(classes)))\n    \
                   z = (classes).forward(x, )\n    _1 = getattr(self, \"1\")\n    \
                   h = (self).helper(x, )\n    \
                   m = \"non-self attention was used\"\n    \
                   y = self . ops . c10d\n    return x3\n";
        let pickle = "c__torch__\nNamed\nq\u{0})}(X\u{4}\u{0}\u{0}\u{0}saveq\u{1}\
                      X\u{7}\u{0}\u{0}\u{0}classesq\u{2}X\u{3}\u{0}\u{0}\u{0}opsq\u{3}";
        assert_eq!(
            check(&archive(&[
                ("m/code/__torch__.py", own),
                ("m/data.pkl", pickle)
            ])),
            Ok(())
        );
        for (text, says) in [
            ("t.save(x, p)", "save"),
            ("self.torch.save(x, p)", "save"),
            ("y = x.self.save", "save"),
            ("y = myself.save", "save"),
            ("s = getattr(torch, \"save\")", "getattr"),
            ("s = getattr(torch, 'save')", "getattr"),
            ("save(x, p)", "save"),
            ("self.save (x, p)", "save"),
            ("s = torch.\\\n  save", "save"),
            ("o = (ops)", "namespace \"\""),
            ("o = ((ops))", "namespace \"\""),
            ("o: Any = ops", "namespace \"\""),
            ("o = \\\n  ops", "namespace \"\""),
            ("o = (  # c\n  ops)", "namespace \"\""),
            ("y = ( ops ) .c10d.allreduce_(x)", "namespace \"\""),
            ("y = self.x.ops.c10d.allreduce_(x)", "namespace \"c10d\""),
            // A second review's bypasses of the first version, each loaded by torch 2.11 and
            // making its call: blanks libtorch reads and the rules did not, `self` bound to
            // a namespace, `ops` through `getattr`, `torch.classes` aliased or named.
            ("torch.\x0csave\x0c(x, p)", "0x0c"),
            ("torch.\x0bsave\x0b(x, p)", "0x0b"),
            ("s = torch.\r\x0csave\n  s(x, p)", "0x0d"),
            ("o = \x0cops\n  y = o.inductor.f(x)", "0x0c"),
            (
                "self = torch\n  s = self.save\n  s(x, p)",
                "assigns to `self`",
            ),
            ("self : Any = torch\n  s = self.save", "assigns to `self`"),
            ("self=ops.aten\n  s = self.save", "assigns to `self`"),
            (
                "y = getattr(ops, \"inductor\")._reinterpret_tensor(x, [8], [1], 0)",
                "getattr",
            ),
            ("o = getattr(ops, 'inductor')", "getattr"),
            (
                "c = __torch__.torch.classes\n  w = c.c10d.Work()",
                "classes of the namespace \"\"",
            ),
            (
                "w = getattr(__torch__.torch, \"classes\").c10d.Work()",
                "getattr",
            ),
            // A third review's: `self` bound through brackets or a continued line, and names
            // the parser builds (adjacent literals, octal escapes), each loaded and run by
            // torch 2.11 (the last four past the screen before these changes too).
            (
                "(self) = torch\n  s = self.save\n  s(x, p)",
                "assigns to `self`",
            ),
            ("( self ) = ops.aten\n  s = self.save", "assigns to `self`"),
            ("self \\\n = torch\n  s = self.save", "assigns to `self`"),
            (
                "(self) = __torch__.torch\n  w = self.classes.c10d.Work()",
                "assigns to `self`",
            ),
            ("s = getattr(torch, \"sa\" \"ve\")", "getattr"),
            ("s = getattr(torch, \"\\163ave\")", "octal escape"),
            (
                "y = getattr(torch, \"from\\137file\")(p, False, 32)",
                "octal escape",
            ),
            ("c = getattr(__torch__.torch, \"cla\" \"sses\")", "getattr"),
            (
                "y = getattr(torch, \"_reshape\" \"_alias\")(x, [65536], [1])",
                "getattr",
            ),
            ("s = getattr(torch, \"save\")", "getattr"),
            ("f = torch.__getattr__(\"save\")", "__getattr__"),
            // A fourth review's: ATen operations that read or write past a tensor's storage
            // without a forbidden name (past the screen before these changes too), and an
            // escaped class name in a type annotation.
            (
                "y = torch.segment_reduce(a, \"max\", offsets=o, unsafe=True)",
                "segment_reduce",
            ),
            (
                "r = torch._segment_reduce_backward(g, g, d, \"sum\", lengths=l)",
                "_segment_reduce_backward",
            ),
            (
                "s = torch.sparse_coo_tensor(torch.tensor([[5]]), v, [4])",
                "sparse_coo_tensor",
            ),
            ("s = torch.to_sparse(torch.ones([4]))", "to_sparse"),
            ("i = torch._indices(s)", "_indices"),
            (
                "w = annotate(Optional[\"torch.cla\\163ses.c10d.Work\"], None)",
                "octal escape",
            ),
        ] {
            let refused = match code(text) {
                Err(Screened::Refused(reason)) => reason,
                other => panic!("{text:?} was not refused: {other:?}"),
            };
            assert!(refused.contains(says), "{text:?}: {refused}");
        }
    }

    #[test]
    fn pickles_naming_other_classes_or_file_operations_are_refused() {
        let with_pickle = |pickle: &str| {
            check(&archive(&[
                ("m/code/__torch__.py", "return x"),
                ("m/data.pkl", pickle),
            ]))
        };
        assert_eq!(
            with_pickle("c__torch__.torch.classes.quantized.LinearPackedParamsBase\n"),
            Ok(())
        );
        // Sparse tensors and subclasses rebuilt without checks, a name running into the next
        // opcode.
        assert!(
            refusal(with_pickle("ctorch._utils\n_rebuild_sparse_tensorq\u{1}"))
                .contains("_rebuild_sparse")
        );
        assert!(refusal(with_pickle(
            "X\u{14}\u{0}\u{0}\u{0}_rebuild_from_type_v2q\u{2}"
        ))
        .contains("_rebuild_from_type"));
        // A dynamically quantized LSTM's weights.
        assert_eq!(
            with_pickle("c__torch__.torch.classes.rnn.CellParamsBase\n"),
            Ok(())
        );
        assert!(
            refusal(with_pickle("c__torch__.torch.classes.dist_c10d.TCPStore\n"))
                .contains("dist_c10d")
        );
        assert!(refusal(with_pickle("X\u{f}\u{0}\u{0}\u{0}aten::from_file"))
            .contains("aten::from_file"));
        // Debugging tables and storages are not read: the author's comments may say anything.
        assert_eq!(
            check(&archive(&[
                ("m/code/__torch__.py", "return x"),
                (
                    "m/code/__torch__.py.debug_pkl",
                    "# save the output with from_file"
                ),
                ("m/data/0", "ops.c10d"),
            ])),
            Ok(())
        );
    }

    #[test]
    fn archives_a_reader_could_read_two_ways_or_that_unpack_too_far_are_refused() {
        assert!(matches!(
            check(b"not a zip"),
            Err(Screened::Unreadable(reason)) if reason.contains("not a TorchScript archive")
        ));
        // Two entries of one name: which one libtorch compiles is its reader's choice. (The
        // writer refuses duplicates: the second entry's name is rewritten in place, in its
        // local header and in the central directory, to the first's, of the same length.)
        let (a, b) = ("m/code/aa.py", "m/code/bb.py");
        let mut bytes = archive(&[(a, "return x"), (b, "return torch.from_file(p)")]);
        let mut at = 0;
        while let Some(found) = bytes[at..].windows(b.len()).position(|w| w == b.as_bytes()) {
            let start = at + found;
            bytes[start..start + b.len()].copy_from_slice(a.as_bytes());
            at = start + b.len();
        }
        let refused = refusal(check(&bytes));
        assert!(
            refused.contains("two entries named m/code/aa.py"),
            "{refused}"
        );
        // Names libtorch reads ignoring case: an upper-case code file is read, and two
        // names differing only in case are two of one name.
        let upper = check(&archive(&[
            ("m/code/__torch__.PY", "return torch.from_file(p)"),
            ("m/data.pkl", "x"),
        ]));
        assert!(refusal(upper).contains("from_file"));
        let cased = check(&archive(&[
            ("m/code/x.py", "return x"),
            ("m/code/X.py", "return torch.from_file(p)"),
        ]));
        assert!(refusal(cased).contains("two entries named m/code/x.py"));
        // Entries outside the archive's one folder, or named oddly.
        assert!(
            refusal(check(&archive(&[("m/data.pkl", "x"), ("n/data.pkl", "x")])))
                .contains("more than one folder")
        );
        assert!(refusal(check(&archive(&[("data.pkl", "x")]))).contains("outside its folder"));
        // Bytes before the zip file (a flatbuffer module with a harmless archive appended,
        // which libtorch would load as the flatbuffer), or a flatbuffer's mark.
        let harmless = archive(&[("m/code/__torch__.py", "return x"), ("m/data.pkl", "x")]);
        assert_eq!(check(&harmless), Ok(()));
        let mut flatbuffer = b"\0\0\0\0PTMF evil module".to_vec();
        flatbuffer.extend(&harmless);
        assert!(matches!(check(&flatbuffer), Err(Screened::Unreadable(_))));
        let mut marked = harmless.clone();
        marked[4..8].copy_from_slice(b"PTMF");
        assert!(matches!(check(&marked), Err(Screened::Unreadable(_))));
        let mut prefixed = harmless[..4].to_vec();
        prefixed.extend(&harmless);
        assert!(matches!(check(&prefixed), Err(Screened::Unreadable(_))));
        // A code file past the bound.
        let big = "x = 1\n".repeat((MAX_SCREENED_BYTES / 6 + 1) as usize);
        assert!(refusal(code(&big)).contains("more than"));
    }
}
