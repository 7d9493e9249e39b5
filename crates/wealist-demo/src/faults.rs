//! Injected faults a service honours: a share of requests failing with 500 and slow
//! responses, each for a limited time. Stopping a service is done by the [`crate::stack`].
//!
//! Which requests fail is decided by a per-service request counter, not by chance, so a ratio
//! of 0.3 fails exactly 3 requests in every 10.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;

#[derive(Debug, Default, Clone, Copy)]
struct State {
    error_ratio: f64,
    error_until: Option<Instant>,
    slow_delay: Duration,
    slow_until: Option<Instant>,
}

/// The fault switches of one service.
#[derive(Debug, Default)]
pub struct ServiceFaults {
    state: Mutex<State>,
    requests: AtomicU64,
}

/// What a request should suffer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub fail: bool,
    pub delay: Option<Duration>,
}

/// Active faults of a service, for the control endpoint.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FaultSnapshot {
    pub error_ratio: f64,
    pub error_remaining_seconds: f64,
    pub slow_delay_seconds: f64,
    pub slow_remaining_seconds: f64,
}

impl ServiceFaults {
    /// Fails `ratio` (clamped to 0..=1) of requests with a 500 for `duration`.
    pub fn inject_errors(&self, ratio: f64, duration: Duration) {
        let mut s = self.state.lock();
        s.error_ratio = if ratio.is_finite() {
            ratio.clamp(0.0, 1.0)
        } else {
            0.0
        };
        s.error_until = Some(Instant::now() + duration);
    }

    /// Delays every request by about `delay` (±15 %) for `duration`.
    pub fn inject_slowness(&self, delay: Duration, duration: Duration) {
        let mut s = self.state.lock();
        s.slow_delay = delay;
        s.slow_until = Some(Instant::now() + duration);
    }

    pub fn clear(&self) {
        *self.state.lock() = State::default();
    }

    pub fn snapshot(&self) -> FaultSnapshot {
        let s = *self.state.lock();
        let now = Instant::now();
        let remaining = |until: Option<Instant>| {
            until
                .map(|u| u.saturating_duration_since(now).as_secs_f64())
                .unwrap_or(0.0)
        };
        let err_left = remaining(s.error_until);
        let slow_left = remaining(s.slow_until);
        FaultSnapshot {
            error_ratio: if err_left > 0.0 { s.error_ratio } else { 0.0 },
            error_remaining_seconds: err_left,
            slow_delay_seconds: if slow_left > 0.0 {
                s.slow_delay.as_secs_f64()
            } else {
                0.0
            },
            slow_remaining_seconds: slow_left,
        }
    }

    /// Decides the fate of the next request.
    pub fn decide(&self) -> Decision {
        let s = *self.state.lock();
        let now = Instant::now();
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        let fail = s.error_until.is_some_and(|u| now < u) && {
            // Spread failures evenly: request n fails when floor((n+1)r) > floor(nr).
            let r = s.error_ratio;
            ((n + 1) as f64 * r).floor() > (n as f64 * r).floor()
        };
        let delay = if s.slow_until.is_some_and(|u| now < u) && !s.slow_delay.is_zero() {
            // Deterministic jitter in [0.85, 1.15) from the golden-ratio sequence.
            let frac = (n as f64 * 0.618_033_988_75).fract();
            Some(s.slow_delay.mul_f64(0.85 + 0.3 * frac))
        } else {
            None
        };
        Decision { fail, delay }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_faults_by_default() {
        let f = ServiceFaults::default();
        for _ in 0..100 {
            assert_eq!(
                f.decide(),
                Decision {
                    fail: false,
                    delay: None
                }
            );
        }
    }

    #[test]
    fn error_ratio_is_exact_and_expires() {
        let f = ServiceFaults::default();
        f.inject_errors(0.3, Duration::from_secs(60));
        let failed = (0..1000).filter(|_| f.decide().fail).count();
        assert_eq!(failed, 300);
        f.inject_errors(2.0, Duration::from_secs(60));
        assert!((0..10).all(|_| f.decide().fail));
        f.inject_errors(1.0, Duration::ZERO);
        assert!(!f.decide().fail);
        assert_eq!(f.snapshot().error_ratio, 0.0);
        f.inject_errors(f64::NAN, Duration::from_secs(5));
        assert!(!f.decide().fail);
    }

    #[test]
    fn slowness_has_bounded_jitter() {
        let f = ServiceFaults::default();
        f.inject_slowness(Duration::from_secs(3), Duration::from_secs(60));
        for _ in 0..200 {
            let d = f.decide().delay.expect("delayed");
            assert!(d >= Duration::from_millis(2550) && d < Duration::from_millis(3450));
        }
        let snap = f.snapshot();
        assert_eq!(snap.slow_delay_seconds, 3.0);
        assert!(snap.slow_remaining_seconds > 50.0);
        f.clear();
        assert_eq!(f.decide().delay, None);
    }
}
