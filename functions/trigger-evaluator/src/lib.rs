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

use jiff::{SignedDuration, Timestamp};
use serde_json::json;
use voronka_domain::deps::Deps;
use voronka_domain::journeys::Trigger;
use voronka_domain::model::{
    Channel, ConsentReceipt, Contact, EmailAddress, Event, EventSource, LifecycleStage, SuppressionReason,
};
use voronka_domain::ports::store::MAX_TRANSACTION_OPS;
use voronka_domain::ports::{
    BatchHandler, Condition, Delivery, Index, Item, Key, Query, SortKeyRange, StoreError, TransactOp, query_all,
};
use voronka_domain::repo::ContactRepository;
use voronka_domain::repo::consent_receipts;
use voronka_domain::repo::contacts::{contact_item, link_anonymous_ids};
use voronka_domain::repo::due::{self, DueItem, DueWork};
use voronka_domain::repo::journey_state;
use voronka_domain::sending::feedback;

/// How long processed event ids are remembered: longer than any redelivery.
pub const MARKER_RETENTION: SignedDuration = SignedDuration::from_hours(24 * 30);
/// Engagement points per email interaction (scoring with decay comes with lead scoring).
const OPEN_POINTS: i64 = 1;
const CLICK_POINTS: i64 = 3;

/// The evaluator needs only what every function shares; discount codes are keyed with the
/// link-signing secret (`secrets.token_key`), so codes cannot be guessed.
#[derive(Clone)]
pub struct EvaluatorDeps {
    pub shared: Deps,
}

impl std::ops::Deref for EvaluatorDeps {
    type Target = Deps;

    fn deref(&self) -> &Deps {
        &self.shared
    }
}

impl std::ops::DerefMut for EvaluatorDeps {
    fn deref_mut(&mut self) -> &mut Deps {
        &mut self.shared
    }
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

#[async_trait::async_trait]
impl BatchHandler for EvaluatorDeps {
    async fn handle_batch(&self, deliveries: Vec<Delivery>) -> Vec<String> {
        process_batch(self, deliveries).await
    }
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

/// Reads one queue message: the events of an SES notification (one per person it suppresses), or
/// one of Voronka's events.
pub fn read_message(body: &str, now: Timestamp) -> Result<Vec<Event>, String> {
    if let Some(feedback) = feedback::parse(body) {
        return Ok(feedback.to_events(now));
    }
    serde_json::from_str::<Event>(body).map(|event| vec![event]).map_err(|e| format!("not an event: {e}"))
}

pub async fn handle_message(deps: &EvaluatorDeps, body: &str) -> Outcome {
    let now = deps.clock.now();
    let events = match read_message(body, now) {
        Ok(events) if events.is_empty() => return Outcome::Unmatched("feedback Voronka does not track".into()),
        Ok(events) => events,
        Err(reason) => return Outcome::Malformed(reason),
    };
    // Each event is applied once by its own marker, so a retry of the message repeats nothing.
    let mut first = None;
    for event in &events {
        let outcome = match apply_event(deps, event).await {
            Ok(outcome) => outcome,
            Err(error) => return Outcome::Retry(error.to_string()),
        };
        if matches!(outcome, Outcome::Retry(_) | Outcome::Malformed(_)) {
            return outcome;
        }
        first.get_or_insert(outcome);
    }
    first.unwrap_or(Outcome::Duplicate)
}

/// The processed marker of an event, by its source-scoped id (`Event::dedupe_key`).
fn marker_key(dedupe_key: &str) -> Key {
    Key::new(format!("PROCESSED#{dedupe_key}"), "EVENT")
}

/// The internal event that finishes the part of an event too large for its own transaction.
pub const FOLLOW_UP_EVENT: &str = voronka_domain::model::event::EVENT_FOLLOW_UP;
/// Writes of one transaction that carry data; one more place is kept for a marker.
const MAX_FOLLOW_UP_WRITES: usize = MAX_TRANSACTION_OPS - 1;

/// The work of an event beyond what must commit with it: aggregate counters and cancellations of
/// due items. Usually it joins the event's transaction; when everything together would pass
/// DynamoDB's 100 operations, it is recorded as one due item in that transaction and finished by
/// a follow-up (`FOLLOW_UP_EVENT`), so the must-have part (marker, contact, suppressions, states,
/// new due items) always commits.
struct Deferrable {
    counters: aggregates::Counters,
    /// Due-item groups to cancel, under each owner (a contact and its anonymous ids).
    cancel_owners: Vec<String>,
    cancel_groups: Vec<String>,
}

/// Commits an event's transaction: `core` with the deferrable work, or, when that is too large,
/// `core` with a follow-up item. Returns the due items created that are due now, to dispatch.
async fn commit(
    deps: &EvaluatorDeps,
    event: &Event,
    mut core: Vec<TransactOp>,
    mut created: Vec<DueItem>,
    deferrable: Deferrable,
) -> Result<Vec<DueItem>, StoreError> {
    let now = deps.clock.now();
    let store = deps.store.as_ref();
    let mut cancellations = Vec::new();
    for owner in &deferrable.cancel_owners {
        cancellations.extend(due::cancel_ops(store, owner, &deferrable.cancel_groups).await?);
    }
    let own_writes = core.len() + created.len();
    if own_writes + cancellations.len() + deferrable.counters.len() <= MAX_TRANSACTION_OPS {
        core.extend(created.iter().map(|d| d.put_op()));
        core.extend(cancellations);
        core.extend(deferrable.counters.into_ops());
    } else {
        // Cancellations stay in the event's own transaction while they fit (exits are
        // immediate); only when they alone overflow do they follow, as the keys of the items
        // pending now, so the follow-up never reaches an item created by this or a later event.
        let deferred_cancellations: Vec<Key> = if own_writes + 1 + cancellations.len() <= MAX_TRANSACTION_OPS {
            core.extend(cancellations);
            Vec::new()
        } else {
            cancellations
                .into_iter()
                .filter_map(|op| match op {
                    TransactOp::Update { key, .. } => Some(key),
                    _ => None,
                })
                .collect()
        };
        let deferred_writes = deferrable.counters.len() + deferred_cancellations.len();
        let mut properties = serde_json::Map::new();
        properties.insert("event".into(), json!(event.dedupe_key()));
        properties.insert("counters".into(), deferrable.counters.to_json());
        properties.insert(
            "cancel".into(),
            json!(deferred_cancellations.iter().map(|k| json!({"pk": k.pk, "sk": k.sk})).collect::<Vec<_>>()),
        );
        let owner = deferrable.cancel_owners.first().cloned().or_else(|| event.contact.contact_id.clone());
        let follow_up = DueItem {
            id: format!("follow-up:{}", event.dedupe_key()),
            contact_id: owner.unwrap_or_else(|| "unowned".into()),
            due_at: now,
            group: "follow-up".into(),
            work: DueWork::Evaluate { event_type: FOLLOW_UP_EVENT.into(), properties },
        };
        tracing::info!(
            event_type = %event.event_type,
            deferred_writes,
            "an event's counters and cancellations go to a follow-up"
        );
        created.push(follow_up);
        core.extend(created.iter().map(|d| d.put_op()));
    }
    if core.len() > MAX_TRANSACTION_OPS {
        tracing::error!(ops = core.len(), event_type = %event.event_type, "an event's own writes exceed one transaction");
        return Err(StoreError::Invalid(format!("{} writes for one event", core.len())));
    }
    deps.store.transact(core).await?;
    Ok(created.into_iter().filter(|d| d.due_at <= now).collect())
}

/// Finishes the deferred part of a large event: counters in transactions of at most 99 writes,
/// each with its own marker (a redelivery adds nothing twice), and cancellations one by one
/// (each is conditional on the item still pending, so repeating one changes nothing).
async fn apply_follow_up(deps: &EvaluatorDeps, event: &Event) -> Result<Outcome, StoreError> {
    let store = deps.store.as_ref();
    let now = deps.clock.now();
    let counters = match event.properties.get("counters").map(aggregates::Counters::from_json) {
        Some(Ok(counters)) => counters,
        None => aggregates::Counters::default(),
        Some(Err(reason)) => return Ok(Outcome::Malformed(format!("follow-up counters: {reason}"))),
    };
    let cancellations: Vec<Key> = event
        .properties
        .get("cancel")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
        .filter_map(|k| Some(Key::new(k["pk"].as_str()?, k["sk"].as_str()?)))
        .filter(|k| k.pk.starts_with("DUE#"))
        .collect();
    let ops = counters.into_ops();
    for (part, chunk) in ops.chunks(MAX_FOLLOW_UP_WRITES).enumerate() {
        let marker =
            Item::new(&marker_key(&format!("{}#part{part}", event.dedupe_key())), json!({"type": FOLLOW_UP_EVENT}))
                .with_ttl((now + MARKER_RETENTION).as_second());
        let mut transaction = vec![TransactOp::Put { item: marker, condition: Some(Condition::NotExists) }];
        transaction.extend(chunk.iter().cloned());
        match store.transact(transaction).await {
            Ok(()) => {}
            Err(StoreError::TransactionCancelled { failed }) if failed.contains(&0) => {}
            Err(StoreError::TransactionCancelled { .. }) => {
                return Err(StoreError::Throttled("a follow-up's counters met a concurrent write".into()));
            }
            Err(other) => return Err(other),
        }
    }
    for key in cancellations {
        let TransactOp::Update { key, actions, condition } = due::cancel_op(key) else { continue };
        match store.update(&key, actions, condition).await {
            Ok(_) | Err(StoreError::ConditionFailed) => {}
            Err(other) => return Err(other),
        }
    }
    Ok(Outcome::Applied)
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
    // A browser cannot prove who it is: only the anonymous id a form or a login linked counts.
    if !event.trusted {
        return match &event.contact.anonymous_id {
            Some(anonymous_id) => map(repo.find_by_anonymous_id(anonymous_id).await),
            None => Ok(None),
        };
    }
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
            seen += query_all(deps.store.as_ref(), query)
                .await?
                .iter()
                .filter(|i| i.get_str("event_id") != Some(event.dedupe_key().as_str()))
                .count();
        }
        counts.insert(key.clone(), seen);
        let ttl = (event.occurred_at + SignedDuration::from_hours(hours.max(24) + 24)).as_second();
        items.push(
            Item::new(
                &trigger_key(&subjects[0], &key, event.occurred_at, &event.dedupe_key()),
                json!({"event_id": event.dedupe_key()}),
            )
            .with_ttl(ttl),
        );
    }
    Ok((counts, items))
}

/// Applies an event to its contact exactly once; retries races on the contact's version.
pub async fn apply_event(deps: &EvaluatorDeps, event: &Event) -> Result<Outcome, StoreError> {
    // Due work drives sends and writes only Voronka may decide; lead-capture refuses these types
    // from outside, and this holds even for a message that reached the queue another way.
    if voronka_domain::model::event::is_due_work_type(&event.event_type)
        && matches!(event.source, EventSource::Browser | EventSource::Shop)
    {
        return Ok(Outcome::Unmatched("a due-work event type from outside Voronka".into()));
    }
    if event.event_type == FOLLOW_UP_EVENT {
        return apply_follow_up(deps, event).await;
    }
    let now = deps.clock.now();
    let dedupe_key = event.dedupe_key();
    for _ in 0..20 {
        if deps.store.get(&marker_key(&dedupe_key)).await?.is_some() {
            return Ok(Outcome::Duplicate);
        }
        let marker = Item::new(&marker_key(&dedupe_key), json!({"type": event.event_type}))
            .with_ttl((now + MARKER_RETENTION).as_second());
        let Some(mut contact) = resolve(deps, event).await? else {
            // Anonymous behaviour is kept: trigger counts and carts, for when the visitor identifies.
            let anonymous = event.contact.anonymous_id.clone().or_else(|| {
                event.contact.contact_id.as_deref().and_then(|id| id.strip_prefix("anon:")).map(str::to_string)
            });
            let Some(anonymous_id) = anonymous else {
                return Ok(Outcome::Unmatched("no contact for this event yet".into()));
            };
            let subject = format!("anon:{anonymous_id}");
            let owners = vec![subject.clone()];
            let (_, count_items) = count_triggers(deps, event, &owners).await?;
            let mut counters = aggregates::Counters::default();
            let cart_effects = carts_for(deps, event, None, &subject, &owners, &mut counters).await?;
            let mut ops = vec![TransactOp::Put { item: marker, condition: Some(Condition::NotExists) }];
            ops.extend(count_items.into_iter().map(|item| TransactOp::Put { item, condition: None }));
            ops.extend(cart_effects.ops);
            let deferrable = Deferrable { counters, cancel_owners: owners, cancel_groups: cart_effects.cancel_groups };
            return match commit(deps, event, ops, cart_effects.due, deferrable).await {
                Ok(now_due) => {
                    due::dispatch_now(deps.store.as_ref(), deps.queue.as_ref(), &now_due, now).await;
                    Ok(Outcome::Unmatched("anonymous: kept for later".into()))
                }
                Err(StoreError::TransactionCancelled { failed }) if failed.contains(&0) => Ok(Outcome::Duplicate),
                Err(StoreError::TransactionCancelled { .. } | StoreError::Throttled(_)) => continue,
                Err(other) => Err(other),
            };
        };
        let before = contact.clone();
        let expected_version = contact.version;
        update_contact(&mut contact, event, &deps.campaigns.settings);
        // The shop's signed events (a login, a purchase) link the visitor's anonymous id.
        let anonymous_links = link_anonymous_ids(deps.store.as_ref(), &mut contact, &before.anonymous_ids).await?;

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
        let mut cart_effects = carts_for(deps, event, Some(&contact), &contact.id, &owners, &mut counters).await?;
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

        contact.keep_within_bounds();
        consent_receipts::itemise_legacy_receipts(deps.store.as_ref(), &before.consent_receipts, &mut contact).await?;
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
        ops.extend(anonymous_links);
        ops.extend(count_items.into_iter().map(|item| TransactOp::Put { item, condition: None }));
        for state in &effects.states {
            let previous = states.get(&state.journey_id).map(|s| s.version);
            let condition = match previous {
                Some(version) => Condition::equals("version", version),
                None => Condition::NotExists,
            };
            ops.push(TransactOp::Put { item: state.to_item(), condition: Some(condition) });
        }
        ops.extend(cart_effects.ops);
        // Cancellations reach items that exist already; what this event creates has fresh ids.
        let cancel_groups = effects.cancel_groups.iter().chain(&cart_effects.cancel_groups).cloned().collect();
        let created: Vec<DueItem> = effects.due.into_iter().chain(cart_effects.due).collect();
        let deferrable = Deferrable { counters, cancel_owners: owners, cancel_groups };
        match commit(deps, event, ops, created, deferrable).await {
            Ok(now_due) => {
                if !effects.entered.is_empty() || !effects.exited.is_empty() {
                    tracing::info!(contact_id = %contact.id, entered = ?effects.entered, exited = ?effects.exited, "journeys changed");
                }
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

/// What an event does to carts: cart events, idle timers, reminder steps (for a known contact),
/// an unsubscribe or complaint ending every sequence, and a purchase redeeming its code.
async fn carts_for(
    deps: &EvaluatorDeps,
    event: &Event,
    contact: Option<&Contact>,
    owner: &str,
    owners: &[String],
    counters: &mut aggregates::Counters,
) -> Result<carts::CartEffects, StoreError> {
    let store = deps.store.as_ref();
    let campaigns = &deps.campaigns;
    let mut effects = match event.event_type.as_str() {
        kind if carts::CART_EVENTS.contains(&kind) => {
            carts::on_cart_event(store, campaigns, event, owner, owners, counters).await?
        }
        carts::IDLE_EVENT => carts::on_idle(store, campaigns, event, owner, counters).await?,
        carts::STEP_EVENT => match contact {
            Some(contact) => {
                let now = deps.clock.now();
                carts::on_step(store, campaigns, &deps.secrets.token_key, event, contact, now, counters).await?
            }
            None => carts::CartEffects::default(),
        },
        "unsubscribed" | "email_complained" => {
            carts::CartEffects { cancel_groups: carts::on_unsubscribe(store, owners).await?, ..Default::default() }
        }
        _ => carts::CartEffects::default(),
    };
    if event.event_type == "purchase"
        && let Some(contact) = contact
    {
        let redeemed = carts::redeem(store, campaigns, event, contact, counters).await?;
        if !redeemed.is_empty()
            && let Some(code) = event.properties.get("discount_code").and_then(|c| c.as_str())
        {
            effects.redeemed.push(code.to_string());
        }
        effects.ops.extend(redeemed);
    }
    Ok(effects)
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
