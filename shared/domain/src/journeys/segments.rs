//! Segments: named profile conditions from `settings.toml`, evaluated on the contact at decision
//! time (never rebuilt periodically). All conditions of a segment must hold.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;

use crate::model::Contact;

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentDefinition {
    pub min_orders: Option<u64>,
    pub max_orders: Option<u64>,
    /// At least this many orders within `orders_window_days`.
    pub min_orders_in_window: Option<u64>,
    pub orders_window_days: Option<i64>,
    pub last_order_within_days: Option<i64>,
    pub last_order_older_than_days: Option<i64>,
    pub created_within_days: Option<i64>,
    /// Active on at least this many distinct days.
    pub min_active_days: Option<u32>,
    pub max_active_days: Option<u32>,
    pub min_revenue: Option<f64>,
    pub has_tag: Option<String>,
    pub stages: Option<Vec<String>>,
    /// Each of R, F, M scored 1..5 by the `rfm` thresholds; all must reach these minimums.
    pub min_rfm: Option<[u8; 3]>,
    pub marketing_consent: Option<bool>,
}

/// Thresholds turning recency (days since the last order), frequency (orders) and monetary value
/// (revenue) into scores 1..5: a value scores one point per threshold it reaches.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RfmThresholds {
    /// Days since the last order, most recent first: e.g. [180, 90, 30, 7].
    pub recency_days: [i64; 4],
    pub frequency_orders: [u64; 4],
    pub monetary: [f64; 4],
}

impl Default for RfmThresholds {
    fn default() -> Self {
        RfmThresholds {
            recency_days: [180, 90, 30, 7],
            frequency_orders: [2, 3, 5, 10],
            monetary: [3000.0, 10_000.0, 30_000.0, 100_000.0],
        }
    }
}

/// R, F and M scores 1..5 of a contact.
pub fn rfm_scores(contact: &Contact, thresholds: &RfmThresholds, now: Timestamp) -> [u8; 3] {
    let recency = match contact.orders.last_order_at {
        None => 1,
        Some(last) => {
            let days = now.duration_since(last).as_hours() / 24;
            1 + thresholds.recency_days.iter().filter(|limit| days <= **limit).count() as u8
        }
    };
    let frequency = 1 + thresholds.frequency_orders.iter().filter(|n| contact.orders.orders >= **n).count() as u8;
    let revenue = contact.orders.revenue_minor as f64 / 100.0;
    let monetary = 1 + thresholds.monetary.iter().filter(|m| revenue >= **m).count() as u8;
    [recency, frequency, monetary]
}

fn days(n: i64) -> SignedDuration {
    SignedDuration::from_hours(24 * n)
}

impl SegmentDefinition {
    pub fn matches(&self, contact: &Contact, rfm: &RfmThresholds, now: Timestamp) -> bool {
        let orders = &contact.orders;
        let checks = [
            self.min_orders.is_none_or(|n| orders.orders >= n),
            self.max_orders.is_none_or(|n| orders.orders <= n),
            self.min_orders_in_window.is_none_or(|n| {
                let window = days(self.orders_window_days.unwrap_or(90));
                orders.recent_orders.iter().filter(|at| now.duration_since(**at) <= window).count() as u64 >= n
            }),
            self.last_order_within_days
                .is_none_or(|d| orders.last_order_at.is_some_and(|last| now.duration_since(last) <= days(d))),
            self.last_order_older_than_days
                .is_none_or(|d| orders.last_order_at.is_some_and(|last| now.duration_since(last) > days(d))),
            self.created_within_days.is_none_or(|d| now.duration_since(contact.created_at) <= days(d)),
            self.min_active_days.is_none_or(|n| contact.active_days >= n),
            self.max_active_days.is_none_or(|n| contact.active_days <= n),
            self.min_revenue.is_none_or(|m| orders.revenue_minor as f64 / 100.0 >= m),
            self.has_tag.as_ref().is_none_or(|t| contact.tags.contains(t)),
            self.stages.as_ref().is_none_or(|s| s.iter().any(|stage| stage == contact.stage.as_str())),
            self.min_rfm.is_none_or(|min| {
                let scores = rfm_scores(contact, rfm, now);
                scores.iter().zip(min.iter()).all(|(score, min)| score >= min)
            }),
            self.marketing_consent
                .is_none_or(|want| contact.email_consent().is_some_and(|c| c.allows_marketing()) == want),
        ];
        checks.iter().all(|ok| *ok)
    }
}

/// Every segment by name, with the RFM thresholds they share. (Unknown keys inside a segment are
/// refused by `SegmentDefinition`; `flatten` rules out refusing them here.)
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Segments {
    #[serde(default)]
    pub rfm: RfmThresholds,
    #[serde(flatten)]
    pub definitions: BTreeMap<String, SegmentDefinition>,
}

impl Segments {
    pub fn contains(&self, name: &str) -> bool {
        self.definitions.contains_key(name)
    }

    /// Whether the contact is in the named segment; an unknown name matches nobody.
    pub fn matches(&self, name: &str, contact: &Contact, now: Timestamp) -> bool {
        self.definitions.get(name).is_some_and(|s| s.matches(contact, &self.rfm, now))
    }

    pub fn memberships(&self, contact: &Contact, now: Timestamp) -> Vec<String> {
        self.definitions.iter().filter(|(_, s)| s.matches(contact, &self.rfm, now)).map(|(n, _)| n.clone()).collect()
    }
}
