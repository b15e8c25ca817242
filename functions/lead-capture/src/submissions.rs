//! `POST /v1/forms/{form_id}/submissions`: a web-form submission becomes a contact.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value, json};
use voronka_domain::campaigns::FormDefinition;
use voronka_domain::campaigns::form::{RENDER_TOKEN_FIELD, SUBMISSION_ID_FIELD, ValidSubmission, single_text};
use voronka_domain::errors::FieldError;
use voronka_domain::model::event::is_valid_client_id;
use voronka_domain::model::{
    AcceptedSubmission, Channel, ConsentReceipt, Contact, ContactRef, DoubleOptIn, EmailAddress, Event, EventSource,
    EventType, Priority, Recipient, SendClass, SendOrigin, SendRequest, Touch,
};
use voronka_domain::ports::{OutgoingMessage, QueueName, send_all};
use voronka_domain::repo::{ContactRepository, UpsertOutcome};
use voronka_domain::signing::TokenScope;

use crate::http_util::{
    ApiError, BodyFormat, allow_origin, body_format, client_subject, enforce_rate_limit, origin, preflight_response,
    read_body, wants_html,
};
use crate::{AppState, CONFIRM_TOKEN_PURPOSE, ClientIp, RENDER_TOKEN_PURPOSE, pages};

/// Longest value accepted in a hidden tracking field.
const MAX_HIDDEN_FIELD_CHARS: usize = 2000;

fn form_or_404<'a>(state: &'a AppState, form_id: &str) -> Result<&'a FormDefinition, ApiError> {
    state
        .campaigns
        .forms
        .get(form_id)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "form_not_found", format!("there is no form `{form_id}`")))
}

pub async fn preflight(State(state): State<AppState>, Path(form_id): Path<String>, headers: HeaderMap) -> Response {
    match form_or_404(&state, &form_id) {
        Ok(form) => preflight_response(&headers, |o| form.allows_origin(o) || state.is_own_origin(o, &headers), ""),
        Err(e) => e.into_response(),
    }
}

/// `GET /v1/forms/{form_id}`: the form's public definition and a fresh render token, for embed
/// snippets that build the form in the page.
pub async fn describe(State(state): State<AppState>, Path(form_id): Path<String>, headers: HeaderMap) -> Response {
    let form = match form_or_404(&state, &form_id) {
        Ok(form) => form,
        Err(e) => return e.into_response(),
    };
    let fields: Vec<Value> = form
        .fields
        .iter()
        .map(|f| {
            json!({
                "name": f.name, "label": f.label, "type": format!("{:?}", f.field_type).to_lowercase(),
                "required": f.required, "max_length": f.max_length, "options": f.options,
            })
        })
        .collect();
    let body = json!({
        "id": form.id,
        "title": form.title,
        "fields": fields,
        "consent": form.consent.as_ref().map(|c| json!({"field": c.field, "text": c.text, "required": c.required})),
        "honeypot_field": form.honeypot_field,
        "render_token_field": RENDER_TOKEN_FIELD,
        "render_token": crate::render_token(&state, &form.id),
        "submit_url": format!("{}/v1/forms/{}/submissions", state.base_url(&headers), form.id),
    });
    let mut response = Json(body).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    if let Some(origin) = origin(&headers).filter(|o| form.allows_origin(o) || state.is_own_origin(o, &headers)) {
        allow_origin(&mut response, origin);
    }
    response
}

/// `GET /v1/forms/{form_id}/thanks`: where a plain HTML form lands after a submission, when the
/// form has no page of the shop's own site to send people to.
pub async fn thank_you(State(state): State<AppState>, Path(form_id): Path<String>) -> Response {
    match form_or_404(&state, &form_id) {
        Ok(form) => (StatusCode::OK, pages::thank_you(form)).into_response(),
        Err(_) => (StatusCode::NOT_FOUND, pages::not_found()).into_response(),
    }
}

pub async fn submit(
    State(state): State<AppState>,
    Path(form_id): Path<String>,
    client: Option<axum::Extension<ClientIp>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let html = wants_html(&headers);
    let form = match form_or_404(&state, &form_id) {
        Ok(form) => form.clone(),
        Err(e) => return e.into_response(),
    };
    let cors_origin = origin(&headers).map(str::to_string);
    if let Some(o) = &cors_origin
        && !form.allows_origin(o)
        && !state.is_own_origin(o, &headers)
    {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            format!("pages on {o} may not post this form"),
        )
        .into_response();
    }
    let result = handle(&state, &form, client.map(|c| c.0), &headers, body).await;
    let (accepted, refused) = if result.is_ok() { (1.0, 0.0) } else { (0.0, 1.0) };
    voronka_telemetry::metrics::emit(
        "lead-capture",
        &[("SubmissionsAccepted", accepted), ("SubmissionsRefused", refused)],
    );
    let mut response = match result {
        Ok(accepted) if html && accepted.format == BodyFormat::UrlEncoded => match &form.thank_you_url {
            Some(url) => Redirect::to(&state.absolute_url(url, &headers)).into_response(),
            None => (StatusCode::CREATED, pages::thank_you(&form)).into_response(),
        },
        Ok(accepted) => (StatusCode::CREATED, Json(accepted.body)).into_response(),
        Err(error) if html && error.status == StatusCode::BAD_REQUEST => {
            (error.status, pages::invalid_submission(&form, &error.fields)).into_response()
        }
        Err(error) => error.into_response(),
    };
    if let Some(o) = &cors_origin {
        allow_origin(&mut response, o);
    }
    response
}

struct Accepted {
    format: BodyFormat,
    body: Value,
}

async fn handle(
    state: &AppState,
    form: &FormDefinition,
    client: Option<ClientIp>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Accepted, ApiError> {
    let (format, values) = read_values(state, headers, body).await?;
    enforce_rate_limits(state, form, client).await?;
    let now = state.clock.now();
    if let Some(reason) = spam_reason(state, form, &values, now) {
        // Answer as if accepted, so a bot learns nothing; store nothing.
        tracing::info!(form_id = %form.id, reason, "submission dropped as spam");
        let decoy = state.ids.new_id("c", now);
        return Ok(Accepted { format, body: json!({ "contact_id": decoy, "status": "created" }) });
    }
    let context = SubmissionContext::of_request(state, client, headers);
    let captured = submit_values(state, form, &values, &context, now).await?;
    Ok(Accepted { format, body: answer(&captured.contact, captured.outcome, &captured.submission_id) })
}

/// What a submission takes from the request that carried it, besides its fields: the consent
/// receipt's IP and user agent, the landing page when the fields name none, the locale when the
/// fields ask for none, and the host links in email point at.
#[derive(Debug, Clone, Default)]
pub struct SubmissionContext {
    pub client: Option<ClientIp>,
    pub user_agent: Option<String>,
    pub referer: Option<String>,
    pub accept_language: Option<String>,
    /// The public URL of the API, without a trailing slash.
    pub base_url: String,
}

impl SubmissionContext {
    pub fn of_request(state: &AppState, client: Option<ClientIp>, headers: &HeaderMap) -> SubmissionContext {
        let header_text =
            |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        SubmissionContext {
            client,
            user_agent: header_text(header::USER_AGENT),
            referer: header_text(header::REFERER),
            accept_language: header_text(header::ACCEPT_LANGUAGE),
            base_url: state.base_url(headers),
        }
    }
}

/// A submission stored, and what it did to its contact.
#[derive(Debug, Clone)]
pub struct Captured {
    pub contact: Contact,
    pub outcome: UpsertOutcome,
    pub submission_id: String,
}

/// A form's values, already read and past the rate and spam checks, become a contact: checked
/// against the form (400 naming every field), deduplicated by address, with consent receipt,
/// touch and anonymous id, and with everything it owes the queues queued before it returns. The
/// form handler and the qualify bot both come through here, so a chat captures a contact exactly
/// as a form does; a retry with the same `submission_id` field is applied once.
pub async fn submit_values(
    state: &AppState,
    form: &FormDefinition,
    values: &Map<String, Value>,
    context: &SubmissionContext,
    now: Timestamp,
) -> Result<Captured, ApiError> {
    let submission = accept(state, form, context, values, now)?;
    let (contact, outcome) = store(state, &submission).await?;
    queue_follow_ups(state, form, &context.base_url, &contact, &submission).await?;
    Ok(Captured { contact, outcome, submission_id: submission.submission_id })
}

/// The body's fields, from JSON or a plain HTML form.
async fn read_values(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<(BodyFormat, Map<String, Value>), ApiError> {
    let format = body_format(headers, &[BodyFormat::Json, BodyFormat::UrlEncoded])?;
    let bytes = read_body(headers, body, state.campaigns.settings.limits.max_body_bytes).await?;
    Ok((format, parse_values(format, &bytes)?))
}

async fn enforce_rate_limits(
    state: &AppState,
    form: &FormDefinition,
    client: Option<ClientIp>,
) -> Result<(), ApiError> {
    let limits = &state.campaigns.settings.limits;
    let subject = client_subject(state, client);
    enforce_rate_limit(state, "submit-ip", &subject, limits.per_ip_per_minute).await?;
    enforce_rate_limit(state, &format!("submit-form-{}", form.id), "all", limits.per_form_per_minute).await
}

/// The submission as it changes a contact, or every problem with its fields.
fn accept(
    state: &AppState,
    form: &FormDefinition,
    context: &SubmissionContext,
    values: &Map<String, Value>,
    now: Timestamp,
) -> Result<AcceptedSubmission, ApiError> {
    let settings = &state.campaigns.settings;
    let CheckedFields { valid, email, hidden } = check_fields(form, values).map_err(ApiError::invalid)?;
    let hidden_text = |name: &str| hidden.get(name).and_then(Value::as_str).map(str::to_string);
    let submission_id = hidden_text(SUBMISSION_ID_FIELD).unwrap_or_else(|| state.ids.new_id("sub", now));
    let locale = hidden_text("locale")
        .or_else(|| (context.accept_language.as_deref()).map(|v| v.split([',', ';']).next().unwrap_or("").to_string()));
    let mut touch = Touch::from_fields(now, |name| hidden_text(name));
    if touch.landing_page.is_none() {
        touch.landing_page = context.referer.clone();
    }
    let consent = (form.consent.as_ref()).filter(|_| valid.consent_granted).map(|consent| ConsentReceipt {
        id: format!("cr_{submission_id}"),
        channel: Channel::Email,
        granted: true,
        at: now,
        form_id: Some(form.id.clone()),
        ip: context.client.map(|c| c.0.to_string()),
        user_agent: context.user_agent.as_ref().map(|ua| ua.chars().take(500).collect()),
        text_version: consent.text_version.clone(),
        double_opt_in: form.double_opt_in,
        submission_id: Some(submission_id.clone()),
    });
    Ok(AcceptedSubmission {
        form_id: form.id.clone(),
        at: now,
        email,
        phone: valid.phone,
        first_name: valid.first_name,
        last_name: valid.last_name,
        locale: locale.map(|locale| settings.pick_locale(Some(&locale))),
        time_zone: hidden_text("time_zone").map(|zone| settings.pick_time_zone(Some(&zone))),
        attributes: valid.attributes,
        tags: form.tags.clone(),
        target_stage: form.target_stage,
        touch,
        anonymous_id: hidden_text("anonymous_id"),
        consent,
        double_opt_in: form.double_opt_in,
        submission_id,
    })
}

/// A submission's fields as the form and the hidden-field rules accept them.
#[derive(Debug, Clone)]
pub struct CheckedFields {
    pub valid: ValidSubmission,
    pub email: EmailAddress,
    /// The tracking and identity fields, trimmed.
    pub hidden: Map<String, Value>,
}

/// Checks a submission's values against its form and the hidden-field rules, with every problem
/// named by its field. Pure (no state, no clock), so the fuzzer drives exactly what the handler runs.
pub fn check_fields(form: &FormDefinition, values: &Map<String, Value>) -> Result<CheckedFields, Vec<FieldError>> {
    let mut field_errors = Vec::new();
    let valid = match form.validate(values) {
        Ok(valid) => Some(valid),
        Err(errors) => {
            field_errors = errors;
            None
        }
    };
    let (hidden, mut hidden_errors) = hidden_fields(values);
    field_errors.append(&mut hidden_errors);
    for name in ["anonymous_id", SUBMISSION_ID_FIELD] {
        if hidden.get(name).and_then(Value::as_str).is_some_and(|id| !is_valid_client_id(id)) {
            field_errors.push(FieldError::new(name, "invalid_id", "must be 1 to 128 of A-Z a-z 0-9 - _ . :"));
        }
    }
    let Some(mut valid) = valid.filter(|_| field_errors.is_empty()) else {
        return Err(field_errors);
    };
    // Every form's email field is required (checked when the form is loaded); should one slip
    // through, the person is told, not answered with a crash.
    let Some(email) = valid.email.take() else {
        return Err(vec![FieldError::new("email", "required", "is required")]);
    };
    Ok(CheckedFields { valid, email, hidden })
}

/// Creates or updates the contact behind the submission's address.
async fn store(state: &AppState, submission: &AcceptedSubmission) -> Result<(Contact, UpsertOutcome), ApiError> {
    let settings = &state.campaigns.settings;
    let new_contact = || {
        let locale = submission.locale.clone().unwrap_or_else(|| settings.default_locale.clone());
        let time_zone = submission.time_zone.clone().unwrap_or_else(|| settings.default_time_zone.clone());
        Contact::for_submission(state.ids.new_id("c", submission.at), submission, locale, time_zone)
    };
    let confirmations = settings.double_opt_in.confirmation_limit();
    let apply = |contact: &mut Contact| contact.apply_submission(submission, confirmations);
    let (contact, outcome) = ContactRepository::new(state.store.as_ref())
        .upsert_by_email(&submission.email, submission.at, new_contact, apply)
        .await
        .map_err(|e| ApiError::internal("storing a form submission failed", e))?;
    tracing::info!(
        form_id = %submission.form_id,
        contact_id = %contact.id,
        outcome = if outcome == UpsertOutcome::Created { "created" } else { "updated" },
        "form submission stored"
    );
    Ok((contact, outcome))
}

/// What the stored contact owes the queues: the confirmation emails granted and `lead_created`,
/// each under the id it was first queued with, so whatever retry comes (same submission id or a
/// new one) queues them again and their consumers drop the duplicates. Only once the queues took
/// them are they marked done on the contact.
async fn queue_follow_ups(
    state: &AppState,
    form: &FormDefinition,
    base_url: &str,
    contact: &Contact,
    submission: &AcceptedSubmission,
) -> Result<(), ApiError> {
    let (submission_id, now) = (submission.submission_id.as_str(), submission.at);
    let owed_confirmations = contact.follow_ups.unqueued_confirmations();
    let mut sends = Vec::new();
    if contact.awaits_confirmation() {
        for receipt_id in &owed_confirmations {
            sends.push(confirmation_request(state, base_url, contact, form, receipt_id, submission_id, now));
        }
    }
    let lead_created_by = contact.follow_ups.lead_created_by.clone();
    let events = submission_events(contact, form, lead_created_by.as_deref(), submission_id, &submission.touch, now);
    enqueue(state, QueueName::Sends, sends).await?;
    enqueue(state, QueueName::Events, events).await?;
    if lead_created_by.is_some() || !owed_confirmations.is_empty() {
        // Confirmations no longer owed (confirmed since, or suppressed) are settled as well.
        let marked = ContactRepository::new(state.store.as_ref())
            .update(&contact.id, now, |c| c.follow_ups.mark_queued(lead_created_by.as_deref(), &owed_confirmations))
            .await;
        if let Err(error) = marked {
            // Harmless: the next submission queues them again under the same ids.
            tracing::warn!(contact_id = %contact.id, error = %error, "follow-ups queued but not marked");
        }
    }
    Ok(())
}

/// The answer to an accepted submission: the contact as stored by it.
fn answer(contact: &Contact, outcome: UpsertOutcome, submission_id: &str) -> Value {
    let status = match outcome {
        UpsertOutcome::Created => "created",
        UpsertOutcome::Updated => "updated",
    };
    let double_opt_in = contact.email_consent().map(|c| match c.double_opt_in {
        DoubleOptIn::NotRequired => "not_required",
        DoubleOptIn::Pending => "pending",
        DoubleOptIn::Confirmed => "confirmed",
    });
    json!({
        "contact_id": contact.id,
        "status": status,
        "submission_id": submission_id,
        "stage": contact.stage.as_str(),
        "double_opt_in": double_opt_in,
    })
}

/// A form body's fields: a JSON object, or the pairs of an urlencoded body (a repeated name keeps
/// its last value).
pub fn parse_values(format: BodyFormat, bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let bad = |message: &str| ApiError::new(StatusCode::BAD_REQUEST, "malformed_body", message.to_string());
    match format {
        BodyFormat::Json => match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(bad("the JSON body must be an object of field names to values")),
            Err(e) => Err(bad(&format!("the body is not valid JSON: {e}"))),
        },
        BodyFormat::UrlEncoded => {
            let pairs: Vec<(String, String)> =
                serde_urlencoded::from_bytes(bytes).map_err(|e| bad(&format!("the form body cannot be read: {e}")))?;
            Ok(pairs.into_iter().map(|(k, v)| (k, Value::String(v))).collect())
        }
    }
}

/// Tracking and identity fields: single values of bounded length, and the problems with the rest.
fn hidden_fields(values: &Map<String, Value>) -> (Map<String, Value>, Vec<FieldError>) {
    let mut hidden = Map::new();
    let mut errors = Vec::new();
    for (name, value) in values {
        if !voronka_domain::campaigns::form::is_accepted_hidden_field(name) {
            continue;
        }
        match single_text(Some(value)) {
            Ok(Some(text)) if text.chars().count() > MAX_HIDDEN_FIELD_CHARS => errors.push(FieldError::new(
                name,
                "too_long",
                &format!("must be at most {MAX_HIDDEN_FIELD_CHARS} characters"),
            )),
            Ok(Some(text)) if text.chars().any(char::is_control) => {
                errors.push(FieldError::new(name, "invalid_characters", "must not contain control characters"))
            }
            Ok(Some(text)) => {
                hidden.insert(name.clone(), Value::String(text.trim().to_string()));
            }
            Ok(None) => {}
            Err(_) => errors.push(FieldError::new(name, "invalid_type", "must be a single value")),
        }
    }
    (hidden, errors)
}

/// Why a submission looks automated, if it does: a filled honeypot, or a form sent faster than a
/// person can fill it (judged from the page's signed render timestamp).
fn spam_reason(
    state: &AppState,
    form: &FormDefinition,
    values: &Map<String, Value>,
    now: Timestamp,
) -> Option<&'static str> {
    if single_text(values.get(&form.honeypot_field)).ok().flatten().is_some() {
        return Some("honeypot");
    }
    let token = single_text(values.get(RENDER_TOKEN_FIELD)).ok().flatten();
    let Some(token) = token else {
        return form.require_render_timestamp.then_some("missing_render_timestamp");
    };
    let Ok(verified) = state.signer().verify(RENDER_TOKEN_PURPOSE, &token, now) else {
        return Some("invalid_render_timestamp");
    };
    if verified.subject != form.id {
        return Some("render_timestamp_of_another_form");
    }
    let minimum = form.min_fill_seconds.unwrap_or(state.campaigns.settings.anti_spam.min_fill_seconds);
    if now.duration_since(verified.issued_at) < SignedDuration::from_secs(i64::from(minimum)) {
        return Some("filled_too_fast");
    }
    None
}

/// The confirmation email granted to the sign-up `receipt_id`. Its link names the receipt the
/// consent waits on (the first sign-up of this pending spell), so every link sent confirms it.
fn confirmation_request(
    state: &AppState,
    base_url: &str,
    contact: &Contact,
    form: &FormDefinition,
    receipt_id: &str,
    submission_id: &str,
    now: Timestamp,
) -> OutgoingMessage {
    let days = i64::from(state.campaigns.settings.double_opt_in.confirm_link_days);
    let pending = contact.email_consent().and_then(|c| c.pending_receipt()).unwrap_or(receipt_id);
    let subject = format!("{}|{pending}", contact.id);
    let scope = TokenScope { list: None, form: Some(form.id.clone()) };
    let token = state.signer().sign_scoped(
        CONFIRM_TOKEN_PURPOSE,
        &subject,
        &scope,
        now,
        now + SignedDuration::from_hours(24 * days),
    );
    let mut context = Map::new();
    context.insert("confirm_url".into(), Value::String(format!("{base_url}/v1/confirm?token={token}")));
    context.insert("form_title".into(), Value::String(form.title.clone()));
    let request = SendRequest {
        idempotency_key: format!("optin:{}:{receipt_id}", contact.id),
        contact_id: contact.id.clone(),
        template: "optin_confirmation".into(),
        channel: Channel::Email,
        class: SendClass::Transactional,
        priority: Priority::Transactional,
        context,
        origin: SendOrigin::Form { form_id: form.id.clone(), submission_id: submission_id.to_string() },
        requested_at: now,
        recipient: Recipient::Contact,
    };
    OutgoingMessage::new("0", serde_json::to_string(&request).expect("send requests serialise"))
}

fn submission_events(
    contact: &Contact,
    form: &FormDefinition,
    lead_created_by: Option<&str>,
    submission_id: &str,
    touch: &Touch,
    now: Timestamp,
) -> Vec<OutgoingMessage> {
    let mut properties = Map::new();
    properties.insert("form_id".into(), Value::String(form.id.clone()));
    properties.insert("submission_id".into(), Value::String(submission_id.to_string()));
    properties.insert("stage".into(), Value::String(contact.stage.as_str().to_string()));
    properties.insert("channel".into(), Value::String(touch.channel.clone()));
    if let Some(campaign) = &touch.campaign {
        properties.insert("campaign".into(), Value::String(campaign.clone()));
    }
    if let Some(journey) = &form.journey {
        properties.insert("journey".into(), Value::String(journey.clone()));
    }
    let event = |event_type: EventType| Event {
        // Scoped by the contact: submission ids are the client's choice, and one id reused for two
        // people must not make the second person's events duplicates of the first's.
        event_id: format!("{}:{submission_id}:{event_type}", contact.id),
        event_type,
        contact: ContactRef { contact_id: Some(contact.id.clone()), ..Default::default() },
        occurred_at: now,
        received_at: now,
        properties: properties.clone(),
        trusted: true,
        source: EventSource::Voronka,
    };
    let mut events = vec![event(EventType::FormSubmitted)];
    if let Some(created_by) = lead_created_by {
        let mut lead = event(EventType::LeadCreated);
        lead.event_id = format!("{}:{created_by}:lead_created", contact.id);
        lead.occurred_at = contact.created_at;
        events.push(lead);
    }
    events
        .iter()
        .enumerate()
        .map(|(i, e)| OutgoingMessage::new(i.to_string(), serde_json::to_string(e).expect("events serialise")))
        .collect()
}

/// Puts one of Voronka's own events on the `events` queue.
pub async fn enqueue_event(state: &AppState, event: &Event) -> Result<(), ApiError> {
    let message = OutgoingMessage::new("0", serde_json::to_string(event).expect("events serialise"));
    enqueue(state, QueueName::Events, vec![message]).await
}

/// Puts messages on a queue; any message refused makes the whole request retryable.
pub async fn enqueue(state: &AppState, queue: QueueName, messages: Vec<OutgoingMessage>) -> Result<(), ApiError> {
    if messages.is_empty() {
        return Ok(());
    }
    let outcomes = send_all(state.queue.as_ref(), queue, messages)
        .await
        .map_err(|e| ApiError::internal("the queue refused a batch", e))?;
    if let Some(failed) = outcomes.iter().find(|o| o.error.is_some()) {
        return Err(ApiError::internal("the queue refused a message", failed.error.clone().unwrap_or_default()));
    }
    Ok(())
}
