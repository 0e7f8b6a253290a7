//! CIRO's deploy tooling, kept out of the runtime chain crate: it is the only crate that
//! compiles Sierra to CASM (universal-sierra-compiler and its `cairo-lang-*` crates), which it
//! needs for the network's compiled class hash.
//!
//! - [`artifacts`]: the compiled classes, their class hash and the network's compiled class
//!   hash (CASM by universal-sierra-compiler, Blake2s);
//! - [`declare`]: declare (idempotent) and deploy through the Universal Deployer;
//! - [`deployment`]: the whole deployment from a [`DeployConfig`], idempotent, wired (roles)
//!   and sealed, recorded in a [`Manifest`].

pub mod artifacts;
pub mod declare;
pub mod deployment;

pub use deployment::{deploy_all, DeployConfig, Manifest, Step};
