//! Behaviour and outcome events.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Who may send an event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventTrust {
    /// Behaviour a browser may report unsigned.
    Browser,
    /// Revenue, outcomes and custom types: only with the shop back end's signature.
    Server,
}

/// What happened: the SPEC's event types, Voronka's own due work, or a custom type a shop signs.
/// On the wire and in storage it is the `snake_case` name, exactly as before it was typed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    PageView,
    ProductView,
    CategoryView,
    AddToCart,
    RemoveFromCart,
    CheckoutStarted,
    Purchase,
    FormSubmitted,
    LeadCreated,
    OptinConfirmed,
    BotCompleted,
    /// The lead score reached the MQL threshold (raised by Voronka only).
    BecameMql,
    /// The lead score reached the SQL threshold (raised by Voronka only).
    BecameSql,
    EmailSent,
    EmailDelivered,
    EmailOpened,
    EmailClicked,
    EmailBounced,
    EmailComplained,
    Unsubscribed,
    /// A journey's wait is over (due work).
    JourneyContinue,
    /// An inactivity trigger's time has come (due work).
    InactivityCheck,
    /// A cart may have been abandoned (due work).
    CartIdle,
    /// A cart reminder step is due (due work).
    CartStep,
    /// The deferred part of an event too large for one transaction (due work).
    EventFollowUp,
    /// Any other valid name. Built only through `EventType::from`, so a known name never lands
    /// here (`Custom("purchase")` would not equal `Purchase`).
    Custom(String),
}

impl EventType {
    /// Every named type, in the order of the SPEC; used to parse names and by tests.
    pub const NAMED: [EventType; 25] = [
        EventType::PageView,
        EventType::ProductView,
        EventType::CategoryView,
        EventType::AddToCart,
        EventType::RemoveFromCart,
        EventType::CheckoutStarted,
        EventType::Purchase,
        EventType::FormSubmitted,
        EventType::LeadCreated,
        EventType::OptinConfirmed,
        EventType::BotCompleted,
        EventType::BecameMql,
        EventType::BecameSql,
        EventType::EmailSent,
        EventType::EmailDelivered,
        EventType::EmailOpened,
        EventType::EmailClicked,
        EventType::EmailBounced,
        EventType::EmailComplained,
        EventType::Unsubscribed,
        EventType::JourneyContinue,
        EventType::InactivityCheck,
        EventType::CartIdle,
        EventType::CartStep,
        EventType::EventFollowUp,
    ];

    pub fn as_str(&self) -> &str {
        match self {
            EventType::PageView => "page_view",
            EventType::ProductView => "product_view",
            EventType::CategoryView => "category_view",
            EventType::AddToCart => "add_to_cart",
            EventType::RemoveFromCart => "remove_from_cart",
            EventType::CheckoutStarted => "checkout_started",
            EventType::Purchase => "purchase",
            EventType::FormSubmitted => "form_submitted",
            EventType::LeadCreated => "lead_created",
            EventType::OptinConfirmed => "optin_confirmed",
            EventType::BotCompleted => "bot_completed",
            EventType::BecameMql => "became_mql",
            EventType::BecameSql => "became_sql",
            EventType::EmailSent => "email_sent",
            EventType::EmailDelivered => "email_delivered",
            EventType::EmailOpened => "email_opened",
            EventType::EmailClicked => "email_clicked",
            EventType::EmailBounced => "email_bounced",
            EventType::EmailComplained => "email_complained",
            EventType::Unsubscribed => "unsubscribed",
            EventType::JourneyContinue => "journey_continue",
            EventType::InactivityCheck => "inactivity_check",
            EventType::CartIdle => "cart_idle",
            EventType::CartStep => "cart_step",
            EventType::EventFollowUp => "event_follow_up",
            EventType::Custom(name) => name,
        }
    }

    /// Who may send it: a browser only behaviour; money, outcomes and custom types need the
    /// shop's signature (or come from Voronka).
    pub fn trust(&self) -> EventTrust {
        match self {
            EventType::PageView
            | EventType::ProductView
            | EventType::CategoryView
            | EventType::AddToCart
            | EventType::RemoveFromCart
            | EventType::CheckoutStarted => EventTrust::Browser,
            _ => EventTrust::Server,
        }
    }

    /// Voronka's own due work: raised only by the scheduler, never accepted from outside, since
    /// it drives sends and writes that only Voronka may decide. The score's milestones count as
    /// due work: a shop signing `became_mql` would move journeys (and sales) on a score Voronka
    /// never computed, while the stage it stands for would not move; so only the evaluator's
    /// threshold crossing raises them.
    pub fn is_due_work(&self) -> bool {
        matches!(
            self,
            EventType::JourneyContinue
                | EventType::InactivityCheck
                | EventType::CartIdle
                | EventType::CartStep
                | EventType::EventFollowUp
                | EventType::BecameMql
                | EventType::BecameSql
        )
    }

    /// About an email Voronka sent (its sending, delivery and the recipient's reaction).
    pub fn is_about_mail(&self) -> bool {
        matches!(
            self,
            EventType::EmailSent
                | EventType::EmailDelivered
                | EventType::EmailOpened
                | EventType::EmailClicked
                | EventType::EmailBounced
                | EventType::EmailComplained
        ) || matches!(self, EventType::Custom(name) if name.starts_with("email_"))
    }

    /// Events that change a cart.
    pub fn changes_cart(&self) -> bool {
        matches!(
            self,
            EventType::AddToCart | EventType::RemoveFromCart | EventType::CheckoutStarted | EventType::Purchase
        )
    }

    /// Something the person did (not mail about them, not Voronka's timers): it moves their
    /// last activity and active days.
    pub fn is_activity(&self) -> bool {
        !self.is_about_mail()
            && !matches!(
                self,
                EventType::JourneyContinue | EventType::InactivityCheck | EventType::BecameMql | EventType::BecameSql
            )
    }

    /// A valid name: a named type, or a custom `snake_case` name of at most 64 characters.
    pub fn is_valid(&self) -> bool {
        is_valid_event_type(self.as_str())
    }
}

impl From<&str> for EventType {
    fn from(name: &str) -> EventType {
        EventType::NAMED
            .into_iter()
            .find(|named| named.as_str() == name)
            .unwrap_or_else(|| EventType::Custom(name.into()))
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EventType {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<EventType, D::Error> {
        let name = String::deserialize(deserializer)?;
        Ok(EventType::from(name.as_str()))
    }
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
    pub event_type: EventType,
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
        event_type: EventType,
        contact_id: &str,
        occurred_at: Timestamp,
        received_at: Timestamp,
        properties: Map<String, Value>,
    ) -> Event {
        Event {
            event_id,
            event_type,
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
        assert_eq!(EventType::from("page_view").trust(), EventTrust::Browser);
        assert_eq!(EventType::from("purchase").trust(), EventTrust::Server);
        assert_eq!(EventType::from("webinar_attended").trust(), EventTrust::Server);
        assert!(EventType::from("cart_step").is_due_work());
        assert!(!EventType::from("purchase").is_due_work());
        assert!(EventType::from("became_mql").is_due_work(), "only Voronka's score raises it");
        assert_eq!(EventType::from("became_sql"), EventType::BecameSql);
        assert!(is_valid_event_type("webinar_attended"));
        assert!(!is_valid_event_type("Webinar"));
        assert!(!is_valid_event_type("9lives"));
        assert!(is_valid_client_id("evt-2026-11-22:0001"));
        assert!(!is_valid_client_id("evt 1"));
    }

    #[test]
    fn every_named_type_round_trips_through_its_name_and_others_stay_custom() {
        for named in EventType::NAMED {
            let json = serde_json::to_string(&named).unwrap();
            assert_eq!(json, format!("\"{}\"", named.as_str()));
            assert_eq!(serde_json::from_str::<EventType>(&json).unwrap(), named);
            assert!(named.is_valid(), "{named}");
        }
        assert_eq!(EventType::from("webinar_attended"), EventType::Custom("webinar_attended".into()));
        assert_eq!(EventType::from("purchase"), EventType::Purchase);
        assert!(!EventType::from("Webinar").is_valid());
    }

    #[test]
    fn an_event_keeps_its_wire_form() {
        let wire = r#"{"event_id":"e1","type":"purchase","contact":{"contact_id":"c1"},"occurred_at":"2026-11-22T10:00:00Z","received_at":"2026-11-22T10:00:01Z","properties":{"revenue":10.0},"trusted":true,"source":"shop"}"#;
        let event: Event = serde_json::from_str(wire).unwrap();
        assert_eq!(event.event_type, EventType::Purchase);
        assert_eq!(serde_json::to_string(&event).unwrap(), wire);
    }
}
