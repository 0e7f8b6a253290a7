use starknet::ContractAddress;

/// What the test token adds to ERC-20: minting, open to anyone (test networks only).
#[starknet::interface]
trait ITestTokenMint<TContractState> {
    /// Creates `amount` new tokens for `recipient`.
    /// Requires: recipient not zero. Emits `Transfer` from the zero address.
    fn mint(ref self: TContractState, recipient: ContractAddress, amount: u256);
}

/// Hostile behaviour for negative tests of the contracts that take payments.
#[starknet::interface]
trait ITestTokenHostile<TContractState> {
    /// From now on `transfer_from` burns `fee` of every amount it moves, so the recipient
    /// gets `amount - fee` (a fee-on-transfer token). Zero turns it off.
    fn set_transfer_from_fee(ref self: TContractState, fee: u256);
    /// From now on (while `enabled`) `transfer` moves nothing and returns `false` instead of
    /// reverting, as some tokens do.
    fn set_transfer_returns_false(ref self: TContractState, enabled: bool);
    /// From now on every `transfer`, after moving the tokens, calls `selector` on `target`
    /// with `calldata` (once: not from inside that call), and reverts with the callee's error
    /// if it fails: a token that re-enters the contract paying out. A zero target turns it
    /// off.
    fn set_reentry(
        ref self: TContractState,
        target: ContractAddress,
        selector: felt252,
        calldata: Array<felt252>
    );
}
