//! The deployment (what `ciro deploy` runs): declares and deploys on a fresh chain, records a
//! manifest, and on a second run finds everything and sends nothing.

use ciro_chain::artifacts::classes_dir;
use ciro_chain::bindings::paymaster::PaymasterReader;
use ciro_chain::bindings::test_token::TestTokenReader;
use ciro_chain::cainome::cairo_serde::ContractAddress;
use ciro_chain::deployment::{deploy_all, DeployConfig, Manifest, Step, TEST_TOKEN_SUPPLY};
use ciro_chain::starknet::core::types::{BlockId, BlockTag};
use ciro_chain::starknet::providers::Provider;
use ciro_chain::tx::call;
use ciro_tests::net::STRK;
use ciro_tests::{Actor, TestNet};

#[tokio::test]
async fn deployment_is_recorded_and_a_second_run_skips_everything() {
    let net = TestNet::new().await.unwrap();
    let admin = net.account(Actor::Admin);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deployments/devnet.json");

    // First run (the classes are declared in the harness's base state already)
    let mut manifest = Manifest::read(&path).unwrap();
    let mut steps = Vec::new();
    deploy_all(
        &admin,
        &classes_dir(),
        &DeployConfig::default(),
        &mut manifest,
        |s| steps.push(s.clone()),
    )
    .await
    .unwrap();
    manifest.write(&path).unwrap();
    let token = manifest.contracts["TestToken"];
    assert!(
        matches!(&steps[..], [
            Step::AlreadyDeclared { .. },
            Step::AlreadyDeclared { .. },
            Step::Deployed { address, .. },
            Step::Deployed { address: pm, .. },
        ] if *address == token && *pm == manifest.contracts["Paymaster"]),
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
    deploy_all(
        &admin,
        &classes_dir(),
        &DeployConfig::default(),
        &mut again,
        |s| steps.push(s.clone()),
    )
    .await
    .unwrap();
    assert!(
        matches!(&steps[..], [
            Step::AlreadyDeclared { .. },
            Step::AlreadyDeclared { .. },
            Step::AlreadyDeployed { address, .. },
            Step::AlreadyDeployed { .. },
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
}

#[tokio::test]
async fn with_an_existing_payment_token_no_test_token_is_deployed() {
    let net = TestNet::new().await.unwrap();
    let mut manifest = Manifest::default();
    let config = DeployConfig {
        payment_token: Some(STRK),
        upgrade_delay: 3_600,
    };
    deploy_all(
        &net.account(Actor::Admin),
        &classes_dir(),
        &config,
        &mut manifest,
        |_| {},
    )
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
    let err = deploy_all(
        &net.account(Actor::Admin),
        &classes_dir(),
        &DeployConfig::default(),
        &mut manifest,
        |_| {},
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the manifest is for chain SN_MAIN, the node is SN_SEPOLIA"
    );
}
