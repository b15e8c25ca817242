//! What a conversation does beyond talking: the contact, captured through the form's own path as
//! soon as the script's form has every required field, and the outcome once it ends.
//!
//! Every effect is idempotent, so a retried answer (the same seq and value) finishes what an
//! earlier delivery left undone and repeats nothing: the capture is a form submission whose id is
//! the session id; the contact's outcome change is a fixed point (a stage never goes back, a tag
//! is a set); the sales email and `bot_completed` carry ids named by the session. The session
//! records what is done only to spare the work, never to make it safe.

use axum::http::HeaderMap;
use lead_capture::http_util::enforce_rate_limit;
use lead_capture::submissions::{SubmissionContext, enqueue, submit_values};
use lead_capture::{ApiError, AppState, ClientIp};
use serde_json::{Map, Value, json};
use voronka_domain::bots::{BotScript, Outcome, Speaker};
use voronka_domain::campaigns::FormDefinition;
use voronka_domain::campaigns::form::SUBMISSION_ID_FIELD;
use voronka_domain::model::{
    Channel, Contact, ContactRef, Event, EventSource, EventType, LifecycleStage, Priority, Recipient, SendClass,
    SendOrigin, SendRequest,
};
use voronka_domain::ports::{OutgoingMessage, QueueName};
use voronka_domain::repo::{BotSessions, ContactRepository, RepoError};

use crate::sessions::Stored;

/// The tag a qualified conversation puts on its contact.
pub const QUALIFIED_TAG: &str = "bot_qualified";
/// The attribute a disqualified conversation's reason is kept in.
pub const DISQUALIFIED_REASON_ATTRIBUTE: &str = "disqualified_reason";

/// Brings the session's effects up to date: the contact once the form can be filled, the outcome
/// once the conversation ended.
pub async fn settle(
    state: &AppState,
    script: &BotScript,
    stored: &mut Stored,
    client: Option<ClientIp>,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let mut changed = false;
    if stored.contact_id.is_none()
        && let Some(form) = script.form.as_ref().and_then(|id| state.campaigns.forms.get(id))
        && let Some(values) = form_values(script, form, stored)
    {
        // The consent receipt names the request that completed the form (the consent's own
        // answer, when the script asks for it), as a form's names its post.
        let mut context = SubmissionContext::of_request(state, client, headers);
        context.client =
            context.client.or_else(|| stored.origin.ip.as_deref().and_then(|ip| ip.parse().ok()).map(ClientIp));
        context.user_agent = context.user_agent.or_else(|| stored.origin.user_agent.clone());
        // The form's own limit for all its posts holds for chats too: the bot skips the HTTP
        // handler's checks, not the form's budget.
        let per_form = state.campaigns.settings.limits.per_form_per_minute;
        enforce_rate_limit(state, &format!("submit-form-{}", form.id), "all", per_form).await?;
        match submit_values(state, form, &values, &context, state.clock.now()).await {
            Ok(captured) => {
                tracing::info!(session = %crate::session_log_tag(state, &stored.session_id), contact_id = %captured.contact.id, "bot captured a contact");
                voronka_telemetry::metrics::emit("qualify-bot", &[("ContactsCaptured", 1.0)]);
                stored.contact_id = Some(captured.contact.id);
                changed = true;
            }
            // The bot took answers the form refuses (consent declined, a value the form's own
            // rules reject): the conversation goes on without a contact; nothing to retry.
            Err(error) if error.status == http::StatusCode::BAD_REQUEST => {
                let fields: Vec<_> = error.fields.iter().map(|f| f.field.as_str()).collect();
                tracing::warn!(session = %crate::session_log_tag(state, &stored.session_id), fields = ?fields, "the form refused the bot's answers");
            }
            Err(error) => return Err(error),
        }
    }
    if let Some(outcome) = stored.session.outcome.clone() {
        if !stored.outcome_progress.contact_updated {
            if let Some(contact_id) = stored.contact_id.clone() {
                update_contact(state, script, stored, &contact_id, &outcome).await?;
            }
            stored.outcome_progress.contact_updated = true;
            changed = true;
        }
        if !stored.outcome_progress.queued {
            queue_outcome(state, script, stored, &outcome).await?;
            stored.outcome_progress.queued = true;
            changed = true;
        }
    }
    if changed && let Err(error) = BotSessions::new(state.store.as_ref()).save(stored).await {
        // Harmless: the effects are idempotent, and the next retry records them.
        tracing::warn!(session = %crate::session_log_tag(state, &stored.session_id), error = %error, "bot effects done but not recorded");
    }
    Ok(())
}

/// The session's answers as a submission of `form`, once it has what the form needs: every
/// required field, and the consent when the script asks for it (the capture happens once, so a
/// consent asked after the email must be waited for, or it would never be recorded). Then: the
/// fields the form knows, where the conversation started, and the session id as the submission id.
fn form_values(script: &BotScript, form: &FormDefinition, stored: &Stored) -> Option<Map<String, Value>> {
    let answers = stored.session.answers_by_field();
    let consent_field = form.consent.as_ref().map(|c| c.field.as_str());
    let asked = |field: &str| script.nodes.iter().any(|node| node.field.as_deref() == Some(field));
    let required = form.fields.iter().filter(|f| f.required).map(|f| f.name.as_str());
    let consent_needed =
        consent_field.filter(|field| form.consent.as_ref().is_some_and(|c| c.required) || asked(field));
    if !required.chain(consent_needed).all(|name| answers.contains_key(name)) || !answers.contains_key("email") {
        return None;
    }
    let mut values: Map<String, Value> = answers
        .into_iter()
        .filter(|(name, _)| form.fields.iter().any(|f| &f.name == name) || consent_field == Some(name.as_str()))
        .map(|(name, value)| (name, Value::String(value)))
        .collect();
    for (name, value) in &stored.origin.fields {
        values.insert(name.clone(), value.clone());
    }
    values.entry("locale").or_insert_with(|| Value::String(stored.session.locale.clone()));
    values.insert(SUBMISSION_ID_FIELD.into(), Value::String(stored.session_id.clone()));
    Some(values)
}

/// The outcome on the contact, and the answers the form has no field for as attributes.
async fn update_contact(
    state: &AppState,
    script: &BotScript,
    stored: &Stored,
    contact_id: &str,
    outcome: &Outcome,
) -> Result<(), ApiError> {
    let form = script.form.as_ref().and_then(|id| state.campaigns.forms.get(id));
    let extra: Vec<(String, String)> = (stored.session.answers_by_field().into_iter())
        .filter(|(name, _)| form.is_none_or(|form| !form.fields.iter().any(|f| &f.name == name)))
        .filter(|(name, _)| form.and_then(|f| f.consent.as_ref()).is_none_or(|c| &c.field != name))
        .collect();
    let change = |contact: &mut Contact| {
        let before = (contact.stage, contact.tags.clone(), contact.attributes.clone());
        for (name, value) in &extra {
            contact.attributes.insert(name.clone(), Value::String(value.clone()));
        }
        match outcome {
            Outcome::Qualified => {
                contact.stage = contact.stage.advanced_to(LifecycleStage::Sql);
                contact.tags.insert(QUALIFIED_TAG.to_string());
            }
            Outcome::Nurture { .. } => {}
            Outcome::Disqualified { tag, reason } => {
                contact.tags.insert(tag.clone());
                contact.attributes.insert(DISQUALIFIED_REASON_ATTRIBUTE.into(), Value::String(reason.clone()));
            }
        }
        (contact.stage, &contact.tags, &contact.attributes) != (before.0, &before.1, &before.2)
    };
    match ContactRepository::new(state.store.as_ref()).update(contact_id, state.clock.now(), change).await {
        Ok(contact) => {
            tracing::info!(session = %crate::session_log_tag(state, &stored.session_id), contact_id = %contact.id, outcome = outcome.kind(), stage = contact.stage.as_str(), "bot outcome applied");
            voronka_telemetry::metrics::emit("qualify-bot", &[("OutcomesApplied", 1.0)]);
            Ok(())
        }
        Err(RepoError::NotFound) => {
            tracing::warn!(session = %crate::session_log_tag(state, &stored.session_id), "the bot's contact is gone; outcome not applied");
            Ok(())
        }
        Err(error) => Err(ApiError::internal("applying a bot outcome failed", error)),
    }
}

/// `bot_completed` for every outcome, and for a qualified one the sales inbox's email.
async fn queue_outcome(
    state: &AppState,
    script: &BotScript,
    stored: &Stored,
    outcome: &Outcome,
) -> Result<(), ApiError> {
    let now = state.clock.now();
    let session = &stored.session;
    let mut properties = Map::new();
    properties.insert("script".into(), json!(script.id));
    properties.insert("outcome".into(), json!(outcome.kind()));
    if let Outcome::Nurture { journey } = outcome {
        properties.insert("journey".into(), json!(journey));
    }
    properties.insert("score".into(), json!(session.score));
    let contact = match &stored.contact_id {
        Some(id) => ContactRef { contact_id: Some(id.clone()), ..Default::default() },
        // Without a contact the visitor's earlier behaviour still counts it, once they are known.
        None => ContactRef {
            anonymous_id: stored.origin.fields.get("anonymous_id").and_then(Value::as_str).map(str::to_string),
            ..Default::default()
        },
    };
    if contact.is_empty() {
        tracing::info!(session = %crate::session_log_tag(state, &stored.session_id), outcome = outcome.kind(), "bot finished with nobody to record it on");
    } else {
        let event = Event {
            event_id: format!("bot:{}:completed", stored.session_id),
            event_type: EventType::BotCompleted,
            contact,
            occurred_at: session.finished_at.unwrap_or(now),
            received_at: now,
            properties,
            trusted: true,
            source: EventSource::Voronka,
        };
        let message = OutgoingMessage::new("0", serde_json::to_string(&event).expect("events serialise"));
        enqueue(state, QueueName::Events, vec![message]).await?;
    }
    if let (Outcome::Qualified, Some(contact_id)) = (outcome, &stored.contact_id) {
        let request = sales_notification(state, script, stored, contact_id).await?;
        let message = OutgoingMessage::new("0", serde_json::to_string(&request).expect("send requests serialise"));
        enqueue(state, QueueName::Sends, vec![message]).await?;
    }
    Ok(())
}

/// The sales inbox's email about a qualified lead: who, the score, the whole conversation.
async fn sales_notification(
    state: &AppState,
    script: &BotScript,
    stored: &Stored,
    contact_id: &str,
) -> Result<SendRequest, ApiError> {
    let contact = ContactRepository::new(state.store.as_ref())
        .get(contact_id)
        .await
        .map_err(|e| ApiError::internal("reading the bot's contact failed", e))?;
    let name = contact
        .as_ref()
        .map(|c| [c.first_name.as_deref(), c.last_name.as_deref()].into_iter().flatten().collect::<Vec<_>>().join(" "));
    let conversation: Vec<Value> = (stored.session.transcript.iter())
        .map(|line| {
            let speaker = match line.speaker {
                Speaker::Bot => "bot",
                Speaker::Visitor => "visitor",
            };
            json!({"speaker": speaker, "text": line.text})
        })
        .collect();
    let mut context = Map::new();
    context.insert("script_id".into(), json!(script.id));
    let email = contact.as_ref().and_then(|c| c.email.as_ref()).map(|e| e.as_typed().to_string());
    let phone = contact.as_ref().and_then(|c| c.phone.as_ref()).map(|p| p.as_str().to_string());
    context.insert("lead_name".into(), json!(name.unwrap_or_default()));
    context.insert("lead_email".into(), json!(email.unwrap_or_default()));
    context.insert("lead_phone".into(), json!(phone.unwrap_or_default()));
    context.insert("score".into(), json!(stored.session.score));
    context.insert("conversation".into(), Value::Array(conversation));
    context.insert("session_id".into(), json!(stored.session_id));
    Ok(SendRequest {
        // One email per lead and day, however many conversations name the address: nobody can
        // flood the sales inbox by qualifying the same person again and again.
        idempotency_key: format!(
            "bot:sales:{contact_id}:{}",
            state.clock.now().to_zoned(jiff::tz::TimeZone::UTC).date()
        ),
        contact_id: contact_id.to_string(),
        template: "sales_notification".into(),
        channel: Channel::Email,
        class: SendClass::Transactional,
        priority: Priority::Transactional,
        context,
        origin: SendOrigin::Bot { script_id: script.id.clone(), session_id: stored.session_id.clone() },
        requested_at: state.clock.now(),
        recipient: Recipient::SalesInbox,
    })
}
