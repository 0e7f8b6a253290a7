//! Contracts the tests deploy again and again.

use anyhow::Result;
use ciro_chain::bindings::constructor_calldata;
use ciro_chain::bindings::test_token::TestToken;
use ciro_chain::cainome::cairo_serde::{ContractAddress, U256};
use ciro_chain::starknet::core::types::Felt;

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
