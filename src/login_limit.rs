//! Guessing is slow: failed logins (a wrong password or token, a bad signed link) are counted
//! per client address, and an address with [`MAX_FAILURES`] in the last [`WINDOW`] gets `429`
//! with `Retry-After` until the oldest of them is a minute old. The user is never locked out:
//! the same login from another address goes straight in, and a right login from the guessing
//! address is refused only while that address is cooling down.
//!
//! IPv6 addresses count by their /64, the block one host is given: otherwise a host walks
//! through its 2^64 addresses and is never slowed. Behind a reverse proxy every request comes
//! from the proxy's address; the proxy is then the place to limit (docs/access.md).
//!
//! Sans-IO: the time is an argument. At most [`MAX_ADDRESSES`] addresses are remembered (the
//! one that failed least recently is forgotten first), so a flood of addresses costs bounded
//! memory.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failures an address may have in a [`WINDOW`] before it waits.
pub const MAX_FAILURES: usize = 5;
pub const WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at once.
pub const MAX_ADDRESSES: usize = 4096;

/// The failures of each address; owned by the HTTP side, one for the relay.
#[derive(Debug, Default)]
pub struct Limiter {
    /// The times of each address's failures in the window, oldest first, at most
    /// [`MAX_FAILURES`].
    by_addr: HashMap<IpAddr, Vec<Instant>>,
    /// Requests answered 429 since the last [`Limiter::take_refused`].
    refused: u64,
}

/// The key an address counts under: itself, or its /64 for IPv6.
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

impl Limiter {
    /// `Err(wait)` if `ip` must wait before it may try again.
    pub fn check(&mut self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let Some(times) = self.by_addr.get_mut(&key(ip)) else {
            return Ok(());
        };
        times.retain(|t| now.saturating_duration_since(*t) < WINDOW);
        if times.len() >= MAX_FAILURES {
            self.refused += 1;
            let oldest = times.first().copied().unwrap_or(now);
            return Err(WINDOW.saturating_sub(now.saturating_duration_since(oldest)));
        }
        Ok(())
    }

    /// Counts one failed login from `ip`.
    pub fn failed(&mut self, ip: IpAddr, now: Instant) {
        let k = key(ip);
        if !self.by_addr.contains_key(&k) && self.by_addr.len() >= MAX_ADDRESSES {
            self.forget_one(now);
        }
        let times = self.by_addr.entry(k).or_default();
        times.retain(|t| now.saturating_duration_since(*t) < WINDOW);
        if times.len() >= MAX_FAILURES {
            times.remove(0);
        }
        times.push(now);
    }

    /// Requests refused with 429 since the last call (for the once-a-minute log line).
    pub fn take_refused(&mut self) -> u64 {
        std::mem::take(&mut self.refused)
    }

    /// Forgets the addresses whose failures are all out of the window, or if none, the one
    /// whose last failure is oldest.
    fn forget_one(&mut self, now: Instant) {
        self.by_addr.retain(|_, t| {
            t.last()
                .is_some_and(|l| now.saturating_duration_since(*l) < WINDOW)
        });
        if self.by_addr.len() >= MAX_ADDRESSES {
            if let Some(k) = self
                .by_addr
                .iter()
                .min_by_key(|(_, t)| t.last().copied())
                .map(|(k, _)| *k)
            {
                self.by_addr.remove(&k);
            }
        }
    }

    pub fn addresses(&self) -> usize {
        self.by_addr.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn five_failures_then_a_wait_until_the_oldest_is_a_minute_old() {
        let mut l = Limiter::default();
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        for i in 0..MAX_FAILURES {
            assert_eq!(l.check(a, t0), Ok(()), "failure {i}");
            l.failed(a, t0 + Duration::from_secs(i as u64));
        }
        let wait = l.check(a, t0 + Duration::from_secs(10)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(50));
        // Another address is not affected: no lock-out of the user from elsewhere.
        assert_eq!(l.check(ip("192.0.2.2"), t0), Ok(()));
        // A minute after the first failure, one more try.
        assert_eq!(l.check(a, t0 + Duration::from_secs(60)), Ok(()));
        assert_eq!(l.take_refused(), 1);
    }

    #[test]
    fn at_most_five_attempts_a_minute_get_through_a_steady_guesser() {
        // One guess a second for ten minutes: the control is the count without the limiter
        // (600), the bound is 5 per minute.
        let mut l = Limiter::default();
        let t0 = Instant::now();
        let a = ip("198.51.100.7");
        let mut through = 0;
        for s in 0..600 {
            let now = t0 + Duration::from_secs(s);
            if l.check(a, now).is_ok() {
                through += 1;
                l.failed(a, now);
            }
        }
        // Exactly 5 in each minute: at 0–4 s, at 60–64 s, ...
        assert_eq!(through, 5 * 10);
    }

    #[test]
    fn ipv6_counts_by_its_64() {
        let mut l = Limiter::default();
        let t0 = Instant::now();
        for i in 0..MAX_FAILURES {
            l.failed(ip(&format!("2001:db8:1:2::{i:x}")), t0);
        }
        assert!(l.check(ip("2001:db8:1:2::ffff"), t0).is_err());
        assert!(l.check(ip("2001:db8:1:3::1"), t0).is_ok());
        // An IPv4-mapped address is the IPv4 address.
        for _ in 0..MAX_FAILURES {
            l.failed(ip("::ffff:192.0.2.9"), t0);
        }
        assert!(l.check(ip("192.0.2.9"), t0).is_err());
    }

    #[test]
    fn memory_is_bounded() {
        let mut l = Limiter::default();
        let t0 = Instant::now();
        for i in 0..(MAX_ADDRESSES as u32 * 3) {
            l.failed(
                IpAddr::V4(i.into()),
                t0 + Duration::from_millis(u64::from(i)),
            );
        }
        assert!(l.addresses() <= MAX_ADDRESSES);
    }
}
