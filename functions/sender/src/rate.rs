//! Keeps one container within its share of the SES account's sending rate.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// Hands out send slots at most `per_second` per second.
pub struct RateGate {
    interval: Duration,
    next: Mutex<Instant>,
}

impl RateGate {
    pub fn per_second(per_second: f64) -> RateGate {
        let interval = if per_second > 0.0 { Duration::from_secs_f64(1.0 / per_second) } else { Duration::ZERO };
        RateGate { interval, next: Mutex::new(Instant::now()) }
    }

    pub async fn wait(&self) {
        let slot = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}
