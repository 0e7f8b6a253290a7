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

/// Operator namespaces a model may call.
const OPERATOR_NAMESPACES: [&str; 4] = ["aten", "prim", "quantized", "_quantized"];

/// Class namespaces a model may hold or construct.
const CLASS_NAMESPACES: [&str; 1] = ["quantized"];

/// Words no code file may hold: the ATen operations that read or write files.
const FORBIDDEN_WORDS: [&str; 2] = ["from_file", "save"];

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
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| {
        Screened::Unreadable(format!("not a TorchScript archive (a zip file): {e}"))
    })?;
    screen(&mut archive)
}

fn screen(archive: &mut zip::ZipArchive<Cursor<&[u8]>>) -> Result<(), Screened> {
    let mut names = HashSet::new();
    let mut budget = MAX_SCREENED_BYTES;
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index).map_err(|e| {
            Screened::Unreadable(format!("entry {index} of the archive cannot be read: {e}"))
        })?;
        let name = entry.name().to_owned();
        if !names.insert(name.clone()) {
            return Err(Screened::Refused(format!(
                "the archive holds two entries named {name}"
            )));
        }
        let code = name.ends_with(".py");
        let pickle = name.ends_with(".pkl");
        if !(code || pickle) {
            continue; // Tensor storages, versions, debugging tables, extra files.
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
        for op in ["aten::from_file", "aten::save"] {
            if contains(&text, op.as_bytes()) {
                return Err(Screened::Refused(format!(
                    "{name} names the operation {op}, which touches files"
                )));
            }
        }
        if let Some(namespace) = namespaces_after(&text, b"classes")
            .find(|namespace| !CLASS_NAMESPACES.contains(&namespace.as_str()))
        {
            return Err(Screened::Refused(format!(
                "{name} uses classes of the namespace {namespace}, which a model may not"
            )));
        }
        if code {
            if let Some(word) = FORBIDDEN_WORDS
                .iter()
                .find(|word| words(&text).any(|w| w == word.as_bytes()))
            {
                return Err(Screened::Refused(format!(
                    "{name} names `{word}`: models may not call the operations that read or \
                     write files"
                )));
            }
            if let Some(namespace) = namespaces_after(&text, b"ops")
                .find(|namespace| !OPERATOR_NAMESPACES.contains(&namespace.as_str()))
            {
                return Err(Screened::Refused(format!(
                    "{name} calls operators of the namespace {namespace}, which a model may not"
                )));
            }
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

/// For each whole word `word` in `text` followed by a `.` and a name (with any whitespace,
/// line continuations and comments between), the name: `ops.aten`, `classes.quantized`.
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
            return None;
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
            ("y = ops.c10d.allreduce_(x)", "namespace c10d"),
            ("y = ops . # c\n symm_mem.put(x)", "namespace symm_mem"),
            (
                "y = torch.ops.debugprims.load_tensor(n)",
                "namespace debugprims",
            ),
            ("y = ops.(x)", "namespace "),
            (
                "s = __torch__.torch.classes.c10d.Store()",
                "classes of the namespace c10d",
            ),
        ] {
            let refused = refusal(code(text));
            assert!(refused.contains(says), "{text}: {refused}");
        }
        // Words that merely contain them pass: `saved`, `from_files_count`, `opsx.y`.
        assert_eq!(
            code("saved = from_files_count + opsx.y + torch.ops.aten.add(x, x)"),
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
        // A code file past the bound.
        let big = "x = 1\n".repeat((MAX_SCREENED_BYTES / 6 + 1) as usize);
        assert!(refusal(code(&big)).contains("more than"));
    }
}
