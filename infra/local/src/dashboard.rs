//! The KPI dashboard and the contact pages of `voronka serve`, behind the admin key, and the
//! same pages as files for the demo (`write_static`), which open from disk without a server.
//!
//! Pages are rendered here from typed values (`report_page`, `contact_page`) with inline CSS and
//! SVG charts (`charts`): no script, no network. A browser signs in once at `/admin/login` with
//! the admin key and then carries a session cookie (`session`); scripts may send the key as
//! `Authorization: Bearer` instead, as on the API's admin routes.

pub mod charts;
pub mod contact_page;
pub mod report_page;
pub mod session;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use lead_capture::AppState;
use lead_capture::admin::AdminAccess;
use voronka_domain::html::escape;
use voronka_domain::kpi::{self, GroupBy, KpiQuery, KpiReport};
use voronka_domain::model::{Contact, EmailAddress};
use voronka_domain::repo::{ContactRepository, aggregates};

pub use contact_page::{ContactView, render_contact};
pub use report_page::render_dashboard;
use session::Sessions;

/// Most contacts a dashboard lists (and the demo writes pages for).
pub const MAX_LISTED_CONTACTS: usize = 50;

/// Where the pages' links go: the server's routes, or files next to each other on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkMode {
    Server,
    /// `index.html` with `contacts/<id>.html` beside it.
    Static,
}

impl LinkMode {
    pub fn contact_href(self, id: &str) -> String {
        match self {
            LinkMode::Server => format!("/admin/contacts/{}", url_component(id)),
            LinkMode::Static => format!("contacts/{}.html", file_stem(id)),
        }
    }

    fn dashboard_href(self) -> &'static str {
        match self {
            LinkMode::Server => "/admin/dashboard",
            LinkMode::Static => "../index.html",
        }
    }

    /// A sent message's page; files have no outbox to link to.
    pub fn outbox_href(self, file: &str) -> Option<String> {
        match self {
            LinkMode::Server => Some(format!("/outbox/{}", url_component(file))),
            LinkMode::Static => None,
        }
    }
}

/// A contact as the dashboard lists it.
#[derive(Debug, Clone)]
pub struct ListedContact {
    pub id: String,
    pub name: String,
    pub stage: String,
    pub orders: u64,
    pub revenue: f64,
    pub created_at: jiff::Timestamp,
}

impl ListedContact {
    pub fn of(contact: &Contact) -> ListedContact {
        ListedContact {
            id: contact.id.clone(),
            name: contact_page::display_name(contact),
            stage: contact.stage.as_str().to_string(),
            orders: contact.orders.orders,
            revenue: contact.orders.revenue_minor as f64 / 100.0,
            created_at: contact.created_at,
        }
    }
}

/// What the dashboard links to beyond the report: the link style and the contacts it lists.
#[derive(Debug, Clone)]
pub struct Links {
    pub mode: LinkMode,
    pub contacts: Vec<ListedContact>,
    /// The reputation guard now (paused or not, the window's rates), shown above the tiles.
    pub reputation: Option<voronka_domain::sending::reputation::Status>,
}

/// The reputation guard as the dashboard shows it; a failure to read it leaves it off the page.
async fn reputation_status(state: &AppState) -> Option<voronka_domain::sending::reputation::Status> {
    let settings = &state.campaigns.settings.sending.reputation;
    voronka_domain::sending::reputation::evaluate(state.store.as_ref(), settings, state.clock.now())
        .await
        .inspect_err(|error| tracing::warn!(error = %error, "the dashboard could not read the reputation guard"))
        .ok()
}

/// Percent-encodes everything but unreserved characters, for one path segment or query value.
pub fn url_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// A contact id as a file name: ids are `[A-Za-z0-9_-]` in practice; anything else becomes `_`
/// so no id can name a path outside the folder.
fn file_stem(id: &str) -> String {
    id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;background:#f4f6f8;color:#111}\
header.top{background:#1f4e79;color:#fff;padding:.6rem 1.5rem;display:flex;gap:1.2rem;align-items:center;flex-wrap:wrap}\
header.top a{color:#fff}header.top form{margin:0 0 0 auto}main{padding:1rem 1.5rem;max-width:1200px}\
.card{background:#fff;border-radius:6px;padding:.8rem 1.2rem;margin:0 0 1rem;box-shadow:0 1px 2px #0002;overflow-x:auto}\
table{border-collapse:collapse;font-size:.9rem}td,th{padding:.25rem .55rem;text-align:left;border-bottom:1px solid #e3e3e3;vertical-align:top}\
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}.kv th{width:11rem;color:#555;font-weight:500}\
svg.chart{max-width:100%;height:auto;font-size:12px}svg .label{fill:#333}svg .value{fill:#111}svg .small{font-size:10px}\
svg .legend{font-size:11px;fill:#333}svg .flagged,.flag{fill:#a33;color:#a33;font-weight:600}\
.tiles{display:flex;flex-wrap:wrap;gap:.6rem}.tile{background:#fff;border-radius:6px;padding:.5rem .9rem;min-width:8rem;box-shadow:0 1px 2px #0002}\
.tile b{display:block;font-size:1.3rem}.tile span{color:#555;font-size:.8rem}.note{color:#555;font-size:.85rem}\
ol.timeline{list-style:none;padding:0}ol.timeline li{padding:.2rem 0;border-bottom:1px dotted #ddd}\
ol.timeline time{color:#555;font-variant-numeric:tabular-nums}.kind{display:inline-block;min-width:4.5rem;font-size:.75rem;text-transform:uppercase;color:#1f4e79}\
.group-holdout{color:#a35b00;font-weight:600}form.range{display:flex;gap:.8rem;align-items:end;flex-wrap:wrap}\
form.range label{display:flex;flex-direction:column;font-size:.8rem;color:#555}.error{color:#a33}";

/// The page shell: navigation, styles, and `body`.
pub fn page(title: &str, body: &str, mode: LinkMode) -> String {
    let nav = match mode {
        LinkMode::Server => "<a href=\"/admin/dashboard\">Dashboard</a><a href=\"/admin/contacts\">Contacts</a>\
             <a href=\"/outbox\">Outbox</a><a href=\"/\">Demo shop</a>\
             <form method=\"post\" action=\"/admin/logout\"><button type=\"submit\">Sign out</button></form>"
            .to_string(),
        LinkMode::Static => format!(
            "<a href=\"{}\">Dashboard</a><span>files written by <code>voronka demo</code></span>",
            mode.dashboard_href()
        ),
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'\">\
         <meta name=\"referrer\" content=\"no-referrer\"><title>{title} — Voronka</title>\
         <style>{STYLE}</style></head><body><header class=\"top\"><strong>Voronka</strong>{nav}</header><main>{body}</main></body></html>",
        title = escape(title),
    )
}

/// A plain message page (errors, not found) in the shell.
fn message_page(status: StatusCode, title: &str, message: &str) -> Response {
    let body = format!("<h1>{}</h1><p class=\"error\">{}</p>", escape(title), escape(message));
    (status, Html(page(title, &body, LinkMode::Server))).into_response()
}

#[derive(Clone)]
struct DashboardState {
    app: AppState,
    outbox_dir: PathBuf,
    sessions: Arc<Sessions>,
}

/// The admin pages: `/admin/login`, `/admin/logout`, `/admin/dashboard`, `/admin/contacts`,
/// `/admin/contacts/{id}`, `/admin/contacts/{id}/erase`; all but the login behind
/// `require_admin`.
pub fn router(app: AppState, outbox_dir: PathBuf) -> Router {
    let state = DashboardState { app, outbox_dir, sessions: Arc::new(Sessions::default()) };
    let guarded = Router::new()
        .route("/admin", get(|| async { Redirect::to("/admin/dashboard") }))
        .route("/admin/dashboard", get(dashboard))
        .route("/admin/contacts", get(search_contacts))
        .route("/admin/contacts/{id}", get(show_contact))
        .route("/admin/contacts/{id}/erase", get(confirm_erase).post(erase_contact))
        .route("/admin/logout", post(logout))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), require_admin));
    Router::new()
        .route("/admin/login", get(login_form).post(login))
        .merge(guarded)
        .layer(axum::middleware::from_fn(private_page_headers))
        .with_state(state)
}

/// What no page may do: run script (a missed escape stays inert), sit in another site's frame,
/// be cached (they hold personal data) or tell other sites where the browser came from.
const CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

pub async fn private_page_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

fn bearer_ok(state: &DashboardState, headers: &HeaderMap) -> bool {
    let AdminAccess::BearerKey(digest) = &state.app.admin_access else { return false };
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .is_some_and(|key| digest.matches(key.trim()))
}

fn session_token(headers: &HeaderMap) -> Option<&str> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(session::token_from_cookies)
}

/// Lets through a request with a live session cookie or the admin bearer key. Otherwise a page
/// request goes to the login form (coming back here after it), anything else gets 401.
async fn require_admin(State(state): State<DashboardState>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    if bearer_ok(&state, headers) || session_token(headers).is_some_and(|t| state.sessions.is_valid(t)) {
        return next.run(request).await;
    }
    if request.method() == Method::GET || request.method() == Method::HEAD {
        let back = request.uri().path_and_query().map(|pq| pq.as_str()).unwrap_or("/admin/dashboard");
        return Redirect::to(&format!("/admin/login?next={}", url_component(back))).into_response();
    }
    tracing::info!(path = %request.uri().path(), "admin page refused an unauthorised request");
    let mut response = message_page(StatusCode::UNAUTHORIZED, "Sign in first", "This page needs the admin key.");
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// Where a login may send the browser afterwards: an admin page of this site, nothing else.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(path)
            if path.starts_with("/admin/")
                && !path.starts_with("/admin/login")
                && !path.contains("//")
                && !path.contains('\\')
                && !path.chars().any(char::is_control) =>
        {
            path
        }
        _ => "/admin/dashboard",
    }
}

fn login_page(next: &str, problem: Option<&str>) -> String {
    let problem = problem.map(|p| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(p))).unwrap_or_default();
    let body = format!(
        "<section class=\"card\"><h1>Sign in</h1>{problem}<p class=\"note\">Paste the admin key (the file <code>admin-key</code> \
         in the data folder). The browser keeps a session cookie, not the key.</p>\
         <form method=\"post\" action=\"/admin/login\"><input type=\"hidden\" name=\"next\" value=\"{next}\">\
         <label>Admin key <input type=\"password\" name=\"key\" id=\"admin-key\" autocomplete=\"current-password\" required size=\"70\"></label> \
         <button type=\"submit\" id=\"sign-in\">Sign in</button></form></section>",
        next = escape(next)
    );
    // The shell's sign-out button would be noise here.
    page("Sign in", &body, LinkMode::Server).replacen(
        "<form method=\"post\" action=\"/admin/logout\"><button type=\"submit\">Sign out</button></form>",
        "",
        1,
    )
}

async fn login_form(Query(params): Query<HashMap<String, String>>) -> Html<String> {
    Html(login_page(safe_next(params.get("next").map(String::as_str)), None))
}

async fn login(State(state): State<DashboardState>, body: axum::body::Bytes) -> Response {
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let next = safe_next(form.get("next").map(String::as_str)).to_string();
    let Some(key) = form.get("key").map(|k| k.trim()).filter(|k| !k.is_empty()) else {
        return (StatusCode::BAD_REQUEST, Html(login_page(&next, Some("key: enter the admin key")))).into_response();
    };
    let AdminAccess::BearerKey(digest) = &state.app.admin_access else {
        return message_page(StatusCode::FORBIDDEN, "No key sign-in", "This deployment checks admin callers with IAM.");
    };
    if !digest.matches(key) {
        tracing::info!("admin sign-in refused a wrong key");
        return (
            StatusCode::UNAUTHORIZED,
            Html(login_page(&next, Some("key: that is not this installation's admin key"))),
        )
            .into_response();
    }
    let token = state.sessions.start();
    let mut response = Redirect::to(&next).into_response();
    if let Ok(cookie) = HeaderValue::from_str(&session::session_cookie(&token)) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

async fn logout(State(state): State<DashboardState>, headers: HeaderMap) -> Response {
    if let Some(token) = session_token(&headers) {
        state.sessions.end(token);
    }
    let mut response = Redirect::to("/admin/login").into_response();
    if let Ok(cookie) = HeaderValue::from_str(&session::cleared_cookie()) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

async fn recent_contacts(state: &AppState) -> anyhow::Result<Vec<ListedContact>> {
    let contacts = ContactRepository::new(state.store.as_ref()).recent(MAX_LISTED_CONTACTS).await?;
    Ok(contacts.iter().map(ListedContact::of).collect())
}

/// The contacts list as HTML, each row linking to its page.
pub fn contacts_table(contacts: &[ListedContact], mode: LinkMode) -> String {
    let mut html = String::from(
        "<table class=\"contacts\"><tr><th>Contact</th><th>Stage</th><th class=\"num\">Orders</th><th class=\"num\">Revenue</th><th>Created</th></tr>",
    );
    for contact in contacts {
        let _ = write!(
            html,
            "<tr><td><a class=\"contact-link\" href=\"{href}\">{name}</a></td><td>{stage}</td><td class=\"num\">{orders}</td>\
             <td class=\"num\">{revenue}</td><td>{created}</td></tr>",
            href = escape(&mode.contact_href(&contact.id)),
            name = escape(&contact.name),
            stage = escape(&contact.stage),
            orders = contact.orders,
            revenue = escape(&charts::money(Some(contact.revenue))),
            created = contact.created_at.strftime("%Y-%m-%d %H:%M"),
        );
    }
    html.push_str("</table>");
    html
}

async fn search_contacts(
    State(state): State<DashboardState>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let search_form = |value: &str| {
        format!(
            "<form method=\"get\" action=\"/admin/contacts\"><label>Email <input type=\"email\" name=\"email\" value=\"{}\" required></label> \
             <button type=\"submit\">Find</button></form>",
            escape(value)
        )
    };
    // As in `GET /v1/contacts?email=`: an address holds no spaces, so a space is a `+` the link
    // did not percent-encode (`anna+shop@example.com`).
    match params.get("email").map(|e| e.trim().replace(' ', "+")).filter(|e| !e.is_empty()) {
        Some(raw) => {
            let raw = raw.as_str();
            let Ok(email) = EmailAddress::parse(raw) else {
                let body = format!(
                    "<section class=\"card\"><h1>Contacts</h1>{}<p class=\"error\">email: not an email address</p></section>",
                    search_form(raw)
                );
                return (StatusCode::BAD_REQUEST, Html(page("Contacts", &body, LinkMode::Server))).into_response();
            };
            match ContactRepository::new(state.app.store.as_ref()).find_by_email(&email).await {
                Ok(Some(contact)) => Redirect::to(&LinkMode::Server.contact_href(&contact.id)).into_response(),
                Ok(None) => {
                    let body = format!(
                        "<section class=\"card\"><h1>Contacts</h1>{}<p class=\"error\">No contact has this address.</p></section>",
                        search_form(raw)
                    );
                    (StatusCode::NOT_FOUND, Html(page("Contacts", &body, LinkMode::Server))).into_response()
                }
                Err(error) => internal_error("finding a contact by email", &error),
            }
        }
        None => match recent_contacts(&state.app).await {
            Ok(contacts) => {
                let body = format!(
                    "<section class=\"card\"><h1>Contacts</h1>{}<h2>Newest contacts</h2>{}</section>",
                    search_form(""),
                    contacts_table(&contacts, LinkMode::Server)
                );
                Html(page("Contacts", &body, LinkMode::Server)).into_response()
            }
            Err(error) => internal_error("listing recent contacts", &error),
        },
    }
}

fn internal_error(doing: &str, error: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %error, "admin page failed {doing}");
    message_page(StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong", "The page could not be read; see the log.")
}

async fn show_contact(State(state): State<DashboardState>, UrlPath(id): UrlPath<String>) -> Response {
    let emails = contact_page::emails_by_address(&state.outbox_dir);
    match contact_page::load(&state.app, &id, &emails).await {
        Ok(Some(view)) => Html(render_contact(&view, LinkMode::Server)).into_response(),
        Ok(None) => message_page(StatusCode::NOT_FOUND, "No such contact", "No contact has this id."),
        Err(error) => internal_error("reading a contact page", &error),
    }
}

/// Asks before erasing: a GET changes nothing, the button POSTs.
async fn confirm_erase(State(state): State<DashboardState>, UrlPath(id): UrlPath<String>) -> Response {
    use voronka_domain::repo::ContactLookup;
    let store = state.app.store.as_ref();
    let path = format!("/admin/contacts/{}/erase", url_component(&id));
    let contact = match ContactRepository::new(store).lookup(&id).await {
        Ok(ContactLookup::Found(contact)) => contact,
        Ok(ContactLookup::Erased(at)) => {
            // An erasure that stopped part-way (the scheduler finishes it too): offer to go on.
            match voronka_domain::repo::personal_data::erasure_unfinished(store, &id).await {
                Ok(true) => {}
                Ok(false) => return message_page(StatusCode::NOT_FOUND, "Erased", "This contact was erased."),
                Err(error) => return internal_error("reading an erased contact", &error),
            }
            let body = format!(
                "<section class=\"card\"><h1>Finish erasing {id}?</h1><p>Its erasure began at {at} and has not \
                 completed yet; what is left of the person goes now.</p><form method=\"post\" action=\"{path}\">\
                 <button type=\"submit\" id=\"erase\">Finish the erasure</button></form></section>",
                id = escape(&id),
                at = escape(&at.to_string()),
                path = escape(&path),
            );
            return Html(page("Finish an erasure", &body, LinkMode::Server)).into_response();
        }
        Ok(ContactLookup::Missing) => {
            return message_page(StatusCode::NOT_FOUND, "No such contact", "No contact has this id.");
        }
        Err(error) => return internal_error("reading a contact to erase", &error),
    };
    let body = format!(
        "<section class=\"card\"><h1>Erase {name}?</h1><p>Everything held about this person goes: the profile, \
         consent receipts, timeline, chats, journeys, carts and the outbox's mail to them. Only anonymous counts \
         stay. This cannot be undone.</p><form method=\"post\" action=\"{path}\">\
         <button type=\"submit\" id=\"erase\">Erase this person</button></form>\
         <p><a href=\"/admin/contacts/{id}\">Back to the contact</a></p></section>",
        name = escape(&contact_page::display_name(&contact)),
        path = escape(&path),
        id = escape(&url_component(&id)),
    );
    Html(page("Erase a contact", &body, LinkMode::Server)).into_response()
}

/// Whether a request that rides on the session cookie came from this site's own page: the
/// cookie is SameSite=Strict already; the Origin check also holds for browsers that ignore it.
fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok());
    match (host, origin) {
        (Some(host), Some(origin)) => {
            let authority = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://"));
            authority.is_some_and(|authority| authority.eq_ignore_ascii_case(host))
        }
        _ => false,
    }
}

/// Erases the person (`repo::personal_data::erase`, whole, with the outbox) and says what went.
async fn erase_contact(
    State(state): State<DashboardState>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    if !bearer_ok(&state, &headers) && !same_origin(&headers) {
        tracing::info!("an erase from another origin was refused");
        return message_page(StatusCode::FORBIDDEN, "Refused", "Erase from the contact's own page.");
    }
    let store = state.app.store.as_ref();
    let now = state.app.clock.now();
    let erased = voronka_domain::repo::personal_data::erase_within(
        store,
        state.app.mail_copies.as_ref(),
        &state.app.secrets.token_keys,
        &id,
        now,
        usize::MAX,
    )
    .await;
    match erased {
        Ok(report) => {
            let removed: String = report
                .removed
                .iter()
                .map(|(kind, count)| format!("<tr><th>{}</th><td>{count}</td></tr>", escape(kind)))
                .collect();
            let body = format!(
                "<section class=\"card\"><h1 id=\"erased\">Erased</h1><p>Contact {id} was erased at {at}{again}.</p>\
                 <table class=\"kv\">{removed}</table><p><a href=\"/admin/contacts\">Contacts</a></p></section>",
                id = escape(&id),
                at = escape(&report.erased_at.to_string()),
                again = if report.already_erased { " (before this request)" } else { "" },
            );
            Html(page("Erased", &body, LinkMode::Server)).into_response()
        }
        Err(voronka_domain::repo::personal_data::PersonalDataError::NotFound) => {
            message_page(StatusCode::NOT_FOUND, "No such contact", "No contact has this id.")
        }
        Err(error) => internal_error("erasing a contact", &error),
    }
}

/// The report the dashboard draws: `query`'s range and model, always grouped by channel.
pub async fn report(state: &AppState, query: &KpiQuery) -> anyhow::Result<KpiReport> {
    let settings = &state.campaigns.settings;
    let query = KpiQuery { group_by: GroupBy::Channel, ..query.clone() };
    let today = aggregates::date(state.clock.now(), settings);
    let journeys: Vec<String> = state.campaigns.journeys.keys().cloned().collect();
    let inputs = kpi::load(state.store.as_ref(), settings, &query, today, &journeys).await?;
    Ok(kpi::compute(&inputs, &query, settings))
}

async fn dashboard(State(state): State<DashboardState>, Query(params): Query<BTreeMap<String, String>>) -> Response {
    let today = aggregates::date(state.app.clock.now(), &state.app.campaigns.settings);
    let query = match KpiQuery::parse(&params, today) {
        Ok(query) => query,
        Err(error) => {
            let body = format!(
                "<section class=\"card\"><h1>KPI dashboard</h1><p class=\"error\" data-field=\"{field}\">{field}: {message}</p>\
                 <p><a href=\"/admin/dashboard\">The last 30 days</a></p></section>",
                field = escape(&error.field),
                message = escape(&error.message)
            );
            return (StatusCode::BAD_REQUEST, Html(page("KPI dashboard", &body, LinkMode::Server))).into_response();
        }
    };
    let report = match report(&state.app, &query).await {
        Ok(report) => report,
        Err(error) => return internal_error("computing the KPI report", &error),
    };
    let reputation = reputation_status(&state.app).await;
    match recent_contacts(&state.app).await {
        Ok(contacts) => {
            Html(render_dashboard(&report, &Links { mode: LinkMode::Server, contacts, reputation })).into_response()
        }
        Err(error) => internal_error("listing recent contacts", &error),
    }
}

/// Writes the dashboard for `query` as `dir/index.html`, with a page per contact it lists under
/// `dir/contacts/` (at most `MAX_LISTED_CONTACTS`), all linked relatively so the folder opens
/// from disk without a server. Returns the path of `index.html`.
pub async fn write_static(dir: &Path, stack: &crate::stack::Stack, query: &KpiQuery) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let report = report(&stack.state, query).await?;
    let contacts = recent_contacts(&stack.state).await?;
    write_contact_pages(dir, stack, &contacts).await?;
    let index = dir.join("index.html");
    let reputation = reputation_status(&stack.state).await;
    std::fs::write(&index, render_dashboard(&report, &Links { mode: LinkMode::Static, contacts, reputation }))
        .with_context(|| format!("writing {}", index.display()))?;
    Ok(index)
}

async fn write_contact_pages(
    dir: &Path,
    stack: &crate::stack::Stack,
    contacts: &[ListedContact],
) -> anyhow::Result<()> {
    let folder = dir.join("contacts");
    std::fs::create_dir_all(&folder)?;
    let emails = contact_page::emails_by_address(stack.outbox.dir());
    for listed in contacts.iter().take(MAX_LISTED_CONTACTS) {
        if let Some(view) = contact_page::load(&stack.state, &listed.id, &emails).await? {
            std::fs::write(
                folder.join(format!("{}.html", file_stem(&listed.id))),
                render_contact(&view, LinkMode::Static),
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use http::Request;
    use tower::ServiceExt;
    use voronka_domain::ports::SystemClock;

    use super::*;
    use crate::stack::{Stack, StackOptions};

    const HOSTILE: &str = "<svg onload=alert(1)>";

    async fn stack_with_contacts(n: usize) -> Stack {
        let stack = Stack::open(StackOptions {
            data_dir: None,
            metering: None,
            campaigns_dir: None,
            public_base_url: None,
            clock: Arc::new(SystemClock),
            ids: Stack::default_ids(),
            faults: None,
        })
        .unwrap();
        let app = crate::serve::app(stack.state.clone(), stack.outbox.dir().to_path_buf());
        for i in 0..n {
            let body = serde_json::json!({"email": format!("p{i}@example.com"), "consent": true,
                "first_name": if i == 0 { HOSTILE.to_string() } else { format!("P{i}") }, "utm_source": "vk"});
            let request = Request::post("/v1/forms/newsletter/submissions")
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status(), StatusCode::CREATED);
        }
        stack
    }

    #[tokio::test]
    async fn the_static_dashboard_links_relatively_to_a_page_per_listed_contact() {
        let stack = stack_with_contacts(3).await;
        let dir = std::env::temp_dir().join(format!("voronka-dashboard-static-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let today = aggregates::date(jiff::Timestamp::now(), &stack.state.campaigns.settings);
        let query = KpiQuery::parse(&BTreeMap::new(), today).unwrap();
        let index = write_static(&dir, &stack, &query).await.unwrap();
        assert_eq!(index, dir.join("index.html"));
        let html = std::fs::read_to_string(&index).unwrap();
        assert!(!html.contains("href=\"/") && !html.contains("src="), "only relative links: the files open from disk");
        let pages: Vec<_> = std::fs::read_dir(dir.join("contacts")).unwrap().flatten().map(|e| e.path()).collect();
        assert_eq!(pages.len(), 3);
        for page in &pages {
            let name = page.file_name().unwrap().to_string_lossy().into_owned();
            assert!(html.contains(&format!("href=\"contacts/{name}\"")), "the dashboard links {name}");
            let contact = std::fs::read_to_string(page).unwrap();
            assert!(contact.contains("href=\"../index.html\""), "and the page links back");
            assert!(!contact.contains("<svg onload"), "names are text, not markup");
            assert!(contact.contains("class=\"t-consent\""), "the consent is on the timeline");
            assert!(contact.contains("<h2>Score</h2>"), "the score explains itself");
        }
        assert!(html.contains("&lt;svg onload=alert(1)&gt;") && !html.contains("<svg onload"));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[tokio::test]
    async fn recent_contacts_are_the_newest_first_and_bounded() {
        let stack = stack_with_contacts(4).await;
        let repo = ContactRepository::new(stack.state.store.as_ref());
        let recent = repo.recent(3).await.unwrap();
        assert_eq!(recent.len(), 3);
        assert!(recent.windows(2).all(|w| (w[0].created_at, &w[0].id) >= (w[1].created_at, &w[1].id)));
        let all = repo.recent(10).await.unwrap();
        assert_eq!(all.len(), 4);
        assert_eq!(
            all[..3].iter().map(|c| &c.id).collect::<Vec<_>>(),
            recent.iter().map(|c| &c.id).collect::<Vec<_>>()
        );
    }

    /// Every admin page refuses a caller without the key or a session (a browser is sent to the
    /// login), and the operator pages answer no request addressed to a foreign host name.
    #[tokio::test]
    async fn every_admin_page_refuses_without_the_key_and_operator_pages_refuse_foreign_hosts() {
        let stack = stack_with_contacts(1).await;
        let app = crate::serve::app(stack.state.clone(), stack.outbox.dir().to_path_buf());
        let send = |request: Request<Body>| {
            let app = app.clone();
            async move { app.oneshot(request).await.unwrap().status() }
        };
        for path in [
            "/admin",
            "/admin/dashboard",
            "/admin/contacts",
            "/admin/contacts?email=p0@example.com",
            "/admin/contacts/c1",
            "/admin/contacts/c1/erase",
        ] {
            let status = send(Request::get(path).body(Body::empty()).unwrap()).await;
            assert_eq!(status, StatusCode::SEE_OTHER, "{path} sends a browser to the login");
        }
        assert_eq!(send(Request::post("/admin/logout").body(Body::empty()).unwrap()).await, StatusCode::UNAUTHORIZED);
        let erase = Request::post("/admin/contacts/c1/erase").body(Body::empty()).unwrap();
        assert_eq!(send(erase).await, StatusCode::UNAUTHORIZED);
        for (host, expected) in [
            ("localhost:8080", StatusCode::OK),
            ("127.0.0.1:8080", StatusCode::OK),
            ("rebound.attacker.example", StatusCode::MISDIRECTED_REQUEST),
        ] {
            let outbox = send(Request::get("/outbox").header("host", host).body(Body::empty()).unwrap()).await;
            assert_eq!(outbox, expected, "outbox for {host}");
            let admin = Request::get("/admin/dashboard")
                .header("host", host)
                .header("authorization", format!("Bearer {}", stack.admin_key))
                .body(Body::empty())
                .unwrap();
            assert_eq!(send(admin).await, expected, "dashboard for {host}");
        }
    }

    /// The contact page's erase button: a confirmation page (a GET erases nothing), then a POST
    /// that rides on the session cookie only from this site's own page.
    #[tokio::test]
    async fn a_signed_in_operator_erases_a_contact_from_its_page_and_no_other_site_can() {
        let stack = stack_with_contacts(1).await;
        let app = crate::serve::app(stack.state.clone(), stack.outbox.dir().to_path_buf());
        let send = |request: Request<Body>| {
            let app = app.clone();
            async move {
                let response = app.oneshot(request).await.unwrap();
                let status = response.status();
                let cookie = response.headers().get(header::SET_COOKIE).map(|c| c.to_str().unwrap().to_string());
                let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
                (status, cookie, String::from_utf8_lossy(&body).into_owned())
            }
        };
        let login = Request::post("/admin/login")
            .header("host", "127.0.0.1:8080")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(format!("key={}", stack.admin_key)))
            .unwrap();
        let cookie = send(login).await.1.expect("a session cookie");
        let cookie = cookie.split(';').next().unwrap().to_string();
        let id = ContactRepository::new(stack.state.store.as_ref()).recent(1).await.unwrap()[0].id.clone();
        let page = |path: String| {
            Request::get(path).header("host", "127.0.0.1:8080").header("cookie", &cookie).body(Body::empty()).unwrap()
        };
        let (status, _, html) = send(page(format!("/admin/contacts/{id}"))).await;
        assert_eq!(status, StatusCode::OK);
        assert!(html.contains(&format!("href=\"/admin/contacts/{id}/erase\"")), "{html}");
        let (status, _, html) = send(page(format!("/admin/contacts/{id}/erase"))).await;
        assert_eq!(status, StatusCode::OK);
        assert!(html.contains("method=\"post\"") && html.contains("id=\"erase\""), "{html}");

        let post = |origin: Option<&str>| {
            let mut request = Request::post(format!("/admin/contacts/{id}/erase"))
                .header("host", "127.0.0.1:8080")
                .header("cookie", &cookie);
            if let Some(origin) = origin {
                request = request.header("origin", origin);
            }
            request.body(Body::empty()).unwrap()
        };
        for foreign in [None, Some("https://evil.example"), Some("http://127.0.0.1:8080.evil.example")] {
            assert_eq!(send(post(foreign)).await.0, StatusCode::FORBIDDEN, "{foreign:?}");
        }
        assert!(ContactRepository::new(stack.state.store.as_ref()).get(&id).await.unwrap().is_some());
        let (status, _, html) = send(post(Some("http://127.0.0.1:8080"))).await;
        assert_eq!(status, StatusCode::OK, "{html}");
        assert!(html.contains("id=\"erased\""), "{html}");
        assert!(ContactRepository::new(stack.state.store.as_ref()).get(&id).await.unwrap().is_none());
        assert_eq!(send(page(format!("/admin/contacts/{id}/erase"))).await.0, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn a_bad_range_is_a_400_naming_the_field() {
        let stack = stack_with_contacts(0).await;
        let app = crate::serve::app(stack.state.clone(), stack.outbox.dir().to_path_buf());
        for (query, field) in
            [("from=2026-13-01", "from"), ("from=2025-01-01&to=2026-06-01", "to"), ("attribution=magic", "attribution")]
        {
            let request = Request::get(format!("/admin/dashboard?{query}"))
                .header("authorization", format!("Bearer {}", stack.admin_key))
                .body(Body::empty())
                .unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
            let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
            let html = String::from_utf8_lossy(&body);
            assert!(html.contains(&format!("data-field=\"{field}\"")), "{query}: {html}");
        }
        let unencoded_plus = Request::get("/admin/contacts?email=p+0@example.com")
            .header("authorization", format!("Bearer {}", stack.admin_key))
            .body(Body::empty())
            .unwrap();
        assert_eq!(
            app.clone().oneshot(unencoded_plus).await.unwrap().status(),
            StatusCode::NOT_FOUND,
            "a + is not a 400"
        );
        let wrong_key =
            Request::get("/admin/dashboard").header("authorization", "Bearer nope").body(Body::empty()).unwrap();
        assert_eq!(app.oneshot(wrong_key).await.unwrap().status(), StatusCode::SEE_OTHER);
    }

    #[test]
    fn a_login_only_sends_the_browser_to_admin_pages() {
        assert_eq!(safe_next(Some("/admin/contacts/c_1")), "/admin/contacts/c_1");
        for bad in
            ["https://evil.example/", "//evil.example/admin/", "/admin//evil", "/admin/login", "/outbox", "/admin/\\x"]
        {
            assert_eq!(safe_next(Some(bad)), "/admin/dashboard", "{bad}");
        }
        assert_eq!(safe_next(None), "/admin/dashboard");
    }

    #[test]
    fn ids_become_safe_links_and_file_names() {
        assert_eq!(LinkMode::Static.contact_href("../../etc/passwd"), "contacts/______etc_passwd.html");
        assert_eq!(LinkMode::Server.contact_href("a b/c"), "/admin/contacts/a%20b%2Fc");
    }
}
