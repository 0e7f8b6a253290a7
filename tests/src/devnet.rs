//! The devnet the harness runs on: the chain crate's launcher (one way to start a devnet for
//! the tests, `ciro devnet` and `scripts/run-local.sh`) and devnet's extension RPC.

pub use ciro_chain::devnet::*;
