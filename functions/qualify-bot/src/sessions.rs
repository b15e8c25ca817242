//! `POST /v1/bot/{script_id}/sessions` and `POST /v1/bot/sessions/{session_id}/answers`.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::SignedDuration;
use lead_capture::http_util::{
    BodyFormat, allow_origin, body_format, client_subject, enforce_rate_limit, origin, preflight_response, read_body,
};
use lead_capture::{ApiError, AppState, ClientIp};
use serde_json::{Map, Value, json};
use voronka_domain::bots::{self, AnswerError, BotScript, BotSession};
use voronka_domain::campaigns::form::{TRACKING_FIELDS, single_text};
use voronka_domain::errors::FieldError;
use voronka_domain::model::attribution::{CLICK_ID_FIELDS, UTM_FIELDS};
use voronka_domain::model::event::is_valid_client_id;
use voronka_domain::repo::bot_sessions::SessionOrigin;
use voronka_domain::repo::{BotSessions, SessionWriteError, StoredBotSession};
use voronka_domain::signing::keyed_digest;

use crate::capture;

/// Session ids are this prefix and 128 random bits in hex: unguessable, and told apart from
/// anything else before the store is asked.
pub const SESSION_ID_PREFIX: &str = "bs_";
/// Bot requests are small: a start body of tracking fields, or one answer.
const MAX_BOT_BODY_BYTES: usize = 16 * 1024;
/// Longest tracking value a start body may carry (the forms' hidden-field limit).
const MAX_START_FIELD_CHARS: usize = 2000;
/// Answers one session may send per minute: a person types far slower.
const ANSWERS_PER_SESSION_PER_MINUTE: u32 = 20;
/// Answers from one address per minute, several conversations behind one office's NAT.
const ANSWERS_PER_IP_FACTOR: u32 = 4;

pub type Stored = StoredBotSession<BotSession>;

fn script_or_404<'a>(state: &'a AppState, script_id: &str) -> Result<&'a BotScript, ApiError> {
    state.campaigns.bots.get(script_id).ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "script_not_found", format!("there is no bot script `{script_id}`"))
    })
}

/// Pages that may talk to a script: its form's allowed origins, and the API's own host.
fn origin_allowed(state: &AppState, script: &BotScript, origin: &str, headers: &HeaderMap) -> bool {
    let form_allows = (script.form.as_ref())
        .and_then(|form| state.campaigns.forms.get(form))
        .is_some_and(|form| form.allows_origin(origin));
    form_allows || state.is_own_origin(origin, headers)
}

fn forbidden_origin(origin: &str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "origin_not_allowed", format!("pages on {origin} may not talk to this bot"))
}

/// Refuses a browser call from a page the script does not allow; the origin to answer to, if any.
fn check_origin(state: &AppState, script: &BotScript, headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    match origin(headers) {
        Some(o) if !origin_allowed(state, script, o, headers) => Err(forbidden_origin(o)),
        other => Ok(other.map(str::to_string)),
    }
}

fn with_cors(mut response: Response, cors_origin: Option<&str>) -> Response {
    if let Some(o) = cors_origin {
        allow_origin(&mut response, o);
    }
    response
}

fn json_response(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub async fn start_preflight(
    State(state): State<AppState>,
    Path(script_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    match script_or_404(&state, &script_id) {
        Ok(script) => preflight_response(&headers, |o| origin_allowed(&state, script, o, &headers), ""),
        Err(e) => e.into_response(),
    }
}

pub async fn answer_preflight(
    State(state): State<AppState>,
    Path(session_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    // The session's own script decides; for an id that names none, any script's pages may ask
    // (they then read the 404).
    let script = match load(&state, &session_id).await {
        Ok(Some(stored)) => state.campaigns.bots.get(&stored.script_id),
        _ => None,
    };
    preflight_response(
        &headers,
        |o| match script {
            Some(script) => origin_allowed(&state, script, o, &headers),
            None => state.campaigns.bots.values().any(|script| origin_allowed(&state, script, o, &headers)),
        },
        "",
    )
}

/// A request body as a JSON object.
async fn read_object(headers: &HeaderMap, body: Body) -> Result<Map<String, Value>, ApiError> {
    body_format(headers, &[BodyFormat::Json])?;
    let bytes = read_body(headers, body, MAX_BOT_BODY_BYTES).await?;
    let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, "malformed_body", message);
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(bad("the JSON body must be an object".into())),
        Err(e) => Err(bad(format!("the body is not valid JSON: {e}"))),
    }
}

/// The start body's fields: where the visitor came from, checked like a form's hidden fields.
fn read_start_fields(body: &Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let mut fields = Map::new();
    let mut errors = Vec::new();
    for (name, value) in body {
        // `page` is what the widget knows; a form calls it `landing_page`.
        let stored_as = if name == "page" { "landing_page" } else { name.as_str() };
        let known = UTM_FIELDS.contains(&stored_as)
            || CLICK_ID_FIELDS.contains(&stored_as)
            || TRACKING_FIELDS.contains(&stored_as);
        if !known {
            let shown: String = name.chars().take(64).collect();
            errors.push(FieldError::new(&shown, "unknown_field", "is not a field of a bot session"));
            continue;
        }
        match value {
            Value::Null => {}
            Value::String(text) if text.chars().count() > MAX_START_FIELD_CHARS => errors.push(FieldError::new(
                name,
                "too_long",
                &format!("must be at most {MAX_START_FIELD_CHARS} characters"),
            )),
            Value::String(text) if text.chars().any(char::is_control) => {
                errors.push(FieldError::new(name, "invalid_characters", "must not contain control characters"))
            }
            Value::String(_) => {
                // Blank is as good as absent.
                if let Ok(Some(text)) = single_text(Some(value)) {
                    fields.insert(stored_as.to_string(), Value::String(text.trim().to_string()));
                }
            }
            _ => errors.push(FieldError::new(name, "invalid_type", "must be a string")),
        }
    }
    if fields.get("anonymous_id").and_then(Value::as_str).is_some_and(|id| !is_valid_client_id(id)) {
        errors.push(FieldError::new("anonymous_id", "invalid_id", "must be 1 to 128 of A-Z a-z 0-9 - _ . :"));
    }
    if errors.is_empty() { Ok(fields) } else { Err(ApiError::invalid(errors)) }
}

pub async fn start(
    State(state): State<AppState>,
    Path(script_id): Path<String>,
    client: Option<axum::Extension<ClientIp>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let script = match script_or_404(&state, &script_id) {
        Ok(script) => script,
        Err(e) => return e.into_response(),
    };
    let cors_origin = match check_origin(&state, script, &headers) {
        Ok(o) => o,
        Err(e) => return e.into_response(),
    };
    let response = match start_session(&state, script, client.map(|c| c.0), &headers, body).await {
        Ok(body) => {
            voronka_telemetry::metrics::emit("qualify-bot", &[("SessionsStarted", 1.0)]);
            json_response(StatusCode::CREATED, body)
        }
        Err(e) => {
            voronka_telemetry::metrics::emit("qualify-bot", &[("StartsRefused", 1.0)]);
            e.into_response()
        }
    };
    with_cors(response, cors_origin.as_deref())
}

async fn start_session(
    state: &AppState,
    script: &BotScript,
    client: Option<ClientIp>,
    headers: &HeaderMap,
    body: Body,
) -> Result<String, ApiError> {
    let body = read_object(headers, body).await?;
    let fields = read_start_fields(&body)?;
    let ip_subject = client_subject(state, client);
    enforce_rate_limit(state, "bot-start-ip", &ip_subject, state.campaigns.settings.limits.per_ip_per_minute).await?;
    let now = state.clock.now();
    let locale = fields.get("locale").and_then(Value::as_str).map(str::to_string).or_else(|| {
        let accept = headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok())?;
        Some(accept.split([',', ';']).next().unwrap_or("").to_string())
    });
    let started = bots::start(script, locale.as_deref(), now);
    let origin = SessionOrigin {
        fields,
        ip: client.map(|c| c.0.to_string()),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(500).collect()),
    };
    let session_id = format!("{SESSION_ID_PREFIX}{}", state.ids.random_hex(16));
    let mut stored =
        StoredBotSession::new(session_id.clone(), script.id.clone(), started.session, origin, now, session_ttl(state));
    BotSessions::new(state.store.as_ref()).save(&mut stored).await.map_err(|e| match e {
        // 128 random bits do not collide; a conflict means the id source is broken.
        SessionWriteError::Conflict => ApiError::internal("a new bot session id was taken", "conflict"),
        SessionWriteError::Store(e) => ApiError::internal("storing a bot session failed", e),
    })?;
    tracing::info!(script_id = %script.id, session = %crate::session_log_tag(state, &session_id), "bot session started");
    let body = json!({
        "session_id": session_id,
        "seq": 0,
        "expires_at": stored.expires_at.to_string(),
        "message": started.message,
    });
    Ok(body.to_string())
}

fn session_ttl(state: &AppState) -> SignedDuration {
    SignedDuration::from_hours(i64::from(state.campaigns.settings.bots.session_ttl_hours))
}

fn is_session_id(id: &str) -> bool {
    id.strip_prefix(SESSION_ID_PREFIX)
        .is_some_and(|hex| hex.len() == 32 && hex.chars().all(|c| c.is_ascii_digit() || matches!(c, 'a'..='f')))
}

async fn load(state: &AppState, session_id: &str) -> Result<Option<Stored>, ApiError> {
    if !is_session_id(session_id) {
        return Ok(None);
    }
    BotSessions::new(state.store.as_ref())
        .load(session_id)
        .await
        .map_err(|e| ApiError::internal("reading a bot session failed", e))
}

fn unknown_session() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "session_not_found", "there is no such bot session")
}

/// An answer's body: `seq` (1 or more) and `value`, nothing else.
fn read_answer(body: &Map<String, Value>) -> Result<(u32, Value), ApiError> {
    let mut errors = Vec::new();
    let seq = match body.get("seq") {
        None | Some(Value::Null) => {
            errors.push(FieldError::new("seq", "required", "is required"));
            None
        }
        Some(value) => match value.as_u64().and_then(|n| u32::try_from(n).ok()).filter(|n| *n >= 1) {
            Some(seq) => Some(seq),
            None => {
                errors.push(FieldError::new("seq", "invalid_seq", "must be a whole number, 1 or more"));
                None
            }
        },
    };
    let value = match body.get("value") {
        None | Some(Value::Null) => {
            errors.push(FieldError::new("value", "required", "is required"));
            None
        }
        Some(value) => Some(value.clone()),
    };
    for name in body.keys().filter(|name| !matches!(name.as_str(), "seq" | "value")) {
        let shown: String = name.chars().take(64).collect();
        errors.push(FieldError::new(&shown, "unknown_field", "is not a field of an answer"));
    }
    match (seq, value) {
        (Some(seq), Some(value)) if errors.is_empty() => Ok((seq, value)),
        _ => Err(ApiError::invalid(errors)),
    }
}

fn answer_error(error: AnswerError) -> ApiError {
    let message = error.to_string();
    let (status, code) = match &error {
        AnswerError::InvalidSeq => (StatusCode::BAD_REQUEST, error.code()),
        AnswerError::InvalidValue { message } => {
            return ApiError::invalid(vec![FieldError::new("value", "invalid_value", message)]);
        }
        _ => (StatusCode::CONFLICT, error.code()),
    };
    let mut api = ApiError::new(status, code, message.clone());
    if let Some(field) = error.field() {
        api.fields = vec![FieldError::new(field, code, &message)];
    }
    api
}

pub async fn answer(
    State(state): State<AppState>,
    Path(session_id): Path<String>,
    client: Option<axum::Extension<ClientIp>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let client = client.map(|c| c.0);
    let ip_subject = client_subject(&state, client);
    let per_ip = state.campaigns.settings.limits.per_ip_per_minute.saturating_mul(ANSWERS_PER_IP_FACTOR);
    if let Err(e) = enforce_rate_limit(&state, "bot-answer-ip", &ip_subject, per_ip).await {
        return e.into_response();
    }
    let stored = match load(&state, &session_id).await {
        Ok(Some(stored)) => stored,
        Ok(None) => return unknown_session().into_response(),
        Err(e) => return e.into_response(),
    };
    let Some(script) = state.campaigns.bots.get(&stored.script_id) else {
        // The script was removed since the session began.
        return ApiError::new(StatusCode::GONE, "script_removed", "this conversation's bot is no longer available")
            .into_response();
    };
    let cors_origin = match check_origin(&state, script, &headers) {
        Ok(o) => o,
        Err(e) => return e.into_response(),
    };
    let response = match take_answer(&state, script, stored, client, &headers, body).await {
        Ok(body) => {
            voronka_telemetry::metrics::emit("qualify-bot", &[("AnswersTaken", 1.0)]);
            json_response(StatusCode::OK, body)
        }
        Err(e) => {
            voronka_telemetry::metrics::emit("qualify-bot", &[("AnswersRefused", 1.0)]);
            e.into_response()
        }
    };
    with_cors(response, cors_origin.as_deref())
}

async fn take_answer(
    state: &AppState,
    script: &BotScript,
    mut stored: Stored,
    client: Option<ClientIp>,
    headers: &HeaderMap,
    body: Body,
) -> Result<String, ApiError> {
    let body = read_object(headers, body).await?;
    let (seq, value) = read_answer(&body)?;
    let session_subject = keyed_digest(state.secrets.token_key(), &stored.session_id);
    enforce_rate_limit(state, "bot-session", &session_subject, ANSWERS_PER_SESSION_PER_MINUTE).await?;
    let now = state.clock.now();
    if stored.is_expired(now) {
        return Err(ApiError::new(
            StatusCode::GONE,
            "session_expired",
            "this conversation has expired; start a new one",
        ));
    }
    let sessions = BotSessions::new(state.store.as_ref());
    // Two deliveries of one answer may race: the loser reads the session again and finds its
    // answer taken, which it then answers as a repeat.
    for _ in 0..3 {
        let mut session = stored.session.clone();
        let result = bots::answer(script, &mut session, seq, &value, now).map_err(answer_error)?;
        if result.repeated {
            // The kept bytes when this is one of the latest answers; an older one is rendered
            // again from the conversation's record of it, which gives the same bytes.
            let body = match stored.responses.get(&seq) {
                Some(body) => body.clone(),
                None => serde_json::to_string(&result).expect("answers serialise"),
            };
            // A retry finishes whatever the first delivery left undone.
            capture::settle(state, script, &mut stored, client, headers).await?;
            return Ok(body);
        }
        let body = serde_json::to_string(&result).expect("answers serialise");
        let before = stored.clone();
        stored.session = session;
        stored.remember_response(seq, body.clone());
        match sessions.save(&mut stored).await {
            Ok(()) => {
                capture::settle(state, script, &mut stored, client, headers).await?;
                return Ok(body);
            }
            Err(SessionWriteError::Conflict) => {
                stored = match load(state, &before.session_id).await? {
                    Some(fresh) => fresh,
                    None => return Err(unknown_session()),
                };
            }
            Err(SessionWriteError::Store(e)) => return Err(ApiError::internal("storing a bot answer failed", e)),
        }
    }
    Err(ApiError::internal("a bot session kept changing under its answers", "contention"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_the_prefix_and_32_hex_digits() {
        assert!(is_session_id("bs_0123456789abcdef0123456789abcdef"));
        assert!(!is_session_id("bs_0123456789ABCDEF0123456789abcdef"));
        assert!(!is_session_id("bs_0123"));
        assert!(!is_session_id("0123456789abcdef0123456789abcdef"));
    }

    #[test]
    fn an_answer_names_every_bad_field() {
        let body = json!({"seq": "one", "colour": "red"});
        let error = read_answer(body.as_object().unwrap()).unwrap_err();
        let fields: Vec<_> = error.fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["seq", "value", "colour"]);
    }

    #[test]
    fn a_start_body_keeps_tracking_fields_and_calls_page_the_landing_page() {
        let body = json!({"page": "https://shop.example/pricing", "utm_source": "ads", "anonymous_id": "a-1"});
        let fields = read_start_fields(body.as_object().unwrap()).unwrap();
        assert_eq!(fields["landing_page"], "https://shop.example/pricing");
        assert_eq!(fields["utm_source"], "ads");
        let error = read_start_fields(json!({"utm_source": 5}).as_object().unwrap()).unwrap_err();
        assert_eq!(error.fields[0].field, "utm_source");
    }
}
