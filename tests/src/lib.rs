//! CIRO's contract test harness: the project's snforge, on a real starknet-devnet.
//!
//! - [`devnet::Devnet`]: a `starknet-devnet` process on a free port with a fixed seed, killed
//!   on drop (and by the kernel if the test process dies);
//! - [`devnet::DevnetRpc`]: devnet's extra RPC (mint, time, snapshots, blocks);
//! - [`net::TestNet`]: what a test gets: an isolated chain (a pooled devnet reverted to a
//!   snapshot taken after the project's classes were declared), named [`actors::Actor`]s with
//!   funded accounts, declare/deploy through the chain crate;
//! - [`assert`]: "this call reverts with exactly this error string" and "this transaction
//!   emitted exactly these events", decoded into the cainome types.

pub mod actors;
pub mod assert;
pub mod cpu;
pub mod devnet;
pub mod fixtures;
pub mod net;
pub mod system;

pub use actors::Actor;
pub use net::TestNet;
