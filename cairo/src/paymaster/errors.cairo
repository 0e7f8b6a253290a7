//! Every revert string of the Paymaster, in one place; the specification suite matches them
//! exactly. (Governance's own strings are in `common::governance::Errors`.)

const ZERO_AMOUNT: felt252 = 'PM: amount is zero';
const ZERO_ADDRESS: felt252 = 'PM: zero address';
const TRANSFER_FROM_SHORTFALL: felt252 = 'PM: transfer_from shortfall';
const TRANSFER_FAILED: felt252 = 'PM: token transfer failed';
const INSUFFICIENT_DEPOSIT: felt252 = 'PM: insufficient deposit';
