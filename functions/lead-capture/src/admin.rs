//! Admin routes: what an operator reads about a contact, behind one guard.
//!
//! Every route `routes()` marks `admin` gets `guard` as a route layer in `router`, so an admin
//! route cannot exist unguarded; issues 11 and 14 add theirs to the same list. The guard is one
//! code path whose check is configured per deployment (`AdminAccess`), never chosen by a request:
//!
//! - On Lambda (`AdminAccess::IamAuthorizer`) API Gateway's IAM authoriser checked the caller's
//!   SigV4 signature and policy before the function ran, and the adapter (`lambda.rs`) puts the
//!   IAM identity from API Gateway's request context into the request as `IamCaller`. A client
//!   cannot set that context (it is not a header), and a route the template forgot to protect
//!   arrives without it, so the guard refuses it: the mistake fails closed.
//! - Locally (`AdminAccess::BearerKey`) the `Authorization: Bearer <key>` header must carry the
//!   installation's admin key; the process keeps only its digest and compares in constant time.
//!   The local server never inserts an `IamCaller`, and this strategy would ignore one anyway.

use axum::Json;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use voronka_domain::errors::FieldError;
use voronka_domain::model::{Contact, EmailAddress};
use voronka_domain::repo::personal_data::{self, PersonalDataError};
use voronka_domain::repo::{ContactRepository, journey_state};
use voronka_domain::sending::reputation;
use voronka_domain::signing::AdminKeyDigest;

use crate::{ApiError, AppState};

/// How admin routes know their caller; set once per deployment.
#[derive(Clone, Debug)]
pub enum AdminAccess {
    /// API Gateway's IAM authoriser checked the caller; the request must carry its `IamCaller`.
    IamAuthorizer,
    /// A bearer key, held as its digest.
    BearerKey(AdminKeyDigest),
}

/// The IAM identity API Gateway's authoriser verified, from the Lambda request context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IamCaller {
    pub user_arn: String,
}

/// Lets a request through to an admin route only for an authorised caller; 401 otherwise.
pub async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let allowed = match &state.admin_access {
        AdminAccess::IamAuthorizer => request.extensions().get::<IamCaller>().is_some(),
        AdminAccess::BearerKey(digest) => request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .is_some_and(|key| digest.matches(key.trim())),
    };
    if allowed {
        return next.run(request).await;
    }
    tracing::info!(path = %request.uri().path(), "admin route refused an unauthorised request");
    let mut response =
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "this route needs the admin credentials")
            .into_response();
    if matches!(state.admin_access, AdminAccess::BearerKey(_)) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

/// `GET /v1/contacts/{id}`: the contact with its consents, score breakdown at this moment, stage,
/// tags, touches, orders and journey states.
pub async fn contact(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let contact = ContactRepository::new(state.store.as_ref())
        .get(&id)
        .await
        .map_err(|e| ApiError::internal("reading a contact for an admin", e))?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", "no contact with this id"))?;
    contact_body(&state, contact).await.map(Json)
}

/// `GET /v1/contacts?email=`: the same body as `/v1/contacts/{id}`, for the contact the email
/// index points to.
pub async fn contact_by_email(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let invalid = |code: &str, message: &str| ApiError::invalid(vec![FieldError::new("email", code, message)]);
    let params: Vec<(String, String)> = serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
        .map_err(|_| invalid("invalid", "the query string is not valid URL encoding"))?;
    let mut emails = params.into_iter().filter(|(name, _)| name == "email").map(|(_, value)| value);
    let (Some(email), None) = (emails.next(), emails.next()) else {
        return Err(invalid("required", "give exactly one email=ADDRESS"));
    };
    // An address holds no spaces: a space here is a `+` the caller did not percent-encode
    // (`?email=anna+shop@example.com`), the usual form of a sub-address.
    let email = email.trim().replace(' ', "+");
    let email = EmailAddress::parse(&email).map_err(|e| invalid("invalid", &format!("the address {e}")))?;
    let contact = ContactRepository::new(state.store.as_ref())
        .find_by_email(&email)
        .await
        .map_err(|e| ApiError::internal("finding a contact by email for an admin", e))?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", "no contact with this email"))?;
    contact_body(&state, contact).await.map(Json)
}

/// Longest contact id looked up: ids Voronka makes are far shorter, so a longer one names nobody.
const MAX_CONTACT_ID_BYTES: usize = 128;

fn personal_data_error(error: PersonalDataError, context: &str) -> ApiError {
    match error {
        PersonalDataError::NotFound => ApiError::new(StatusCode::NOT_FOUND, "not_found", "no contact with this id"),
        // 404 like an unknown id (nothing is held about the person any more), with its own code so
        // an operator can tell an erasure from a typo.
        PersonalDataError::Erased(at) => {
            ApiError::new(StatusCode::NOT_FOUND, "erased", format!("this contact was erased at {at}"))
        }
        // A concurrent twin (the scheduler finishing the same erasure) or a throttled store:
        // nothing is lost and a repeat finishes the job.
        other if other.is_retryable() => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the store is busy with this contact; repeat the request",
        ),
        other => ApiError::internal(context, other),
    }
}

/// `DELETE /v1/contacts/{id}`: erases the person's data everywhere but the anonymous aggregates
/// (`repo::personal_data::erase`); idempotent, a repeat finishes what an interrupted call (or one
/// that answered 202 at its write budget) left.
pub async fn erase(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    if id.len() > MAX_CONTACT_ID_BYTES {
        return Err(personal_data_error(PersonalDataError::NotFound, ""));
    }
    let report = personal_data::erase(
        state.store.as_ref(),
        state.mail_copies.as_ref(),
        &state.secrets.token_keys,
        &id,
        state.clock.now(),
    )
    .await
    .map_err(|e| personal_data_error(e, "erasing a contact"))?;
    // A person with more items than one call's budget: 202, and the caller repeats the DELETE.
    let status = if report.complete { StatusCode::OK } else { StatusCode::ACCEPTED };
    Ok((status, Json(serde_json::to_value(report).unwrap_or_default())).into_response())
}

/// `GET /v1/contacts/{id}/export`: everything held about the person, each section capped
/// (`repo::personal_data::export`), with the score as it stands now.
pub async fn export(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    if id.len() > MAX_CONTACT_ID_BYTES {
        return Err(personal_data_error(PersonalDataError::NotFound, ""));
    }
    let now = state.clock.now();
    let mut body = personal_data::export(state.store.as_ref(), state.mail_copies.as_ref(), &id, now)
        .await
        .map_err(|e| personal_data_error(e, "exporting a contact"))?;
    if let Some(rules) = state.campaigns.scoring.as_ref()
        && let Ok(contact) = serde_json::from_value::<Contact>(body["contact"].clone())
    {
        body["score"] = serde_json::to_value(contact.score.breakdown(now, rules.half_life_days)).unwrap_or_default();
    }
    Ok(Json(body))
}

/// What an operator reads about one contact.
async fn contact_body(state: &AppState, contact: Contact) -> Result<Value, ApiError> {
    let store = state.store.as_ref();
    let journeys = journey_state::load_all(store, &contact.id)
        .await
        .map_err(|e| ApiError::internal("reading journey states for an admin", e))?;
    let now = state.clock.now();
    let score = state.campaigns.scoring.as_ref().map(|rules| {
        let mut breakdown =
            serde_json::to_value(contact.score.breakdown(now, rules.half_life_days)).unwrap_or_default();
        breakdown["thresholds"] = json!({"mql": rules.thresholds.mql, "sql": rules.thresholds.sql});
        breakdown
    });
    Ok(json!({
        "id": contact.id,
        "email": contact.email.as_ref().map(|email| email.as_typed()),
        "phone": contact.phone.as_ref().map(|phone| phone.as_str()),
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "locale": contact.locale,
        "time_zone": contact.time_zone,
        "stage": contact.stage,
        "tags": contact.tags,
        "attributes": contact.attributes,
        "consents": contact.consents,
        "consent_receipts": contact.consent_receipts,
        "suppressions": contact.suppressions,
        "score": score,
        "orders": contact.orders,
        "journeys": journeys.into_values().collect::<Vec<_>>(),
        "first_touch": contact.first_touch,
        "last_touch": contact.last_touch,
        "touches": contact.touches,
        "created_at": contact.created_at,
        "updated_at": contact.updated_at,
        "last_activity_at": contact.last_activity_at,
    }))
}

/// `GET /v1/admin/sending`: the reputation guard (paused or not, since when, which rate tripped
/// it) and the counts of its current window, evaluated now (a due pause or resumption is written).
pub async fn sending_status(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let settings = &state.campaigns.settings.sending.reputation;
    let status = reputation::evaluate(state.store.as_ref(), settings, state.clock.now())
        .await
        .map_err(|e| ApiError::internal("reading the reputation guard", e))?;
    Ok(Json(json!(status)))
}

/// `POST /v1/admin/sending/resume`: an operator resumes marketing after a reputation pause; the
/// counts start afresh, so the hours that tripped it cannot trip it again. Resuming a running
/// guard changes nothing. Held messages go out as their holds end (at most `hold_seconds`), each
/// sender container seeing the resumption within `recheck_seconds`.
pub async fn resume_sending(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let settings = &state.campaigns.settings.sending.reputation;
    let status = reputation::resume_by_operator(state.store.as_ref(), settings, state.clock.now())
        .await
        .map_err(|e| ApiError::internal("resuming marketing", e))?;
    Ok(Json(json!(status)))
}
