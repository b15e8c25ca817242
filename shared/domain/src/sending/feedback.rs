//! SES feedback: the events a configuration set publishes (delivery, bounce, complaint, open,
//! click) arrive through SNS on the `events` queue, raw or inside an SNS envelope. They become
//! `email_*` events about the contact the message was tagged with.
//!
//! A bounce or a complaint also names its recipient: when the message carries no `contact_id` tag
//! (mail the shop's other systems sent on the same identity, or a tag lost on the way), the
//! recipient address, the identity key, finds the contact, so the suppression is not lost.

use jiff::Timestamp;
use serde_json::{Map, Value, json};

use crate::model::{ContactRef, EmailAddress, Event, EventType};

/// The event types SES feedback becomes.
pub const FEEDBACK_EVENT_TYPES: [EventType; 5] = [
    EventType::EmailDelivered,
    EventType::EmailBounced,
    EventType::EmailComplained,
    EventType::EmailOpened,
    EventType::EmailClicked,
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedbackKind {
    Delivery,
    /// `permanent`: the address does not exist or refuses mail for good.
    Bounce {
        permanent: bool,
        bounce_type: String,
        /// SES's `bounceSubType` (`General`, `OnAccountSuppressionList`, …), empty when absent.
        sub_type: String,
    },
    Complaint,
    Open,
    Click {
        link: String,
    },
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SesFeedback {
    pub kind: FeedbackKind,
    pub message_id: String,
    pub contact_id: Option<String>,
    pub template: Option<String>,
    /// The sender's tag for the send (a digest of its idempotency key).
    pub send: Option<String>,
    pub at: Timestamp,
    /// When the message it is about was sent (`mail.timestamp`; `at` when absent): the hour SES
    /// attributes a bounce or a complaint to.
    pub sent_at: Timestamp,
    /// Whom it is about: the bounced or complaining recipients, else the message's destinations.
    pub recipients: Vec<EmailAddress>,
}

/// Reads an SES event from a queue message body, if it is one (raw, or in an SNS envelope).
pub fn parse(body: &str) -> Option<SesFeedback> {
    let mut value: Value = serde_json::from_str(body).ok()?;
    if value.get("Type").and_then(Value::as_str) == Some("Notification") {
        value = serde_json::from_str(value.get("Message")?.as_str()?).ok()?;
    }
    let event_type = value.get("eventType").or_else(|| value.get("notificationType"))?.as_str()?.to_string();
    let mail = value.get("mail")?;
    let message_id = mail.get("messageId")?.as_str()?.to_string();
    let tag = |name: &str| {
        mail.get("tags").and_then(|t| t.get(name)).and_then(|v| v.get(0)).and_then(Value::as_str).map(str::to_string)
    };
    let section = value.get(event_type.to_lowercase().as_str()).cloned().unwrap_or(Value::Null);
    let timestamp = |value: Option<&Value>| value.and_then(Value::as_str).and_then(|t| t.parse::<Timestamp>().ok());
    let sent_at = timestamp(mail.get("timestamp"));
    let at = timestamp(section.get("timestamp")).or(sent_at)?;
    let kind = match event_type.as_str() {
        "Delivery" => FeedbackKind::Delivery,
        "Bounce" => {
            let bounce_type = section.get("bounceType").and_then(Value::as_str).unwrap_or("Undetermined").to_string();
            let sub_type = section.get("bounceSubType").and_then(Value::as_str).unwrap_or("").to_string();
            FeedbackKind::Bounce { permanent: bounce_type == "Permanent", bounce_type, sub_type }
        }
        "Complaint" => FeedbackKind::Complaint,
        "Open" => FeedbackKind::Open,
        "Click" => FeedbackKind::Click { link: section.get("link").and_then(Value::as_str).unwrap_or("").to_string() },
        other => FeedbackKind::Other(other.to_string()),
    };
    let addresses = |list: Option<&Value>| -> Vec<EmailAddress> {
        list.and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|entry| entry.get("emailAddress").or(Some(entry)).and_then(Value::as_str))
            .filter_map(|address| EmailAddress::parse(address).ok())
            .collect()
    };
    let mut recipients = match kind {
        FeedbackKind::Bounce { .. } => addresses(section.get("bouncedRecipients")),
        FeedbackKind::Complaint => addresses(section.get("complainedRecipients")),
        _ => Vec::new(),
    };
    if recipients.is_empty() {
        // A complaint whose provider redacted the complainer names only the message's
        // destinations: that is the person only when the message had one.
        let destination = addresses(mail.get("destination"));
        if destination.len() == 1 {
            recipients = destination;
        }
    }
    Some(SesFeedback {
        kind,
        message_id,
        contact_id: tag("contact_id"),
        template: tag("template"),
        send: tag("send"),
        at,
        sent_at: sent_at.unwrap_or(at),
        recipients,
    })
}

impl SesFeedback {
    /// The `email_*` event this feedback stands for, the first of `to_events`.
    pub fn to_event(&self, received_at: Timestamp) -> Option<Event> {
        self.to_events(received_at).into_iter().next()
    }

    /// The `email_*` events this feedback stands for; none for kinds Voronka does not track. One
    /// names the tagged contact (and, for a bounce or a complaint, its first recipient as the
    /// fallback); an untagged bounce or complaint makes one event per recipient it names, so
    /// every bounced or complaining person of a shop's message is suppressed. Feedback that names
    /// nobody still becomes an event, so the evaluator logs why it matched no one.
    pub fn to_events(&self, received_at: Timestamp) -> Vec<Event> {
        let suppresses = matches!(self.kind, FeedbackKind::Bounce { .. } | FeedbackKind::Complaint);
        if suppresses && self.contact_id.is_none() && self.recipients.len() > 1 {
            return (0..self.recipients.len()).filter_map(|index| self.event_for(index, received_at)).collect();
        }
        self.event_for(0, received_at).into_iter().collect()
    }

    fn event_for(&self, recipient: usize, received_at: Timestamp) -> Option<Event> {
        let suppresses = matches!(self.kind, FeedbackKind::Bounce { .. } | FeedbackKind::Complaint);
        let email = self.recipients.get(recipient).filter(|_| suppresses).map(|address| address.as_typed().to_string());
        let (event_type, mut properties) = match &self.kind {
            FeedbackKind::Delivery => (EventType::EmailDelivered, Map::new()),
            FeedbackKind::Bounce { permanent, bounce_type, .. } => {
                let mut p = Map::new();
                p.insert("bounce_type".into(), json!(bounce_type));
                p.insert("permanent".into(), json!(permanent));
                (EventType::EmailBounced, p)
            }
            FeedbackKind::Complaint => (EventType::EmailComplained, Map::new()),
            FeedbackKind::Open => (EventType::EmailOpened, Map::new()),
            FeedbackKind::Click { link } => {
                let mut p = Map::new();
                p.insert("link".into(), json!(link));
                (EventType::EmailClicked, p)
            }
            FeedbackKind::Other(_) => return None,
        };
        properties.insert("message_id".into(), json!(self.message_id));
        if let Some(template) = &self.template {
            properties.insert("template".into(), json!(template));
        }
        if let Some(send) = &self.send {
            properties.insert("send".into(), json!(send));
        }
        // Opens and clicks repeat; each is its own event, told apart by its time.
        let event_id = match recipient {
            0 => format!("ses:{}:{event_type}:{}", self.message_id, self.at.as_millisecond()),
            n => format!("ses:{}:{event_type}:{}:{n}", self.message_id, self.at.as_millisecond()),
        };
        Some(Event {
            event_id,
            event_type,
            contact: ContactRef { contact_id: self.contact_id.clone(), email, anonymous_id: None },
            occurred_at: self.at,
            received_at,
            properties,
            trusted: true,
            source: crate::model::EventSource::Voronka,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNCE: &str = r#"{"eventType":"Bounce","bounce":{"bounceType":"Permanent","bounceSubType":"General",
      "bouncedRecipients":[{"emailAddress":"gone@example.com"}],"timestamp":"2026-11-22T10:00:05.000Z","feedbackId":"f1"},
      "mail":{"timestamp":"2026-11-22T10:00:00.000Z","messageId":"0100018c-abc","source":"news@shop.example",
      "destination":["gone@example.com"],"tags":{"contact_id":["c_1"],"template":["welcome"]}}}"#;

    #[test]
    fn reads_raw_and_enveloped_notifications() {
        let raw = parse(BOUNCE).unwrap();
        assert_eq!(
            raw.kind,
            FeedbackKind::Bounce { permanent: true, bounce_type: "Permanent".into(), sub_type: "General".into() }
        );
        assert_eq!(raw.at, "2026-11-22T10:00:05Z".parse::<Timestamp>().unwrap(), "when it bounced");
        assert_eq!(raw.sent_at, "2026-11-22T10:00:00Z".parse::<Timestamp>().unwrap(), "when it was sent");
        assert_eq!(raw.contact_id.as_deref(), Some("c_1"));
        let envelope = json!({"Type": "Notification", "MessageId": "sns-1", "Message": BOUNCE}).to_string();
        assert_eq!(parse(&envelope), Some(raw.clone()));
        let event = raw.to_event(Timestamp::UNIX_EPOCH).unwrap();
        assert_eq!(event.event_type, EventType::EmailBounced);
        assert_eq!(event.properties["permanent"], true);
        assert!(parse(r#"{"events":[]}"#).is_none(), "ordinary messages are not feedback");
    }

    #[test]
    fn an_untagged_bounce_of_several_recipients_suppresses_each_of_them() {
        let several = BOUNCE.replace(r#""contact_id":["c_1"],"#, "").replace(
            r#""bouncedRecipients":[{"emailAddress":"gone@example.com"}]"#,
            r#""bouncedRecipients":[{"emailAddress":"gone@example.com"},{"emailAddress":"moved@example.com"}]"#,
        );
        let events = parse(&several).unwrap().to_events(Timestamp::UNIX_EPOCH);
        let named: Vec<_> = events.iter().map(|e| e.contact.email.clone().unwrap()).collect();
        assert_eq!(named, ["gone@example.com", "moved@example.com"]);
        assert_ne!(events[0].event_id, events[1].event_id, "each is applied once on its own");

        // A complaint whose complainer was redacted, on a message to two people, names nobody.
        let redacted = r#"{"eventType":"Complaint","complaint":{"complainedRecipients":[],"timestamp":"2026-11-22T10:00:05.000Z"},
          "mail":{"timestamp":"2026-11-22T10:00:00.000Z","messageId":"m-2","destination":["a@example.com","b@example.com"]}}"#;
        let event = parse(redacted).unwrap().to_event(Timestamp::UNIX_EPOCH).unwrap();
        assert_eq!(event.contact.email, None, "not a guess at who complained");
    }

    #[test]
    fn untagged_bounces_and_complaints_name_their_recipient() {
        let untagged = BOUNCE.replace(r#""contact_id":["c_1"],"#, "");
        let bounce = parse(&untagged).unwrap();
        assert_eq!(bounce.contact_id, None);
        let event = bounce.to_event(Timestamp::UNIX_EPOCH).unwrap();
        assert_eq!(event.contact.contact_id, None);
        assert_eq!(event.contact.email.as_deref(), Some("gone@example.com"));

        let complaint = untagged.replace(r#""eventType":"Bounce""#, r#""eventType":"Complaint""#).replace(
            r#""bounce":{"bounceType":"Permanent","bounceSubType":"General",
      "bouncedRecipients""#,
            r#""complaint":{"complainedRecipients""#,
        );
        let event = parse(&complaint).unwrap().to_event(Timestamp::UNIX_EPOCH).unwrap();
        assert_eq!(event.event_type, EventType::EmailComplained);
        assert_eq!(event.contact.email.as_deref(), Some("gone@example.com"));

        let delivery = untagged.replace(r#""eventType":"Bounce""#, r#""eventType":"Delivery""#);
        let event = parse(&delivery).unwrap().to_event(Timestamp::UNIX_EPOCH).unwrap();
        assert!(event.contact.is_empty(), "only suppressions are matched by address");
    }
}
