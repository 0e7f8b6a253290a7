//! Every revert string of the CDC Pool, in one place; the specification suite matches them
//! exactly. (Governance's own strings are in `common::governance::Errors`.)

const ZERO_AMOUNT: felt252 = 'POOL: amount is zero';
const ZERO_ADDRESS: felt252 = 'POOL: zero address';
const TRANSFER_FROM_SHORTFALL: felt252 = 'POOL: transfer_from shortfall';
const TRANSFER_FAILED: felt252 = 'POOL: token transfer failed';
const ALREADY_REGISTERED: felt252 = 'POOL: already registered';
const NOT_REGISTERED: felt252 = 'POOL: worker not registered';
const BANNED: felt252 = 'POOL: worker banned';
const ALREADY_BANNED: felt252 = 'POOL: worker already banned';
const ALREADY_DEACTIVATED: felt252 = 'POOL: already deactivated';
const NOT_DEACTIVATED: felt252 = 'POOL: not deactivated';
const INSUFFICIENT_STAKE: felt252 = 'POOL: insufficient stake';
const INSUFFICIENT_DELEGATION: felt252 = 'POOL: insufficient delegation';
const NOTHING_TO_WITHDRAW: felt252 = 'POOL: nothing to withdraw';
const STILL_LOCKED: felt252 = 'POOL: exit window not over';
const SLASH_PENDING: felt252 = 'POOL: slash pending';
const COMMISSION_TOO_HIGH: felt252 = 'POOL: commission too high';
const NOTHING_TO_CLAIM: felt252 = 'POOL: nothing to claim';
const NOT_AUTHORIZED: felt252 = 'POOL: not job manager/slasher';
const BAD_SLASH_BPS: felt252 = 'POOL: slash bps out of bounds';
const UNKNOWN_SLASH: felt252 = 'POOL: unknown slash';
const SLASH_NOT_PENDING: felt252 = 'POOL: slash not pending';
const SLASH_NOT_CHALLENGED: felt252 = 'POOL: slash not challenged';
const NOT_SLASHED_WORKER: felt252 = 'POOL: caller not slashed worker';
const CHALLENGE_CLOSED: felt252 = 'POOL: challenge window closed';
const CHALLENGE_OPEN: felt252 = 'POOL: challenge window open';
const BAD_MIN_STAKE: felt252 = 'POOL: min stake out of bounds';
const BAD_EXIT_WINDOW: felt252 = 'POOL: exit window out of bounds';
const BAD_CHALLENGE_WINDOW: felt252 = 'POOL: challenge window bounds';
const BAD_BOND: felt252 = 'POOL: bond out of bounds';
const BAD_SHARE: felt252 = 'POOL: share out of bounds';
const BAD_LIMIT: felt252 = 'POOL: limit out of bounds';
const TOO_MANY_DELEGATIONS: felt252 = 'POOL: too many delegations';
