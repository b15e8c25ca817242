//! `GET /v1/confirm?token=`: the double opt-in confirmation link.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use voronka_domain::model::{Channel, Event};
use voronka_domain::repo::{ContactRepository, RepoError};
use voronka_domain::signing::TokenError;

use crate::submissions::enqueue_event;
use crate::{AppState, CONFIRM_TOKEN_PURPOSE, pages};

pub async fn confirm(State(state): State<AppState>, Query(query): Query<HashMap<String, String>>) -> Response {
    let now = state.clock.now();
    let Some(token) = query.get("token").filter(|t| !t.is_empty()) else {
        return (StatusCode::BAD_REQUEST, pages::confirmation_invalid("The link is missing its token."))
            .into_response();
    };
    let verified = match state.signer().verify(CONFIRM_TOKEN_PURPOSE, token, now) {
        Ok(verified) => verified,
        Err(TokenError::Expired) => {
            return (
                StatusCode::GONE,
                pages::confirmation_invalid(
                    "This confirmation link has expired. Please sign up again to get a new one.",
                ),
            )
                .into_response();
        }
        Err(_) => {
            return (
                StatusCode::BAD_REQUEST,
                pages::confirmation_invalid(
                    "This confirmation link is not valid. Please use the link from the email exactly as sent.",
                ),
            )
                .into_response();
        }
    };
    let Some((contact_id, receipt_id)) = verified.subject.split_once('|') else {
        return (StatusCode::BAD_REQUEST, pages::confirmation_invalid("This confirmation link is not valid."))
            .into_response();
    };

    let repo = ContactRepository::new(state.store.as_ref());
    let mut newly_confirmed = false;
    let result = repo
        .update(contact_id, now, |contact| match contact.consents.get_mut(&Channel::Email) {
            Some(consent) => consent.confirm(now),
            None => false,
        })
        .await;
    let contact = match result {
        Ok(contact) => contact,
        Err(RepoError::NotFound) => {
            return (StatusCode::NOT_FOUND, pages::confirmation_invalid("This subscription no longer exists."))
                .into_response();
        }
        Err(e) => return crate::ApiError::internal("confirming a subscription failed", e).into_response(),
    };
    if contact.email_consent().and_then(|c| c.confirmed_at).is_some_and(|at| at == now) {
        newly_confirmed = true;
    }
    let Some(consent) = contact.email_consent().filter(|c| c.allows_marketing()) else {
        return (
            StatusCode::CONFLICT,
            pages::confirmation_invalid("This address has unsubscribed since; sign up again to resubscribe."),
        )
            .into_response();
    };

    // Sent on every visit of the link: the event id makes the evaluator count it once, and a
    // crash after the update above is healed by the person clicking again.
    let mut properties = Map::new();
    properties.insert("receipt_id".into(), Value::String(receipt_id.to_string()));
    let event_id = format!("optin:{contact_id}:{receipt_id}:confirmed");
    let occurred_at = consent.confirmed_at.unwrap_or(now);
    let event = Event::internal(event_id, "optin_confirmed", &contact.id, occurred_at, now, properties);
    if let Err(error) = enqueue_event(&state, &event).await {
        return error.into_response();
    }
    tracing::info!(contact_id = %contact.id, newly_confirmed, "subscription confirmed");
    (StatusCode::OK, pages::confirmed()).into_response()
}
