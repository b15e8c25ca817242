//! trigger-evaluator: consumes the `events` queue. Every event changes its contact exactly once:
//! the contact's new state and a marker of the event's id are written in one conditional
//! transaction, so a redelivered batch changes nothing twice.
//!
//! Events come from lead-capture (forms, behaviour, purchases), from the sender (`email_sent`)
//! and from SES through SNS (delivery, bounce, complaint, open, click). Hard bounces and
//! complaints are also counted, once per notification, for the reputation guard
//! (`sending::reputation`). Each batch writes one EMF line of its outcomes.

pub mod carts;

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use voronka_domain::deps::Deps;
use voronka_domain::journeys::{Trigger, engine};
use voronka_domain::model::{Contact, EmailAddress, Event, EventSource, EventType, ScoreMilestone};
use voronka_domain::ports::store::MAX_TRANSACTION_OPS;
use voronka_domain::ports::{BatchHandler, Condition, Delivery, Item, Key, StoreError, TransactOp};
use voronka_domain::repo::aggregates;
use voronka_domain::repo::consent_receipts;
use voronka_domain::repo::contacts::{contact_item, link_anonymous_ids};
use voronka_domain::repo::deferred::DeferredWork;
use voronka_domain::repo::due::{self, DueItem, DueWork};
use voronka_domain::repo::event_log;
use voronka_domain::repo::reputation::{self as reputation_counts, Counted};
use voronka_domain::repo::{
    ContactLookup, ContactRepository, anonymous_id_of, anonymous_subject, journey_state, kpi_snapshots, personal_data,
    processed, trigger_counts,
};
use voronka_domain::sending::feedback;
use voronka_domain::sending::policy::time_zone_or_utc;
use voronka_domain::sending::reputation;
use voronka_telemetry::metrics::Metrics;

/// How long processed event ids are remembered: longer than any redelivery.
pub const MARKER_RETENTION: SignedDuration = SignedDuration::from_hours(24 * 30);

/// The evaluator needs only what every function shares; discount codes are keyed with the
/// link-signing secret (`secrets.token_key()`), so codes cannot be guessed.
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

/// The counters every evaluator line carries, zero or not.
pub const METRICS: [&str; 7] =
    ["Applied", "Duplicate", "Unmatched", "Retry", "DeadLetterBound", "BouncesCounted", "ComplaintsCounted"];

/// Handles a batch; returns the ids of the messages to report as failures.
pub async fn process_batch(deps: &EvaluatorDeps, deliveries: Vec<Delivery>) -> Vec<String> {
    let mut failed = Vec::new();
    let mut metrics = Metrics::new("trigger-evaluator", &METRICS);
    for delivery in deliveries {
        let (outcome, counted) = handle_counted_message(deps, &delivery.body).await;
        match counted {
            Some(Counted::Bounce) => metrics.count("BouncesCounted"),
            Some(Counted::Complaint) => metrics.count("ComplaintsCounted"),
            None => {}
        }
        match &outcome {
            Outcome::Retry(reason) => {
                tracing::warn!(message_id = %delivery.message_id, reason = %reason, "event will be retried");
                metrics.count("Retry");
                failed.push(delivery.message_id);
            }
            Outcome::Malformed(reason) => {
                // It can never succeed: fail it into the dead-letter queue, where its alarm fires.
                tracing::error!(message_id = %delivery.message_id, reason = %reason, "malformed event message");
                metrics.count("DeadLetterBound");
                failed.push(delivery.message_id);
            }
            other => {
                metrics.count(match other {
                    Outcome::Applied => "Applied",
                    Outcome::Duplicate => "Duplicate",
                    _ => "Unmatched",
                });
                tracing::debug!(message_id = %delivery.message_id, outcome = ?other, "event handled")
            }
        }
    }
    metrics.flush();
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
    handle_counted_message(deps, body).await.0
}

/// Counts a hard bounce or a complaint for the reputation guard (once per SES notification, by
/// its marker), then handles the message; says what it counted this time.
async fn handle_counted_message(deps: &EvaluatorDeps, body: &str) -> (Outcome, Option<Counted>) {
    let mut counted = None;
    if let Some(feedback) = feedback::parse(body)
        && let Some(kind) = reputation::counted(&feedback)
    {
        // In the hour its mail was sent, as SES counts it, so late feedback leaves the window with
        // its sends (the marker's TTL follows that hour).
        let at = reputation::counted_at(&feedback, deps.clock.now());
        match reputation_counts::count_feedback(deps.store.as_ref(), &feedback.message_id, kind, at).await {
            Ok(true) => counted = Some(kind),
            Ok(false) => {}
            Err(error) => return (Outcome::Retry(error.to_string()), None),
        }
    }
    (handle_events(deps, body).await, counted)
}

async fn handle_events(deps: &EvaluatorDeps, body: &str) -> Outcome {
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

/// Writes of one transaction that carry data; one more place is kept for a marker.
const MAX_FOLLOW_UP_WRITES: usize = MAX_TRANSACTION_OPS - 1;
/// Erasures of one shop buyer's derived ids followed before giving up (a guard, not a limit met).
const MAX_BUYER_ERASURES: usize = 100;

/// The work of an event beyond what must commit with it: aggregate counters and cancellations of
/// due items. Usually it joins the event's transaction; when everything together would pass
/// DynamoDB's 100 operations, it is recorded as one due item in that transaction and finished by
/// a follow-up (`EventType::EventFollowUp`), so the must-have part (marker, contact, suppressions, states,
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
        let owner = deferrable.cancel_owners.first().cloned().or_else(|| event.contact.contact_id.clone());
        let work = DeferredWork { counters: deferrable.counters, cancel: deferred_cancellations };
        let follow_up = work.due_item(&event.dedupe_key(), owner.unwrap_or_else(|| "unowned".into()), now);
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
    let DeferredWork { counters, cancel: cancellations } = match DeferredWork::read(event) {
        Ok(work) => work,
        Err(reason) => return Ok(Outcome::Malformed(reason)),
    };
    let ops = counters.into_ops();
    for (part, chunk) in ops.chunks(MAX_FOLLOW_UP_WRITES).enumerate() {
        let mut transaction = vec![processed::part_marker_op(&event.dedupe_key(), part, now + MARKER_RETENTION)];
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

/// Who an event is about, or why it must be dropped.
enum Resolved {
    Contact(Box<Contact>),
    Nobody,
    /// About an erased person: nothing may be written about them again.
    Erased(&'static str),
}

/// Finds the contact an event is about, unless the event is about an erased person: a contact id
/// that is a tombstone, or an address erased after the event happened or arrived (a late event
/// from the queue). A new sign-up after the erasure makes a new contact, and events about it
/// name the new id.
async fn resolve(deps: &EvaluatorDeps, event: &Event) -> Result<Resolved, StoreError> {
    let store_error = |e: voronka_domain::repo::RepoError| match e {
        voronka_domain::repo::RepoError::Store(e) => e,
        other => StoreError::Backend(other.to_string()),
    };
    if personal_data::names_erased_address(deps.store.as_ref(), &deps.secrets.token_keys, event).await? {
        return Ok(Resolved::Erased("names an address erased after the event"));
    }
    if event.trusted
        && let Some(id) = event.contact.contact_id.as_deref().filter(|id| anonymous_id_of(id).is_none())
    {
        let repo = ContactRepository::new(deps.store.as_ref());
        match repo.lookup(id).await.map_err(store_error)? {
            ContactLookup::Found(contact) => return Ok(Resolved::Contact(contact)),
            ContactLookup::Erased(_) => return Ok(Resolved::Erased("about an erased contact")),
            ContactLookup::Missing => {}
        }
    }
    if let Some(contact) = find_contact(deps, event).await? {
        return Ok(Resolved::Contact(Box::new(contact)));
    }
    // An anonymous id of an erased person stays erased for good: the browser that was forgotten
    // (late events from the queue, or the same browser going on) writes nothing under it again.
    let repo = ContactRepository::new(deps.store.as_ref());
    let named = event.contact.contact_id.as_deref().and_then(anonymous_id_of).into_iter();
    for anonymous_id in named.chain(event.contact.anonymous_id.as_deref()) {
        if let ContactLookup::Erased(_) = repo.lookup_by_anonymous_id(anonymous_id).await.map_err(store_error)? {
            return Ok(Resolved::Erased("names an erased anonymous id"));
        }
    }
    Ok(Resolved::Nobody)
}

/// Finds the contact an event is about by its identities (the contact id was looked up already).
async fn find_contact(deps: &EvaluatorDeps, event: &Event) -> Result<Option<Contact>, StoreError> {
    let repo = ContactRepository::new(deps.store.as_ref());
    // Due work filed under an anonymous visitor names them `anon:<id>`.
    let map = |r: Result<Option<Contact>, voronka_domain::repo::RepoError>| match r {
        Ok(c) => Ok(c),
        Err(voronka_domain::repo::RepoError::Store(e)) => Err(e),
        Err(other) => Err(StoreError::Backend(other.to_string())),
    };
    let store_error = |e: voronka_domain::repo::RepoError| match e {
        voronka_domain::repo::RepoError::Store(e) => e,
        other => StoreError::Backend(other.to_string()),
    };
    if let Some(anonymous_id) = event.contact.contact_id.as_deref().and_then(anonymous_id_of) {
        return map(repo.find_by_anonymous_id(anonymous_id).await);
    }
    // A browser cannot prove who it is: only the anonymous id a form or a login linked counts.
    if !event.trusted {
        return match &event.contact.anonymous_id {
            Some(anonymous_id) => map(repo.find_by_anonymous_id(anonymous_id).await),
            None => Ok(None),
        };
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
    if event.event_type.is_about_mail() {
        if feedback::FEEDBACK_EVENT_TYPES.contains(&event.event_type) {
            let reason = match (&event.contact.contact_id, &event.contact.email) {
                (Some(_), Some(_)) => "neither the tagged contact nor the recipient address is known",
                (None, Some(_)) => "no contact has the recipient address",
                (Some(_), None) => "the tagged contact is unknown",
                (None, None) => "no contact tag; only bounces and complaints are matched by recipient address",
            };
            let message_id = event.mail().message_id.unwrap_or_default();
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
        // The id is derived from the address so a retried event makes the same contact; a buyer
        // erased before gets an id of their own, since the old one is a tombstone for good: the
        // chain of tombstones leads to it, whatever became of the erased-address marker.
        let prefix = format!("c_{}", &email.identity_digest()[..26]);
        let mut id = prefix.clone();
        for _ in 0..MAX_BUYER_ERASURES {
            match repo.lookup(&id).await.map_err(store_error)? {
                ContactLookup::Erased(at) => id = format!("{prefix}_{}", at.as_second()),
                ContactLookup::Found(_) | ContactLookup::Missing => break,
            }
        }
        let new_contact =
            || Contact::new(id.clone(), now, settings.default_locale.clone(), settings.default_time_zone.clone());
        let created = repo.upsert_by_email(&email, now, new_contact, |_| {}).await;
        return map(created.map(|(contact, _)| Some(contact)));
    }
    Ok(None)
}

/// The subject trigger counts are kept under: the contact, or an anonymous visitor.
fn subjects(contact: &Contact) -> Vec<String> {
    std::iter::once(contact.id.clone()).chain(contact.anonymous_ids.iter().map(|a| anonymous_subject(a))).collect()
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
            let store = deps.store.as_ref();
            seen += trigger_counts::count_between(store, subject, &key, from, event.occurred_at, &event.dedupe_key())
                .await?;
        }
        counts.insert(key.clone(), seen);
        let expires_at = event.occurred_at + SignedDuration::from_hours(hours.max(24) + 24);
        items.push(trigger_counts::item(&subjects[0], &key, event.occurred_at, &event.dedupe_key(), expires_at));
    }
    Ok((counts, items))
}

/// Applies an event to its contact exactly once; retries races on the contact's version.
pub async fn apply_event(deps: &EvaluatorDeps, event: &Event) -> Result<Outcome, StoreError> {
    // Due work drives sends and writes only Voronka may decide; lead-capture refuses these types
    // from outside, and this holds even for a message that reached the queue another way.
    if event.event_type.is_due_work() && matches!(event.source, EventSource::Browser | EventSource::Shop) {
        return Ok(Outcome::Unmatched("a due-work event type from outside Voronka".into()));
    }
    if event.event_type == EventType::EventFollowUp {
        return apply_follow_up(deps, event).await;
    }
    for _ in 0..20 {
        if processed::is_processed(deps.store.as_ref(), &event.dedupe_key()).await? {
            return Ok(Outcome::Duplicate);
        }
        let subject = match resolve(deps, event).await? {
            Resolved::Contact(contact) => Subject::Known(contact),
            Resolved::Erased(reason) => return Ok(Outcome::Unmatched(reason.into())),
            // Anonymous behaviour is kept: trigger counts and carts, for when the visitor identifies.
            Resolved::Nobody => match anonymous_visitor(event) {
                Some(anonymous_id) => Subject::Anonymous(anonymous_id),
                None => return Ok(Outcome::Unmatched("no contact for this event yet".into())),
            },
        };
        let writes = event_writes(deps, event, subject).await?;
        match commit(deps, event, writes.core, writes.due, writes.deferrable).await {
            Ok(now_due) => {
                if let Some((contact_id, entered, exited)) = &writes.journeys_changed {
                    tracing::info!(contact_id = %contact_id, entered = ?entered, exited = ?exited, "journeys changed");
                }
                due::dispatch_now(deps.store.as_ref(), deps.queue.as_ref(), &now_due, deps.clock.now()).await;
                return Ok(writes.outcome);
            }
            Err(StoreError::TransactionCancelled { failed }) if failed.contains(&0) => return Ok(Outcome::Duplicate),
            Err(StoreError::TransactionCancelled { .. } | StoreError::Throttled(_)) => continue,
            Err(other) => return Err(other),
        }
    }
    Err(StoreError::Throttled("the contact kept changing under this event".into()))
}

/// Who an event is about, as far as Voronka knows.
enum Subject {
    Known(Box<Contact>),
    /// A visitor not identified yet, by anonymous id.
    Anonymous(String),
}

/// The anonymous visitor an unresolved event is about: its anonymous id, or the `anon:<id>` its
/// due work is filed under.
fn anonymous_visitor(event: &Event) -> Option<String> {
    event
        .contact
        .anonymous_id
        .clone()
        .or_else(|| event.contact.contact_id.as_deref().and_then(anonymous_id_of).map(str::to_string))
}

/// Everything one event writes, decided before anything is written.
struct EventWrites {
    /// The must-have part, the processed marker first (a cancelled transaction that names index 0
    /// means a twin got there first).
    core: Vec<TransactOp>,
    due: Vec<DueItem>,
    deferrable: Deferrable,
    outcome: Outcome,
    /// (contact, entered, exited) when the event moved the contact's journeys.
    journeys_changed: Option<(String, Vec<String>, Vec<String>)>,
}

/// Builds an event's transaction, in one place for a known contact and an anonymous visitor:
/// the marker, the event log entry, trigger counts and carts for both; for a known contact also its new profile,
/// journey decisions, aggregates and consent receipts.
async fn event_writes(deps: &EvaluatorDeps, event: &Event, subject: Subject) -> Result<EventWrites, StoreError> {
    let now = deps.clock.now();
    let store = deps.store.as_ref();
    let settings = &deps.campaigns.settings;
    let mut core = vec![processed::marker_op(&event.dedupe_key(), &event.event_type, now + MARKER_RETENTION)];
    // A late event changes the aggregates of a day the rollup may already have snapshotted.
    let counted_on = aggregates::date(event.occurred_at, settings);
    if counted_on < aggregates::date(now, settings) {
        core.push(kpi_snapshots::stale_op(counted_on));
    }
    let mut due = Vec::new();
    let mut cancel_groups = Vec::new();
    let mut counters = aggregates::Counters::default();

    let (mut known, owners) = match subject {
        Subject::Known(mut contact) => {
            let before = (*contact).clone();
            contact.apply_event(event, &time_zone_or_utc(&settings.default_time_zone));
            if let Some(rules) = &deps.campaigns.scoring {
                let milestones = contact.score_event(event, rules);
                due.extend(milestones.iter().map(|m| score_milestone_item(&contact.id, before.version + 1, m, now)));
            }
            // The shop's signed events (a login, a purchase) link the visitor's anonymous id.
            core.extend(link_anonymous_ids(store, &mut contact, &before.anonymous_ids).await?);
            let owners = subjects(&contact);
            (Some((contact, before)), owners)
        }
        Subject::Anonymous(anonymous_id) => (None, vec![anonymous_subject(&anonymous_id)]),
    };
    // The event itself, for the timeline and exports: in the must-have part, so it is logged
    // exactly when it is applied. Voronka's own timers are not behaviour: they would only swell
    // the log and every BI count; milestones (became MQL/SQL) are kept.
    let is_timer =
        event.event_type.is_due_work() && !matches!(event.event_type, EventType::BecameMql | EventType::BecameSql);
    if !is_timer {
        core.push(event_log::entry_op(event, &owners[0], settings, settings.kpi.event_log_days));
    }
    let (trigger_counts, count_items) = count_triggers(deps, event, &owners).await?;
    core.extend(count_items.into_iter().map(|item| TransactOp::Put { item, condition: None }));

    let mut journeys_changed = None;
    if let Some((contact, before)) = known.as_mut() {
        let states = journey_state::load_all(store, &contact.id).await?;
        let decision =
            engine::Decision { campaigns: &deps.campaigns, event, before, now, trigger_counts: &trigger_counts };
        let effects = engine::decide(&decision, contact, &states);
        aggregates::record(&mut counters, settings, event, before, contact);
        for count in &effects.journey_counts {
            aggregates::record_journey(
                &mut counters,
                settings,
                count.counted_at,
                &count.journey,
                count.group,
                count.metric,
                count.amount,
            );
        }
        for state in &effects.states {
            let condition = match states.get(&state.journey_id) {
                Some(previous) => Condition::equals("version", previous.version),
                None => Condition::NotExists,
            };
            core.push(TransactOp::Put { item: state.to_item(), condition: Some(condition) });
        }
        if !effects.entered.is_empty() || !effects.exited.is_empty() {
            journeys_changed = Some((contact.id.clone(), effects.entered, effects.exited));
        }
        due.extend(effects.due);
        cancel_groups.extend(effects.cancel_groups);
    }

    let contact = known.as_ref().map(|(contact, _)| contact.as_ref());
    let carts = carts_for(deps, event, contact, &owners, &mut counters).await?;
    core.extend(carts.ops);
    // Cancellations reach items that exist already; what this event creates has fresh ids.
    due.extend(carts.due);
    cancel_groups.extend(carts.cancel_groups);

    let outcome = match known {
        Some((mut contact, before)) => {
            contact.hold_discount_codes(carts.issued, &carts.redeemed, event.occurred_at);
            contact.keep_within_bounds();
            let legacy =
                consent_receipts::itemise_legacy_receipts(store, &before.consent_receipts, &mut contact).await?;
            contact.version = before.version + 1;
            contact.updated_at = now;
            core.push(TransactOp::Put {
                item: contact_item(&contact),
                condition: Some(Condition::equals("version", before.version)),
            });
            core.extend(legacy);
            core.extend(consent_receipts::new_receipt_ops(&before.consent_receipts, &contact));
            Outcome::Applied
        }
        None => Outcome::Unmatched("anonymous: kept for later".into()),
    };
    let deferrable = Deferrable { counters, cancel_owners: owners, cancel_groups };
    Ok(EventWrites { core, due, deferrable, outcome, journeys_changed })
}

/// A score milestone as a due item due now, dispatched right after the commit like every internal
/// event (`DueWork::Evaluate`), so journeys trigger on `became_mql` / `became_sql`. Named by the
/// contact's version this event writes: a stage moves forward once, and a retry of this event
/// after a lost race re-decides from the new version without having written the old one.
fn score_milestone_item(contact_id: &str, version: u64, milestone: &ScoreMilestone, now: Timestamp) -> DueItem {
    let mut properties = serde_json::Map::new();
    properties.insert("stage".into(), milestone.stage.as_str().into());
    properties.insert("threshold".into(), milestone.threshold.into());
    properties.insert("score".into(), (milestone.score_hundredths as f64 / 100.0).into());
    DueItem {
        id: format!("score:{contact_id}:{}:{version}", milestone.event_type),
        contact_id: contact_id.to_string(),
        due_at: now,
        group: "score".into(),
        work: DueWork::Evaluate { event_type: milestone.event_type.clone(), properties },
    }
}

/// What an event does to carts: cart events, idle timers, reminder steps (for a known contact),
/// an unsubscribe or complaint ending every sequence, and a purchase redeeming its code. The
/// first of `owners` owns what the event creates (the contact, or `anon:<id>`).
async fn carts_for(
    deps: &EvaluatorDeps,
    event: &Event,
    contact: Option<&Contact>,
    owners: &[String],
    counters: &mut aggregates::Counters,
) -> Result<carts::CartEffects, StoreError> {
    let store = deps.store.as_ref();
    let campaigns = &deps.campaigns;
    let owner = &owners[0];
    let mut effects = match &event.event_type {
        kind if kind.changes_cart() => carts::on_cart_event(store, campaigns, event, owner, owners, counters).await?,
        EventType::CartIdle => carts::on_idle(store, campaigns, event, owner, counters).await?,
        EventType::CartStep => match contact {
            Some(contact) => {
                let now = deps.clock.now();
                carts::on_step(store, campaigns, deps.secrets.token_key(), event, contact, now, counters).await?
            }
            None => carts::CartEffects::default(),
        },
        EventType::Unsubscribed | EventType::EmailComplained => {
            carts::CartEffects { cancel_groups: carts::on_unsubscribe(store, owners).await?, ..Default::default() }
        }
        _ => carts::CartEffects::default(),
    };
    if let Some(contact) = contact
        && let Some(purchase) = event.purchase()
    {
        let redeemed = carts::redeem(store, campaigns, event, contact, counters).await?;
        if !redeemed.is_empty()
            && let Some(code) = purchase.discount_code
        {
            effects.redeemed.push(code);
        }
        effects.ops.extend(redeemed);
    }
    Ok(effects)
}
