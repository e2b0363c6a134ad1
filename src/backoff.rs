//! Retry timing: exponential backoff with full jitter, and `Retry-After`.

use std::time::{Duration, SystemTime};

use rand::Rng;

/// Exponential backoff with full jitter.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// The ceiling of the first wait.
    pub base: Duration,
    /// The largest ceiling any wait can have.
    pub max: Duration,
}

/// The longest `Retry-After` honoured; a larger one is cut to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

impl Backoff {
    /// The wait before retry number `retry` (1 for the first retry): a random duration
    /// up to `min(max, base * 2^(retry - 1))`, but never less than `retry_after`.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let ceiling = self.ceiling(retry);
        let jittered = rand::thread_rng().gen_range(Duration::ZERO..=ceiling);
        match retry_after {
            Some(wait) => jittered.max(wait.min(MAX_RETRY_AFTER)),
            None => jittered,
        }
    }

    fn ceiling(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1).min(30));
        self.base.saturating_mul(factor).min(self.max)
    }
}

/// Parses a `Retry-After` value: delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_doubles_up_to_the_maximum() {
        let backoff = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        assert_eq!(backoff.ceiling(1), Duration::from_millis(100));
        assert_eq!(backoff.ceiling(2), Duration::from_millis(200));
        assert_eq!(backoff.ceiling(4), Duration::from_millis(800));
        assert_eq!(backoff.ceiling(5), Duration::from_secs(1));
        assert_eq!(backoff.ceiling(200), Duration::from_secs(1));
        for retry in 1..10 {
            assert!(backoff.delay(retry, None) <= backoff.ceiling(retry));
        }
    }

    #[test]
    fn retry_after_is_a_floor_with_a_ceiling() {
        let backoff = Backoff {
            base: Duration::from_millis(1),
            max: Duration::from_millis(1),
        };
        let wait = backoff.delay(1, Some(Duration::from_secs(3)));
        assert_eq!(wait, Duration::from_secs(3));
        let wait = backoff.delay(1, Some(Duration::from_secs(86_400)));
        assert_eq!(wait, MAX_RETRY_AFTER);
    }

    #[test]
    fn parses_retry_after_seconds_and_dates() {
        let now = httpdate::parse_http_date("Fri, 04 Dec 2026 15:00:00 GMT").unwrap();
        let check = |value: &str| parse_retry_after(value, now);
        assert_eq!(check("7"), Some(Duration::from_secs(7)));
        assert_eq!(check(" 0 "), Some(Duration::ZERO));
        assert_eq!(
            check("Fri, 04 Dec 2026 15:00:30 GMT"),
            Some(Duration::from_secs(30))
        );
        assert_eq!(check("Fri, 04 Dec 2026 14:00:00 GMT"), Some(Duration::ZERO));
        assert_eq!(check("soon"), None);
    }
}
