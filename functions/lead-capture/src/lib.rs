//! lead-capture: web-form submissions, behaviour events and double opt-in confirmation.
//!
//! The handlers are plain axum handlers over the domain's ports. `main.rs` runs this router on
//! Lambda (through `lambda_http`) with the AWS adapters; the local stack serves the same router on
//! localhost with the embedded adapters. Nothing here knows which.

pub mod admin;
mod confirm;
pub mod events;
pub mod http_util;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod pages;
pub mod submissions;
mod unsubscribe;

use std::net::IpAddr;
use std::sync::Arc;

use axum::Router;
use axum::handler::Handler;
use axum::routing::{MethodFilter, MethodRouter, on};
use http::Method;
use voronka_domain::campaigns::form::THANK_YOU_PATH;
use voronka_domain::deps::Deps;
use voronka_domain::ports::{IdGenerator, MailCopies};
use voronka_domain::signing::TokenSigner;

pub use http_util::ApiError;

/// The address of the client that sent a request, put into the request's extensions by whatever
/// carried it (the Lambda request context, or the local server's socket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// Everything the handlers need: the ports, the campaign content and the secrets.
#[derive(Clone)]
pub struct AppState {
    pub shared: Deps,
    pub ids: Arc<dyn IdGenerator>,
    /// Where links in email point: the public URL of this API, without a trailing slash. Empty
    /// means "the host the request came to" (an API Gateway URL before a custom domain is set).
    pub public_base_url: String,
    /// How admin routes check their caller: the IAM authoriser on Lambda, a bearer key locally.
    pub admin_access: admin::AdminAccess,
    /// The copies of sent mail the mail service keeps, for a person's export and erasure: the
    /// outbox locally, none on AWS (SES keeps no copy).
    pub mail_copies: Arc<dyn MailCopies>,
}

impl std::ops::Deref for AppState {
    type Target = Deps;

    fn deref(&self) -> &Deps {
        &self.shared
    }
}

impl std::ops::DerefMut for AppState {
    fn deref_mut(&mut self) -> &mut Deps {
        &mut self.shared
    }
}

impl AppState {
    pub fn signer(&self) -> TokenSigner {
        self.secrets.token_signer()
    }

    /// The public URL of this API for a request: the configured one, else the request's host.
    pub fn base_url(&self, headers: &http::HeaderMap) -> String {
        if !self.public_base_url.is_empty() {
            return self.public_base_url.clone();
        }
        let host = headers.get(http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
        let scheme = headers.get("x-forwarded-proto").and_then(|h| h.to_str().ok()).unwrap_or("https");
        format!("{scheme}://{host}")
    }

    /// Pages served from the API's own host are always allowed, besides a form's allow-list.
    pub fn is_own_origin(&self, origin: &str, headers: &http::HeaderMap) -> bool {
        let base = self.base_url(headers);
        let base_origin = base.split('/').take(3).collect::<Vec<_>>().join("/");
        base_origin.eq_ignore_ascii_case(origin.trim_end_matches('/'))
    }

    /// A thank-you URL as configured, with a path resolved against the API's own host.
    pub(crate) fn absolute_url(&self, url: &str, headers: &http::HeaderMap) -> String {
        if url.starts_with('/') { format!("{}{url}", self.base_url(headers)) } else { url.to_string() }
    }
}

/// One route of the API: the method and path API Gateway must send to this function, and the
/// handler that answers it.
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    /// Behind `admin::guard` (and IAM authorisation in the template).
    pub admin: bool,
    pub handler: MethodRouter<AppState>,
}

/// A public route; the qualify-bot builds its list with the same helper.
pub fn route<H, T>(method: Method, path: &'static str, handler: H) -> Route
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone()).expect("routes use standard methods");
    Route { method, path, admin: false, handler: on(filter, handler) }
}

/// A route for operators only: the router puts `admin::guard` in front of it (kpi-rollup builds
/// its admin routes with it too).
pub fn admin_route<H, T>(method: Method, path: &'static str, handler: H) -> Route
where
    H: Handler<T, AppState>,
    T: 'static,
{
    Route { admin: true, ..route(method, path, handler) }
}

/// Every route lead-capture serves: the router is built from this list, and the test of
/// `infra/template.yaml` holds the template's `HttpApi` events to the same list, so a route
/// cannot exist here and be missing on AWS.
pub fn routes() -> Vec<Route> {
    vec![
        route(Method::POST, "/v1/forms/{form_id}/submissions", submissions::submit),
        route(Method::OPTIONS, "/v1/forms/{form_id}/submissions", submissions::preflight),
        route(Method::GET, "/v1/forms/{form_id}", submissions::describe),
        route(Method::GET, THANK_YOU_PATH, submissions::thank_you),
        route(Method::POST, "/v1/events", events::ingest),
        route(Method::OPTIONS, "/v1/events", events::preflight),
        route(Method::GET, "/v1/confirm", confirm::page),
        route(Method::POST, "/v1/confirm", confirm::confirm),
        route(Method::GET, "/v1/unsubscribe", unsubscribe::page),
        route(Method::POST, "/v1/unsubscribe", unsubscribe::unsubscribe),
        admin_route(Method::GET, "/v1/contacts/{id}", admin::contact),
        admin_route(Method::DELETE, "/v1/contacts/{id}", admin::erase),
        admin_route(Method::GET, "/v1/contacts/{id}/export", admin::export),
        admin_route(Method::GET, "/v1/contacts", admin::contact_by_email),
        admin_route(Method::GET, "/v1/admin/sending", admin::sending_status),
        admin_route(Method::POST, "/v1/admin/sending/resume", admin::resume_sending),
    ]
}

/// The (method, path) of every route, as API Gateway spells them.
pub fn route_table() -> Vec<(String, String)> {
    routes().into_iter().map(|r| (r.method.to_string(), r.path.to_string())).collect()
}

/// The (method, path) of every admin route: each must refuse a caller without credentials, and
/// the template must put IAM authorisation on each.
pub fn admin_route_table() -> Vec<(String, String)> {
    routes().into_iter().filter(|r| r.admin).map(|r| (r.method.to_string(), r.path.to_string())).collect()
}

/// The routes lead-capture serves; every admin route behind the one guard.
pub fn router(state: AppState) -> Router {
    routes_router(routes(), state)
        .fallback(http_util::not_found)
        .method_not_allowed_fallback(http_util::method_not_allowed)
}

/// A router of `routes` alone, every admin route behind `admin::guard` and every route's
/// refusals in JSON (`http_util::json_refusals`): how every function that serves routes builds
/// its router, so none can forget either. Without a fallback, to merge into a router that
/// answers everything else.
pub fn routes_router(routes: Vec<Route>, state: AppState) -> Router {
    routes
        .into_iter()
        .fold(Router::new(), |router, r| {
            let handler = if r.admin {
                r.handler.route_layer(axum::middleware::from_fn_with_state(state.clone(), admin::guard))
            } else {
                r.handler
            };
            router.route(r.path, handler.layer(axum::middleware::from_fn(http_util::json_refusals)))
        })
        .with_state(state)
}

/// The render-token purpose: a page's signed "rendered at" time for the minimum fill time.
pub const RENDER_TOKEN_PURPOSE: &str = "render";
/// The confirmation-link purpose.
pub const CONFIRM_TOKEN_PURPOSE: &str = "confirm";

/// A signed render timestamp for `form_id`, as the demo page and embed snippets add to a form.
pub fn render_token(state: &AppState, form_id: &str) -> String {
    let now = state.clock.now();
    let hours = i64::from(state.campaigns.settings.anti_spam.render_token_hours);
    state.signer().sign(RENDER_TOKEN_PURPOSE, form_id, now, now + jiff::SignedDuration::from_hours(hours))
}
