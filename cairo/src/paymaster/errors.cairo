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
const NOT_RELAYER: felt252 = 'PM: caller is not a relayer';
const POLICY_INACTIVE: felt252 = 'PM: policy inactive';
const POLICY_EXPIRED: felt252 = 'PM: policy expired';
const WRONG_OUTSIDE_CALLER: felt252 = 'PM: outside caller not PM';
const NONCE_NOT_SPONSORS: felt252 = 'PM: nonce not for sponsor';
const NO_CALLS: felt252 = 'PM: no calls';
const CALL_NOT_ALLOWED: felt252 = 'PM: call not allowed';
const USER_BLOCKED: felt252 = 'PM: user blocked';
const USER_NOT_ALLOWLISTED: felt252 = 'PM: user not allowlisted';
const RATE_LIMITED: felt252 = 'PM: rate limit reached';
const CHARGE_OVER_MAX: felt252 = 'PM: charge over max';
const DAILY_LIMIT_REACHED: felt252 = 'PM: daily limit reached';
const DEPOSIT_TOO_LOW: felt252 = 'PM: sponsor deposit too low';
const REENTRANT_CALL: felt252 = 'PM: reentrant call';
const UNKNOWN_TIER: felt252 = 'PM: unknown tier';
const TIER_INACTIVE: felt252 = 'PM: tier inactive';
const BAD_TIER_DURATION: felt252 = 'PM: tier duration out of bounds';
const UNKNOWN_RELAYER: felt252 = 'PM: unknown relayer';
const RELAYER_BUDGET_REACHED: felt252 = 'PM: relayer budget reached';
const SPONSOR_BUDGET_REACHED: felt252 = 'PM: sponsor budget reached';
