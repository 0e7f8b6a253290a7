//! The worker binary links libtorch through the engine: it needs the same link arguments
//! (`crates/engine/build.rs`), which cargo does not pass on from a dependency's build script.

include!("../crates/engine/link.rs");
