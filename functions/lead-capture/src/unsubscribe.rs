//! `GET` and `POST /v1/unsubscribe?token=`: the unsubscribe link of every marketing email.
//!
//! `POST` unsubscribes at once: it is what mail clients send for RFC 8058 one-click unsubscribe
//! (`List-Unsubscribe=One-Click`) and what the page's button sends. `GET` only shows the page with
//! that button, because link scanners in mail systems follow links and must not unsubscribe anyone.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use voronka_domain::model::{Channel, ConsentReceipt, ConsentStatus, Event, EventType, SuppressionReason};
use voronka_domain::repo::{ContactRepository, RepoError};
use voronka_domain::signing::{UNSUBSCRIBE_LIST_MARKETING, UNSUBSCRIBE_TOKEN_PURPOSE, VerifiedToken};

use crate::submissions::enqueue_event;
use crate::{AppState, pages};

/// The token and what it says, or the reason it cannot be used. A token names the contact and the
/// list it unsubscribes from: marketing, the only list (tokens made before lists name none).
fn verify(state: &AppState, query: &HashMap<String, String>) -> Result<(String, VerifiedToken), &'static str> {
    const NOT_VALID: &str = "This unsubscribe link is not valid. Please use the link from the email exactly as sent, or reply to the email.";
    let token = query.get("token").filter(|t| !t.is_empty()).ok_or("The link is missing its token.")?;
    let verified = state.signer().verify(UNSUBSCRIBE_TOKEN_PURPOSE, token, state.clock.now()).map_err(|_| NOT_VALID)?;
    if verified.scope.list.as_deref().is_some_and(|list| list != UNSUBSCRIBE_LIST_MARKETING) {
        return Err(NOT_VALID);
    }
    Ok((token.clone(), verified))
}

fn invalid(reason: &str) -> Response {
    (StatusCode::BAD_REQUEST, pages::unsubscribe_invalid(reason)).into_response()
}

pub async fn page(State(state): State<AppState>, Query(query): Query<HashMap<String, String>>) -> Response {
    match verify(&state, &query) {
        Ok((token, _)) => (StatusCode::OK, pages::unsubscribe_confirm(&token)).into_response(),
        Err(reason) => invalid(reason),
    }
}

pub async fn unsubscribe(State(state): State<AppState>, Query(query): Query<HashMap<String, String>>) -> Response {
    let (_, verified) = match verify(&state, &query) {
        Ok(ok) => ok,
        Err(reason) => return invalid(reason),
    };
    let contact_id = verified.subject;
    let now = state.clock.now();
    let result = ContactRepository::new(state.store.as_ref())
        .update(&contact_id, now, |contact| {
            // Already unsubscribed and nothing granted since: nothing to change. A sign-up since
            // (granted or waiting for confirmation) is withdrawn again, so a later confirmation
            // cannot undo this unsubscribe.
            let granted_since = contact.email_consent().is_some_and(|c| c.status == ConsentStatus::Granted);
            if contact.suppressions.contains_key(&SuppressionReason::Unsubscribed) && !granted_since {
                return false;
            }
            contact.suppressions.entry(SuppressionReason::Unsubscribed).or_insert(now);
            contact.record_consent(ConsentReceipt {
                id: format!("unsub_{}", now.as_second()),
                channel: Channel::Email,
                granted: false,
                at: now,
                form_id: None,
                ip: None,
                user_agent: None,
                text_version: "unsubscribe-link".into(),
                double_opt_in: false,
                submission_id: None,
            });
            true
        })
        .await;
    let contact = match result {
        Ok(contact) => contact,
        // Erased since: there is nobody left to send to, which is what the person asked for.
        Err(RepoError::NotFound) => return (StatusCode::OK, pages::unsubscribed()).into_response(),
        Err(e) => return crate::ApiError::internal("unsubscribing failed", e).into_response(),
    };
    let since = contact.suppressions.get(&SuppressionReason::Unsubscribed).copied().unwrap_or(now);
    let mut properties = Map::new();
    properties.insert("source".into(), Value::String("unsubscribe_link".into()));
    let event_id = format!("unsub:{}:{}", contact.id, since.as_second());
    let event = Event::internal(event_id, EventType::Unsubscribed, &contact.id, since, now, properties);
    if let Err(error) = enqueue_event(&state, &event).await {
        return error.into_response();
    }
    tracing::info!(contact_id = %contact.id, "unsubscribed");
    (StatusCode::OK, pages::unsubscribed()).into_response()
}
