//! trigger-evaluator: consumes the `events` queue. Every event changes its contact exactly once:
//! the contact's new state and a marker of the event's id are written in one conditional
//! transaction, so a redelivered batch changes nothing twice.
//!
//! Events come from lead-capture (forms, behaviour, purchases), from the sender (`email_sent`)
//! and from SES through SNS (delivery, bounce, complaint, open, click).

pub mod aggregates;
pub mod carts;
pub mod engine;

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use serde_json::json;
use voronka_domain::campaigns::Campaigns;
use voronka_domain::journeys::Trigger;
use voronka_domain::model::{Channel, ConsentReceipt, Contact, EmailAddress, Event, LifecycleStage, SuppressionReason};
use voronka_domain::ports::store::MAX_TRANSACTION_OPS;
use voronka_domain::ports::{
    Clock, Condition, Index, Item, Key, Query, Queue, SortKeyRange, Store, StoreError, TransactOp,
};
use voronka_domain::repo::ContactRepository;
use voronka_domain::repo::consent_receipts;
use voronka_domain::repo::contacts::contact_item;
use voronka_domain::repo::due::{self, DueItem};
use voronka_domain::repo::journey_state;
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
    /// Keys the discount codes (the link-signing secret, so codes cannot be guessed).
    pub token_key: String,
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
    // Due work filed under an anonymous visitor names them `anon:<id>`.
    if let Some(anonymous_id) = event.contact.contact_id.as_deref().and_then(|id| id.strip_prefix("anon:")) {
        return match repo.find_by_anonymous_id(anonymous_id).await {
            Ok(found) => Ok(found),
            Err(voronka_domain::repo::RepoError::Store(e)) => Err(e),
            Err(other) => Err(StoreError::Backend(other.to_string())),
        };
    }
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
    // For SES feedback this is the recipient of a bounce or complaint: the identity key finds the
    // person when the message carried no (or a stale) contact tag.
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
    // Mail events are about people Voronka (or the shop, on the same identity) already wrote to:
    // they never make a contact.
    let about_mail = event.event_type.starts_with("email_");
    if about_mail {
        if feedback::FEEDBACK_EVENT_TYPES.contains(&event.event_type.as_str()) {
            let reason = match (&event.contact.contact_id, &event.contact.email) {
                (Some(_), Some(_)) => "neither the tagged contact nor the recipient address is known",
                (None, Some(_)) => "no contact has the recipient address",
                (Some(_), None) => "the tagged contact is unknown",
                (None, None) => "no contact tag; only bounces and complaints are matched by recipient address",
            };
            let message_id = event.properties.get("message_id").and_then(|v| v.as_str()).unwrap_or("");
            tracing::info!(event_type = %event.event_type, message_id, reason, "ses feedback matched no contact");
        }
        return Ok(None);
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

/// The subject trigger counts are kept under: the contact, or an anonymous visitor.
fn subjects(contact: &Contact) -> Vec<String> {
    std::iter::once(contact.id.clone()).chain(contact.anonymous_ids.iter().map(|a| format!("anon:{a}"))).collect()
}

fn trigger_key(subject: &str, count_key: &str, at: Timestamp, event_id: &str) -> Key {
    Key::new(format!("TRIG#{subject}"), format!("{count_key}#{:012}#{event_id}", at.as_second()))
}

/// Counting-trigger items for this event, and how many matching events (it included) fall in
/// each trigger's window, summed over the contact and the anonymous ids it has been merged from.
async fn count_triggers(
    deps: &EvaluatorDeps,
    event: &Event,
    subjects: &[String],
) -> Result<(BTreeMap<String, usize>, Vec<Item>), StoreError> {
    let mut counts = BTreeMap::new();
    let mut items = Vec::new();
    let mut longest: BTreeMap<String, i64> = BTreeMap::new();
    for journey in deps.campaigns.journeys.values().filter(|j| j.enabled) {
        if let (Some(key), Trigger::Event { within_hours: Some(hours), .. }) =
            (engine::count_key(&journey.trigger, event), &journey.trigger)
        {
            let entry = longest.entry(key).or_insert(0);
            *entry = (*entry).max(*hours);
        }
    }
    for (key, hours) in longest {
        let from = event.occurred_at - SignedDuration::from_hours(hours);
        let mut seen = 1; // this event
        for subject in subjects {
            let query = Query::partition(Index::Table, format!("TRIG#{subject}")).range(SortKeyRange::Between(
                format!("{key}#{:012}", from.as_second()),
                format!("{key}#{:012}#~", event.occurred_at.as_second()),
            ));
            seen += deps
                .store
                .query(query)
                .await?
                .items
                .iter()
                .filter(|i| i.get_str("event_id") != Some(event.event_id.as_str()))
                .count();
        }
        counts.insert(key.clone(), seen);
        let ttl = (event.occurred_at + SignedDuration::from_hours(hours.max(24) + 24)).as_second();
        items.push(
            Item::new(
                &trigger_key(&subjects[0], &key, event.occurred_at, &event.event_id),
                json!({"event_id": event.event_id}),
            )
            .with_ttl(ttl),
        );
    }
    Ok((counts, items))
}

/// Applies an event to its contact exactly once; retries races on the contact's version.
pub async fn apply_event(deps: &EvaluatorDeps, event: &Event) -> Result<Outcome, StoreError> {
    let now = deps.clock.now();
    for _ in 0..20 {
        if deps.store.get(&marker_key(&event.event_id)).await?.is_some() {
            return Ok(Outcome::Duplicate);
        }
        let marker = Item::new(&marker_key(&event.event_id), json!({"type": event.event_type}))
            .with_ttl((now + MARKER_RETENTION).as_second());
        let Some(mut contact) = resolve(deps, event).await? else {
            // Anonymous behaviour is kept: trigger counts and carts, for when the visitor identifies.
            let anonymous = event.contact.anonymous_id.clone().or_else(|| {
                event.contact.contact_id.as_deref().and_then(|id| id.strip_prefix("anon:")).map(str::to_string)
            });
            if let Some(anonymous_id) = anonymous {
                let subject = format!("anon:{anonymous_id}");
                let (_, count_items) = count_triggers(deps, event, std::slice::from_ref(&subject)).await?;
                let mut counters = aggregates::Counters::default();
                let store = deps.store.as_ref();
                let cart_effects = if carts::CART_EVENTS.contains(&event.event_type.as_str()) {
                    carts::on_cart_event(
                        store,
                        &deps.campaigns,
                        event,
                        &subject,
                        std::slice::from_ref(&subject),
                        &mut counters,
                    )
                    .await?
                } else if event.event_type == carts::IDLE_EVENT {
                    carts::on_idle(store, &deps.campaigns, event, &subject, &mut counters).await?
                } else {
                    carts::CartEffects::default()
                };
                let mut ops = vec![TransactOp::Put { item: marker, condition: Some(Condition::NotExists) }];
                ops.extend(count_items.into_iter().map(|item| TransactOp::Put { item, condition: None }));
                ops.extend(due::cancel_ops(store, &subject, &cart_effects.cancel_groups).await?);
                ops.extend(cart_effects.ops);
                ops.extend(cart_effects.due.iter().map(|d| d.put_op()));
                ops.extend(counters.into_ops());
                return match deps.store.transact(ops).await {
                    Ok(()) => Ok(Outcome::Unmatched("anonymous: kept for later".into())),
                    Err(StoreError::TransactionCancelled { failed }) if failed.contains(&0) => Ok(Outcome::Duplicate),
                    Err(StoreError::TransactionCancelled { .. } | StoreError::Throttled(_)) => continue,
                    Err(other) => Err(other),
                };
            }
            return Ok(Outcome::Unmatched("no contact for this event yet".into()));
        };
        let before = contact.clone();
        let expected_version = contact.version;
        update_contact(&mut contact, event, &deps.campaigns.settings);

        let (trigger_counts, count_items) = count_triggers(deps, event, &subjects(&contact)).await?;
        let states = journey_state::load_all(deps.store.as_ref(), &contact.id).await?;
        let decision = engine::Decision {
            campaigns: &deps.campaigns,
            event,
            before: &before,
            now,
            trigger_counts: &trigger_counts,
        };
        let effects = engine::decide(&decision, &mut contact, &states);

        let mut counters = aggregates::Counters::default();
        aggregates::record(&mut counters, &deps.campaigns.settings, event, &before, &contact);
        let owners = subjects(&contact);
        let store = deps.store.as_ref();
        let mut cart_effects = match event.event_type.as_str() {
            kind if carts::CART_EVENTS.contains(&kind) => {
                carts::on_cart_event(store, &deps.campaigns, event, &contact.id, &owners, &mut counters).await?
            }
            carts::IDLE_EVENT => carts::on_idle(store, &deps.campaigns, event, &contact.id, &mut counters).await?,
            carts::STEP_EVENT => {
                carts::on_step(store, &deps.campaigns, &deps.token_key, event, &contact, now, &mut counters).await?
            }
            "unsubscribed" | "email_complained" => {
                carts::CartEffects { cancel_groups: carts::on_unsubscribe(store, &owners).await?, ..Default::default() }
            }
            _ => carts::CartEffects::default(),
        };
        if event.event_type == "purchase" {
            let redeemed = carts::redeem(store, &deps.campaigns, event, &contact, &mut counters).await?;
            if !redeemed.is_empty()
                && let Some(code) = event.properties.get("discount_code").and_then(|c| c.as_str())
            {
                cart_effects.redeemed.push(code.to_string());
            }
            cart_effects.ops.extend(redeemed);
        }
        // Codes live with the contact too: what they were given and what they used.
        for issued in cart_effects.issued.drain(..) {
            if !contact.discount_codes.iter().any(|c| c.code == issued.code) {
                contact.discount_codes.push(issued);
            }
        }
        for code in &cart_effects.redeemed {
            if let Some(held) = contact.discount_codes.iter_mut().find(|c| &c.code == code) {
                held.redeemed_at = Some(event.occurred_at);
            }
        }
        for (journey, group, metric, amount) in &effects.journey_counts {
            aggregates::record_journey(&mut counters, &deps.campaigns.settings, now, journey, *group, metric, *amount);
        }

        contact.version = expected_version + 1;
        contact.updated_at = now;
        let mut ops = vec![
            TransactOp::Put { item: marker, condition: Some(Condition::NotExists) },
            TransactOp::Put {
                item: contact_item(&contact),
                condition: Some(Condition::equals("version", expected_version)),
            },
        ];
        ops.extend(consent_receipts::new_receipt_ops(&before.consent_receipts, &contact));
        ops.extend(count_items.into_iter().map(|item| TransactOp::Put { item, condition: None }));
        for state in &effects.states {
            let previous = states.get(&state.journey_id).map(|s| s.version);
            let condition = match previous {
                Some(version) => Condition::equals("version", version),
                None => Condition::NotExists,
            };
            ops.push(TransactOp::Put { item: state.to_item(), condition: Some(condition) });
        }
        // Cancellations reach items that exist already; what this event creates has fresh ids.
        let ending: Vec<String> = effects.cancel_groups.iter().chain(&cart_effects.cancel_groups).cloned().collect();
        for owner in &owners {
            ops.extend(due::cancel_ops(store, owner, &ending).await?);
        }
        ops.extend(cart_effects.ops);
        let created: Vec<&DueItem> = effects.due.iter().chain(&cart_effects.due).collect();
        ops.extend(created.iter().map(|d| d.put_op()));
        ops.extend(counters.into_ops());
        if ops.len() > MAX_TRANSACTION_OPS {
            tracing::error!(ops = ops.len(), event_type = %event.event_type, "an event's effects exceed one transaction");
            return Err(StoreError::Invalid(format!("{} writes for one event", ops.len())));
        }
        match deps.store.transact(ops).await {
            Ok(()) => {
                if !effects.entered.is_empty() || !effects.exited.is_empty() {
                    tracing::info!(contact_id = %contact.id, entered = ?effects.entered, exited = ?effects.exited, "journeys changed");
                }
                let now_due: Vec<DueItem> = created.into_iter().filter(|d| d.due_at <= now).cloned().collect();
                due::dispatch_now(deps.store.as_ref(), deps.queue.as_ref(), &now_due, now).await;
                return Ok(Outcome::Applied);
            }
            Err(StoreError::TransactionCancelled { failed }) if failed.contains(&0) => return Ok(Outcome::Duplicate),
            Err(StoreError::TransactionCancelled { .. } | StoreError::Throttled(_)) => continue,
            Err(other) => return Err(other),
        }
    }
    Err(StoreError::Throttled("the contact kept changing under this event".into()))
}

/// What an event does to the person's profile.
pub fn update_contact(contact: &mut Contact, event: &Event, settings: &voronka_domain::campaigns::Settings) {
    let at = event.occurred_at;
    let is_activity = !event.event_type.starts_with("email_")
        && !matches!(event.event_type.as_str(), engine::CONTINUE_EVENT | engine::INACTIVITY_EVENT);
    if is_activity {
        if at > contact.last_activity_at {
            contact.last_activity_at = at;
        }
        let day = aggregates::day(at, settings);
        if contact.last_active_day.as_deref() != Some(day.as_str()) {
            contact.active_days += 1;
            contact.last_active_day = Some(day);
        }
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
            orders.recent_orders.push(at);
            orders.recent_orders.sort();
            if orders.recent_orders.len() > voronka_domain::model::contact::MAX_RECENT_ORDERS {
                orders.recent_orders.remove(0);
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
