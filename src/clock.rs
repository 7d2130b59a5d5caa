//! The wall clock, for the edges only: when a row was written, when a call
//! may be retried, how long a finding took to produce. The pure core never
//! reads it (detection runs on the gateways' timestamps); code that must be
//! tested against time takes a [`Clock`] instead of calling [`now_ms`].

use std::sync::Arc;

/// A clock in milliseconds since the epoch: [`now_ms`] in service, a
/// controlled clock in tests (rate-limit windows, breaker open times and
/// backoff are all read from it).
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Wall-clock milliseconds since the epoch (0 if the clock is before it).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Wall-clock microseconds since the epoch, for latency measurements.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// The wall clock as a [`Clock`].
pub fn system() -> Clock {
    Arc::new(now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clocks_agree_and_move_forward() {
        let ms = now_ms();
        let us = now_us();
        assert!(ms > 1_600_000_000_000, "after 2020: {ms}");
        assert!((us / 1000 - ms).abs() < 1000);
        assert!(system()() >= ms);
    }
}
