//! `POST /v1/events`: batches of behaviour and outcome events onto the `events` queue.
//!
//! Browsers may send behaviour unsigned; money and outcomes (`purchase`, custom types) need the
//! shop back end's HMAC-SHA256 signature over the body, and so does naming a person by `email` or
//! `contact_id` (a browser names only its own `anonymous_id`). Each event is idempotent by its
//! `event_id` within its source: browser and shop ids live in separate namespaces.
//!
//! A signature carries its time (`t=...,v1=...`) and is refused outside `[security]
//! signature_tolerance_seconds`, so a captured batch cannot be replayed later. The legacy
//! `sha256=` signature carries no time: its events are accepted only while their receipts would
//! still catch a replay (`RECEIPT_RETENTION`), each older event refused on its own.

use std::collections::BTreeSet;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use futures_util::future::join_all;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value, json};
use voronka_domain::campaigns::settings::Limits;
use voronka_domain::model::event::{EventTrust, is_valid_client_id, is_valid_event_type};
use voronka_domain::model::{ContactRef, EmailAddress, Event, EventSource, EventType, payload};
use voronka_domain::ports::{OutgoingMessage, QueueName, send_all};
use voronka_domain::repo::event_receipts::RECEIPT_RETENTION;
use voronka_domain::repo::{EventClaim, EventReceipts};
use voronka_domain::signing::{EVENTS_SIGNATURE_HEADER, SignatureScheme, verify_events_body};

use crate::http_util::{
    ApiError, BodyFormat, allow_origin, body_format, client_subject, enforce_rate_limit, origin, preflight_response,
    read_body,
};
use crate::{AppState, ClientIp};

/// How far in the future an event's time may lie (clock skew of browsers and back ends).
const MAX_FUTURE_SKEW: SignedDuration = SignedDuration::from_mins(5);
/// How old an unsigned browser event may be; signed back ends may import older history.
const MAX_BROWSER_EVENT_AGE: SignedDuration = SignedDuration::from_hours(24);

/// Pages allowed to send events from a browser: those allowed to post any form.
fn allowed_origin(state: &AppState, origin: &str, headers: &HeaderMap) -> bool {
    state.is_own_origin(origin, headers) || state.campaigns.forms.values().any(|form| form.allows_origin(origin))
}

pub async fn preflight(State(state): State<AppState>, headers: HeaderMap) -> Response {
    preflight_response(&headers, |o| allowed_origin(&state, o, &headers), &format!(", {EVENTS_SIGNATURE_HEADER}"))
}

/// What became of one event of a batch.
#[derive(Debug)]
pub enum Verdict {
    Accepted(Box<Event>),
    Rejected { code: &'static str, field: String, message: String },
}

pub async fn ingest(
    State(state): State<AppState>,
    client: Option<axum::Extension<ClientIp>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let cors_origin = origin(&headers).map(str::to_string);
    if let Some(o) = &cors_origin
        && !allowed_origin(&state, o, &headers)
    {
        return ApiError::new(StatusCode::FORBIDDEN, "origin_not_allowed", format!("pages on {o} may not send events"))
            .into_response();
    }
    let mut response = match handle(&state, client.map(|c| c.0), &headers, body).await {
        Ok((status, body)) => (status, Json(body)).into_response(),
        Err(error) => error.into_response(),
    };
    if let Some(o) = &cors_origin {
        allow_origin(&mut response, o);
    }
    response
}

/// Receipt writes of one batch in flight at once: bounded, since a batch holds up to
/// `max_events_per_batch` events.
const CONCURRENT_WRITES: usize = 16;

async fn handle(
    state: &AppState,
    client: Option<ClientIp>,
    headers: &HeaderMap,
    body: Body,
) -> Result<(StatusCode, Value), ApiError> {
    let limits = &state.campaigns.settings.limits;
    body_format(headers, &[BodyFormat::Json])?;
    let bytes = read_body(headers, body, limits.max_body_bytes).await?;

    let now = state.clock.now();
    let signature = match headers.get(EVENTS_SIGNATURE_HEADER) {
        None => None,
        Some(value) => {
            let policy = state.campaigns.settings.security.signature_policy();
            let verified = value
                .to_str()
                .map_err(|_| voronka_domain::signing::SignatureError::Malformed("not visible ASCII".into()))
                .and_then(|v| verify_events_body(&state.secrets.events_keys, v, &bytes, now, &policy));
            match verified {
                Ok(verified) => Some(verified),
                Err(error) => {
                    tracing::info!(reason = error.reason(), "an event batch's signature was refused");
                    // The reason (`stale`, `malformed`, ...) also as a field entry, for senders to
                    // tell a clock problem from a key problem without parsing the message.
                    let field = voronka_domain::errors::FieldError::new(
                        EVENTS_SIGNATURE_HEADER,
                        error.reason(),
                        &error.to_string(),
                    );
                    return Err(ApiError {
                        fields: vec![field],
                        ..ApiError::new(
                            StatusCode::UNAUTHORIZED,
                            "invalid_signature",
                            format!(
                                "the {EVENTS_SIGNATURE_HEADER} header {error}; send t=<unix seconds>,kid=<key id>,v1=<hex HMAC-SHA256 of \"<t>.<exact body bytes>\">"
                            ),
                        )
                    });
                }
            }
        }
    };
    let signed = signature.is_some();
    // Without a time in the signature, only the receipts stand between a replayed batch and the
    // queue; events older than the receipts' lifetime are refused instead.
    let oldest_allowed = match signature.as_ref().map(|s| s.scheme) {
        Some(SignatureScheme::Legacy) => Some(now - RECEIPT_RETENTION),
        _ => None,
    };

    if !signed {
        // Back ends are trusted and batch heavily; browsers are counted per address.
        let subject = client_subject(state, client);
        enforce_rate_limit(state, "events-ip", &subject, limits.per_ip_per_minute).await?;
    }

    let verdicts = check_batch(&bytes, signed, now, limits, oldest_allowed)?;

    let receipts = EventReceipts::new(state.store.as_ref());
    let mut results: Vec<Value> = Vec::with_capacity(verdicts.len());
    let mut accepted: Vec<(usize, String, Event)> = Vec::new();
    for (id, verdict) in verdicts {
        match verdict {
            Verdict::Rejected { code, field, message } => results
                .push(json!({"event_id": id, "status": "rejected", "code": code, "field": field, "message": message})),
            Verdict::Accepted(event) => {
                accepted.push((results.len(), id, *event));
                results.push(Value::Null);
            }
        }
    }
    // The batch's receipts are claimed side by side (its event ids are unique, checked above): on
    // DynamoDB the batch waits for a few round trips instead of one per event, and locally the
    // claims share a commit.
    let keys: Vec<String> = accepted.iter().map(|(_, _, event)| event.dedupe_key()).collect();
    let mut claims = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(CONCURRENT_WRITES) {
        let chunk_claims = join_all(chunk.iter().map(|key| {
            if oldest_allowed.is_some() {
                // A legacy signature has no time: only a receipt that never expires stops a
                // captured batch from being replayed once a 30-day receipt would be gone.
                receipts.claim_for_good(key, now).boxed()
            } else {
                receipts.claim(key, now).boxed()
            }
        }))
        .await;
        // A failing store gets no more writes from this batch: the answer is a 500 either way.
        let failed = chunk_claims.iter().any(Result::is_err);
        claims.extend(chunk_claims);
        if failed {
            break;
        }
    }
    let mut to_queue: Vec<(usize, Event)> = Vec::new();
    for ((slot, id, event), claim) in accepted.into_iter().zip(claims) {
        match claim.map_err(|e| ApiError::internal("event receipts unavailable", e))? {
            EventClaim::Duplicate => results[slot] = json!({"event_id": id, "status": "duplicate"}),
            EventClaim::New | EventClaim::Unconfirmed => {
                results[slot] = json!({"event_id": id, "status": "accepted"});
                to_queue.push((slot, event));
            }
        }
    }

    let messages = to_queue
        .iter()
        .map(|(slot, event)| {
            OutgoingMessage::new(slot.to_string(), serde_json::to_string(event).expect("events serialise"))
        })
        .collect();
    let outcomes = send_all(state.queue.as_ref(), QueueName::Events, messages)
        .await
        .map_err(|e| ApiError::internal("the events queue is unavailable", e))?;
    let mut queued_keys = Vec::new();
    let mut any_failed = false;
    for outcome in outcomes {
        let slot: usize = outcome.id.parse().expect("slots are indexes");
        let Some((_, event)) = to_queue.iter().find(|(s, _)| *s == slot) else { continue };
        match outcome.error {
            None => queued_keys.push(event.dedupe_key()),
            Some(error) => {
                tracing::warn!(error = %error, "the events queue refused an event");
                any_failed = true;
                results[slot] = json!({"event_id": event.event_id.clone(), "status": "failed", "code": "queue_unavailable",
                    "message": "not stored; send the batch again"});
            }
        }
    }
    let mut marked = Vec::with_capacity(queued_keys.len());
    for chunk in queued_keys.chunks(CONCURRENT_WRITES) {
        let chunk_marks = join_all(chunk.iter().map(|key| receipts.mark_queued(key))).await;
        let failed = chunk_marks.iter().any(Result::is_err);
        marked.extend(chunk_marks);
        if failed {
            break;
        }
    }
    for mark in marked {
        mark.map_err(|e| ApiError::internal("event receipts unavailable", e))?;
    }
    let count = |status: &str| results.iter().filter(|r| r["status"] == status).count();
    let summary = json!({
        "accepted": count("accepted"),
        "duplicates": count("duplicate"),
        "rejected": count("rejected"),
        "failed": count("failed"),
        "results": results,
    });
    tracing::info!(
        accepted = count("accepted"),
        duplicates = count("duplicate"),
        rejected = count("rejected"),
        failed = count("failed"),
        signed,
        key_id = signature.as_ref().map_or("", |s| s.key_id.as_str()),
        legacy_signature = oldest_allowed.is_some(),
        "event batch processed"
    );
    voronka_telemetry::metrics::emit(
        "lead-capture",
        &[
            ("EventsAccepted", count("accepted") as f64),
            ("EventsDuplicate", count("duplicate") as f64),
            ("EventsRejected", count("rejected") as f64),
            ("EventsFailed", count("failed") as f64),
        ],
    );
    // A failed event makes the whole answer retryable; the accepted ones come back as duplicates.
    let status = if any_failed { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::ACCEPTED };
    Ok((status, summary))
}

impl Verdict {
    /// A legacy-signed event older than `oldest_allowed` is refused, naming its `occurred_at`.
    fn refuse_older_than(self, oldest_allowed: Option<Timestamp>) -> Verdict {
        match (self, oldest_allowed) {
            (Verdict::Accepted(event), Some(oldest)) if event.occurred_at < oldest => reject(
                "legacy_signature_too_old",
                "occurred_at",
                format!(
                    "events signed with the legacy sha256= header must have occurred within the last {} days; sign with t=<unix seconds>,v1=<hmac> to send older history",
                    RECEIPT_RETENTION.as_hours() / 24
                ),
            ),
            (verdict, _) => verdict,
        }
    }
}

/// Reads a batch body and judges each event, in order: the envelope's problems fail the whole
/// batch, each event's own problems only that event (with its `event_id`, or `#<index>` without
/// one); with `oldest_allowed` (a legacy signature), older events are refused. Pure, so the
/// fuzzer runs exactly what the handler runs.
pub fn check_batch(
    bytes: &[u8],
    signed: bool,
    now: Timestamp,
    limits: &Limits,
    oldest_allowed: Option<Timestamp>,
) -> Result<Vec<(String, Verdict)>, ApiError> {
    let envelope: Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "malformed_body", format!("the body is not valid JSON: {e}"))
    })?;
    let Some(raw_events) = envelope.get("events").and_then(Value::as_array) else {
        return Err(ApiError::invalid(vec![voronka_domain::errors::FieldError::new(
            "events",
            "required",
            "the body must be {\"events\": [...]}",
        )]));
    };
    if raw_events.is_empty() || raw_events.len() > limits.max_events_per_batch {
        return Err(ApiError::invalid(vec![voronka_domain::errors::FieldError::new(
            "events",
            "batch_size",
            &format!("a batch holds 1 to {} events", limits.max_events_per_batch),
        )]));
    }

    let mut seen = BTreeSet::new();
    let verdicts = raw_events
        .iter()
        .enumerate()
        .map(|(index, raw)| {
            let id =
                raw.get("event_id").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| format!("#{index}"));
            let verdict = match check_event(raw, signed, now, limits.max_event_properties_bytes)
                .refuse_older_than(oldest_allowed)
            {
                Verdict::Accepted(event) if !seen.insert(event.event_id.clone()) => Verdict::Rejected {
                    code: "duplicate_in_batch",
                    field: format!("events[{index}].event_id"),
                    message: "this event_id appears earlier in the same batch".into(),
                },
                Verdict::Rejected { code, field, message } => {
                    Verdict::Rejected { code, field: format!("events[{index}].{field}"), message }
                }
                accepted => accepted,
            };
            (id, verdict)
        })
        .collect();
    Ok(verdicts)
}

fn reject(code: &'static str, field: &str, message: impl Into<String>) -> Verdict {
    Verdict::Rejected { code, field: field.to_string(), message: message.into() }
}

fn check_event(raw: &Value, signed: bool, now: Timestamp, max_properties_bytes: usize) -> Verdict {
    let Some(object) = raw.as_object() else {
        return reject("invalid_type", "", "each event must be a JSON object");
    };
    const KNOWN: [&str; 7] = ["event_id", "type", "occurred_at", "contact_id", "email", "anonymous_id", "properties"];
    if let Some(unknown) = object.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return reject("unknown_field", unknown, format!("unknown field; events have {}", KNOWN.join(", ")));
    }
    let text = |name: &str| object.get(name).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty());

    let Some(event_id) = text("event_id") else {
        return reject("required", "event_id", "every event needs a client-chosen event_id");
    };
    if !is_valid_client_id(event_id) {
        return reject("invalid_id", "event_id", "must be 1 to 128 of A-Z a-z 0-9 - _ . :");
    }
    let Some(event_type) = text("type") else {
        return reject("required", "type", "every event needs a type");
    };
    if !is_valid_event_type(event_type) {
        return reject("invalid_type_name", "type", "types are snake_case names of at most 64 characters");
    }
    let event_type = EventType::from(event_type);
    if event_type.is_due_work() {
        return reject("reserved_type", "type", format!("`{event_type}` events are raised by Voronka itself"));
    }
    if !signed && event_type.trust() == EventTrust::Server {
        return reject(
            "signature_required",
            "type",
            format!("`{event_type}` events must come from the shop back end, signed with the events key"),
        );
    }

    let occurred_at = match object.get("occurred_at") {
        None | Some(Value::Null) => now,
        Some(Value::String(s)) => match s.parse::<Timestamp>() {
            Ok(t) => t,
            Err(_) => {
                return reject("invalid_time", "occurred_at", "must be an RFC 3339 time such as 2026-11-22T10:00:00Z");
            }
        },
        Some(_) => return reject("invalid_time", "occurred_at", "must be an RFC 3339 time string"),
    };
    if occurred_at > now + MAX_FUTURE_SKEW {
        return reject("occurred_at_in_future", "occurred_at", "lies more than 5 minutes in the future");
    }
    if !signed && occurred_at < now - MAX_BROWSER_EVENT_AGE {
        return reject("too_old", "occurred_at", "unsigned events must be at most 24 hours old");
    }

    // A page cannot prove who is looking at it: unsigned events reach a person only through the
    // anonymous id their own form or login linked, never by naming an address or a contact.
    if !signed {
        for field in ["email", "contact_id"] {
            if object.get(field).is_some_and(|v| !v.is_null()) {
                return reject(
                    "signature_required",
                    field,
                    format!("unsigned events name the visitor by anonymous_id; `{field}` needs the shop's signature"),
                );
            }
        }
    }
    let mut contact = ContactRef {
        contact_id: text("contact_id").map(str::to_string),
        email: None,
        anonymous_id: text("anonymous_id").map(str::to_string),
    };
    for (field, value) in [("contact_id", &contact.contact_id), ("anonymous_id", &contact.anonymous_id)] {
        if value.as_deref().is_some_and(|v| !is_valid_client_id(v)) {
            return reject("invalid_id", field, "must be 1 to 128 of A-Z a-z 0-9 - _ . :");
        }
    }
    if let Some(email) = text("email") {
        match EmailAddress::parse(email) {
            Ok(email) => contact.email = Some(email.as_typed().to_string()),
            Err(e) => return reject("invalid_email", "email", e.to_string()),
        }
    }
    if contact.is_empty() {
        return reject("required", "contact_id", "name the person: contact_id, email or anonymous_id");
    }

    let properties = match object.get("properties") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map.clone(),
        Some(_) => return reject("invalid_type", "properties", "must be a JSON object"),
    };
    if serde_json::to_vec(&properties).map_or(0, |b| b.len()) > max_properties_bytes {
        return reject("too_large", "properties", format!("must be at most {max_properties_bytes} bytes of JSON"));
    }
    if let Err(fault) = payload::validate(&event_type, &properties) {
        return Verdict::Rejected { code: fault.code, field: fault.field, message: fault.message };
    }

    Verdict::Accepted(Box::new(Event {
        event_id: event_id.to_string(),
        event_type,
        contact,
        occurred_at,
        received_at: now,
        properties,
        trusted: signed,
        source: if signed { EventSource::Shop } else { EventSource::Browser },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_body_bytes: 65536,
            per_ip_per_minute: 30,
            per_form_per_minute: 600,
            max_events_per_batch: 100,
            max_event_properties_bytes: 8192,
        }
    }

    fn accepted(body: &str, signed: bool) -> Vec<Event> {
        let now: Timestamp = "2026-11-26T12:00:00Z".parse().unwrap();
        let verdicts = check_batch(body.as_bytes(), signed, now, &limits(), None).unwrap();
        verdicts
            .into_iter()
            .map(|(id, verdict)| match verdict {
                Verdict::Accepted(event) => *event,
                Verdict::Rejected { code, field, .. } => panic!("{id} rejected: {code} at {field}"),
            })
            .collect()
    }

    /// Regression from `fuzz/` (event_batch): an amount written with more digits than an f64
    /// holds parsed to a neighbour of the closest f64, so the evaluator read another revenue from
    /// the queue than ingestion had accepted (fixed by serde_json's `float_roundtrip`).
    #[test]
    fn an_accepted_event_reads_back_from_the_queue_unchanged() {
        // Without float_roundtrip this revenue is accepted as 103052827038.17139 and read back
        // from the queue as 103052827038.1714.
        let body = r#"{"events":[{"event_id":"o1","type":"purchase","email":"anna@example.com",
            "properties":{"order_id":"o1","revenue":103052827038.1713749130736702}}]}"#;
        for event in accepted(body, true) {
            let queued = serde_json::to_string(&event).unwrap();
            assert_eq!(serde_json::from_str::<Event>(&queued).unwrap(), event);
        }
        let absurd = r#"{"events":[{"event_id":"o1","type":"purchase","email":"anna@example.com",
            "properties":{"order_id":"o1","revenue":1.99777e+46}}]}"#;
        let now: Timestamp = "2026-11-26T12:00:00Z".parse().unwrap();
        let verdicts = check_batch(absurd.as_bytes(), true, now, &limits(), None).unwrap();
        assert!(matches!(&verdicts[0].1, Verdict::Rejected { code: "out_of_range", field, .. }
            if field == "events[0].properties.revenue"));
    }
}
