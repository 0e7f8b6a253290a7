//! The `ciro-coordinator` binary as a service: runtime endpoints, readiness against a real
//! starknet-devnet, configuration errors, clean exit on SIGTERM (scenarios shared by every
//! service binary, in `ciro_service::test_util`).

ciro_service::service_binary_tests!(env!("CARGO_BIN_EXE_ciro-coordinator"), "ciro-coordinator");
