//! `GET` and `POST /v1/confirm?token=`: the double opt-in confirmation link.
//!
//! `GET` only shows a page whose button (pressed by a small script for people) posts the token:
//! mail-security scanners fetch every link in a message and must not confirm for the person.
//! `POST` confirms, and only the sign-up the token was sent for: the receipt it names must be
//! the one the contact's consent is waiting on.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use voronka_domain::model::{Channel, ConsentStatus, Event, EventType, SuppressionReason};
use voronka_domain::repo::{ContactRepository, RepoError};
use voronka_domain::signing::TokenError;

use crate::submissions::enqueue_event;
use crate::{AppState, CONFIRM_TOKEN_PURPOSE, pages};

fn invalid(status: StatusCode, reason: &str) -> Response {
    (status, pages::confirmation_invalid(reason)).into_response()
}

/// Why a link cannot be used: the status and what the page tells the person.
type Unusable = (StatusCode, &'static str);

/// The token and the (contact id, receipt id) it names, or why it cannot be used.
fn verify(state: &AppState, query: &HashMap<String, String>) -> Result<(String, String, String), Unusable> {
    let Some(token) = query.get("token").filter(|t| !t.is_empty()) else {
        return Err((StatusCode::BAD_REQUEST, "The link is missing its token."));
    };
    let verified = match state.signer().verify(CONFIRM_TOKEN_PURPOSE, token, state.clock.now()) {
        Ok(verified) => verified,
        Err(TokenError::Expired) => {
            return Err((
                StatusCode::GONE,
                "This confirmation link has expired. Please sign up again to get a new one.",
            ));
        }
        Err(_) => {
            return Err((
                StatusCode::BAD_REQUEST,
                "This confirmation link is not valid. Please use the link from the email exactly as sent.",
            ));
        }
    };
    match verified.subject.split_once('|') {
        Some((contact_id, receipt_id)) => Ok((token.clone(), contact_id.to_string(), receipt_id.to_string())),
        None => Err((StatusCode::BAD_REQUEST, "This confirmation link is not valid.")),
    }
}

pub async fn page(State(state): State<AppState>, Query(query): Query<HashMap<String, String>>) -> Response {
    match verify(&state, &query) {
        Ok((token, _, _)) => {
            let mut response = (StatusCode::OK, pages::confirm_prompt(&token, true)).into_response();
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err((status, reason)) => invalid(status, reason),
    }
}

pub async fn confirm(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> Response {
    let (token, contact_id, receipt_id) = match verify(&state, &query) {
        Ok(verified) => verified,
        Err((status, reason)) => return invalid(status, reason),
    };
    let pressed = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body)
        .is_ok_and(|fields| fields.iter().any(|(name, _)| name == pages::PRESSED_FIELD));
    let now = state.clock.now();
    let repo = ContactRepository::new(state.store.as_ref());
    let needs_press = std::sync::atomic::AtomicBool::new(false);
    let result = repo
        .update(&contact_id, now, |contact| {
            let unsubscribed = contact.suppressions.contains_key(&SuppressionReason::Unsubscribed);
            let Some(consent) = contact.consents.get_mut(&Channel::Email) else {
                return false;
            };
            // Only a sign-up still standing can be confirmed: an unsubscribe since withdrew it.
            if consent.pending_receipt() != Some(receipt_id.as_str()) || consent.status != ConsentStatus::Granted {
                return false;
            }
            // Lifting an unsubscribe takes the person's own press of the button: a scanner that
            // runs the page's script must not re-subscribe someone who left.
            if unsubscribed && !pressed {
                needs_press.store(true, std::sync::atomic::Ordering::Relaxed);
                return false;
            }
            consent.confirm(now);
            // A new, confirmed consent is the person asking for mail again: it lifts their own
            // earlier unsubscribe. Bounces and complaints stay: they are not the person's choice
            // to reverse by a form.
            contact.suppressions.remove(&SuppressionReason::Unsubscribed);
            true
        })
        .await;
    let contact = match result {
        Ok(_) if needs_press.load(std::sync::atomic::Ordering::Relaxed) => {
            let mut response = (StatusCode::OK, pages::confirm_prompt(&token, false)).into_response();
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            return response;
        }
        Ok(contact) => contact,
        Err(RepoError::NotFound) => {
            return invalid(StatusCode::NOT_FOUND, "This subscription no longer exists.");
        }
        Err(e) => return crate::ApiError::internal("confirming a subscription failed", e).into_response(),
    };
    let Some(consent) = contact.email_consent() else {
        return invalid(StatusCode::CONFLICT, "This link does not belong to a subscription.");
    };
    if consent.pending_receipt().is_some() {
        // Still waiting, but on another sign-up than the one this token was sent for.
        return invalid(
            StatusCode::CONFLICT,
            "This link is from an earlier sign-up. Please use the link in the latest confirmation email.",
        );
    }
    if !consent.allows_marketing() || contact.suppressions.contains_key(&SuppressionReason::Unsubscribed) {
        return invalid(StatusCode::CONFLICT, "This address has unsubscribed since; sign up again to resubscribe.");
    }
    let newly_confirmed = consent.confirmed_at == Some(now);

    // Sent on every press of any of the person's valid links, named by the confirmation it
    // reports: the evaluator counts it once, and a queue failure after the update above (the
    // person saw an error) is healed by pressing again, whichever of their links they use.
    let occurred_at = consent.confirmed_at.unwrap_or(now);
    let mut properties = Map::new();
    properties.insert("receipt_id".into(), Value::String(receipt_id.clone()));
    let event_id = format!("optin:{contact_id}:{}:confirmed", occurred_at.as_millisecond());
    let event = Event::internal(event_id, EventType::OptinConfirmed, &contact.id, occurred_at, now, properties);
    if let Err(error) = enqueue_event(&state, &event).await {
        return error.into_response();
    }
    tracing::info!(contact_id = %contact.id, newly_confirmed, "subscription confirmed");
    (StatusCode::OK, pages::confirmed()).into_response()
}
