//! Every revert string of `TestToken`, in one place; the specification suite matches them
//! exactly.

const INSUFFICIENT_BALANCE: felt252 = 'ERC20: insufficient balance';
const INSUFFICIENT_ALLOWANCE: felt252 = 'ERC20: insufficient allowance';
const TRANSFER_FROM_ZERO: felt252 = 'ERC20: transfer from 0';
const TRANSFER_TO_ZERO: felt252 = 'ERC20: transfer to 0';
const APPROVE_FROM_ZERO: felt252 = 'ERC20: approve from 0';
const APPROVE_TO_ZERO: felt252 = 'ERC20: approve to 0';
const MINT_TO_ZERO: felt252 = 'ERC20: mint to 0';
