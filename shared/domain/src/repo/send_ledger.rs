//! The sender's ledger: one item per send request's idempotency key, written with a conditional
//! put before SES is called, so however often a request is delivered, SES is called once.
//!
//! States: `processing` (claimed by one attempt, with a lease), `calling` (the attempt is about to
//! call SES, or is calling it: from here on the message may be on its way), `sent` (SES message
//! id; `sent_event` goes `pending` → `queued` once its `email_sent` event is on the queue, and a
//! redelivery finding it `pending` queues it again), `blocked` (a reason: no consent, suppressed, capped, rejected by SES), `cancelled` (the
//! origin no longer wants it: a bought cart, an exited journey run, a stale step), `deferred`
//! (until a time: quiet hours, a full frequency cap), `retry` (a failure known to have sent
//! nothing released the claim), and `unknown`: a marketing message that may or may not have
//! reached SES (its answer was lost, or its attempt died while `calling`). Marketing is never sent
//! again from `unknown`; transactional mail is (a lost opt-in confirmation costs more than a rare
//! duplicate one). An attempt that died while `processing` never called SES: the next delivery
//! takes its claim over once the lease has passed.

use jiff::{SignedDuration, Timestamp};
use serde_json::json;

use crate::model::SendClass;
use crate::ports::store::TTL;
use crate::ports::{Condition, Item, Key, Store, StoreError, UpdateAction};

/// How long an attempt owns a claim; longer than the sender's Lambda timeout.
pub const CLAIM_LEASE: SignedDuration = SignedDuration::from_secs(120);
/// How long ledger entries are kept after their last change (a deferral: after the time it waits
/// for): far longer than SQS keeps a message (14 days at most). Counted from the last change, not
/// the claim, so a send deferred for days keeps its duplicate protection the full retention after
/// it goes out.
pub const LEDGER_RETENTION: SignedDuration = SignedDuration::from_hours(24 * 90);

/// The entry's expiry, pushed out to `LEDGER_RETENTION` past `from`.
fn kept_from(from: Timestamp) -> UpdateAction {
    UpdateAction::set(TTL, (from + LEDGER_RETENTION).as_second())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This attempt owns the request; `attempt` must be passed to every later transition.
    Claimed { attempt: String },
    /// Already finished (`sent`, `blocked`, `cancelled`, `unknown`): acknowledge, send nothing.
    Finished { state: String },
    /// Sent, but its `email_sent` event is not known to be queued: queue it (same event id), send nothing.
    SentEventPending { message_id: String, sent_at: Timestamp },
    /// Another attempt is working on it right now: try again after the lease.
    InFlight,
    /// Deferred until this time and delivered early: wait longer. `hop` names the one queued copy
    /// that carries the wait on (None: deferred before hops were named).
    NotYet { until: Timestamp, hop: Option<String> },
}

/// Set on a transactional request that may be sent again although an earlier try may have reached
/// SES (the designed at-least-once of transactional mail): why. Never removed, so a second copy in
/// the outbox can be told from a broken idempotency.
pub const RESENT_AFTER: &str = "resent_after";
/// `RESENT_AFTER`: SES's answer was ambiguous (a 5xx, a lost connection after sending).
pub const AMBIGUOUS_ANSWER: &str = "ambiguous_ses_answer";
/// `RESENT_AFTER`: an attempt died while `calling` and the next one took the claim over.
pub const DIED_WHILE_CALLING: &str = "attempt_died_while_calling_ses";

/// Set on a request the reputation guard held at least once (its deferral reason starts with
/// `REPUTATION_HOLD`); never removed.
pub const HELD_BY_REPUTATION: &str = "held_by_reputation";
const REPUTATION_HOLD: &str = "reputation_paused";

pub struct SendLedger<'a> {
    store: &'a dyn Store,
}

fn ledger_key(idempotency_key: &str) -> Key {
    Key::new(format!("SEND#{idempotency_key}"), "LEDGER")
}

/// Held by `attempt`, before or during its call to SES.
fn owned_by(attempt: &str) -> Condition {
    Condition::And(vec![
        Condition::Or(vec![Condition::equals("state", "processing"), Condition::equals("state", "calling")]),
        Condition::equals("attempt", attempt),
    ])
}

fn in_state_of(state: &str, attempt: &str) -> Condition {
    Condition::And(vec![Condition::equals("state", state), Condition::equals("attempt", attempt)])
}

impl<'a> SendLedger<'a> {
    pub fn new(store: &'a dyn Store) -> Self {
        SendLedger { store }
    }

    pub async fn state(&self, idempotency_key: &str) -> Result<Option<Item>, StoreError> {
        self.store.get(&ledger_key(idempotency_key)).await
    }

    /// Claims a request for one attempt, or says why not.
    pub async fn claim(
        &self,
        idempotency_key: &str,
        class: SendClass,
        attempt: &str,
        now: Timestamp,
    ) -> Result<Claim, StoreError> {
        let key = ledger_key(idempotency_key);
        let fresh = Item::new(
            &key,
            json!({"state": "processing", "attempt": attempt, "claimed_at": now.as_second(), "attempts": 1,
                   "marks_calling": true}),
        )
        .with_ttl((now + LEDGER_RETENTION).as_second());
        match self.store.put(fresh, Some(Condition::NotExists)).await {
            Ok(()) => return Ok(Claim::Claimed { attempt: attempt.to_string() }),
            Err(StoreError::ConditionFailed) => {}
            Err(other) => return Err(other),
        }
        let Some(current) = self.store.get(&key).await? else {
            // Expired between the two calls: the next delivery claims it afresh.
            return Ok(Claim::InFlight);
        };
        let state = current.get_str("state").unwrap_or_default().to_string();
        let take_over = |from: Condition, resent_after: Option<&'static str>| {
            let key = key.clone();
            async move {
                let mut actions = vec![
                    UpdateAction::set("state", "processing"),
                    UpdateAction::set("attempt", attempt),
                    UpdateAction::set("claimed_at", now.as_second()),
                    UpdateAction::add("attempts", 1),
                    UpdateAction::set("marks_calling", true),
                    kept_from(now),
                ];
                // The mail may be out already: the record that explains a second copy.
                actions.extend(resent_after.map(|reason| UpdateAction::set(RESENT_AFTER, reason)));
                match self.store.update(&key, actions, Some(from)).await {
                    Ok(_) => Ok(Claim::Claimed { attempt: attempt.to_string() }),
                    Err(StoreError::ConditionFailed) => Ok(Claim::InFlight),
                    Err(other) => Err(other),
                }
            }
        };
        match state.as_str() {
            "sent" if current.get_str("sent_event") == Some("pending") => Ok(Claim::SentEventPending {
                message_id: current.get_str("message_id").unwrap_or_default().to_string(),
                sent_at: current.get_i64("sent_at").and_then(|s| Timestamp::from_second(s).ok()).unwrap_or(now),
            }),
            "sent" | "blocked" | "cancelled" | "unknown" => Ok(Claim::Finished { state }),
            "deferred" => {
                let until = current.get_i64("until").and_then(|s| Timestamp::from_second(s).ok()).unwrap_or(now);
                if until > now {
                    return Ok(Claim::NotYet { until, hop: current.get_str("hop").map(str::to_string) });
                }
                take_over(Condition::equals("state", "deferred"), None).await
            }
            "retry" => take_over(Condition::equals("state", "retry"), None).await,
            "processing" | "calling" => {
                let since = match state.as_str() {
                    "calling" => current.get_i64("calling_at"),
                    _ => current.get_i64("claimed_at"),
                };
                let previous = current.get_str("attempt").unwrap_or_default().to_string();
                if now.as_second() < since.unwrap_or(0) + CLAIM_LEASE.as_secs() {
                    return Ok(Claim::InFlight);
                }
                // A claim written before `calling` existed says nothing about whether SES was called.
                let reached_ses = state == "calling" || current.get("marks_calling").is_none();
                match class {
                    SendClass::Marketing if reached_ses => {
                        let actions = vec![
                            UpdateAction::set("state", "unknown"),
                            UpdateAction::set("reason", "attempt_died_while_calling_ses"),
                            UpdateAction::set("unknown_since", now.as_second()),
                            kept_from(now),
                        ];
                        match self.store.update(&key, actions, Some(in_state_of(&state, &previous))).await {
                            Ok(_) => {
                                tracing::warn!(
                                    "a marketing send's earlier attempt died calling SES; outcome unknown, not re-sent"
                                );
                                Ok(Claim::Finished { state: "unknown".into() })
                            }
                            Err(StoreError::ConditionFailed) => Ok(Claim::InFlight),
                            Err(other) => Err(other),
                        }
                    }
                    _ => take_over(in_state_of(&state, &previous), reached_ses.then_some(DIED_WHILE_CALLING)).await,
                }
            }
            _ => Ok(Claim::InFlight),
        }
    }

    async fn transition(
        &self,
        idempotency_key: &str,
        attempt: &str,
        actions: Vec<UpdateAction>,
    ) -> Result<(), StoreError> {
        self.store.update(&ledger_key(idempotency_key), actions, Some(owned_by(attempt))).await.map(|_| ())
    }

    /// Marks the moment the attempt calls SES: from here on the message may be on its way. Fails
    /// with `ConditionFailed` when the claim is no longer this attempt's (its lease passed and
    /// another took over), and then SES must not be called.
    pub async fn mark_calling(&self, key: &str, attempt: &str, now: Timestamp) -> Result<(), StoreError> {
        let actions = vec![
            UpdateAction::set("state", "calling"),
            UpdateAction::set("calling_at", now.as_second()),
            kept_from(now),
        ];
        self.store.update(&ledger_key(key), actions, Some(in_state_of("processing", attempt))).await.map(|_| ())
    }

    /// SES may have taken the message and nobody can know: a marketing message stops here.
    pub async fn mark_unknown(&self, key: &str, attempt: &str, reason: &str, now: Timestamp) -> Result<(), StoreError> {
        let actions = vec![
            UpdateAction::set("state", "unknown"),
            UpdateAction::set("reason", reason),
            UpdateAction::set("unknown_since", now.as_second()),
            kept_from(now),
        ];
        self.transition(key, attempt, actions).await
    }

    /// A transactional try got an ambiguous answer and the request will be tried again: recorded
    /// before the next try, so its second copy is explained.
    pub async fn note_ambiguous(&self, key: &str, attempt: &str) -> Result<(), StoreError> {
        self.transition(key, attempt, vec![UpdateAction::set(RESENT_AFTER, AMBIGUOUS_ANSWER)]).await
    }

    pub async fn mark_sent(
        &self,
        key: &str,
        attempt: &str,
        message_id: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let actions = vec![
            UpdateAction::set("state", "sent"),
            UpdateAction::set("message_id", message_id),
            UpdateAction::set("sent_at", now.as_second()),
            UpdateAction::set("sent_event", "pending"),
            kept_from(now),
        ];
        self.transition(key, attempt, actions).await
    }

    /// The `email_sent` event of a sent message is on its queue.
    pub async fn mark_sent_event_queued(&self, key: &str) -> Result<(), StoreError> {
        let actions = vec![UpdateAction::set("sent_event", "queued")];
        self.store.update(&ledger_key(key), actions, Some(Condition::equals("state", "sent"))).await.map(|_| ())
    }

    pub async fn mark_blocked(&self, key: &str, attempt: &str, reason: &str, now: Timestamp) -> Result<(), StoreError> {
        let actions = vec![
            UpdateAction::set("state", "blocked"),
            UpdateAction::set("reason", reason),
            UpdateAction::set("blocked_at", now.as_second()),
            kept_from(now),
        ];
        self.transition(key, attempt, actions).await
    }

    /// The request's origin no longer wants it (a bought cart, an exited journey run, a step gone
    /// stale): final, like a block, but not the recipient's doing.
    pub async fn mark_cancelled(
        &self,
        key: &str,
        attempt: &str,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let actions = vec![
            UpdateAction::set("state", "cancelled"),
            UpdateAction::set("reason", reason),
            UpdateAction::set("cancelled_at", now.as_second()),
            kept_from(now),
        ];
        self.transition(key, attempt, actions).await
    }

    /// Defers the request until `until`; `hop` names the queued copy that carries the wait on.
    pub async fn mark_deferred(
        &self,
        key: &str,
        attempt: &str,
        until: Timestamp,
        reason: &str,
        hop: &str,
    ) -> Result<(), StoreError> {
        let mut actions = vec![
            UpdateAction::set("state", "deferred"),
            UpdateAction::set("until", until.as_second()),
            UpdateAction::set("reason", reason),
            UpdateAction::set("hop", hop),
            kept_from(until),
        ];
        // Kept past later deferrals and the send: the guard's holds stay countable.
        if reason.starts_with(REPUTATION_HOLD) {
            actions.push(UpdateAction::set(HELD_BY_REPUTATION, true));
        }
        self.transition(key, attempt, actions).await
    }

    /// Hands a deferred request's wait on from the copy `from` (None: a deferral written before
    /// hops were named) to the copy `to`, already queued. False when another copy took it over
    /// first: `to` then carries nothing and is dropped when it comes.
    pub async fn pass_hop(&self, key: &str, from: Option<&str>, to: &str) -> Result<bool, StoreError> {
        let from = match from {
            Some(hop) => Condition::equals("hop", hop),
            None => Condition::attribute_not_exists("hop"),
        };
        let condition = Condition::And(vec![Condition::equals("state", "deferred"), from]);
        match self.store.update(&ledger_key(key), vec![UpdateAction::set("hop", to)], Some(condition)).await {
            Ok(_) => Ok(true),
            Err(StoreError::ConditionFailed) => Ok(false),
            Err(other) => Err(other),
        }
    }

    /// Gives the claim back after a failure that sent nothing (or a transactional message's), so the
    /// next delivery may try again.
    pub async fn release_for_retry(&self, key: &str, attempt: &str, error: &str) -> Result<(), StoreError> {
        let actions = vec![UpdateAction::set("state", "retry"), UpdateAction::set("last_error", error)];
        self.transition(key, attempt, actions).await
    }

    /// Gives a transactional request's claim back after an ambiguous answer: the next delivery
    /// sends it again, and the ledger says why.
    pub async fn release_after_ambiguous(&self, key: &str, attempt: &str, error: &str) -> Result<(), StoreError> {
        let actions = vec![
            UpdateAction::set("state", "retry"),
            UpdateAction::set("last_error", error),
            UpdateAction::set(RESENT_AFTER, AMBIGUOUS_ANSWER),
        ];
        self.transition(key, attempt, actions).await
    }
}
