//! Per-key token buckets, for the services' rate limits (the coordinator's per client IP, the
//! relayer's per user, per (client, user) and per client IP): a key may make `burst` requests
//! at once and refills at a steady rate.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::Instant;

/// The client an address counts as, for per-client limits: an IPv4 address (also when it
/// comes IPv4-mapped), or an IPv6 address's /64 (one host usually holds a whole /64, and
/// would otherwise be a fresh client per address, each with a full bucket).
pub fn client_group(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

/// The map is first swept for idle keys when it grows to this many, then each time it has
/// doubled since the last sweep (amortized O(1) a request, however many keys stay).
const SWEEP_AT: usize = 10_000;

/// A rate limiter over keys of type `K`.
#[derive(Debug)]
pub struct RateLimiter<K> {
    per_second: f64,
    burst: f64,
    buckets: Mutex<Buckets<K>>,
}

#[derive(Debug)]
struct Buckets<K> {
    /// Tokens left and when they were counted, per key.
    by_key: HashMap<K, (f64, Instant)>,
    /// The size at which the map is next swept.
    sweep_at: usize,
}

impl<K: Eq + Hash + Clone> RateLimiter<K> {
    /// `per_second` requests a second on average, at most `burst` at once (a rate of 0
    /// disables the limit).
    pub fn per_second(per_second: f64, burst: u32) -> Self {
        Self {
            per_second: per_second.max(0.0),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(Buckets {
                by_key: HashMap::new(),
                sweep_at: SWEEP_AT,
            }),
        }
    }

    /// `per_minute` requests a minute on average, at most `burst` at once (0 disables).
    pub fn per_minute(per_minute: u32, burst: u32) -> Self {
        Self::per_second(f64::from(per_minute) / 60.0, burst)
    }

    /// Takes one request's token for `key`; false when the key is over its rate.
    pub fn allow(&self, key: &K) -> bool {
        if self.per_second == 0.0 {
            return true;
        }
        let now = Instant::now();
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.by_key.len() >= buckets.sweep_at {
            // A key idle for as long as its bucket takes to fill up again is forgotten: it
            // would start full anyway, so forgetting it gives it nothing.
            let refill_secs = self.burst / self.per_second;
            buckets
                .by_key
                .retain(|_, (_, last)| now.duration_since(*last).as_secs_f64() < refill_secs);
            buckets.sweep_at = (buckets.by_key.len() * 2).max(SWEEP_AT);
        }
        let (tokens, last) = buckets
            .by_key
            .entry(key.clone())
            .or_insert((self.burst, now));
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

    /// Keys remembered now (for tests and metrics).
    pub fn len(&self) -> usize {
        self.buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .by_key
            .len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_is_its_ipv4_address_or_its_ipv6_slash_64() {
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        assert_eq!(client_group(ip("192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(client_group(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(
            client_group(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            client_group(ip("2001:db8:1:2::1"))
        );
        assert_eq!(client_group(ip("2001:db8:1:2::1")), ip("2001:db8:1:2::"));
        assert_ne!(
            client_group(ip("2001:db8:1:2::1")),
            client_group(ip("2001:db8:1:3::1"))
        );
    }

    #[test]
    fn a_key_gets_its_burst_then_is_refused_and_others_are_not() {
        let limiter = RateLimiter::per_minute(1, 3);
        assert!((0..3).all(|_| limiter.allow(&"a")));
        assert!(!limiter.allow(&"a"), "the burst is spent");
        assert!(limiter.allow(&"b"), "another key has its own bucket");
        let per_ip = RateLimiter::per_second(1.0, 2);
        let a: IpAddr = [10, 0, 0, 1].into();
        assert!(per_ip.allow(&a) && per_ip.allow(&a));
        assert!(!per_ip.allow(&a));
    }

    #[test]
    fn a_zero_rate_disables_the_limit() {
        let limiter = RateLimiter::per_minute(0, 1);
        assert!((0..100).all(|_| limiter.allow(&1)));
    }

    #[test]
    fn the_sweep_forgets_only_keys_whose_bucket_would_be_full_again() {
        // One request a minute, burst 1: a spent key refills only after a minute, so a sweep
        // right now must keep it (forgetting it would hand it a fresh token).
        let limiter = RateLimiter::per_minute(1, 1);
        assert!(limiter.allow(&0u32));
        for key in 1..SWEEP_AT as u32 {
            limiter.allow(&key);
        }
        assert_eq!(limiter.len(), SWEEP_AT);
        assert!(!limiter.allow(&0), "kept through the sweep, still spent");
        // Nothing could be forgotten: every key is still there.
        assert!(limiter.allow(&u32::MAX));
        assert_eq!(limiter.len(), SWEEP_AT + 1);
    }

    #[test]
    fn the_sweep_forgets_keys_whose_bucket_is_full_again() {
        // A billion a second, burst 1: every bucket is full again a nanosecond later, so the
        // sweep at SWEEP_AT keys forgets them all but the one asking.
        let limiter = RateLimiter::per_second(1e9, 1);
        for key in 0..SWEEP_AT as u32 {
            assert!(limiter.allow(&key));
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
        assert!(limiter.allow(&u32::MAX));
        assert_eq!(limiter.len(), 1);
    }
}
