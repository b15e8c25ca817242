//! Fixed-window rate limits kept in the store, so every Lambda container sees the same count.

use jiff::Timestamp;

use crate::ports::{Condition, Key, Store, StoreError, UpdateAction};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    Allowed,
    /// Over the limit; try again after this many seconds.
    Limited {
        retry_after_seconds: u32,
    },
}

pub struct RateLimiter<'a> {
    store: &'a dyn Store,
}

impl<'a> RateLimiter<'a> {
    pub fn new(store: &'a dyn Store) -> Self {
        RateLimiter { store }
    }

    /// Counts one hit of `subject` (already pseudonymised: never a raw IP) in `scope` for the
    /// current window of `window_seconds`, allowing at most `limit` per window.
    pub async fn hit(
        &self,
        scope: &str,
        subject: &str,
        limit: u32,
        window_seconds: i64,
        now: Timestamp,
    ) -> Result<RateDecision, StoreError> {
        let now_s = now.as_second();
        let window_start = now_s - now_s.rem_euclid(window_seconds);
        let key = Key::new(format!("RATE#{scope}#{subject}"), window_start.to_string());
        let condition =
            Condition::Or(vec![Condition::attribute_not_exists("hits"), Condition::less_than("hits", limit)]);
        let actions = vec![
            UpdateAction::add("hits", 1),
            // Kept a little beyond the window, then left to expire.
            UpdateAction::set_if_not_exists("ttl", window_start + window_seconds * 2),
        ];
        match self.store.update(&key, actions, Some(condition)).await {
            Ok(_) => Ok(RateDecision::Allowed),
            Err(StoreError::ConditionFailed) => {
                Ok(RateDecision::Limited { retry_after_seconds: (window_start + window_seconds - now_s).max(1) as u32 })
            }
            Err(other) => Err(other),
        }
    }
}
