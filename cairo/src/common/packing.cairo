//! Packing several small fields into one storage slot (a felt252 holds a u256 whose high half
//! is below 2^123). Every packed type keeps its fields within 64-bit lanes of the low and high
//! halves, so packing is exact and unpacking inverts it.

use traits::{Into, TryInto};
use option::OptionTrait;

const TWO_POW_32: u128 = 0x100000000;
const TWO_POW_64: u128 = 0x10000000000000000;
const TWO_POW_96: u128 = 0x1000000000000000000000000;

/// The felt holding `high * 2^128 + low`. Requires: high < 2^123 (every caller's high half
/// holds at most 83 bits).
fn to_felt(low: u128, high: u128) -> felt252 {
    let value = u256 { low, high };
    value.try_into().unwrap()
}

/// The two halves of a packed felt.
fn halves(value: felt252) -> (u128, u128) {
    let value: u256 = value.into();
    (value.low, value.high)
}

/// `a` in the low 64 bits, `b` in the high 64.
fn join64(a: u64, b: u64) -> u128 {
    a.into() + b.into() * TWO_POW_64
}

fn low64(value: u128) -> u64 {
    (value % TWO_POW_64).try_into().unwrap()
}

fn high64(value: u128) -> u64 {
    (value / TWO_POW_64).try_into().unwrap()
}

/// Four u32 lanes, `a` lowest.
fn join32(a: u32, b: u32, c: u32, d: u32) -> u128 {
    a.into() + b.into() * TWO_POW_32 + c.into() * TWO_POW_64 + d.into() * TWO_POW_96
}

/// Lane `index` (0 to 3) of four u32 lanes.
fn lane32(value: u128, index: u32) -> u32 {
    let shifted = if index == 0 {
        value
    } else if index == 1 {
        value / TWO_POW_32
    } else if index == 2 {
        value / TWO_POW_64
    } else {
        value / TWO_POW_96
    };
    (shifted % TWO_POW_32).try_into().unwrap()
}
