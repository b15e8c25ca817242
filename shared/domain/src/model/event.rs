//! Behaviour and outcome events.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Event types a browser may send without a signature: behaviour, never money or outcomes.
pub const BROWSER_EVENT_TYPES: [&str; 6] =
    ["page_view", "product_view", "category_view", "add_to_cart", "remove_from_cart", "checkout_started"];

/// Event types only the shop back end (signed) or Voronka itself may produce.
pub const SERVER_EVENT_TYPES: [&str; 12] = [
    "purchase",
    "form_submitted",
    "lead_created",
    "optin_confirmed",
    "bot_completed",
    "email_sent",
    "email_delivered",
    "email_opened",
    "email_clicked",
    "email_bounced",
    "email_complained",
    "unsubscribed",
];

/// Event types of Voronka's own due work (journey waits, inactivity checks, cart timers and steps,
/// follow-ups of large events): raised only by the scheduler, never accepted from outside, since
/// they drive sends and writes that only Voronka may decide.
pub const JOURNEY_CONTINUE: &str = "journey_continue";
pub const INACTIVITY_CHECK: &str = "inactivity_check";
pub const CART_IDLE: &str = "cart_idle";
pub const CART_STEP: &str = "cart_step";
pub const EVENT_FOLLOW_UP: &str = "event_follow_up";
pub const DUE_WORK_EVENT_TYPES: [&str; 5] = [JOURNEY_CONTINUE, INACTIVITY_CHECK, CART_IDLE, CART_STEP, EVENT_FOLLOW_UP];

pub fn is_due_work_type(event_type: &str) -> bool {
    DUE_WORK_EVENT_TYPES.contains(&event_type)
}

/// Who may send an event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventTrust {
    /// Behaviour a browser may report unsigned.
    Browser,
    /// Revenue, outcomes and custom types: only with the shop back end's signature.
    Server,
}

pub fn event_trust(event_type: &str) -> EventTrust {
    if BROWSER_EVENT_TYPES.contains(&event_type) { EventTrust::Browser } else { EventTrust::Server }
}

/// Valid type names: the known ones, or a custom `snake_case` name of at most 64 characters.
pub fn is_valid_event_type(event_type: &str) -> bool {
    let mut chars = event_type.chars();
    matches!(chars.next(), Some('a'..='z'))
        && event_type.len() <= 64
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
}

/// Valid client-supplied ids: 1 to 128 of `A-Z a-z 0-9 - _ . :`.
pub fn is_valid_client_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

/// Who an event is about: at least one of these.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anonymous_id: Option<String>,
}

impl ContactRef {
    pub fn is_empty(&self) -> bool {
        self.contact_id.is_none() && self.email.is_none() && self.anonymous_id.is_none()
    }
}

/// Who raised an event. Each source has its own namespace of event ids, so no source can claim an
/// id another will use (a browser posting `order-1002:purchase` first cannot make the shop's
/// signed purchase a duplicate).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventSource {
    /// Unsigned behaviour from a page.
    Browser,
    /// The shop back end, signed with the events key.
    Shop,
    /// Voronka itself: derived events, due work, SES feedback.
    Voronka,
    /// A message queued before events named their source: keyed by its bare id, as it was then.
    #[default]
    Unattributed,
}

impl EventSource {
    pub fn as_str(self) -> &'static str {
        match self {
            EventSource::Browser => "browser",
            EventSource::Shop => "shop",
            EventSource::Voronka => "voronka",
            EventSource::Unattributed => "",
        }
    }
}

/// An event as it travels on the `events` queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Client-supplied (or derived, for Voronka's own events): the idempotency key.
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub contact: ContactRef,
    pub occurred_at: Timestamp,
    pub received_at: Timestamp,
    #[serde(default)]
    pub properties: Map<String, Value>,
    /// Whether a signed back end or Voronka itself vouches for it.
    pub trusted: bool,
    #[serde(default)]
    pub source: EventSource,
}

impl Event {
    /// An event Voronka itself raises about a known contact (trusted, no client behind it).
    pub fn internal(
        event_id: String,
        event_type: &str,
        contact_id: &str,
        occurred_at: Timestamp,
        received_at: Timestamp,
        properties: Map<String, Value>,
    ) -> Event {
        Event {
            event_id,
            event_type: event_type.to_string(),
            contact: ContactRef { contact_id: Some(contact_id.to_string()), ..Default::default() },
            occurred_at,
            received_at,
            properties,
            trusted: true,
            source: EventSource::Voronka,
        }
    }

    /// The id that makes this event unique across sources: receipts and processed markers use it.
    pub fn dedupe_key(&self) -> String {
        match self.source {
            EventSource::Unattributed => self.event_id.clone(),
            source => format!("{}:{}", source.as_str(), self.event_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_event_types() {
        assert_eq!(event_trust("page_view"), EventTrust::Browser);
        assert_eq!(event_trust("purchase"), EventTrust::Server);
        assert_eq!(event_trust("webinar_attended"), EventTrust::Server);
        assert!(is_valid_event_type("webinar_attended"));
        assert!(!is_valid_event_type("Webinar"));
        assert!(!is_valid_event_type("9lives"));
        assert!(is_valid_client_id("evt-2026-11-22:0001"));
        assert!(!is_valid_client_id("evt 1"));
    }
}
