//! qualify-bot: a visitor's conversation with a bot script over HTTP.
//!
//! `sessions.rs` starts a conversation and takes its answers (the conversation's rules are the
//! domain's `bots`); `capture.rs` turns the answers into a contact through lead-capture's own
//! submission path and applies the conversation's outcome. `main.rs` runs the router on Lambda;
//! the local stack serves the same routes next to lead-capture's.

mod capture;
mod sessions;
mod widget;

use axum::Router;
use http::Method;
use lead_capture::{AppState, Route, route};

pub use sessions::SESSION_ID_PREFIX;

/// Every route the bot serves; `tests/api_routes.rs` holds the template's `HttpApi` events of
/// the QualifyBot function to this list.
pub fn routes() -> Vec<Route> {
    vec![
        route(Method::POST, "/v1/bot/{script_id}/sessions", sessions::start),
        route(Method::OPTIONS, "/v1/bot/{script_id}/sessions", sessions::start_preflight),
        route(Method::POST, "/v1/bot/sessions/{session_id}/answers", sessions::answer),
        route(Method::OPTIONS, "/v1/bot/sessions/{session_id}/answers", sessions::answer_preflight),
        route(Method::GET, "/v1/bot/widget.js", widget::script),
        route(Method::GET, "/v1/bot/widget.css", widget::styles),
    ]
}

/// How logs name a session: a session id answers the conversation like a password, so logs carry
/// a keyed digest of it (enough to follow one session through the lines, useless to answer it).
pub(crate) fn session_log_tag(state: &AppState, session_id: &str) -> String {
    voronka_domain::signing::keyed_digest(state.secrets.token_key(), session_id)[..12].to_string()
}

/// The (method, path) of every route, as API Gateway spells them.
pub fn route_table() -> Vec<(String, String)> {
    routes().into_iter().map(|r| (r.method.to_string(), r.path.to_string())).collect()
}

/// The bot's routes alone, built as lead-capture builds its own (errors in JSON), to merge into a
/// router that answers everything else (the local stack merges them into lead-capture's).
pub fn routes_router(state: AppState) -> Router {
    lead_capture::routes_router(routes(), state)
}

/// The bot's routes as the Lambda serves them: anything else is a JSON 404 or 405.
pub fn router(state: AppState) -> Router {
    routes_router(state)
        .fallback(lead_capture::http_util::not_found)
        .method_not_allowed_fallback(lead_capture::http_util::method_not_allowed)
}
