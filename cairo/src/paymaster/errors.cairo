//! Every revert string of the Paymaster, in one place; the specification suite matches them
//! exactly. (Governance's own strings are in `common::governance::Errors`.)

const ZERO_AMOUNT: felt252 = 'PM: amount is zero';
const ZERO_ADDRESS: felt252 = 'PM: zero address';
const TRANSFER_FROM_SHORTFALL: felt252 = 'PM: transfer_from shortfall';
const TRANSFER_FAILED: felt252 = 'PM: token transfer failed';
const INSUFFICIENT_DEPOSIT: felt252 = 'PM: insufficient deposit';
const UNKNOWN_POLICY: felt252 = 'PM: unknown policy';
const NOT_POLICY_SPONSOR: felt252 = 'PM: not the policy sponsor';
const NO_ALLOWED_CALLS: felt252 = 'PM: no allowed calls';
const TOO_MANY_CALLS: felt252 = 'PM: too many allowed calls';
const ZERO_LIMIT: felt252 = 'PM: limit is zero';
const MAX_CHARGE_OVER_LIMIT: felt252 = 'PM: max charge over daily limit';
const BAD_RATE_LIMIT: felt252 = 'PM: rate limit out of bounds';
const EXPIRY_IN_PAST: felt252 = 'PM: expiry not in the future';
