//! Receipts of client events by their source-scoped id (`Event::dedupe_key`), so a retried batch
//! enqueues each event once and no source can take another's ids.
//!
//! A receipt is `pending` from the moment it is claimed until the event is on the queue, then
//! `queued`. A crash in between leaves it `pending`, and the client's retry sends it again: the
//! queue may then carry it twice, which its consumer absorbs by `event_id`. The receipt never
//! claims an event is queued when it is not.

use jiff::{SignedDuration, Timestamp};
use serde_json::json;

use crate::ports::{Condition, Item, Key, Store, StoreError, UpdateAction};

/// How long an event id is remembered; a client retrying later than this is not expected.
pub const RECEIPT_RETENTION: SignedDuration = SignedDuration::from_hours(24 * 30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventClaim {
    /// First sight of this id: enqueue it.
    New,
    /// Seen before but never confirmed queued: enqueue it again.
    Unconfirmed,
    /// Already on the queue.
    Duplicate,
}

pub struct EventReceipts<'a> {
    store: &'a dyn Store,
}

fn receipt_key(dedupe_key: &str) -> Key {
    Key::new(format!("EVENT#{dedupe_key}"), "RECEIPT")
}

impl<'a> EventReceipts<'a> {
    pub fn new(store: &'a dyn Store) -> Self {
        EventReceipts { store }
    }

    pub async fn claim(&self, dedupe_key: &str, now: Timestamp) -> Result<EventClaim, StoreError> {
        self.claim_until(dedupe_key, now, Some(now + RECEIPT_RETENTION)).await
    }

    /// A receipt that never expires: for a batch whose signature carries no time (the legacy
    /// `sha256=` format), the receipt is all that stops a replay, however late it comes.
    pub async fn claim_for_good(&self, dedupe_key: &str, now: Timestamp) -> Result<EventClaim, StoreError> {
        self.claim_until(dedupe_key, now, None).await
    }

    async fn claim_until(
        &self,
        dedupe_key: &str,
        now: Timestamp,
        expires: Option<Timestamp>,
    ) -> Result<EventClaim, StoreError> {
        let mut item =
            Item::new(&receipt_key(dedupe_key), json!({ "state": "pending", "received_at": now.to_string() }));
        if let Some(expires) = expires {
            item = item.with_ttl(expires.as_second());
        }
        match self.store.put(item, Some(Condition::NotExists)).await {
            Ok(()) => Ok(EventClaim::New),
            Err(StoreError::ConditionFailed) => match self.store.get(&receipt_key(dedupe_key)).await? {
                Some(existing) if existing.get_str("state") == Some("queued") => Ok(EventClaim::Duplicate),
                _ => Ok(EventClaim::Unconfirmed),
            },
            Err(other) => Err(other),
        }
    }

    pub async fn mark_queued(&self, dedupe_key: &str) -> Result<(), StoreError> {
        self.store
            .update(&receipt_key(dedupe_key), vec![UpdateAction::set("state", "queued")], Some(Condition::Exists))
            .await
            .map(|_| ())
    }
}
