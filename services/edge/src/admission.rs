//! New connections per source address: every Engine.IO handshake (a
//! `/socket.io/` request without a `sid`) takes a token from its address's
//! [`TokenBucket`] (`CONNECT_RATE_PER_ADDRESS` per second, bursts of
//! `CONNECT_BURST_PER_ADDRESS`); without one it is refused with `429` before
//! it costs a session or a token check.
//!
//! - The address is the TCP peer, or, behind a balancer that appends the
//!   client's address to a header (`CLIENT_ADDRESS_HEADER`, e.g.
//!   `x-forwarded-for`), the last address in that header: the one the
//!   balancer wrote, which a client cannot forge.
//! - IPv6 addresses count per /64, the block one host is usually given.
//! - The table holds a bucket per address seen in the last seconds: when it
//!   reaches [`TRACKED_MAX`] entries, buckets that have refilled (addresses
//!   that are not connecting now) are forgotten; if all are busy, the oldest
//!   half is, so the table never grows without bound.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use http::HeaderName;
use parking_lot::Mutex;

use crate::bucket::TokenBucket;

/// Most addresses tracked at once.
pub const TRACKED_MAX: usize = 65_536;

/// What a handshake refused for its address says.
pub const ADDRESS_RATE_MESSAGE: &str = "too many new connections from your address, slow down";

/// The per-address limit of new connections.
pub(crate) struct AddressLimiter {
    rate_per_sec: f64,
    burst: f64,
    header: Option<HeaderName>,
    buckets: Mutex<HashMap<IpAddr, (TokenBucket, Instant)>>,
}

impl AddressLimiter {
    /// `rate_per_sec` or `burst` of 0: no limit.
    pub(crate) fn new(rate_per_sec: f64, burst: u32, header: Option<HeaderName>) -> Self {
        Self { rate_per_sec, burst: f64::from(burst), header, buckets: Mutex::new(HashMap::new()) }
    }

    fn enabled(&self) -> bool {
        self.rate_per_sec > 0.0 && self.burst > 0.0
    }

    /// The address a request counts against.
    pub(crate) fn address<B>(&self, request: &http::Request<B>, peer: Option<SocketAddr>) -> Option<IpAddr> {
        if let Some(header) = &self.header {
            let forwarded = request
                .headers()
                .get_all(header)
                .iter()
                .filter_map(|value| value.to_str().ok())
                .flat_map(|value| value.split(','))
                .next_back()
                .and_then(|last| parse_address(last.trim()));
            if forwarded.is_some() {
                return forwarded;
            }
        }
        peer.map(|peer| peer.ip())
    }

    /// Whether a new connection from `address` may go on now.
    pub(crate) fn allow(&self, address: IpAddr, now: Instant) -> bool {
        if !self.enabled() {
            return true;
        }
        let key = key(address);
        let mut buckets = self.buckets.lock();
        if !buckets.contains_key(&key) && buckets.len() >= TRACKED_MAX {
            self.forget_idle(&mut buckets, now);
        }
        let (bucket, seen) =
            buckets.entry(key).or_insert_with(|| (TokenBucket::new(self.rate_per_sec, self.burst, now), now));
        *seen = now;
        bucket.try_take(now)
    }

    fn forget_idle(&self, buckets: &mut HashMap<IpAddr, (TokenBucket, Instant)>, now: Instant) {
        let refill = Duration::from_secs_f64(self.burst / self.rate_per_sec);
        buckets.retain(|_, (_, seen)| now.saturating_duration_since(*seen) < refill);
        if buckets.len() >= TRACKED_MAX {
            let mut seen: Vec<Instant> = buckets.values().map(|(_, seen)| *seen).collect();
            seen.sort_unstable();
            let cut = seen[seen.len() / 2];
            buckets.retain(|_, (_, last)| *last > cut);
        }
    }

    /// Addresses tracked now.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.buckets.lock().len()
    }
}

fn parse_address(text: &str) -> Option<IpAddr> {
    text.parse::<IpAddr>().ok().or_else(|| text.parse::<SocketAddr>().ok().map(|addr| addr.ip()))
}

/// IPv4 as is; IPv6 by its /64 (an IPv4-mapped one as IPv4).
fn key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(forwarded: Option<&str>) -> http::Request<()> {
        let mut builder = http::Request::get("/socket.io/?EIO=4&transport=polling");
        if let Some(value) = forwarded {
            builder = builder.header("x-forwarded-for", value);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn a_burst_then_the_rate() {
        let limiter = AddressLimiter::new(2.0, 3, None);
        let now = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!((0..3).all(|_| limiter.allow(a, now)), "the burst");
        assert!(!limiter.allow(a, now), "past the burst");
        assert!(limiter.allow(b, now), "another address has its own budget");
        assert!(limiter.allow(a, now + Duration::from_millis(500)), "one more after 1/rate");
        assert!(!limiter.allow(a, now + Duration::from_millis(500)));
    }

    #[test]
    fn zero_means_no_limit() {
        let limiter = AddressLimiter::new(0.0, 10, None);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let now = Instant::now();
        assert!((0..1000).all(|_| limiter.allow(a, now)));
        assert_eq!(limiter.tracked(), 0, "nothing is tracked when off");
    }

    #[test]
    fn ipv6_counts_per_64() {
        let limiter = AddressLimiter::new(1.0, 1, None);
        let now = Instant::now();
        assert!(limiter.allow("2001:db8:1:2::1".parse().unwrap(), now));
        assert!(!limiter.allow("2001:db8:1:2:ffff::9".parse().unwrap(), now), "same /64");
        assert!(limiter.allow("2001:db8:1:3::1".parse().unwrap(), now), "another /64");
        assert!(limiter.allow("::ffff:192.0.2.7".parse().unwrap(), now));
        assert!(!limiter.allow("192.0.2.7".parse().unwrap(), now), "mapped IPv4 is the IPv4 address");
    }

    #[test]
    fn the_header_names_the_client_only_when_configured() {
        let peer: SocketAddr = "10.0.0.5:40000".parse().unwrap();
        let plain = AddressLimiter::new(1.0, 1, None);
        assert_eq!(plain.address(&request(Some("203.0.113.9")), Some(peer)), Some(peer.ip()), "a client cannot choose");
        let behind = AddressLimiter::new(1.0, 1, Some(HeaderName::from_static("x-forwarded-for")));
        let forged_then_real = request(Some("198.51.100.1, 203.0.113.9"));
        assert_eq!(behind.address(&forged_then_real, Some(peer)), Some("203.0.113.9".parse().unwrap()), "the last hop");
        assert_eq!(behind.address(&request(None), Some(peer)), Some(peer.ip()), "no header: the peer");
        assert_eq!(behind.address(&request(Some("garbage")), Some(peer)), Some(peer.ip()));
    }

    #[test]
    fn the_table_stays_bounded() {
        let limiter = AddressLimiter::new(1.0, 5, None);
        let now = Instant::now();
        for i in 0..(TRACKED_MAX as u32 + 10) {
            limiter.allow(IpAddr::V4(std::net::Ipv4Addr::from(i)), now);
        }
        assert!(limiter.tracked() <= TRACKED_MAX, "{}", limiter.tracked());
    }
}
