//! Link details libtorch needs (TOOLCHAIN.md, verified with `readelf -d`):
//! - an rpath to torch's `lib/`, so binaries and tests find libtorch at run time without
//!   `LD_LIBRARY_PATH`;
//! - `libtorch_cuda.so` linked with `--no-as-needed`: nothing references its symbols
//!   directly, so `--as-needed` would drop it and CUDA would look unavailable on a GPU.

use std::env;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib) = env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    if Path::new(&lib).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}
