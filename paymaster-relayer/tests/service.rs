//! The `ciro-paymaster-relayer` binary as a service: runtime endpoints, configuration errors
//! and a clean exit on SIGTERM (scenarios shared by every service binary, in
//! `ciro_service::test_util`). Its readiness against a live chain needs a deployed Paymaster
//! and funded accounts: `tests/relayer.rs` checks it on a full deployment
//! (`ready_only_when_connected_with_an_account_in_rotation`).

fn relayer_args() -> Vec<String> {
    // Kept for the life of the test process; the OS temp cleaner owns it afterwards.
    let dir = tempfile::tempdir().expect("a temp dir").keep();
    let manifest = dir.join("devnet.json");
    std::fs::write(
        &manifest,
        r#"{"network": "devnet", "chain_id": "SN_SEPOLIA", "rpc_url": "", "deploy_block": 0,
            "classes": {}, "contracts": {"Paymaster": "0x3333"}}"#,
    )
    .expect("writing the manifest");
    vec![
        "--manifest".into(),
        manifest.display().to_string(),
        "--devnet-account".into(),
        "9".into(),
    ]
}

#[test]
fn unready_without_a_node() {
    ciro_service::test_util::run(ciro_service::test_util::unready_without_a_node(
        env!("CARGO_BIN_EXE_ciro-paymaster-relayer"),
        "ciro-paymaster-relayer",
        &relayer_args(),
    ));
}

#[test]
fn invalid_configuration_exits_with_status_1() {
    ciro_service::test_util::run(
        ciro_service::test_util::invalid_configuration_exits_with_status_1(
            env!("CARGO_BIN_EXE_ciro-paymaster-relayer"),
            "ciro-paymaster-relayer",
        ),
    );
}

#[test]
fn no_accounts_is_a_configuration_error() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ciro-paymaster-relayer"))
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .expect("running the relayer");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("give the relayer's accounts"), "{stderr}");
}
