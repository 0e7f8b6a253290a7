//! Contracts the tests deploy again and again.

use anyhow::Result;
use ciro_chain::bindings::constructor_calldata;
use ciro_chain::bindings::paymaster::Paymaster;
use ciro_chain::bindings::test_token::TestToken;
use ciro_chain::cainome::cairo_serde::{ContractAddress, U256};
use ciro_chain::constants::roles;
use ciro_chain::starknet::core::types::Felt;
use ciro_chain::tx::send;
use ciro_chain::ChainError;

use crate::{Actor, TestNet};

/// The test token's name and symbol (short strings) and decimals.
pub const TEST_TOKEN_NAME: Felt = Felt::from_hex_unchecked("0x4349524f2054657374"); // 'CIRO Test'
pub const TEST_TOKEN_SYMBOL: Felt = Felt::from_hex_unchecked("0x435454"); // 'CTT'
pub const TEST_TOKEN_DECIMALS: u8 = 18;

/// Deploys a TestToken (from the admin) whose whole `supply` the admin holds; returns its
/// address.
pub async fn deploy_test_token(net: &TestNet, supply: u128) -> Result<Felt> {
    let admin = net.account(Actor::Admin);
    let calldata = constructor_calldata(TestToken::new(Felt::ZERO, &admin).constructor_getcall(
        &TEST_TOKEN_NAME,
        &TEST_TOKEN_SYMBOL,
        &TEST_TOKEN_DECIMALS,
        &U256 {
            low: supply,
            high: 0,
        },
        &ContractAddress(net.address(Actor::Admin)),
    ));
    net.deploy(Actor::Admin, "TestToken", calldata).await
}

/// A `u256` of the bindings from a `u128` (the chain crate's).
pub use ciro_chain::clients::u256;

/// Mints `amount` of the test token at `token` to `holder` and has `holder` approve
/// `spender` for it.
pub async fn fund_and_approve(
    net: &TestNet,
    token: Felt,
    holder: Actor,
    spender: Felt,
    amount: u128,
) -> Result<()> {
    let account = net.account(holder);
    let binding = TestToken::new(token, &account);
    send(
        &net.provider,
        binding.mint(&net.contract_address(holder), &u256(amount)),
    )
    .await?;
    send(
        &net.provider,
        binding.approve(&ContractAddress(spender), &u256(amount)),
    )
    .await?;
    Ok(())
}

/// The upgrade delay of the Paymasters the tests deploy: the shortest allowed, an hour.
pub const PAYMASTER_UPGRADE_DELAY: u64 = 3_600;

/// Deploys a Paymaster (from the admin's account) with these constructor arguments; a
/// constructor revert comes back as the `ChainError` to assert on.
pub async fn try_deploy_paymaster(
    net: &TestNet,
    admin: Felt,
    token: Felt,
    upgrade_delay: u64,
) -> Result<Felt, ChainError> {
    let deployer = net.account(Actor::Admin);
    let calldata = constructor_calldata(Paymaster::new(Felt::ZERO, &deployer).constructor_getcall(
        &ContractAddress(admin),
        &ContractAddress(token),
        &upgrade_delay,
    ));
    net.try_deploy(Actor::Admin, "Paymaster", calldata).await
}

/// A Paymaster administered by the admin actor, paid in `token`, sealed (open for business,
/// grants timelocked) as a deployment leaves it.
pub async fn deploy_paymaster(net: &TestNet, token: Felt) -> Result<Felt> {
    let paymaster = try_deploy_paymaster(
        net,
        net.address(Actor::Admin),
        token,
        PAYMASTER_UPGRADE_DELAY,
    )
    .await?;
    let admin = net.account(Actor::Admin);
    send(&net.provider, Paymaster::new(paymaster, &admin).seal()).await?;
    Ok(paymaster)
}

/// Grants PAUSER to the pauser actor (as the admin) and pauses `paymaster` (as the pauser).
pub async fn pause_paymaster(net: &TestNet, paymaster: Felt) -> Result<()> {
    let admin = net.account(Actor::Admin);
    let pauser_role = ciro_chain::role_felt(roles::PAUSER)?;
    let pauser_address = net.contract_address(Actor::Pauser);
    send(
        &net.provider,
        Paymaster::new(paymaster, &admin).grant_role(&pauser_role, &pauser_address),
    )
    .await?;
    let pauser = net.account(Actor::Pauser);
    send(&net.provider, Paymaster::new(paymaster, &pauser).pause()).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ciro_chain::starknet::core::utils::cairo_short_string_to_felt;

    #[test]
    fn token_metadata_constants_are_the_short_strings() {
        assert_eq!(
            TEST_TOKEN_NAME,
            cairo_short_string_to_felt("CIRO Test").unwrap()
        );
        assert_eq!(
            TEST_TOKEN_SYMBOL,
            cairo_short_string_to_felt("CTT").unwrap()
        );
    }
}
