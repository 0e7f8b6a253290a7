use starknet::ContractAddress;

/// Sponsors' deposits: what sponsored execution spends from.
#[starknet::interface]
trait IPaymasterSponsor<TContractState> {
    /// Moves `amount` of the payment token from the caller into its deposit.
    /// Requires: not paused, amount > 0, the caller approved the Paymaster for `amount`, and
    /// the token really moved `amount` (balance checked before and after).
    /// Emits `Deposited`.
    fn deposit(ref self: TContractState, amount: u256);
    /// Pays `amount` of the caller's deposit back to it. Works while paused.
    /// Requires: amount > 0, amount <= the caller's deposit. Emits `Withdrawn`.
    fn withdraw(ref self: TContractState, amount: u256);
    /// What `sponsor` has deposited and not spent or withdrawn.
    fn sponsor_balance(self: @TContractState, sponsor: ContractAddress) -> u256;
    /// The payment token.
    fn token(self: @TContractState) -> ContractAddress;
}
