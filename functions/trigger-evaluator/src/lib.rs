//! trigger-evaluator: consumes the `events` queue. Every event changes its contact exactly once:
//! the contact's new state and a marker of the event's id are written in one conditional
//! transaction, so a redelivered batch changes nothing twice.
//!
//! Events come from lead-capture (forms, behaviour, purchases), from the sender (`email_sent`)
//! and from SES through SNS (delivery, bounce, complaint, open, click).

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use serde_json::json;
use voronka_domain::campaigns::Campaigns;
use voronka_domain::model::{Channel, ConsentReceipt, Contact, EmailAddress, Event, LifecycleStage, SuppressionReason};
use voronka_domain::ports::{Clock, Condition, Item, Key, Queue, Store, StoreError, TransactOp};
use voronka_domain::repo::ContactRepository;
use voronka_domain::repo::contacts::contact_item;
use voronka_domain::sending::feedback;

/// How long processed event ids are remembered: longer than any redelivery.
pub const MARKER_RETENTION: SignedDuration = SignedDuration::from_hours(24 * 30);
/// Engagement points per email interaction (scoring with decay comes with lead scoring).
const OPEN_POINTS: i64 = 1;
const CLICK_POINTS: i64 = 3;

#[derive(Clone)]
pub struct EvaluatorDeps {
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn Queue>,
    pub clock: Arc<dyn Clock>,
    pub campaigns: Arc<Campaigns>,
}

#[derive(Debug, Clone)]
pub struct Delivery {
    pub message_id: String,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// Seen before: nothing changed.
    Duplicate,
    /// About nobody Voronka knows (yet): kept for later, or dropped with a reason.
    Unmatched(String),
    Retry(String),
    Malformed(String),
}

/// Handles a batch; returns the ids of the messages to report as failures.
pub async fn process_batch(deps: &EvaluatorDeps, deliveries: Vec<Delivery>) -> Vec<String> {
    let mut failed = Vec::new();
    for delivery in deliveries {
        let outcome = handle_message(deps, &delivery.body).await;
        match &outcome {
            Outcome::Retry(reason) => {
                tracing::warn!(message_id = %delivery.message_id, reason = %reason, "event will be retried");
                failed.push(delivery.message_id);
            }
            Outcome::Malformed(reason) => {
                // It can never succeed: fail it into the dead-letter queue, where its alarm fires.
                tracing::error!(message_id = %delivery.message_id, reason = %reason, "malformed event message");
                failed.push(delivery.message_id);
            }
            other => tracing::debug!(message_id = %delivery.message_id, outcome = ?other, "event handled"),
        }
    }
    failed
}

/// Reads one queue message: an SES notification or one of Voronka's events.
pub fn read_message(body: &str, now: Timestamp) -> Result<Option<Event>, String> {
    if let Some(feedback) = feedback::parse(body) {
        return Ok(feedback.to_event(now));
    }
    serde_json::from_str::<Event>(body).map(Some).map_err(|e| format!("not an event: {e}"))
}

pub async fn handle_message(deps: &EvaluatorDeps, body: &str) -> Outcome {
    let now = deps.clock.now();
    let event = match read_message(body, now) {
        Ok(Some(event)) => event,
        Ok(None) => return Outcome::Unmatched("feedback Voronka does not track".into()),
        Err(reason) => return Outcome::Malformed(reason),
    };
    match apply_event(deps, &event).await {
        Ok(outcome) => outcome,
        Err(error) => Outcome::Retry(error.to_string()),
    }
}

fn marker_key(event_id: &str) -> Key {
    Key::new(format!("PROCESSED#{event_id}"), "EVENT")
}

/// Finds the contact an event is about.
async fn resolve(deps: &EvaluatorDeps, event: &Event) -> Result<Option<Contact>, StoreError> {
    let repo = ContactRepository::new(deps.store.as_ref());
    let map = |r: Result<Option<Contact>, voronka_domain::repo::RepoError>| match r {
        Ok(c) => Ok(c),
        Err(voronka_domain::repo::RepoError::Store(e)) => Err(e),
        Err(other) => Err(StoreError::Backend(other.to_string())),
    };
    if let Some(id) = &event.contact.contact_id
        && let Some(contact) = map(repo.get(id).await)?
    {
        return Ok(Some(contact));
    }
    if let Some(email) = event.contact.email.as_deref().and_then(|e| EmailAddress::parse(e).ok())
        && let Some(contact) = map(repo.find_by_email(&email).await)?
    {
        return Ok(Some(contact));
    }
    if let Some(anonymous_id) = &event.contact.anonymous_id
        && let Some(contact) = map(repo.find_by_anonymous_id(anonymous_id).await)?
    {
        return Ok(Some(contact));
    }
    // The shop back end vouches for a buyer Voronka has not met: they become a contact (without
    // marketing consent, which only a form or the person can give).
    if event.trusted
        && let Some(email) = event.contact.email.as_deref().and_then(|e| EmailAddress::parse(e).ok())
    {
        let settings = &deps.campaigns.settings;
        let now = deps.clock.now();
        let new_contact = || {
            let id = format!("c_{}", &email.identity_digest()[..26]);
            Contact::new(id, now, settings.default_locale.clone(), settings.default_time_zone.clone())
        };
        let created = repo.upsert_by_email(&email, now, new_contact, |_| {}).await;
        return map(created.map(|(contact, _)| Some(contact)));
    }
    Ok(None)
}

/// Applies an event to its contact exactly once; retries races on the contact's version.
pub async fn apply_event(deps: &EvaluatorDeps, event: &Event) -> Result<Outcome, StoreError> {
    let now = deps.clock.now();
    for _ in 0..20 {
        if deps.store.get(&marker_key(&event.event_id)).await?.is_some() {
            return Ok(Outcome::Duplicate);
        }
        let Some(mut contact) = resolve(deps, event).await? else {
            return Ok(Outcome::Unmatched("no contact for this event yet".into()));
        };
        let expected_version = contact.version;
        update_contact(&mut contact, event);
        contact.version = expected_version + 1;
        contact.updated_at = now;
        let marker =
            Item::new(&marker_key(&event.event_id), json!({"type": event.event_type, "contact_id": contact.id}))
                .with_ttl((now + MARKER_RETENTION).as_second());
        let ops = vec![
            TransactOp::Put { item: marker, condition: Some(Condition::NotExists) },
            TransactOp::Put {
                item: contact_item(&contact),
                condition: Some(Condition::equals("version", expected_version)),
            },
        ];
        match deps.store.transact(ops).await {
            Ok(()) => return Ok(Outcome::Applied),
            Err(StoreError::TransactionCancelled { failed }) if failed.contains(&0) => return Ok(Outcome::Duplicate),
            Err(StoreError::TransactionCancelled { .. } | StoreError::Throttled(_)) => continue,
            Err(other) => return Err(other),
        }
    }
    Err(StoreError::Throttled("the contact kept changing under this event".into()))
}

/// What an event does to the person's profile.
pub fn update_contact(contact: &mut Contact, event: &Event) {
    let at = event.occurred_at;
    if at > contact.last_activity_at && !event.event_type.starts_with("email_") {
        contact.last_activity_at = at;
    }
    if let Some(anonymous_id) = &event.contact.anonymous_id {
        contact.add_anonymous_id(anonymous_id);
    }
    match event.event_type.as_str() {
        "purchase" => {
            let revenue = event.properties.get("revenue").and_then(|v| v.as_f64()).unwrap_or(0.0);
            let orders = &mut contact.orders;
            orders.orders += 1;
            orders.revenue_minor += (revenue * 100.0).round() as i64;
            if let Some(currency) = event.properties.get("currency").and_then(|v| v.as_str()) {
                orders.currency = Some(currency.to_string());
            }
            if orders.first_order_at.is_none_or(|first| at < first) {
                orders.first_order_at = Some(at);
            }
            if orders.last_order_at.is_none_or(|last| at > last) {
                orders.last_order_at = Some(at);
            }
            let target = if orders.orders > 1 { LifecycleStage::RepeatCustomer } else { LifecycleStage::Customer };
            contact.stage = contact.stage.advanced_to(target);
        }
        "email_opened" => contact.engagement_score += OPEN_POINTS,
        "email_clicked" => contact.engagement_score += CLICK_POINTS,
        "email_bounced" if event.properties.get("permanent").and_then(|v| v.as_bool()) == Some(true) => {
            contact.suppressions.entry(SuppressionReason::HardBounce).or_insert(at);
        }
        "email_complained" => {
            if let std::collections::btree_map::Entry::Vacant(e) =
                contact.suppressions.entry(SuppressionReason::Complaint)
            {
                e.insert(at);
                contact.record_consent(ConsentReceipt {
                    id: format!("complaint_{}", event.event_id),
                    channel: Channel::Email,
                    granted: false,
                    at,
                    form_id: None,
                    ip: None,
                    user_agent: None,
                    text_version: "spam-complaint".into(),
                    double_opt_in: false,
                    submission_id: None,
                });
            }
        }
        _ => {}
    }
}
