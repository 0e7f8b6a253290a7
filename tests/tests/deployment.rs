//! The deployment (what `ciro deploy` runs): declares and deploys on a fresh chain, records a
//! manifest, and on a second run finds everything and sends nothing.

use ciro_chain::bindings::cdc_pool::CdcPoolReader;
use ciro_chain::bindings::job_mgr::JobMgrReader;
use ciro_chain::bindings::paymaster::PaymasterReader;
use ciro_chain::bindings::test_token::TestTokenReader;
use ciro_chain::cainome::cairo_serde::ContractAddress;
use ciro_chain::constants::roles;
use ciro_chain::devnet::DevnetRpc;
use ciro_chain::starknet::core::types::{BlockId, BlockTag};
use ciro_chain::starknet::core::utils::cairo_short_string_to_felt;
use ciro_chain::starknet::providers::Provider;
use ciro_chain::tx::call;
use ciro_deploy::artifacts::classes_dir;
use ciro_deploy::deployment::{
    check_payment_token, deploy_all, ChainKind, DeployConfig, DeployRefused, Manifest, Step,
    TEST_TOKEN_SUPPLY,
};
use ciro_tests::net::STRK;
use ciro_tests::{Actor, TestNet};
use std::io::{Read, Write};
use std::net::TcpListener;
use url::Url;

#[tokio::test]
async fn deployment_is_recorded_and_a_second_run_skips_everything() {
    let net = TestNet::new().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deployments/devnet.json");

    // First run (the classes are declared in the harness's base state already)
    let mut manifest = Manifest::read(&path).unwrap();
    let mut steps = Vec::new();
    net.deploy_all(&DeployConfig::default(), &mut manifest, |s| {
        steps.push(s.clone())
    })
    .await
    .unwrap();
    manifest.write(&path).unwrap();
    let token = manifest.contracts["TestToken"];
    assert!(
        matches!(&steps[..], [
            Step::AlreadyDeclared { .. },
            Step::AlreadyDeclared { .. },
            Step::AlreadyDeclared { .. },
            Step::AlreadyDeclared { .. },
            Step::Deployed { address, .. },
            Step::Deployed { .. },
            Step::Deployed { .. },
            Step::Deployed { address: pm, .. },
            Step::Granted { contract, role, account, .. },
            Step::Sealed { contract: sealed_pool, .. },
            Step::Sealed { contract: sealed_jobs, .. },
            Step::Sealed { contract: sealed_paymaster, .. },
        ] if *address == token
            && sealed_pool == "CdcPool"
            && sealed_jobs == "JobMgr"
            && sealed_paymaster == "Paymaster"
            && *pm == manifest.contracts["Paymaster"]
            && contract == "CdcPool"
            && role == roles::JOB_MANAGER
            && *account == manifest.contracts["JobMgr"]),
        "{steps:?}"
    );
    assert_eq!(
        net.provider
            .get_class_hash_at(BlockId::Tag(BlockTag::Latest), token)
            .await
            .unwrap(),
        manifest.classes["TestToken"]
    );
    assert_eq!(manifest.chain_id, "SN_SEPOLIA");
    assert!(manifest.deploy_block.is_some());

    // Second run from the written manifest: nothing is sent
    let nonce = net
        .provider
        .get_nonce(BlockId::Tag(BlockTag::Latest), net.address(Actor::Admin))
        .await
        .unwrap();
    let mut again = Manifest::read(&path).unwrap();
    let mut steps = Vec::new();
    net.deploy_all(&DeployConfig::default(), &mut again, |s| {
        steps.push(s.clone())
    })
    .await
    .unwrap();
    assert!(
        matches!(&steps[..], [
            Step::AlreadyDeclared { .. },
            Step::AlreadyDeclared { .. },
            Step::AlreadyDeclared { .. },
            Step::AlreadyDeclared { .. },
            Step::AlreadyDeployed { address, .. },
            Step::AlreadyDeployed { .. },
            Step::AlreadyDeployed { .. },
            Step::AlreadyDeployed { .. },
            Step::AlreadyGranted { .. },
            Step::AlreadySealed { .. },
            Step::AlreadySealed { .. },
            Step::AlreadySealed { .. },
        ] if *address == token),
        "{steps:?}"
    );
    assert_eq!(again, manifest);
    assert_eq!(
        net.provider
            .get_nonce(BlockId::Tag(BlockTag::Latest), net.address(Actor::Admin))
            .await
            .unwrap(),
        nonce
    );
    let reader = TestTokenReader::new(token, &net.provider);
    assert_eq!(
        call(reader.total_supply()).await.unwrap().low,
        TEST_TOKEN_SUPPLY
    );
    // The Paymaster is wired to the test token, with the deployer as its admin.
    let paymaster = PaymasterReader::new(manifest.contracts["Paymaster"], &net.provider);
    assert_eq!(
        call(paymaster.token()).await.unwrap(),
        ContractAddress(token)
    );
    assert_eq!(
        call(paymaster.admin()).await.unwrap(),
        ContractAddress(net.address(Actor::Admin))
    );
    // JobMgr and the pool are wired to each other and to the token, with the defaults.
    let jobs = JobMgrReader::new(manifest.contracts["JobMgr"], &net.provider);
    let pool = CdcPoolReader::new(manifest.contracts["CdcPool"], &net.provider);
    assert_eq!(
        call(jobs.pool()).await.unwrap(),
        ContractAddress(manifest.contracts["CdcPool"])
    );
    assert_eq!(call(jobs.token()).await.unwrap(), ContractAddress(token));
    assert_eq!(call(pool.token()).await.unwrap(), ContractAddress(token));
    assert_eq!(
        call(jobs.get_params()).await.unwrap(),
        DeployConfig::default().job_params()
    );
    assert_eq!(
        call(pool.params()).await.unwrap(),
        DeployConfig::default().pool_params(net.address(Actor::Admin))
    );
    assert_eq!(
        call(pool.treasury()).await.unwrap(),
        ContractAddress(net.address(Actor::Admin))
    );
}

#[tokio::test]
async fn roles_from_the_config_are_granted_once() {
    // Given a config naming a coordinator, an arbiter, a pauser and a slasher
    let net = TestNet::new().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("config.json");
    std::fs::write(
        &config_path,
        format!(
            r#"{{"upgrade_delay": 7200,
                "roles": {{"coordinator": ["{c:#x}"], "arbiter": ["{a:#x}"],
                          "pauser": ["{p:#x}"], "slasher": ["{s:#x}"]}},
                "jobs": {{"protocol_fee_bps": 250}} }}"#,
            c = net.address(Actor::Coordinator),
            a = net.address(Actor::Arbiter),
            p = net.address(Actor::Pauser),
            s = net.address(Actor::Relayer),
        ),
    )
    .unwrap();
    let config = DeployConfig::read(&config_path).unwrap();
    assert_eq!(config.jobs.protocol_fee_bps, 250);
    assert_eq!(
        config.jobs.challenge_window,
        DeployConfig::default().jobs.challenge_window
    );
    let mut manifest = Manifest::default();
    let mut steps = Vec::new();
    net.deploy_all(&config, &mut manifest, |s| steps.push(s.clone()))
        .await
        .unwrap();
    // Then each role is held where it belongs: 1 + 1 + 2 + 3 + 1 grants
    let granted = steps
        .iter()
        .filter(|s| matches!(s, Step::Granted { .. }))
        .count();
    assert_eq!(granted, 8, "{steps:?}");
    let jobs = JobMgrReader::new(manifest.contracts["JobMgr"], &net.provider);
    let pool = CdcPoolReader::new(manifest.contracts["CdcPool"], &net.provider);
    let role = |name: &str| cairo_short_string_to_felt(name).unwrap();
    let holder = |actor: Actor| ContractAddress(net.address(actor));
    assert!(
        call(jobs.has_role(&role(roles::COORDINATOR), &holder(Actor::Coordinator)))
            .await
            .unwrap()
    );
    assert!(
        call(pool.has_role(&role(roles::ARBITER), &holder(Actor::Arbiter)))
            .await
            .unwrap()
    );
    assert!(
        call(pool.has_role(&role(roles::SLASHER), &holder(Actor::Relayer)))
            .await
            .unwrap()
    );
    assert!(
        call(jobs.has_role(&role(roles::PAUSER), &holder(Actor::Pauser)))
            .await
            .unwrap()
    );
    assert!(
        !call(jobs.has_role(&role(roles::COORDINATOR), &holder(Actor::Attacker)))
            .await
            .unwrap()
    );
    assert_eq!(call(jobs.upgrade_status()).await.unwrap().0, 7_200);
    // And a second run grants nothing
    let mut steps = Vec::new();
    net.deploy_all(&config, &mut manifest, |s| steps.push(s.clone()))
        .await
        .unwrap();
    assert!(!steps.iter().any(|s| matches!(
        s,
        Step::Granted { .. } | Step::Deployed { .. } | Step::Sealed { .. }
    )));
    assert!(call(jobs.is_sealed()).await.unwrap());
    assert!(call(pool.is_sealed()).await.unwrap());

    // A config that adds a money-moving role after sealing is refused before sending anything:
    // the grant must go through the timelock.
    let mut more = config.clone();
    more.roles.arbiter.push(net.address(Actor::Attacker));
    let err = net
        .deploy_all(&more, &mut manifest, |_| {})
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("schedule_role_grant"),
        "{err:#}"
    );
    assert!(
        !call(jobs.has_role(&role(roles::ARBITER), &holder(Actor::Attacker)))
            .await
            .unwrap()
    );
}

#[test]
fn a_config_with_an_unknown_field_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, r#"{"jobs": {"protocol_fees": 1}}"#).unwrap();
    let err = DeployConfig::read(&path).unwrap_err();
    assert!(
        format!("{err:#}").contains("unknown field `protocol_fees`"),
        "{err:#}"
    );
}

#[tokio::test]
async fn with_an_existing_payment_token_no_test_token_is_deployed() {
    let net = TestNet::new().await.unwrap();
    let mut manifest = Manifest::default();
    let config = DeployConfig {
        payment_token: Some(STRK),
        upgrade_delay: 3_600,
        ..DeployConfig::default()
    };
    net.deploy_all(&config, &mut manifest, |_| {})
        .await
        .unwrap();
    assert!(!manifest.contracts.contains_key("TestToken"));
    let paymaster = PaymasterReader::new(manifest.contracts["Paymaster"], &net.provider);
    assert_eq!(
        call(paymaster.token()).await.unwrap(),
        ContractAddress(STRK)
    );
    assert_eq!(call(paymaster.upgrade_status()).await.unwrap().0, 3_600);
}

#[tokio::test]
async fn a_manifest_of_another_chain_is_refused() {
    let net = TestNet::new().await.unwrap();
    let mut manifest = Manifest {
        chain_id: "SN_MAIN".into(),
        ..Manifest::default()
    };
    let err = net
        .deploy_all(&DeployConfig::default(), &mut manifest, |_| {})
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the manifest is for chain SN_MAIN, the node is SN_SEPOLIA"
    );
}

#[test]
fn the_example_config_parses_with_every_field() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/deploy/sepolia.example.json");
    let config = DeployConfig::read(&path).unwrap();
    assert_eq!(config.pool.min_stake[3], 2_000_000_000_000_000_000_000);
    assert_eq!(config.pool.warmup, 86_400);
    assert_eq!(config.roles.slasher.len(), 1);
    assert_eq!(config.upgrade_delay, 172_800);
    assert_eq!(config.payment_token, Some(STRK));
    assert!(config.seal);
}

#[test]
fn the_test_token_is_refused_off_devnet_and_a_configured_token_goes_anywhere() {
    let mainnet = ChainKind::Other {
        chain_id: "SN_MAIN".into(),
    };
    let err = check_payment_token(None, &mainnet).unwrap_err();
    assert_eq!(
        err,
        DeployRefused::TestTokenOffDevnet {
            chain_id: "SN_MAIN".into()
        }
    );
    let message = err.to_string();
    assert!(
        message.contains("no payment token configured for chain SN_MAIN"),
        "{message}"
    );
    assert!(message.contains("--payment-token"), "{message}");
    check_payment_token(Some(STRK), &mainnet).unwrap();
    check_payment_token(None, &ChainKind::Devnet).unwrap();
    check_payment_token(Some(STRK), &ChainKind::Devnet).unwrap();
}

/// A plain HTTP server that is not a devnet: every request gets `status` with the JSON `body`
/// (what a Starknet node that lacks `devnet_*` methods, or any other web server, answers).
/// Blocking, on its own thread, so that it needs nothing from the async runtime.
fn not_a_devnet(status: &'static str, body: &'static str) -> Url {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = Url::parse(&format!("http://{}/rpc", listener.local_addr().unwrap())).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            // Read the headers and the Content-Length body before answering.
            let mut request = Vec::new();
            let mut chunk = [0u8; 4096];
            let complete = loop {
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => break false,
                    Ok(read) => request.extend_from_slice(&chunk[..read]),
                }
                let text = String::from_utf8_lossy(&request);
                let Some(end) = text.find("\r\n\r\n") else {
                    continue;
                };
                let length = text[..end]
                    .lines()
                    .filter_map(|line| line.split_once(':'))
                    .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, value)| value.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if request.len() >= end + 4 + length {
                    break true;
                }
            };
            if complete {
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        }
    });
    url
}

const METHOD_NOT_FOUND: &str =
    r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"Method not found"}}"#;

#[tokio::test]
async fn the_devnet_probe_tells_a_devnet_from_other_nodes() {
    let net = TestNet::new().await.unwrap();
    assert!(net.devnet.is_devnet().await.unwrap());
    let node = not_a_devnet("200 OK", METHOD_NOT_FOUND);
    assert!(!DevnetRpc::new(node).is_devnet().await.unwrap());
    let web = not_a_devnet("404 Not Found", r#"{"error":"not found"}"#);
    assert!(!DevnetRpc::new(web).is_devnet().await.unwrap());
    let page = not_a_devnet("200 OK", "<html><body>hello</body></html>");
    assert!(!DevnetRpc::new(page).is_devnet().await.unwrap());
}

#[tokio::test]
async fn a_devnet_started_with_the_mainnet_chain_id_still_gets_the_test_token() {
    // The chain id says mainnet; the node answers devnet_getConfig, so it is a devnet.
    let net = TestNet::with_devnet_args(&["--chain-id", "MAINNET"])
        .await
        .unwrap();
    let mut manifest = Manifest::default();
    net.deploy_all(&DeployConfig::default(), &mut manifest, |_| {})
        .await
        .unwrap();
    assert_eq!(manifest.chain_id, "SN_MAIN");
    let token = manifest.contracts["TestToken"];
    let paymaster = PaymasterReader::new(manifest.contracts["Paymaster"], &net.provider);
    assert_eq!(
        call(paymaster.token()).await.unwrap(),
        ContractAddress(token)
    );
}

#[tokio::test]
async fn off_devnet_the_test_token_is_refused_before_anything_is_sent() {
    // The deployer's account is on the devnet, but the endpoint deploy_all probes is a node
    // that is not one: the probe's answer alone decides.
    let net = TestNet::new().await.unwrap();
    let node = not_a_devnet("200 OK", METHOD_NOT_FOUND);
    let nonce = net
        .provider
        .get_nonce(BlockId::Tag(BlockTag::Latest), net.address(Actor::Admin))
        .await
        .unwrap();
    let mut manifest = Manifest::default();
    let mut steps = Vec::new();
    let err = deploy_all(
        &net.account(Actor::Admin),
        &node,
        &classes_dir(),
        &DeployConfig::default(),
        &mut manifest,
        |s| steps.push(s.clone()),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.downcast_ref::<DeployRefused>(),
        Some(&DeployRefused::TestTokenOffDevnet {
            chain_id: "SN_SEPOLIA".into()
        }),
        "{err:#}"
    );
    assert!(steps.is_empty(), "{steps:?}");
    assert_eq!(manifest, Manifest::default());
    assert_eq!(
        net.provider
            .get_nonce(BlockId::Tag(BlockTag::Latest), net.address(Actor::Admin))
            .await
            .unwrap(),
        nonce
    );
}
