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
//! - a code file names `from_file` or `save` as a word (the two ATen operations that touch
//!   files; a string or a comment saying so refuses the model too: a false refusal costs a
//!   model's author a rename, a missed call costs a worker its machine);
//! - code names an operator namespace other than `aten`, `prim`, `quantized` and
//!   `_quantized` (`ops.<namespace>`), or a class namespace other than `quantized`
//!   (`classes.<namespace>`, in code or in a pickle: quantized models keep their packed
//!   parameters as such classes);
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
const FORBIDDEN_WORDS: [&str; 25] = [
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
        if let Some(word) = FORBIDDEN_WORDS
            .iter()
            .find(|word| words(&text).any(|w| w == word.as_bytes()))
        {
            return Err(Screened::Refused(format!(
                "{name} names `{word}`: models may not read or write files, start work that \
                 outlives the pass, or build unchecked views"
            )));
        }
        let class = namespaces_after(&text, b"classes")
            .find(|namespace| !CLASS_NAMESPACES.contains(&namespace.as_str()));
        if let Some(namespace) = class {
            return Err(Screened::Refused(format!(
                "{name} uses classes of the namespace {namespace:?}, which a model may not"
            )));
        }
        let operator = namespaces_after(&text, b"ops")
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

/// For each whole word `word` in `text`, the name that follows it after a `.` (with any
/// whitespace, line continuations and comments between): `ops.aten`, `classes.quantized`;
/// an empty name where none follows.
fn namespaces_after<'a>(text: &'a [u8], word: &'a [u8]) -> impl Iterator<Item = String> + 'a {
    let n = word.len();
    (0..text.len().saturating_sub(n - 1)).filter_map(move |at| {
        if &text[at..at + n] != word
            || (at > 0 && is_word_byte(text[at - 1]))
            || text.get(at + n).is_some_and(|b| is_word_byte(*b))
        {
            return None;
        }
        let mut i = skip_separators(text, at + n);
        if text.get(i) != Some(&b'.') {
            // Not followed by a name (`o = ops`, `(ops).x`): an alias could reach any
            // namespace, so it is refused as a namespace of no name.
            return Some(String::new());
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
            ("c = classes", "namespace \"\""),
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
            let refused = refusal(code(text));
            assert!(refused.contains(says), "{text}: {refused}");
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
