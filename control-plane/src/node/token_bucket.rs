//! A session's message rate limit: a token bucket.

use std::time::Duration;

/// A token bucket: `rate` tokens a second, holding at most `rate`.
#[derive(Debug)]
pub(super) struct TokenBucket {
    rate: f64,
    tokens: f64,
    at: tokio::time::Instant,
}

impl TokenBucket {
    pub(super) fn new(rate: u32, now: tokio::time::Instant) -> TokenBucket {
        TokenBucket { rate: f64::from(rate), tokens: f64::from(rate), at: now }
    }

    /// Takes a token; returns how long to wait first when there was none.
    pub(super) fn take(&mut self, now: tokio::time::Instant) -> Option<Duration> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.at = now;
        self.tokens -= 1.0;
        (self.tokens < 0.0).then(|| Duration::from_secs_f64(-self.tokens / self.rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_lets_a_burst_through_then_paces() {
        let start = tokio::time::Instant::now();
        let mut bucket = TokenBucket::new(100, start);
        for _ in 0..100 {
            assert_eq!(bucket.take(start), None);
        }
        let wait = bucket.take(start).expect("empty");
        assert!((wait.as_secs_f64() - 0.01).abs() < 1e-6, "{wait:?}");
        // Half a second later, fifty more.
        let later = start + Duration::from_millis(510);
        for _ in 0..50 {
            assert_eq!(bucket.take(later), None);
        }
    }
}
