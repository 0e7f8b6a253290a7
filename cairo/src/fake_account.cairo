/// A contract posing as an account for the Paymaster's attack tests: its
/// `execute_from_outside_v2` checks nothing, runs nothing and returns no results, so every
/// "sponsored execution" through it passes whatever the relayer names. Test-only.
#[starknet::contract]
mod FakeAccount {
    use array::ArrayTrait;
    use ciro::paymaster::types::OutsideExecution;

    #[storage]
    struct Storage {}

    /// Accepts any outside execution and signature; runs none of the calls.
    #[external(v0)]
    fn execute_from_outside_v2(
        ref self: ContractState, outside_execution: OutsideExecution, signature: Span<felt252>
    ) -> Array<Span<felt252>> {
        ArrayTrait::new()
    }
}
