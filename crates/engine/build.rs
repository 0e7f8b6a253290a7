//! Link details libtorch needs (TOOLCHAIN.md, verified with `readelf -d`):
//! - an rpath to torch's `lib/`, so binaries and tests find libtorch at run time without
//!   `LD_LIBRARY_PATH`;
//! - `libtorch_cuda.so` linked with `--no-as-needed`: nothing references its symbols
//!   directly, so `--as-needed` would drop it and CUDA would look unavailable on a GPU.

include!("link.rs");
