//! Delivery discipline, pure (time and randomness are arguments): backoff
//! with full jitter, `Retry-After`, a circuit breaker per endpoint, and a
//! per-channel rate limit.

use crate::config::DeliveryConfig;

/// Delay before attempt `attempts + 1`: full jitter over an exponential
/// ceiling (`initial × 2^attempts`, capped), never less than the endpoint's
/// `Retry-After`. `jitter` is in `[0, 1)`.
pub fn backoff_ms(
    cfg: &DeliveryConfig,
    attempts: u32,
    jitter: f64,
    retry_after_ms: Option<u64>,
) -> u64 {
    let ceiling = cfg
        .backoff_initial_ms
        .saturating_mul(1u64 << attempts.min(30))
        .min(cfg.backoff_max_ms);
    // Half fixed, half jittered: retries spread out but never collapse to 0.
    let d = ceiling / 2 + ((ceiling / 2) as f64 * jitter.clamp(0.0, 1.0)) as u64;
    d.max(retry_after_ms.unwrap_or(0))
        .min(cfg.backoff_max_ms.max(retry_after_ms.unwrap_or(0)))
}

/// `Retry-After`: delta-seconds or an HTTP date, as milliseconds from `now_ms`.
pub fn parse_retry_after(v: &str, now_ms: i64) -> Option<u64> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(secs.saturating_mul(1000).min(86_400_000));
    }
    let t = httpdate::parse_http_date(v).ok()?;
    let at = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as i64;
    Some((at - now_ms).clamp(0, 86_400_000) as u64)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    /// Calls are held back until the time; then one probe goes through.
    Open {
        until_ms: i64,
    },
    /// A probe is in flight; others wait.
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open { .. } => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// A circuit breaker for one endpoint.
#[derive(Debug, Clone)]
pub struct Breaker {
    pub state: BreakerState,
    pub failures: u32,
    /// How long the next opening lasts (doubles while probes fail).
    open_ms: u64,
}

/// What the breaker says about a call.
#[derive(Debug, PartialEq, Eq)]
pub enum Permit {
    Go,
    /// Go, as the one probe of a half-open breaker.
    Probe,
    /// Hold back until then.
    Wait(i64),
}

/// A breaker transition worth telling people about.
#[derive(Debug, PartialEq, Eq)]
pub enum Transition {
    Opened { until_ms: i64, failures: u32 },
    Closed,
}

impl Breaker {
    pub fn new(cfg: &DeliveryConfig) -> Breaker {
        Breaker {
            state: BreakerState::Closed,
            failures: 0,
            open_ms: cfg.breaker_open_ms,
        }
    }

    pub fn permit(&mut self, now_ms: i64) -> Permit {
        match self.state {
            BreakerState::Closed => Permit::Go,
            BreakerState::Open { until_ms } if now_ms >= until_ms => {
                self.state = BreakerState::HalfOpen;
                Permit::Probe
            }
            BreakerState::Open { until_ms } => Permit::Wait(until_ms),
            BreakerState::HalfOpen => Permit::Wait(now_ms + 1_000),
        }
    }

    pub fn success(&mut self, cfg: &DeliveryConfig) -> Option<Transition> {
        let was_open = self.state != BreakerState::Closed;
        self.state = BreakerState::Closed;
        self.failures = 0;
        self.open_ms = cfg.breaker_open_ms;
        was_open.then_some(Transition::Closed)
    }

    /// A failed call (5xx, 429, timeout, refused). Opens after
    /// `breaker_failures` in a row, or at once when a probe fails.
    pub fn failure(&mut self, cfg: &DeliveryConfig, now_ms: i64) -> Option<Transition> {
        self.failures += 1;
        match self.state {
            BreakerState::HalfOpen => {
                self.open_ms = (self.open_ms * 2).min(cfg.backoff_max_ms.max(cfg.breaker_open_ms));
                let until_ms = now_ms + self.open_ms as i64;
                self.state = BreakerState::Open { until_ms };
                // Re-opening after a failed probe is not news.
                None
            }
            BreakerState::Closed if self.failures >= cfg.breaker_failures.max(1) => {
                let until_ms = now_ms + self.open_ms as i64;
                self.state = BreakerState::Open { until_ms };
                Some(Transition::Opened {
                    until_ms,
                    failures: self.failures,
                })
            }
            _ => None,
        }
    }
}

/// At most `per_minute` sends per wall-clock minute.
#[derive(Debug, Clone)]
pub struct RateLimit {
    per_minute: u32,
    minute: i64,
    used: u32,
}

impl RateLimit {
    pub fn new(per_minute: u32) -> RateLimit {
        RateLimit {
            per_minute,
            minute: i64::MIN,
            used: 0,
        }
    }

    /// `Ok` to send now, or the time the next minute starts.
    pub fn take(&mut self, now_ms: i64) -> Result<(), i64> {
        let m = now_ms.div_euclid(60_000);
        if m != self.minute {
            self.minute = m;
            self.used = 0;
        }
        if self.used < self.per_minute {
            self.used += 1;
            Ok(())
        } else {
            Err((m + 1) * 60_000)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> DeliveryConfig {
        DeliveryConfig {
            backoff_initial_ms: 100,
            backoff_max_ms: 10_000,
            breaker_failures: 3,
            breaker_open_ms: 1_000,
            ..DeliveryConfig::default()
        }
    }

    #[test]
    fn backoff_grows_with_jitter_caps_and_honours_retry_after() {
        let c = cfg();
        assert_eq!(backoff_ms(&c, 0, 0.0, None), 50);
        assert_eq!(backoff_ms(&c, 0, 0.999_999, None), 99);
        assert_eq!(backoff_ms(&c, 3, 0.0, None), 400);
        assert_eq!(backoff_ms(&c, 20, 1.0, None), 10_000, "capped");
        assert_eq!(
            backoff_ms(&c, 0, 0.0, Some(3_000)),
            3_000,
            "Retry-After wins"
        );
        assert_eq!(
            backoff_ms(&c, 0, 0.0, Some(60_000)),
            60_000,
            "even past the cap"
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        assert_eq!(parse_retry_after("7", 0), Some(7_000));
        let now = 1_767_225_600_000; // 2026-01-01T00:00:00Z
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 2026 00:00:30 GMT", now),
            Some(30_000)
        );
        assert_eq!(
            parse_retry_after("Wed, 31 Dec 2025 00:00:00 GMT", now),
            Some(0)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn breaker_opens_after_failures_probes_and_closes() {
        let c = cfg();
        let mut b = Breaker::new(&c);
        assert_eq!(b.permit(0), Permit::Go);
        assert_eq!(b.failure(&c, 0), None);
        assert_eq!(b.failure(&c, 0), None);
        assert_eq!(
            b.failure(&c, 10),
            Some(Transition::Opened {
                until_ms: 1_010,
                failures: 3
            })
        );
        assert_eq!(b.permit(500), Permit::Wait(1_010));
        assert_eq!(b.permit(1_010), Permit::Probe);
        assert!(
            matches!(b.permit(1_011), Permit::Wait(_)),
            "one probe at a time"
        );
        assert_eq!(b.failure(&c, 1_100), None, "failed probe re-opens quietly");
        assert_eq!(
            b.state,
            BreakerState::Open { until_ms: 3_100 },
            "for twice as long"
        );
        assert_eq!(b.permit(3_100), Permit::Probe);
        assert_eq!(b.success(&c), Some(Transition::Closed));
        assert_eq!(b.permit(3_200), Permit::Go);
        assert_eq!(b.success(&c), None);
    }

    #[test]
    fn rate_limit_defers_to_the_next_minute() {
        let mut r = RateLimit::new(2);
        assert!(r.take(1_000).is_ok());
        assert!(r.take(2_000).is_ok());
        assert_eq!(r.take(3_000), Err(60_000));
        assert!(r.take(60_000).is_ok());
    }
}
