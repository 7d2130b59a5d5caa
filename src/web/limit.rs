//! Login throttling that an unauthenticated client cannot turn into memory
//! growth or a lock-out of someone else.
//!
//! Failures, not attempts, count, per client network (an IPv4 address, an
//! IPv6 /64) and per (user name, client network). After `free` failures a
//! key backs off exponentially (1 s, 2 s, 4 s… at most 15 min) instead of a
//! hard lock, and a failure older than an hour is forgotten. A correct
//! password from another network is therefore never refused because of
//! someone else's guesses; guessing from many networks at once is bounded
//! by each network's back-off and by the bounded number of concurrent
//! password verifications (see `Auth`).
//!
//! Keys are keyed hashes (never the submitted name), and the table holds at
//! most `cap` entries: when full, forgotten entries go first, then the
//! least recently failed.

use std::collections::HashMap;
use std::hash::Hasher;
use std::net::IpAddr;
use std::sync::Mutex;

use ipnet::IpNet;

const FORGET_MS: i64 = 3_600_000;
const MAX_BACKOFF_MS: i64 = 15 * 60_000;

#[derive(Clone, Copy, Debug)]
struct Entry {
    failures: u32,
    blocked_until_ms: i64,
    last_ms: i64,
}

pub struct LoginLimiter {
    free: u32,
    cap: usize,
    key: [u8; 16],
    table: Mutex<HashMap<u64, Entry>>,
}

impl LoginLimiter {
    pub fn new(free: u32, cap: usize) -> LoginLimiter {
        LoginLimiter {
            free,
            cap: cap.max(1),
            key: rand::random(),
            table: Mutex::new(HashMap::new()),
        }
    }

    /// The key of a client network.
    pub fn network(&self, ip: IpAddr) -> u64 {
        self.hash(&["net", &network_of(ip)])
    }

    /// The key of a user name tried from a client network.
    pub fn user_at(&self, name: &str, ip: IpAddr) -> u64 {
        self.hash(&["user", &name.to_lowercase(), &network_of(ip)])
    }

    fn hash(&self, parts: &[&str]) -> u64 {
        let mut h = siphasher::sip::SipHasher24::new_with_key(&self.key);
        for p in parts {
            h.write(p.as_bytes());
            h.write_u8(0);
        }
        h.finish()
    }

    /// Milliseconds before `key` may try again (0: now).
    pub fn wait_ms(&self, key: u64, now_ms: i64) -> i64 {
        let t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        t.get(&key)
            .map_or(0, |e| (e.blocked_until_ms - now_ms).max(0))
    }

    /// Count a failed login for `key`.
    pub fn failed(&self, key: u64, now_ms: i64) {
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if t.len() >= self.cap && !t.contains_key(&key) {
            t.retain(|_, e| now_ms - e.last_ms < FORGET_MS);
            if t.len() >= self.cap
                && let Some(oldest) = t.iter().min_by_key(|(_, e)| e.last_ms).map(|(k, _)| *k)
            {
                t.remove(&oldest);
            }
        }
        let e = t.entry(key).or_insert(Entry {
            failures: 0,
            blocked_until_ms: 0,
            last_ms: now_ms,
        });
        if now_ms - e.last_ms >= FORGET_MS {
            e.failures = 0;
        }
        e.failures = e.failures.saturating_add(1);
        e.last_ms = now_ms;
        if e.failures > self.free {
            let doublings = (e.failures - self.free - 1).min(20);
            e.blocked_until_ms = now_ms + (1000i64 << doublings).min(MAX_BACKOFF_MS);
        }
    }

    /// Forget `key`'s failures (after a correct password).
    pub fn succeeded(&self, key: u64) {
        self.table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
    }

    pub fn len(&self) -> usize {
        self.table.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An IPv4 address, or an IPv6 address's /64 (one subscriber's network).
fn network_of(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => IpNet::new(IpAddr::V6(v6), 64)
                .map(|n| n.trunc().to_string())
                .unwrap_or_else(|_| v6.to_string()),
        },
    }
}

/// The client's address: the peer, or, when the peer is one of
/// `trusted` (the reverse proxy in front of the dashboard), the right-most
/// `X-Forwarded-For` entry that is not a trusted proxy.
pub fn client_ip(peer: IpAddr, xff: Option<&str>, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<IpAddr> = xff
        .unwrap_or("")
        .split(',')
        .filter_map(|h| crate::decode::parse_ip_loose(h.trim()))
        .collect();
    hops.iter()
        .rev()
        .find(|ip| !is_trusted(ip))
        .copied()
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn failures_back_off_exponentially_and_success_forgets_them() {
        let l = LoginLimiter::new(3, 100);
        let k = l.user_at("Ana", ip("198.51.100.7"));
        assert_eq!(k, l.user_at("ana", ip("198.51.100.7")), "names ignore case");
        for _ in 0..3 {
            l.failed(k, 0);
        }
        assert_eq!(l.wait_ms(k, 0), 0, "the free failures");
        l.failed(k, 0);
        assert_eq!(l.wait_ms(k, 0), 1000);
        l.failed(k, 1000);
        assert_eq!(l.wait_ms(k, 1000), 2000);
        for i in 0..30 {
            l.failed(k, 2000 + i);
        }
        assert_eq!(l.wait_ms(k, 2029), MAX_BACKOFF_MS, "capped, never a lock");
        assert_eq!(l.wait_ms(k, 2029 + MAX_BACKOFF_MS), 0);
        l.succeeded(k);
        assert_eq!(l.wait_ms(k, 3000), 0);
        // An hour later old failures are forgotten.
        let k2 = l.network(ip("203.0.113.1"));
        for _ in 0..10 {
            l.failed(k2, 0);
        }
        l.failed(k2, FORGET_MS);
        assert_eq!(l.wait_ms(k2, FORGET_MS), 0);
    }

    /// Issue 14, point 4: unauthenticated requests cannot grow the table.
    #[test]
    fn the_table_is_bounded_whatever_is_sent() {
        let l = LoginLimiter::new(5, 1000);
        for i in 0..20_000u32 {
            let name = format!("{i}{}", "x".repeat(64));
            l.failed(l.user_at(&name, ip("198.51.100.7")), i64::from(i));
        }
        assert!(l.len() <= 1000, "{}", l.len());
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        let l = LoginLimiter::new(5, 10);
        assert_eq!(
            l.network(ip("2001:db8:1:2::1")),
            l.network(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            l.network(ip("2001:db8:1:2::1")),
            l.network(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            l.network(ip("::ffff:192.0.2.1")),
            l.network(ip("192.0.2.1"))
        );
    }

    #[test]
    fn the_client_is_behind_a_trusted_proxy_only() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let xff = Some("203.0.113.9, 198.51.100.7, 10.0.0.2");
        assert_eq!(client_ip(ip("10.0.0.1"), xff, &trusted), ip("198.51.100.7"));
        assert_eq!(
            client_ip(ip("192.0.2.1"), xff, &trusted),
            ip("192.0.2.1"),
            "an untrusted peer's header is ignored"
        );
        assert_eq!(client_ip(ip("10.0.0.1"), None, &trusted), ip("10.0.0.1"));
        assert_eq!(client_ip(ip("10.0.0.1"), xff, &[]), ip("10.0.0.1"));
    }
}
