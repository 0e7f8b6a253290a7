//! The `ciro-coordinator` binary as a service: runtime endpoints, readiness against a real
//! starknet-devnet, configuration errors, clean exit on SIGTERM (scenarios shared by every
//! service binary, in `ciro_service::test_util`). The coordinator also needs a deployment
//! manifest and a database: a manifest naming JobMgr and the pool (at addresses with no
//! contract, whose event streams are simply empty) and a fresh SQLite file.

fn coordinator_args() -> Vec<String> {
    // Kept for the life of the test process; the OS temp cleaner owns it afterwards.
    let dir = tempfile::tempdir().expect("a temp dir").keep();
    let manifest = dir.join("devnet.json");
    std::fs::write(
        &manifest,
        r#"{"network": "devnet", "chain_id": "SN_SEPOLIA", "rpc_url": "", "deploy_block": 0,
            "classes": {}, "contracts": {"JobMgr": "0x1111", "CdcPool": "0x2222"}}"#,
    )
    .expect("writing the manifest");
    vec![
        "--manifest".into(),
        manifest.display().to_string(),
        "--database-url".into(),
        format!("sqlite://{}", dir.join("coordinator.db").display()),
        "--blob-dir".into(),
        dir.join("blobs").display().to_string(),
    ]
}

ciro_service::service_binary_tests!(
    env!("CARGO_BIN_EXE_ciro-coordinator"),
    "ciro-coordinator",
    coordinator_args()
);
