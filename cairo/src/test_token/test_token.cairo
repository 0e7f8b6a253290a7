/// A small ERC-20 for tests and local networks: standard transfers and allowances, plus an
/// open `mint`.
#[starknet::contract]
mod TestToken {
    use array::{ArrayTrait, SpanTrait};
    use starknet::{ContractAddress, get_caller_address};
    use starknet::syscalls::call_contract_syscall;
    use zeroable::Zeroable;
    use ciro::test_token::errors;
    use ciro::common::erc20::IERC20;
    use ciro::test_token::interface::{ITestTokenHostile, ITestTokenMint};

    #[storage]
    struct Storage {
        /// Token name (short string).
        name: felt252,
        /// Token symbol (short string).
        symbol: felt252,
        /// Decimals of the smallest unit.
        decimals: u8,
        /// Sum of all balances.
        total_supply: u256,
        /// Balance per account.
        balances: LegacyMap<ContractAddress, u256>,
        /// Allowance per (owner, spender).
        allowances: LegacyMap<(ContractAddress, ContractAddress), u256>,
        /// Burnt from every `transfer_from` (hostile mode; zero by default).
        transfer_from_fee: u256,
        /// Whether `transfer` fails silently (hostile mode; off by default).
        transfer_returns_false: bool,
        /// The call every `transfer` makes after moving tokens (hostile mode; zero target:
        /// off): target, selector, calldata length and words.
        reentry_target: ContractAddress,
        reentry_selector: felt252,
        reentry_len: u32,
        reentry_calldata: LegacyMap<u32, felt252>,
        /// Set while the re-entering call runs, so it happens once.
        reentering: bool,
    }

    #[event]
    #[derive(Drop, starknet::Event)]
    enum Event {
        Transfer: Transfer,
        Approval: Approval,
    }

    /// `value` moved from `from` to `to` (`from` is zero for a mint).
    #[derive(Drop, starknet::Event)]
    struct Transfer {
        #[key]
        from: ContractAddress,
        #[key]
        to: ContractAddress,
        value: u256,
    }

    /// `owner` allowed `spender` to move up to `value`.
    #[derive(Drop, starknet::Event)]
    struct Approval {
        #[key]
        owner: ContractAddress,
        #[key]
        spender: ContractAddress,
        value: u256,
    }

    /// Sets the metadata and mints `initial_supply` to `recipient`.
    #[constructor]
    fn constructor(
        ref self: ContractState,
        name: felt252,
        symbol: felt252,
        decimals: u8,
        initial_supply: u256,
        recipient: ContractAddress
    ) {
        self.name.write(name);
        self.symbol.write(symbol);
        self.decimals.write(decimals);
        self._mint(recipient, initial_supply);
    }

    #[external(v0)]
    impl ERC20Impl of IERC20<ContractState> {
        fn name(self: @ContractState) -> felt252 {
            self.name.read()
        }

        fn symbol(self: @ContractState) -> felt252 {
            self.symbol.read()
        }

        fn decimals(self: @ContractState) -> u8 {
            self.decimals.read()
        }

        fn total_supply(self: @ContractState) -> u256 {
            self.total_supply.read()
        }

        fn balance_of(self: @ContractState, account: ContractAddress) -> u256 {
            self.balances.read(account)
        }

        fn allowance(
            self: @ContractState, owner: ContractAddress, spender: ContractAddress
        ) -> u256 {
            self.allowances.read((owner, spender))
        }

        fn transfer(ref self: ContractState, recipient: ContractAddress, amount: u256) -> bool {
            if self.transfer_returns_false.read() {
                return false;
            }
            self._transfer(get_caller_address(), recipient, amount);
            self._reenter();
            true
        }

        fn transfer_from(
            ref self: ContractState,
            sender: ContractAddress,
            recipient: ContractAddress,
            amount: u256
        ) -> bool {
            let spender = get_caller_address();
            let allowed = self.allowances.read((sender, spender));
            assert(allowed >= amount, errors::INSUFFICIENT_ALLOWANCE);
            self.allowances.write((sender, spender), allowed - amount);
            let fee = self.transfer_from_fee.read();
            if fee == 0 || fee > amount {
                self._transfer(sender, recipient, amount);
            } else {
                self._transfer(sender, recipient, amount - fee);
                self._burn(sender, fee);
            }
            true
        }

        fn approve(ref self: ContractState, spender: ContractAddress, amount: u256) -> bool {
            let owner = get_caller_address();
            assert(!owner.is_zero(), errors::APPROVE_FROM_ZERO);
            assert(!spender.is_zero(), errors::APPROVE_TO_ZERO);
            self.allowances.write((owner, spender), amount);
            self.emit(Approval { owner, spender, value: amount });
            true
        }
    }

    #[external(v0)]
    impl MintImpl of ITestTokenMint<ContractState> {
        fn mint(ref self: ContractState, recipient: ContractAddress, amount: u256) {
            self._mint(recipient, amount);
        }
    }

    #[external(v0)]
    impl HostileImpl of ITestTokenHostile<ContractState> {
        fn set_transfer_from_fee(ref self: ContractState, fee: u256) {
            self.transfer_from_fee.write(fee);
        }

        fn set_transfer_returns_false(ref self: ContractState, enabled: bool) {
            self.transfer_returns_false.write(enabled);
        }

        fn set_reentry(
            ref self: ContractState,
            target: ContractAddress,
            selector: felt252,
            calldata: Array<felt252>
        ) {
            self.reentry_target.write(target);
            self.reentry_selector.write(selector);
            self.reentry_len.write(calldata.len());
            let mut i: u32 = 0;
            let mut words = calldata.span();
            loop {
                match words.pop_front() {
                    Option::Some(word) => {
                        self.reentry_calldata.write(i, *word);
                        i += 1;
                    },
                    Option::None(()) => {
                        break;
                    },
                };
            };
        }
    }

    #[generate_trait]
    impl InternalImpl of InternalTrait {
        /// Makes the configured re-entering call, once.
        fn _reenter(ref self: ContractState) {
            let target = self.reentry_target.read();
            if target.is_zero() || self.reentering.read() {
                return;
            }
            self.reentering.write(true);
            let len = self.reentry_len.read();
            let mut calldata = ArrayTrait::new();
            let mut i: u32 = 0;
            loop {
                if i == len {
                    break;
                }
                calldata.append(self.reentry_calldata.read(i));
                i += 1;
            };
            call_contract_syscall(target, self.reentry_selector.read(), calldata.span())
                .unwrap_syscall();
            self.reentering.write(false);
        }

        fn _transfer(
            ref self: ContractState,
            sender: ContractAddress,
            recipient: ContractAddress,
            amount: u256
        ) {
            assert(!sender.is_zero(), errors::TRANSFER_FROM_ZERO);
            assert(!recipient.is_zero(), errors::TRANSFER_TO_ZERO);
            let sender_balance = self.balances.read(sender);
            assert(sender_balance >= amount, errors::INSUFFICIENT_BALANCE);
            self.balances.write(sender, sender_balance - amount);
            self.balances.write(recipient, self.balances.read(recipient) + amount);
            self.emit(Transfer { from: sender, to: recipient, value: amount });
        }

        fn _burn(ref self: ContractState, owner: ContractAddress, amount: u256) {
            let balance = self.balances.read(owner);
            assert(balance >= amount, errors::INSUFFICIENT_BALANCE);
            self.balances.write(owner, balance - amount);
            self.total_supply.write(self.total_supply.read() - amount);
            self.emit(Transfer { from: owner, to: Zeroable::zero(), value: amount });
        }

        fn _mint(ref self: ContractState, recipient: ContractAddress, amount: u256) {
            assert(!recipient.is_zero(), errors::MINT_TO_ZERO);
            self.total_supply.write(self.total_supply.read() + amount);
            self.balances.write(recipient, self.balances.read(recipient) + amount);
            self.emit(Transfer { from: Zeroable::zero(), to: recipient, value: amount });
        }
    }
}
