//! sender: turns send requests into email, at most once each.
//!
//! For every request: claim it in the ledger (a conditional write, so concurrent and repeated
//! deliveries cannot both proceed), load the contact, check consent and suppression, ask the
//! request's origin (cart, journey run) whether it still wants the message, hold
//! marketing out of quiet hours in the contact's own time zone, reserve a frequency-cap slot,
//! render, send through the mail port, record the message id, and emit `email_sent`.
//! Deferred requests go back on the queue with a delay; the ledger remembers until when.
//! While the reputation guard (`sending::reputation`) has marketing paused, marketing requests are
//! held the same way, with the rate that tripped it; transactional mail goes on.
//!
//! Each batch writes one EMF line of its outcomes (`voronka_telemetry::metrics`) and adds the
//! messages SES accepted to the guard's hourly send counter in one write.

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value, json};
use voronka_domain::campaigns::templates::TemplateSet;
use voronka_domain::deps::Deps;
use voronka_domain::model::{Contact, EmailAddress, Event, EventType, Priority, Recipient, SendClass, SendRequest};
use voronka_domain::ports::{
    BatchHandler, Condition, Delivery, MAX_DELAY, MailError, Mailer, OutgoingEmail, OutgoingMessage, QueueName,
    StoreError, send_all,
};
use voronka_domain::repo::due::{self, DueItem, DueWork};
use voronka_domain::repo::reputation as reputation_counts;
use voronka_domain::repo::{Claim, ContactLookup, ContactRepository, FrequencyCaps, Reservation, SendLedger};
use voronka_domain::sending::mime::{Envelope, build_message};
use voronka_domain::sending::origin::{self, CancelReason, Liveness};
use voronka_domain::sending::policy::{
    BlockReason, CapPeriod, DeferReason, QuietHours, cap_windows, check_recipient, time_zone_or_utc,
};
use voronka_domain::sending::redact::{self, Redacted};
use voronka_domain::sending::reputation::GuardCache;
use voronka_domain::signing::{TokenScope, UNSUBSCRIBE_LIST_MARKETING, UNSUBSCRIBE_TOKEN_PURPOSE};
use voronka_telemetry::metrics::Metrics;

pub mod rate;

/// What the sender needs besides what every function shares; built once per container.
#[derive(Clone)]
pub struct SenderDeps {
    pub shared: Deps,
    pub mailer: Arc<dyn Mailer>,
    pub templates: Arc<TemplateSet>,
    /// Where unsubscribe links point (the public URL of the HTTP API).
    pub public_base_url: String,
    pub rate: Arc<rate::RateGate>,
    /// This container's view of the reputation guard, re-read at most every
    /// `sending.reputation.recheck_seconds`.
    pub reputation: Arc<GuardCache>,
}

impl std::ops::Deref for SenderDeps {
    type Target = Deps;

    fn deref(&self) -> &Deps {
        &self.shared
    }
}

impl std::ops::DerefMut for SenderDeps {
    fn deref_mut(&mut self) -> &mut Deps {
        &mut self.shared
    }
}

/// What became of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Sent {
        message_id: String,
    },
    /// Already handled by an earlier delivery: nothing done.
    Duplicate {
        state: String,
    },
    Blocked {
        reason: BlockReason,
    },
    /// The origin (cart, journey run) no longer wants the message.
    Cancelled {
        reason: CancelReason,
    },
    Deferred {
        until: Timestamp,
        reason: DeferReason,
    },
    /// The mail service may or may not have taken it (a lost answer): recorded, not retried. Only
    /// an ambiguous answer leads here; its text is redacted.
    Unknown {
        error: MailError,
    },
    /// Sent, but its `email_sent` event could not be queued: reported as a batch item failure so
    /// the next delivery queues it (the ledger keeps the email from going out twice). The reason
    /// is the queue adapter's own message, for a person reading the logs.
    EventPending {
        reason: String,
    },
    /// Retryable: report the message as a batch item failure. The reason is the message of
    /// whichever adapter failed (store, queue, mail service: three error types with nothing in
    /// common but their text), recorded in the ledger as the last error and logged; nothing
    /// decides on it.
    Retry {
        reason: String,
    },
}

#[async_trait::async_trait]
impl BatchHandler for SenderDeps {
    async fn handle_batch(&self, deliveries: Vec<Delivery>) -> Vec<String> {
        process_batch(self, deliveries).await
    }
}

tokio::task_local! {
    /// Throttled answers of the mail service within one batch, for its metrics line.
    static THROTTLED: Cell<u32>;
}

/// The counters every sender line carries, zero or not.
pub const METRICS: [&str; 12] = [
    "Sent",
    "Duplicate",
    "Blocked",
    "Cancelled",
    "Deferred",
    "Held",
    "Unknown",
    "EventPending",
    "Retry",
    "DeadLetterBound",
    "SesThrottled",
    "ReputationPaused",
];

/// Handles a batch and returns the ids of the messages to report as failures. Higher priorities
/// go first, so they take the frequency-cap slots when several compete.
pub async fn process_batch(deps: &SenderDeps, deliveries: Vec<Delivery>) -> Vec<String> {
    let mut metrics = Metrics::new("sender", &METRICS);
    let (failed, throttled) = THROTTLED
        .scope(Cell::new(0), async {
            let failed = handle_deliveries(deps, deliveries, &mut metrics).await;
            (failed, THROTTLED.with(Cell::get))
        })
        .await;
    metrics.add("SesThrottled", f64::from(throttled));
    let sent = metrics.get("Sent") as u64;
    if let Err(error) = reputation_counts::count_sends(deps.store.as_ref(), deps.clock.now(), sent).await {
        // Uncounted sends only make the guard's rates look worse, never better.
        tracing::warn!(error = %error, sent, "the reputation guard's send counter could not be updated");
    }
    if let Some(state) = deps.reputation.cached() {
        metrics.add("ReputationPaused", if state.paused { 1.0 } else { 0.0 });
    }
    metrics.flush();
    failed
}

async fn handle_deliveries(deps: &SenderDeps, deliveries: Vec<Delivery>, metrics: &mut Metrics) -> Vec<String> {
    let mut failed = Vec::new();
    let mut requests = Vec::new();
    for delivery in deliveries {
        match serde_json::from_str::<SendRequest>(&delivery.body) {
            Ok(request) => {
                let hop = serde_json::from_str::<HopOf>(&delivery.body).ok().and_then(|h| h.hop);
                requests.push((delivery.message_id, request, hop))
            }
            Err(error) => {
                // It can never succeed; failing it sends it to the dead-letter queue and its alarm.
                tracing::error!(message_id = %delivery.message_id, error = %error, "malformed send request");
                metrics.count("DeadLetterBound");
                failed.push(delivery.message_id);
            }
        }
    }
    requests.sort_by(|a, b| b.1.priority.cmp(&a.1.priority).then(a.1.requested_at.cmp(&b.1.requested_at)));
    for (message_id, request, hop) in requests {
        let attempt = format!("{message_id}:{}", deps.clock.now().as_microsecond());
        let outcome = handle_delivery(deps, &request, hop.as_deref(), &attempt).await;
        log_outcome(&request, &outcome);
        count_outcome(metrics, &outcome);
        if matches!(outcome, Outcome::Retry { .. } | Outcome::EventPending { .. }) {
            failed.push(message_id);
        }
    }
    failed
}

fn count_outcome(metrics: &mut Metrics, outcome: &Outcome) {
    match outcome {
        Outcome::Sent { .. } => metrics.count("Sent"),
        Outcome::Duplicate { .. } => metrics.count("Duplicate"),
        Outcome::Blocked { reason } => {
            metrics.count("Blocked");
            metrics.count(&format!("Blocked.{}", reason.kind()));
        }
        Outcome::Cancelled { .. } => metrics.count("Cancelled"),
        Outcome::Deferred { reason: DeferReason::ReputationPaused(_), .. } => metrics.count("Held"),
        Outcome::Deferred { reason, .. } => {
            metrics.count("Deferred");
            metrics.count(&format!("Deferred.{}", reason.as_str().replace(' ', "_")));
        }
        Outcome::Unknown { .. } => metrics.count("Unknown"),
        Outcome::EventPending { .. } => metrics.count("EventPending"),
        Outcome::Retry { .. } => metrics.count("Retry"),
    }
}

fn log_outcome(request: &SendRequest, outcome: &Outcome) {
    let (kind, detail) = match outcome {
        Outcome::Sent { .. } => ("sent", String::new()),
        Outcome::Duplicate { state } => ("duplicate", state.clone()),
        Outcome::Blocked { reason } => ("blocked", reason.to_string()),
        Outcome::Cancelled { reason } => ("cancelled", reason.to_string()),
        Outcome::Deferred { until, reason } => ("deferred", format!("{reason} until {until}")),
        Outcome::Unknown { error } => ("unknown", error.to_string()),
        Outcome::EventPending { reason } => ("event_pending", reason.clone()),
        Outcome::Retry { reason } => ("retry", reason.clone()),
    };
    tracing::info!(
        contact_id = %request.contact_id,
        template = %request.template,
        idempotency_key = %request.idempotency_key,
        outcome = kind,
        detail = %detail,
        "send request handled"
    );
}

pub async fn handle_request(deps: &SenderDeps, request: &SendRequest, attempt: &str) -> Outcome {
    handle_delivery(deps, request, None, attempt).await
}

/// A deferred request's queued copy names its hop beside the request's own fields (ignored by
/// anything reading it as a `SendRequest`).
#[derive(serde::Deserialize)]
struct HopOf {
    #[serde(default)]
    hop: Option<String>,
}

/// Handles one delivered request; `hop` is the deferral hop its copy carries, if any.
pub async fn handle_delivery(deps: &SenderDeps, request: &SendRequest, hop: Option<&str>, attempt: &str) -> Outcome {
    match handle(deps, request, hop, attempt).await {
        Ok(outcome) => outcome,
        Err(reason) => Outcome::Retry { reason },
    }
}

/// A name for a new deferral hop, unique in this process and, through the attempt (message id and
/// time), across containers.
fn new_hop(attempt: &str) -> String {
    static HOPS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!("{attempt}:{}", HOPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

async fn handle(deps: &SenderDeps, request: &SendRequest, hop: Option<&str>, attempt: &str) -> Result<Outcome, String> {
    let now = deps.clock.now();
    let ledger = &SendLedger::new(deps.store.as_ref());
    let key = request.idempotency_key.as_str();
    match ledger.claim(key, request.class, attempt, now).await.map_err(|e| e.to_string())? {
        Claim::Claimed { .. } => {}
        Claim::Finished { state } => return Ok(Outcome::Duplicate { state }),
        Claim::SentEventPending { message_id, sent_at } => {
            return Ok(report_sent(
                deps,
                ledger,
                request,
                &message_id,
                sent_at,
                Outcome::Duplicate { state: "sent".into() },
            )
            .await);
        }
        Claim::InFlight => return Ok(Outcome::Retry { reason: "another attempt holds this request".into() }),
        Claim::NotYet { until, hop: current } => {
            // One queued copy carries a wait on. A copy of another hop (a duplicate delivery, or
            // one re-queued by an attempt that died before the ledger named its hop) is dropped;
            // re-queued as well, every duplicate would start a chain of its own, doubling at
            // each hop.
            if current.is_some() && current.as_deref() != hop {
                return Ok(Outcome::Duplicate { state: "deferred".into() });
            }
            let next = carry_wait(deps, request, until, &new_hop(attempt)).await?;
            // Named after it is queued: an attempt dying in between leaves this copy to come back
            // and carry the wait on, and the extra copy is dropped when it comes.
            if !ledger.pass_hop(key, current.as_deref(), &next).await.map_err(|e| e.to_string())? {
                return Ok(Outcome::Duplicate { state: "deferred".into() });
            }
            return Ok(Outcome::Deferred { until, reason: DeferReason::NotDueYet });
        }
    }

    let block = |reason: BlockReason| async move {
        ledger.mark_blocked(key, attempt, &reason.to_string(), now).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(Outcome::Blocked { reason })
    };
    let contact = match ContactRepository::new(deps.store.as_ref()).get(&request.contact_id).await {
        Ok(Some(contact)) => contact,
        Ok(None) => return block(BlockReason::ContactNotFound).await,
        Err(error) => return release(ledger, key, attempt, error.to_string()).await,
    };
    // The sales inbox is told about the contact; the contact's consent and suppressions are about
    // mail to them.
    if request.recipient == Recipient::Contact
        && let Err(reason) = check_recipient(&contact, request.class)
    {
        return block(reason).await;
    }
    let cancel = |reason: CancelReason| async move {
        ledger.mark_cancelled(key, attempt, &reason.to_string(), now).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(Outcome::Cancelled { reason })
    };
    let liveness = match origin::check(deps.store.as_ref(), &deps.campaigns.settings.carts, request, now).await {
        Ok(Liveness::Ended { reason }) => return cancel(CancelReason::Ended(reason)).await,
        Ok(live) => live,
        Err(error) => return release(ledger, key, attempt, error.to_string()).await,
    };
    // A deferral never outlives the origin's own deadline: past it, the message is dropped now.
    let defer_within_deadline = |until: Timestamp, reason: DeferReason| {
        let liveness = &liveness;
        async move {
            if liveness.still_live_at(until) {
                defer(deps, ledger, request, attempt, until, reason).await
            } else {
                cancel(CancelReason::StaleBeforeDeferralEnds(reason)).await
            }
        }
    };
    let settings = &deps.campaigns.settings.sending;
    let zone = time_zone_or_utc(&contact.time_zone);

    let mut reserved = None;
    if request.class == SendClass::Marketing {
        let guard = match deps.reputation.current(deps.store.as_ref(), &settings.reputation, now).await {
            Ok(guard) => guard,
            Err(error) => return release(ledger, key, attempt, error.to_string()).await,
        };
        // Paused means held, with or without a recorded trip: a state that says paused fails closed.
        if guard.paused {
            let until = now + SignedDuration::from_secs(i64::from(settings.reputation.hold_seconds));
            return defer_within_deadline(until, DeferReason::ReputationPaused(guard.trip)).await;
        }
        if let Some(until) = QuietHours::of(settings).next_allowed(now, &zone) {
            return defer_within_deadline(until, DeferReason::QuietHours).await;
        }
        let windows = cap_windows(now, &zone);
        let reservation = FrequencyCaps::new(deps.store.as_ref())
            .reserve(&contact.id, &windows, settings.marketing_per_day, settings.marketing_per_week, now)
            .await;
        match reservation {
            Ok(Reservation::Reserved) => reserved = Some(windows),
            Ok(full) => {
                let (until, period) = match full {
                    Reservation::WeekFull => (windows.next_week, CapPeriod::Week),
                    _ => (windows.next_day, CapPeriod::Day),
                };
                if settings.defers_when_capped(request.priority) {
                    return defer_within_deadline(until, DeferReason::FrequencyCap(period)).await;
                }
                return block(BlockReason::FrequencyCap(period)).await;
            }
            Err(error) => return release(ledger, key, attempt, error.to_string()).await,
        }
    }
    let give_back_slot = || async {
        if let Some(windows) = &reserved
            && let Err(error) = FrequencyCaps::new(deps.store.as_ref()).release(&contact.id, windows).await
        {
            tracing::warn!(error = %error, "a frequency-cap slot could not be given back");
        }
    };

    let email = match compose(deps, request, &contact, now) {
        Ok(email) => email,
        Err(reason) => {
            give_back_slot().await;
            return block(reason).await;
        }
    };
    // The send rate is waited for before the claim says `calling`: a container killed while it
    // waits has sent nothing, and its claim must be taken over, not written off.
    deps.rate.wait().await;
    // The person may have been erased since the contact was read (the wait can be long): look
    // again right before the call. Nothing more is written about an erased person, not even the
    // cap slot given back.
    match ContactRepository::new(deps.store.as_ref()).lookup(&request.contact_id).await {
        Ok(ContactLookup::Found(_)) => {}
        Ok(ContactLookup::Erased(_) | ContactLookup::Missing) => return block(BlockReason::ContactNotFound).await,
        Err(error) => {
            give_back_slot().await;
            return release(ledger, key, attempt, error.to_string()).await;
        }
    }
    // From here on the message may be on its way; if this attempt dies, the claim says so.
    if let Err(error) = ledger.mark_calling(key, attempt, deps.clock.now()).await {
        give_back_slot().await;
        return Err(format!("the claim was lost before calling the mail service: {error}"));
    }
    // SES's texts may name the recipient; they reach the logs and the ledger without addresses.
    let sent =
        send_with_backoff(deps, ledger, key, attempt, &email, request.class).await.map_err(|error| match error {
            MailError::Throttled(text) => MailError::Throttled(redact::addresses(&text)),
            MailError::NotSent(text) => MailError::NotSent(redact::addresses(&text)),
            MailError::Ambiguous(text) => MailError::Ambiguous(redact::addresses(&text)),
            MailError::Rejected(text) => MailError::Rejected(redact::addresses(&text)),
        });
    match sent {
        Ok(message_id) => {
            // A crash right here leaves the claim `calling`; its lease decides (see the ledger).
            let sent_at = deps.clock.now();
            // SES took it: recording that is worth a few quick tries before the message goes back
            // to the queue (where a marketing message would end `unknown` and uncounted).
            let mut recorded = ledger.mark_sent(key, attempt, &message_id, sent_at).await;
            for pause_ms in [50u64, 250] {
                if recorded.is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(pause_ms)).await;
                recorded = ledger.mark_sent(key, attempt, &message_id, sent_at).await;
            }
            recorded.map_err(|e| e.to_string())?;
            let sent = Outcome::Sent { message_id: message_id.clone() };
            Ok(report_sent(deps, ledger, request, &message_id, sent_at, sent).await)
        }
        Err(MailError::Rejected(text)) => {
            give_back_slot().await;
            block(BlockReason::RejectedBySes(Redacted::new(&text))).await
        }
        Err(error @ MailError::Ambiguous(_)) if request.class == SendClass::Marketing => {
            // It may be in the inbox already: keep the cap slot, and never send it again.
            ledger.mark_unknown(key, attempt, &error.to_string(), deps.clock.now()).await.map_err(|e| e.to_string())?;
            tracing::warn!("the mail service's answer was lost; the marketing message is not sent again");
            Ok(Outcome::Unknown { error })
        }
        Err(error @ MailError::Ambiguous(_)) => {
            give_back_slot().await;
            let reason = error.to_string();
            ledger.release_after_ambiguous(key, attempt, &reason).await.map_err(|e| e.to_string())?;
            Ok(Outcome::Retry { reason })
        }
        Err(retryable) => {
            give_back_slot().await;
            release(ledger, key, attempt, retryable.to_string()).await
        }
    }
}

async fn release(ledger: &SendLedger<'_>, key: &str, attempt: &str, reason: String) -> Result<Outcome, String> {
    ledger.release_for_retry(key, attempt, &reason).await.map_err(|e| e.to_string())?;
    Ok(Outcome::Retry { reason })
}

async fn defer(
    deps: &SenderDeps,
    ledger: &SendLedger<'_>,
    request: &SendRequest,
    attempt: &str,
    until: Timestamp,
    reason: DeferReason,
) -> Result<Outcome, String> {
    // Queued before the ledger names the hop, so a deferred request always has a queued copy.
    let hop = carry_wait(deps, request, until, &new_hop(attempt)).await?;
    ledger
        .mark_deferred(&request.idempotency_key, attempt, until, &reason.to_string(), &hop)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Outcome::Deferred { until, reason })
}

/// Carries a deferred request's wait to `until`: a wait the queue can delay in one hop goes back
/// on the queue; a longer one (quiet hours, a full cap, a reputation hold) is parked as a due item
/// the scheduler dispatches when it comes, instead of passing through the sender every 15
/// minutes (about eight passes per email sent in the demo, most of the sender's AWS bill).
async fn carry_wait(deps: &SenderDeps, request: &SendRequest, until: Timestamp, hop: &str) -> Result<String, String> {
    let wait = until.duration_since(deps.clock.now());
    if wait <= SignedDuration::try_from(MAX_DELAY).unwrap_or(SignedDuration::MAX) {
        requeue(deps, request, until, hop).await?;
        return Ok(hop.to_string());
    }
    let parked = DueItem {
        id: due::ids::deferred_send(&request.idempotency_key, until),
        contact_id: request.contact_id.clone(),
        due_at: until,
        group: format!("deferred-send:{}", request.idempotency_key),
        work: DueWork::DeferredSend { request: request.clone(), hop: hop.to_string() },
    };
    let item = parked.to_item();
    let key = item.key().ok_or("a parked request has no key")?;
    match deps.store.put(item, Some(Condition::NotExists)).await {
        Ok(()) => Ok(hop.to_string()),
        // Parked already for this time (a copy delivered early re-defers to the same time, or an
        // attempt died between parking and naming its hop): that copy carries the wait on, so the
        // ledger is told its hop, never one no copy carries.
        Err(StoreError::ConditionFailed) => {
            let existing = deps.store.get(&key).await.map_err(|e| e.to_string())?;
            let existing_hop = existing.as_ref().and_then(DueItem::from_item).and_then(|due| match due.work {
                DueWork::DeferredSend { hop, .. } => Some(hop),
                DueWork::Send { .. } | DueWork::Evaluate { .. } => None,
            });
            existing_hop.ok_or_else(|| "a parked request vanished while being re-parked; retried".to_string())
        }
        Err(error) => Err(format!("parking a deferred request failed: {error}")),
    }
}

/// Puts the request back on the queue, delayed towards `until` (SQS delays at most 15 minutes;
/// a longer deferral takes several hops, each checked against the ledger).
async fn requeue(deps: &SenderDeps, request: &SendRequest, until: Timestamp, hop: &str) -> Result<(), String> {
    let wait = until.duration_since(deps.clock.now()).max(SignedDuration::ZERO);
    let delay = Duration::try_from(wait).unwrap_or_default().min(MAX_DELAY);
    let mut body = serde_json::to_value(request).map_err(|e| e.to_string())?;
    body["hop"] = json!(hop);
    let mut message = OutgoingMessage::new("0", body.to_string());
    message.delay = Some(delay);
    let outcomes = send_all(deps.queue.as_ref(), QueueName::Sends, vec![message]).await.map_err(|e| e.to_string())?;
    match outcomes.first().and_then(|o| o.error.clone()) {
        Some(error) => Err(format!("re-queueing a deferred request failed: {error}")),
        None => Ok(()),
    }
}

/// Tries the mail service a few times with growing pauses before handing the message back to the
/// queue, but only while no earlier try may have sent it: an ambiguous answer ends a marketing
/// message's tries (transactional mail accepts a rare duplicate rather than a lost message, and the
/// ledger records the ambiguous answer before the next try, so a second copy is explained).
async fn send_with_backoff(
    deps: &SenderDeps,
    ledger: &SendLedger<'_>,
    key: &str,
    attempt: &str,
    email: &OutgoingEmail,
    class: SendClass,
) -> Result<String, MailError> {
    let mut last = MailError::NotSent("not tried".into());
    for try_number in 0..3u32 {
        // The first try's rate wait came before the ledger said `calling`.
        if try_number > 0 {
            tokio::time::sleep(Duration::from_millis(200 * 4u64.pow(try_number - 1))).await;
            deps.rate.wait().await;
        }
        match deps.mailer.send(email).await {
            Ok(id) => return Ok(id),
            Err(error @ MailError::Rejected(_)) => return Err(error),
            Err(error @ MailError::Ambiguous(_)) if class == SendClass::Marketing => return Err(error),
            Err(error @ MailError::Ambiguous(_)) => {
                // Unrecorded, no further try here: the release records it instead.
                if ledger.note_ambiguous(key, attempt).await.is_err() {
                    return Err(error);
                }
                last = error;
            }
            Err(error) => {
                if matches!(error, MailError::Throttled(_)) {
                    // Outside a batch (a direct `handle_request`) there is no line to count it in.
                    let _ = THROTTLED.try_with(|throttled| throttled.set(throttled.get() + 1));
                }
                last = error;
            }
        }
    }
    Err(last)
}

/// The template context: the contact's fields with defaults, the request's own values, links.
pub fn template_context(deps: &SenderDeps, request: &SendRequest, contact: &Contact, now: Timestamp) -> Value {
    let settings = &deps.campaigns.settings;
    let years_with_us = now.duration_since(contact.created_at).as_hours() / (24 * 365);
    let mut context: Map<String, Value> = Map::new();
    context.insert("first_name".into(), json!(contact.first_name));
    context.insert("last_name".into(), json!(contact.last_name));
    context.insert("years_with_us".into(), json!(years_with_us));
    context.insert("orders".into(), json!(contact.orders.orders));
    context.insert("currency".into(), json!(settings.currency));
    context.insert("shop_name".into(), json!(settings.sending.shop_name));
    context.insert("shop_url".into(), json!(settings.sending.shop_url));
    if request.class == SendClass::Marketing {
        context.insert("unsubscribe_url".into(), json!(unsubscribe_url(deps, &contact.id, now)));
    }
    for (name, value) in &request.context {
        context.insert(name.clone(), value.clone());
    }
    Value::Object(context)
}

pub fn unsubscribe_url(deps: &SenderDeps, contact_id: &str, now: Timestamp) -> String {
    let days = i64::from(deps.campaigns.settings.sending.unsubscribe_link_days);
    let scope = TokenScope { list: Some(UNSUBSCRIBE_LIST_MARKETING.into()), form: None };
    let token = deps.secrets.token_signer().sign_scoped(
        UNSUBSCRIBE_TOKEN_PURPOSE,
        contact_id,
        &scope,
        now,
        now + SignedDuration::from_hours(24 * days),
    );
    format!("{}/v1/unsubscribe?token={token}", deps.public_base_url)
}

fn compose(
    deps: &SenderDeps,
    request: &SendRequest,
    contact: &Contact,
    now: Timestamp,
) -> Result<OutgoingEmail, BlockReason> {
    let settings = &deps.campaigns.settings.sending;
    let sales_address;
    let to = match request.recipient {
        Recipient::Contact => contact.email.as_ref().ok_or(BlockReason::NoEmailAddress)?,
        Recipient::SalesInbox => {
            let configured = settings.sales_address.as_deref().ok_or(BlockReason::NoSalesAddress)?;
            sales_address = EmailAddress::parse(configured).map_err(|_| BlockReason::NoSalesAddress)?;
            &sales_address
        }
    };
    let context = template_context(deps, request, contact, now);
    // The sales inbox reads the installation's language, not the lead's.
    let locale = match request.recipient {
        Recipient::Contact => &contact.locale,
        Recipient::SalesInbox => &deps.campaigns.settings.default_locale,
    };
    let rendered = deps
        .templates
        .render(&request.template, locale, &context)
        .map_err(|e| BlockReason::TemplateError(Redacted::new(&e.to_string())))?;
    let unsubscribe = (request.class == SendClass::Marketing).then(|| unsubscribe_url(deps, &contact.id, now));
    let message_id = SendRequest::send_tag(&request.idempotency_key);
    let domain = settings.from_address.rsplit('@').next().unwrap_or("localhost").to_string();
    let full_name = [contact.first_name.as_deref(), contact.last_name.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    let envelope = Envelope {
        from_name: &settings.from_name,
        from_address: &settings.from_address,
        reply_to: settings.reply_to.as_deref(),
        to_name: Some(full_name.as_str()).filter(|n| !n.is_empty() && request.recipient == Recipient::Contact),
        to_address: to.as_typed(),
        unsubscribe_url: unsubscribe.as_deref(),
        message_id: &message_id,
        message_id_domain: &domain,
        date: now,
        class: request.class,
        contact_id: (request.recipient == Recipient::Contact).then_some(contact.id.as_str()),
    };
    let raw =
        build_message(&envelope, &rendered).map_err(|e| BlockReason::MessageError(Redacted::new(&e.to_string())))?;
    Ok(OutgoingEmail {
        from: settings.from_address.clone(),
        to: to.as_typed().to_string(),
        raw,
        tags: mail_tags(request, &contact.id, message_id),
    })
}

/// The SES tags of a message. Feedback finds its contact by the `contact_id` tag, so mail to the
/// sales inbox carries none: the sales team opening it is not the contact engaging.
fn mail_tags(request: &SendRequest, contact_id: &str, message_id: String) -> Vec<(String, String)> {
    let mut tags = Vec::new();
    if request.recipient == Recipient::Contact {
        tags.push(("contact_id".into(), contact_id.to_string()));
    }
    tags.push(("template".into(), request.template.clone()));
    tags.push(("send".into(), message_id));
    tags
}

/// Queues `email_sent` for a sent message and records that it is queued; `done` is the outcome
/// when it is. If the queue refuses it, the delivery is reported as failed: the next one finds the
/// ledger's `sent_event` still `pending` and queues the event again, without another email.
async fn report_sent(
    deps: &SenderDeps,
    ledger: &SendLedger<'_>,
    request: &SendRequest,
    message_id: &str,
    sent_at: Timestamp,
    done: Outcome,
) -> Outcome {
    if let Err(reason) = emit_sent(deps, request, message_id, sent_at).await {
        return Outcome::EventPending { reason };
    }
    if let Err(error) = ledger.mark_sent_event_queued(&request.idempotency_key).await {
        // Only a later duplicate delivery would queue it again, under the same event id.
        tracing::warn!(error = %error, "email_sent is queued but the ledger could not say so");
    }
    done
}

async fn emit_sent(
    deps: &SenderDeps,
    request: &SendRequest,
    message_id: &str,
    sent_at: Timestamp,
) -> Result<(), String> {
    let mut properties = Map::new();
    properties.insert("template".into(), json!(request.template));
    properties.insert("message_id".into(), json!(message_id));
    properties.insert("idempotency_key".into(), json!(request.idempotency_key));
    properties.insert("class".into(), json!(request.class));
    properties.insert("origin".into(), serde_json::to_value(&request.origin).unwrap_or(Value::Null));
    if request.recipient != Recipient::Contact {
        properties.insert("recipient".into(), json!(request.recipient));
    }
    let event_id = format!("sent:{}", request.idempotency_key);
    let event = Event::internal(event_id, EventType::EmailSent, &request.contact_id, sent_at, sent_at, properties);
    let message = OutgoingMessage::new("0", serde_json::to_string(&event).map_err(|e| e.to_string())?);
    let outcomes = send_all(deps.queue.as_ref(), QueueName::Events, vec![message]).await.map_err(|e| e.to_string())?;
    match outcomes.first().and_then(|o| o.error.clone()) {
        Some(error) => Err(format!("email_sent could not be queued: {error}")),
        None => Ok(()),
    }
}

/// The priority names of settings files.
pub fn priority_name(priority: Priority) -> &'static str {
    match priority {
        Priority::Promo => "promo",
        Priority::Journey => "journey",
        Priority::Cart => "cart",
        Priority::Transactional => "transactional",
    }
}
