// Link details libtorch needs; see build.rs. Included by the build scripts of every crate
// with a binary, test or bench that links libtorch (cargo does not pass link arguments on).

use std::env;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib) = env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    // The libtorch version, for receipts: `torch/version.py` beside `torch/lib`.
    let version = Path::new(&lib)
        .parent()
        .map(|torch| torch.join("version.py"))
        .and_then(|path| std::fs::read_to_string(path).ok())
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("__version__ = "))
                .map(|v| v.trim().trim_matches(|c| c == '\'' || c == '"').to_owned())
        });
    if let Some(version) = version {
        println!("cargo:rustc-env=CIRO_LIBTORCH_VERSION={version}");
    }
    if Path::new(&lib).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}
