//! Governance shared by JobMgr, CDC Pool and Paymaster: roles granted and revoked by the
//! admin, a two-step admin transfer, pause/unpause by the pauser role, a setup phase ended by
//! `seal`, and one timelock (the upgrade delay) for upgrades, grants of every role but PAUSER,
//! and the hosts' parameter changes.
//!
//! Before `seal` the contract takes no business (`assert_open` refuses it) and the admin wires
//! it freely: grants are instant. After `seal` (irreversible) a grant of any role but PAUSER
//! must be scheduled and waits the delay, and so must every parameter change of the host
//! (`schedule_op` / `take_op`), so users see every change that touches their funds or rights
//! in time to leave. Revoking and pausing stay instant: they only take power away.
//!
//! Cairo 2.1 has no components, so this is a library contract: a host contract keeps the
//! state in its own storage (every variable here is prefixed `Governance_`, so it cannot
//! collide with the host's) and reaches it through
//! `Governance::unsafe_new_contract_state()` and the functions of `InternalImpl`. Events are
//! emitted from the host's address with this contract's event encoding.

/// The roles, as short strings.
const PAUSER_ROLE: felt252 = 'PAUSER';
const COORDINATOR_ROLE: felt252 = 'COORDINATOR';
const ARBITER_ROLE: felt252 = 'ARBITER';
const SLASHER_ROLE: felt252 = 'SLASHER';
/// Held by JobMgr in the CDC Pool: records outcomes, slashes at once after a dispute.
const JOB_MANAGER_ROLE: felt252 = 'JOB_MANAGER';

/// Bounds of the upgrade delay set in a host's constructor: one hour to thirty days.
const MIN_UPGRADE_DELAY: u64 = 3600;
const MAX_UPGRADE_DELAY: u64 = 2592000;
/// How long a scheduled operation stays executable once ready: seven days. A schedule left
/// dormant longer expires, so no grant or change can be kept in reserve.
const OP_GRACE: u64 = 604800;
/// Holds VERIFIER in JobMgr: may contest a completed job's result within its window.
const VERIFIER_ROLE: felt252 = 'VERIFIER';

mod Errors {
    const NOT_ADMIN: felt252 = 'GOV: caller is not admin';
    const MISSING_ROLE: felt252 = 'GOV: caller is missing role';
    const ZERO_ADDRESS: felt252 = 'GOV: zero address';
    const NOT_PENDING_ADMIN: felt252 = 'GOV: caller not pending admin';
    const PAUSED: felt252 = 'GOV: paused';
    const NOT_PAUSED: felt252 = 'GOV: not paused';
    const DELAY_OUT_OF_BOUNDS: felt252 = 'GOV: delay out of bounds';
    const ZERO_CLASS_HASH: felt252 = 'GOV: zero class hash';
    const UPGRADE_PENDING: felt252 = 'GOV: upgrade already pending';
    const NO_UPGRADE_PENDING: felt252 = 'GOV: no upgrade pending';
    const UPGRADE_NOT_READY: felt252 = 'GOV: upgrade delay not passed';
    const NOT_SEALED: felt252 = 'GOV: not sealed';
    const ALREADY_SEALED: felt252 = 'GOV: already sealed';
    const NOT_SCHEDULED: felt252 = 'GOV: not scheduled';
    const TIMELOCK_NOT_PASSED: felt252 = 'GOV: timelock not passed';
    const OPERATION_EXPIRED: felt252 = 'GOV: operation expired';
    const SCHEDULED_BEFORE_SEAL: felt252 = 'GOV: scheduled before seal';
}

use starknet::{ClassHash, ContractAddress};

/// The governance functions every CIRO contract exposes.
#[starknet::interface]
trait IGovernance<TContractState> {
    /// The current admin.
    fn admin(self: @TContractState) -> ContractAddress;
    /// The address an admin transfer waits on, or zero.
    fn pending_admin(self: @TContractState) -> ContractAddress;
    /// Whether `account` holds `role`.
    fn has_role(self: @TContractState, role: felt252, account: ContractAddress) -> bool;
    /// Gives `role` to `account`. Requires: caller is admin, account not zero; once sealed,
    /// for every role but PAUSER, a grant scheduled after the seal with `schedule_role_grant`
    /// whose delay has passed at most seven days ago (the schedule is consumed). Emits `RoleGranted` (only when the account did
    /// not hold the role).
    fn grant_role(ref self: TContractState, role: felt252, account: ContractAddress);
    /// Schedules a grant of `role` to `account`, executable by `grant_role` after the delay
    /// (a second schedule restarts it). Requires: caller is admin, account not zero.
    /// Emits `RoleGrantScheduled`.
    fn schedule_role_grant(ref self: TContractState, role: felt252, account: ContractAddress);
    /// Drops a scheduled grant. Requires: caller is admin, the grant scheduled.
    /// Emits `RoleGrantCancelled`.
    fn cancel_role_grant(ref self: TContractState, role: felt252, account: ContractAddress);
    /// When a scheduled grant of `role` to `account` may run, or 0 when none is scheduled.
    fn role_grant_ready_at(self: @TContractState, role: felt252, account: ContractAddress) -> u64;
    /// Whether the setup phase is over (business open, changes timelocked).
    fn is_sealed(self: @TContractState) -> bool;
    /// Ends the setup phase for good. Requires: caller is admin, not sealed. Emits `Sealed`.
    fn seal(ref self: TContractState);
    /// Takes `role` from `account`. Requires: caller is admin.
    /// Emits `RoleRevoked` (only when the account held the role).
    fn revoke_role(ref self: TContractState, role: felt252, account: ContractAddress);
    /// Starts handing the admin role to `new_admin`, who must accept it.
    /// Requires: caller is admin, new admin not zero. Emits `AdminTransferStarted`.
    fn transfer_admin(ref self: TContractState, new_admin: ContractAddress);
    /// Completes an admin transfer. Requires: caller is the pending admin.
    /// Emits `AdminTransferred`.
    fn accept_admin(ref self: TContractState);
    /// Whether new business is stopped.
    fn is_paused(self: @TContractState) -> bool;
    /// Stops new business (exits and withdrawals keep working).
    /// Requires: caller holds PAUSER, not paused. Emits `Paused`.
    fn pause(ref self: TContractState);
    /// Resumes business. Requires: caller holds PAUSER, paused. Emits `Unpaused`.
    fn unpause(ref self: TContractState);
    /// The upgrade delay (seconds), the pending class hash (zero if none) and when it may run.
    fn upgrade_status(self: @TContractState) -> (u64, ClassHash, u64);
    /// Schedules a replacement of the contract's class, executable after the delay.
    /// Requires: caller is admin, class hash not zero, nothing pending.
    /// Emits `UpgradeScheduled`.
    fn schedule_upgrade(ref self: TContractState, class_hash: ClassHash);
    /// Drops the pending upgrade. Requires: caller is admin, an upgrade pending.
    /// Emits `UpgradeCancelled`.
    fn cancel_upgrade(ref self: TContractState);
    /// Replaces the class with the pending one. Requires: caller is admin, an upgrade
    /// pending, its delay passed, not more than 7 days ago (an upgrade kept in reserve
    /// expires: cancel it and schedule again), and, once sealed, scheduled after the seal.
    /// Emits `Upgraded`.
    fn execute_upgrade(ref self: TContractState);
}

#[starknet::contract]
mod Governance {
    use starknet::{ClassHash, ContractAddress, get_block_timestamp, get_caller_address};
    use starknet::syscalls::replace_class_syscall;
    use zeroable::Zeroable;
    use hash::LegacyHash;
    use super::{Errors, MIN_UPGRADE_DELAY, MAX_UPGRADE_DELAY, OP_GRACE, PAUSER_ROLE};

    #[storage]
    struct Storage {
        /// The admin: grants and revokes roles, schedules upgrades.
        Governance_admin: ContractAddress,
        /// The admin-to-be during a two-step transfer, else zero.
        Governance_pending_admin: ContractAddress,
        /// Whether (role, account) is granted.
        Governance_roles: LegacyMap<(felt252, ContractAddress), bool>,
        /// Whether new business is stopped.
        Governance_paused: bool,
        /// Seconds between scheduling and executing an upgrade (bounded at construction).
        Governance_upgrade_delay: u64,
        /// The class an upgrade will install, or zero.
        Governance_pending_class: ClassHash,
        /// When the pending upgrade may run.
        Governance_upgrade_ready_at: u64,
        /// Whether the setup phase is over, and when it ended.
        Governance_sealed: bool,
        Governance_sealed_at: u64,
        /// When each scheduled operation (a role grant, a host's parameter change) may run,
        /// by operation key; 0 when none is scheduled.
        Governance_ops: LegacyMap<felt252, u64>,
    }

    #[event]
    #[derive(Drop, starknet::Event)]
    enum Event {
        RoleGranted: RoleGranted,
        RoleRevoked: RoleRevoked,
        AdminTransferStarted: AdminTransferStarted,
        AdminTransferred: AdminTransferred,
        Paused: Paused,
        Unpaused: Unpaused,
        UpgradeScheduled: UpgradeScheduled,
        UpgradeCancelled: UpgradeCancelled,
        Upgraded: Upgraded,
        Sealed: Sealed,
        RoleGrantScheduled: RoleGrantScheduled,
        RoleGrantCancelled: RoleGrantCancelled,
    }

    /// The setup phase ended: business is open and changes are timelocked from now on.
    #[derive(Drop, starknet::Event)]
    struct Sealed {
        #[key]
        account: ContractAddress,
    }

    #[derive(Drop, starknet::Event)]
    struct RoleGrantScheduled {
        #[key]
        role: felt252,
        #[key]
        account: ContractAddress,
        ready_at: u64,
    }

    #[derive(Drop, starknet::Event)]
    struct RoleGrantCancelled {
        #[key]
        role: felt252,
        #[key]
        account: ContractAddress,
    }

    #[derive(Drop, starknet::Event)]
    struct RoleGranted {
        #[key]
        role: felt252,
        #[key]
        account: ContractAddress,
        sender: ContractAddress,
    }

    #[derive(Drop, starknet::Event)]
    struct RoleRevoked {
        #[key]
        role: felt252,
        #[key]
        account: ContractAddress,
        sender: ContractAddress,
    }

    #[derive(Drop, starknet::Event)]
    struct AdminTransferStarted {
        #[key]
        previous_admin: ContractAddress,
        #[key]
        new_admin: ContractAddress,
    }

    #[derive(Drop, starknet::Event)]
    struct AdminTransferred {
        #[key]
        previous_admin: ContractAddress,
        #[key]
        new_admin: ContractAddress,
    }

    #[derive(Drop, starknet::Event)]
    struct Paused {
        #[key]
        account: ContractAddress,
    }

    #[derive(Drop, starknet::Event)]
    struct Unpaused {
        #[key]
        account: ContractAddress,
    }

    #[derive(Drop, starknet::Event)]
    struct UpgradeScheduled {
        #[key]
        class_hash: ClassHash,
        ready_at: u64,
    }

    #[derive(Drop, starknet::Event)]
    struct UpgradeCancelled {
        #[key]
        class_hash: ClassHash,
    }

    #[derive(Drop, starknet::Event)]
    struct Upgraded {
        #[key]
        class_hash: ClassHash,
    }

    #[generate_trait]
    impl InternalImpl of InternalTrait {
        /// Sets the admin and the upgrade delay; called once, from the host's constructor.
        fn initialize(ref self: ContractState, admin: ContractAddress, upgrade_delay: u64) {
            assert(!admin.is_zero(), Errors::ZERO_ADDRESS);
            assert(
                upgrade_delay >= MIN_UPGRADE_DELAY && upgrade_delay <= MAX_UPGRADE_DELAY,
                Errors::DELAY_OUT_OF_BOUNDS
            );
            self.Governance_admin.write(admin);
            self.Governance_upgrade_delay.write(upgrade_delay);
            self.emit(AdminTransferred { previous_admin: Zeroable::zero(), new_admin: admin });
        }

        fn admin(self: @ContractState) -> ContractAddress {
            self.Governance_admin.read()
        }

        fn pending_admin(self: @ContractState) -> ContractAddress {
            self.Governance_pending_admin.read()
        }

        fn assert_admin(self: @ContractState) {
            assert(get_caller_address() == self.Governance_admin.read(), Errors::NOT_ADMIN);
        }

        fn has_role(self: @ContractState, role: felt252, account: ContractAddress) -> bool {
            self.Governance_roles.read((role, account))
        }

        fn assert_role(self: @ContractState, role: felt252) {
            assert(self.Governance_roles.read((role, get_caller_address())), Errors::MISSING_ROLE);
        }

        fn grant_role(ref self: ContractState, role: felt252, account: ContractAddress) {
            self.assert_admin();
            assert(!account.is_zero(), Errors::ZERO_ADDRESS);
            if self.Governance_sealed.read() && role != PAUSER_ROLE {
                self.take_op(grant_key(role, account));
            }
            if !self.Governance_roles.read((role, account)) {
                self.Governance_roles.write((role, account), true);
                self.emit(RoleGranted { role, account, sender: get_caller_address() });
            }
        }

        fn schedule_role_grant(ref self: ContractState, role: felt252, account: ContractAddress) {
            self.assert_admin();
            assert(!account.is_zero(), Errors::ZERO_ADDRESS);
            let ready_at = self.schedule_op(grant_key(role, account));
            self.emit(RoleGrantScheduled { role, account, ready_at });
        }

        fn cancel_role_grant(ref self: ContractState, role: felt252, account: ContractAddress) {
            self.assert_admin();
            self.cancel_op(grant_key(role, account));
            self.emit(RoleGrantCancelled { role, account });
        }

        fn role_grant_ready_at(
            self: @ContractState, role: felt252, account: ContractAddress
        ) -> u64 {
            self.Governance_ops.read(grant_key(role, account))
        }

        fn is_sealed(self: @ContractState) -> bool {
            self.Governance_sealed.read()
        }

        fn seal(ref self: ContractState) {
            self.assert_admin();
            assert(!self.Governance_sealed.read(), Errors::ALREADY_SEALED);
            self.Governance_sealed.write(true);
            self.Governance_sealed_at.write(get_block_timestamp());
            self.emit(Sealed { account: get_caller_address() });
        }

        /// Every entry point of new business starts with this: sealed and not paused.
        fn assert_open(self: @ContractState) {
            assert(self.Governance_sealed.read(), Errors::NOT_SEALED);
            assert(!self.Governance_paused.read(), Errors::PAUSED);
        }

        /// Schedules operation `key` after the delay (restarting it if scheduled); returns
        /// when it may run. The caller checks who may schedule.
        fn schedule_op(ref self: ContractState, key: felt252) -> u64 {
            let ready_at = get_block_timestamp() + self.Governance_upgrade_delay.read();
            self.Governance_ops.write(key, ready_at);
            ready_at
        }

        /// Consumes scheduled operation `key`. Requires: scheduled, its delay passed, not more
        /// than `OP_GRACE` ago, and, once sealed, scheduled after the seal (a schedule made in
        /// the setup phase never carries over).
        fn take_op(ref self: ContractState, key: felt252) {
            let ready_at = self.Governance_ops.read(key);
            assert(ready_at != 0, Errors::NOT_SCHEDULED);
            assert(get_block_timestamp() >= ready_at, Errors::TIMELOCK_NOT_PASSED);
            self.assert_fresh(ready_at);
            self.Governance_ops.write(key, 0);
        }

        /// Requires a ready operation's schedule (ready at `ready_at`) to be still valid: not
        /// more than `OP_GRACE` past, and, once sealed, made after the seal (a schedule made in
        /// the setup phase never carries over).
        fn assert_fresh(self: @ContractState, ready_at: u64) {
            assert(get_block_timestamp() <= ready_at + OP_GRACE, Errors::OPERATION_EXPIRED);
            if self.Governance_sealed.read() {
                assert(
                    ready_at >= self.Governance_sealed_at.read()
                        + self.Governance_upgrade_delay.read(),
                    Errors::SCHEDULED_BEFORE_SEAL
                );
            }
        }

        /// Drops scheduled operation `key`. Requires: scheduled.
        fn cancel_op(ref self: ContractState, key: felt252) {
            assert(self.Governance_ops.read(key) != 0, Errors::NOT_SCHEDULED);
            self.Governance_ops.write(key, 0);
        }

        /// When operation `key` may run, or 0.
        fn op_ready_at(self: @ContractState, key: felt252) -> u64 {
            self.Governance_ops.read(key)
        }

        fn revoke_role(ref self: ContractState, role: felt252, account: ContractAddress) {
            self.assert_admin();
            if self.Governance_roles.read((role, account)) {
                self.Governance_roles.write((role, account), false);
                self.emit(RoleRevoked { role, account, sender: get_caller_address() });
            }
        }

        fn transfer_admin(ref self: ContractState, new_admin: ContractAddress) {
            self.assert_admin();
            assert(!new_admin.is_zero(), Errors::ZERO_ADDRESS);
            self.Governance_pending_admin.write(new_admin);
            self
                .emit(
                    AdminTransferStarted { previous_admin: self.Governance_admin.read(), new_admin }
                );
        }

        fn accept_admin(ref self: ContractState) {
            let caller = get_caller_address();
            let pending = self.Governance_pending_admin.read();
            assert(!pending.is_zero() && caller == pending, Errors::NOT_PENDING_ADMIN);
            let previous_admin = self.Governance_admin.read();
            self.Governance_admin.write(caller);
            self.Governance_pending_admin.write(Zeroable::zero());
            self.emit(AdminTransferred { previous_admin, new_admin: caller });
        }

        fn is_paused(self: @ContractState) -> bool {
            self.Governance_paused.read()
        }

        fn pause(ref self: ContractState) {
            self.assert_role(PAUSER_ROLE);
            assert(!self.Governance_paused.read(), Errors::PAUSED);
            self.Governance_paused.write(true);
            self.emit(Paused { account: get_caller_address() });
        }

        fn unpause(ref self: ContractState) {
            self.assert_role(PAUSER_ROLE);
            assert(self.Governance_paused.read(), Errors::NOT_PAUSED);
            self.Governance_paused.write(false);
            self.emit(Unpaused { account: get_caller_address() });
        }

        fn upgrade_status(self: @ContractState) -> (u64, ClassHash, u64) {
            (
                self.Governance_upgrade_delay.read(),
                self.Governance_pending_class.read(),
                self.Governance_upgrade_ready_at.read()
            )
        }

        fn schedule_upgrade(ref self: ContractState, class_hash: ClassHash) {
            self.assert_admin();
            assert(!class_hash.is_zero(), Errors::ZERO_CLASS_HASH);
            assert(self.Governance_pending_class.read().is_zero(), Errors::UPGRADE_PENDING);
            let ready_at = get_block_timestamp() + self.Governance_upgrade_delay.read();
            self.Governance_pending_class.write(class_hash);
            self.Governance_upgrade_ready_at.write(ready_at);
            self.emit(UpgradeScheduled { class_hash, ready_at });
        }

        fn cancel_upgrade(ref self: ContractState) {
            self.assert_admin();
            let class_hash = self.Governance_pending_class.read();
            assert(!class_hash.is_zero(), Errors::NO_UPGRADE_PENDING);
            self.Governance_pending_class.write(Zeroable::zero());
            self.Governance_upgrade_ready_at.write(0);
            self.emit(UpgradeCancelled { class_hash });
        }

        fn execute_upgrade(ref self: ContractState) {
            self.assert_admin();
            let class_hash = self.Governance_pending_class.read();
            assert(!class_hash.is_zero(), Errors::NO_UPGRADE_PENDING);
            let ready_at = self.Governance_upgrade_ready_at.read();
            assert(get_block_timestamp() >= ready_at, Errors::UPGRADE_NOT_READY);
            // As for every scheduled operation (`take_op`): no upgrade kept in reserve past its
            // grace, and none scheduled in the setup phase carried over the seal.
            self.assert_fresh(ready_at);
            // Effects before the class changes under us.
            self.Governance_pending_class.write(Zeroable::zero());
            self.Governance_upgrade_ready_at.write(0);
            self.emit(Upgraded { class_hash });
            replace_class_syscall(class_hash).unwrap_syscall();
        }
    }

    /// The operation key of a grant of `role` to `account`.
    fn grant_key(role: felt252, account: ContractAddress) -> felt252 {
        LegacyHash::<(felt252, ContractAddress)>::hash('GRANT', (role, account))
    }
}
