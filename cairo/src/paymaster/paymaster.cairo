/// The Paymaster: sponsors deposit the payment token so that users and workers need no gas
/// token. This is its first slice: sponsor deposits and withdrawals, with governance (roles,
/// two-step admin, pause, timelocked upgrade). Relayers, policies, tiers and sponsored
/// SNIP-9 execution build on it.
#[starknet::contract]
mod Paymaster {
    use starknet::{ClassHash, ContractAddress, get_caller_address, get_contract_address};
    use zeroable::Zeroable;
    use ciro::common::erc20::{IERC20Dispatcher, IERC20DispatcherTrait};
    use ciro::common::governance::{Governance, IGovernance};
    use ciro::common::governance::Governance::InternalTrait as GovernanceTrait;
    use ciro::paymaster::errors;
    use ciro::paymaster::interface::IPaymasterSponsor;

    #[storage]
    struct Storage {
        /// The token deposits and charges are paid in (STRK on Starknet).
        token: ContractAddress,
        /// Each sponsor's unspent deposit.
        deposits: LegacyMap<ContractAddress, u256>,
    }

    #[event]
    #[derive(Drop, starknet::Event)]
    enum Event {
        Deposited: Deposited,
        Withdrawn: Withdrawn,
    }

    /// `sponsor` added `amount` to its deposit, which is now `balance`.
    #[derive(Drop, starknet::Event)]
    struct Deposited {
        #[key]
        sponsor: ContractAddress,
        amount: u256,
        balance: u256,
    }

    /// `sponsor` took `amount` out of its deposit, which is now `balance`.
    #[derive(Drop, starknet::Event)]
    struct Withdrawn {
        #[key]
        sponsor: ContractAddress,
        amount: u256,
        balance: u256,
    }

    /// Sets the admin, the payment token and the upgrade delay (bounded by governance).
    /// Nothing is left to initialize after deployment.
    #[constructor]
    fn constructor(
        ref self: ContractState, admin: ContractAddress, token: ContractAddress, upgrade_delay: u64
    ) {
        assert(!token.is_zero(), errors::ZERO_ADDRESS);
        self.token.write(token);
        let mut governance = Governance::unsafe_new_contract_state();
        governance.initialize(admin, upgrade_delay);
    }

    #[external(v0)]
    impl SponsorImpl of IPaymasterSponsor<ContractState> {
        fn deposit(ref self: ContractState, amount: u256) {
            Governance::unsafe_new_contract_state().assert_not_paused();
            assert(amount != 0, errors::ZERO_AMOUNT);
            let sponsor = get_caller_address();
            let token = IERC20Dispatcher { contract_address: self.token.read() };
            let this = get_contract_address();
            // Credit only what really arrived: a token that moves less than asked (or
            // re-enters and moves more) fails the balance check.
            let before = token.balance_of(this);
            token.transfer_from(sponsor, this, amount);
            let after = token.balance_of(this);
            assert(after >= before && after - before == amount, errors::TRANSFER_FROM_SHORTFALL);
            let balance = self.deposits.read(sponsor) + amount;
            self.deposits.write(sponsor, balance);
            self.emit(Deposited { sponsor, amount, balance });
        }

        fn withdraw(ref self: ContractState, amount: u256) {
            assert(amount != 0, errors::ZERO_AMOUNT);
            let sponsor = get_caller_address();
            let deposit = self.deposits.read(sponsor);
            assert(amount <= deposit, errors::INSUFFICIENT_DEPOSIT);
            let balance = deposit - amount;
            self.deposits.write(sponsor, balance);
            self.emit(Withdrawn { sponsor, amount, balance });
            let token = IERC20Dispatcher { contract_address: self.token.read() };
            assert(token.transfer(sponsor, amount), errors::TRANSFER_FAILED);
        }

        fn sponsor_balance(self: @ContractState, sponsor: ContractAddress) -> u256 {
            self.deposits.read(sponsor)
        }

        fn token(self: @ContractState) -> ContractAddress {
            self.token.read()
        }
    }

    /// Governance, delegated to the shared library (see `common::governance`).
    #[external(v0)]
    impl GovernanceImpl of IGovernance<ContractState> {
        fn admin(self: @ContractState) -> ContractAddress {
            Governance::unsafe_new_contract_state().admin()
        }

        fn pending_admin(self: @ContractState) -> ContractAddress {
            Governance::unsafe_new_contract_state().pending_admin()
        }

        fn has_role(self: @ContractState, role: felt252, account: ContractAddress) -> bool {
            Governance::unsafe_new_contract_state().has_role(role, account)
        }

        fn grant_role(ref self: ContractState, role: felt252, account: ContractAddress) {
            let mut governance = Governance::unsafe_new_contract_state();
            governance.grant_role(role, account);
        }

        fn revoke_role(ref self: ContractState, role: felt252, account: ContractAddress) {
            let mut governance = Governance::unsafe_new_contract_state();
            governance.revoke_role(role, account);
        }

        fn transfer_admin(ref self: ContractState, new_admin: ContractAddress) {
            let mut governance = Governance::unsafe_new_contract_state();
            governance.transfer_admin(new_admin);
        }

        fn accept_admin(ref self: ContractState) {
            let mut governance = Governance::unsafe_new_contract_state();
            governance.accept_admin();
        }

        fn is_paused(self: @ContractState) -> bool {
            Governance::unsafe_new_contract_state().is_paused()
        }

        fn pause(ref self: ContractState) {
            let mut governance = Governance::unsafe_new_contract_state();
            governance.pause();
        }

        fn unpause(ref self: ContractState) {
            let mut governance = Governance::unsafe_new_contract_state();
            governance.unpause();
        }

        fn upgrade_status(self: @ContractState) -> (u64, ClassHash, u64) {
            Governance::unsafe_new_contract_state().upgrade_status()
        }

        fn schedule_upgrade(ref self: ContractState, class_hash: ClassHash) {
            let mut governance = Governance::unsafe_new_contract_state();
            governance.schedule_upgrade(class_hash);
        }

        fn cancel_upgrade(ref self: ContractState) {
            let mut governance = Governance::unsafe_new_contract_state();
            governance.cancel_upgrade();
        }

        fn execute_upgrade(ref self: ContractState) {
            let mut governance = Governance::unsafe_new_contract_state();
            governance.execute_upgrade();
        }
    }
}
