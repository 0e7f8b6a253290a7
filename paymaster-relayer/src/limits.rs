//! Per-key token buckets: a user or a client IP may make `burst` requests at once and
//! `per_minute` a minute on average.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Instant;

/// Keys idle this long are forgotten (their bucket would be full again anyway).
const FORGET_AFTER_SECS: f64 = 600.0;
/// The map is swept for idle keys when it grows past this many.
const SWEEP_AT: usize = 10_000;

/// A rate limiter over keys of type `K`.
#[derive(Debug)]
pub struct RateLimiter<K> {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<K, (f64, Instant)>>,
}

impl<K: Eq + Hash + Clone> RateLimiter<K> {
    /// `per_minute` requests a minute on average, at most `burst` at once (0 disables).
    pub fn new(per_minute: u32, burst: u32) -> Self {
        Self {
            per_second: f64::from(per_minute) / 60.0,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request's token for `key`; false when the key is over its rate.
    pub fn allow(&self, key: &K) -> bool {
        if self.per_second == 0.0 {
            return true;
        }
        let now = Instant::now();
        let mut buckets = match self.buckets.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if buckets.len() >= SWEEP_AT {
            buckets
                .retain(|_, (_, last)| now.duration_since(*last).as_secs_f64() < FORGET_AFTER_SECS);
        }
        let (tokens, last) = buckets.entry(key.clone()).or_insert((self.burst, now));
        *tokens =
            (*tokens + now.duration_since(*last).as_secs_f64() * self.per_second).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gets_its_burst_then_is_refused_and_others_are_not() {
        let limiter = RateLimiter::new(1, 3);
        assert!((0..3).all(|_| limiter.allow(&"a")));
        assert!(!limiter.allow(&"a"));
        assert!(limiter.allow(&"b"));
    }

    #[test]
    fn zero_per_minute_disables_the_limit() {
        let limiter = RateLimiter::new(0, 1);
        assert!((0..100).all(|_| limiter.allow(&1)));
    }
}
