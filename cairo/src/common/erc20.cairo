use starknet::ContractAddress;

/// The ERC-20 standard interface (snake_case, as the STRK token on Starknet). The contracts
/// pay and get paid through it; the test token implements it.
#[starknet::interface]
trait IERC20<TContractState> {
    /// The token's name as a short string.
    fn name(self: @TContractState) -> felt252;
    /// The token's symbol as a short string.
    fn symbol(self: @TContractState) -> felt252;
    /// Number of decimals of the smallest unit.
    fn decimals(self: @TContractState) -> u8;
    /// Total amount in circulation.
    fn total_supply(self: @TContractState) -> u256;
    /// Balance of `account`.
    fn balance_of(self: @TContractState, account: ContractAddress) -> u256;
    /// What `spender` may still move out of `owner`'s balance.
    fn allowance(self: @TContractState, owner: ContractAddress, spender: ContractAddress) -> u256;
    /// Moves `amount` from the caller to `recipient`.
    /// Requires: caller balance >= amount, recipient not zero. Emits `Transfer`.
    fn transfer(ref self: TContractState, recipient: ContractAddress, amount: u256) -> bool;
    /// Moves `amount` from `sender` to `recipient` on the caller's allowance.
    /// Requires: allowance >= amount, sender balance >= amount, recipient not zero.
    /// Emits `Transfer` (and no `Approval`: the spent allowance is not announced).
    fn transfer_from(
        ref self: TContractState, sender: ContractAddress, recipient: ContractAddress, amount: u256
    ) -> bool;
    /// Sets the caller's allowance for `spender` to `amount`. Emits `Approval`.
    fn approve(ref self: TContractState, spender: ContractAddress, amount: u256) -> bool;
}

/// Pulls `amount` of `token` from `from` into the calling contract and says whether its
/// balance grew by exactly `amount` (a fee-on-transfer or lying token fails the check). Each
/// contract asserts the answer with its own error string (Ekubo's transfer-from invariant).
fn pull_exact(token: ContractAddress, from: ContractAddress, amount: u256) -> bool {
    let token = IERC20Dispatcher { contract_address: token };
    let this = starknet::get_contract_address();
    let before = token.balance_of(this);
    token.transfer_from(from, this, amount);
    let after = token.balance_of(this);
    after >= before && after - before == amount
}

/// Sends `amount` of `token` to `to`; whether the token said it did.
fn push(token: ContractAddress, to: ContractAddress, amount: u256) -> bool {
    IERC20Dispatcher { contract_address: token }.transfer(to, amount)
}
