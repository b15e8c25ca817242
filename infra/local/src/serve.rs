//! `voronka serve`: the HTTP API on localhost with the same handlers as on Lambda (lead-capture's,
//! the qualify bot's and kpi-api's), plus a demo shop page with real HTML forms.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{Html, Response};
use axum::routing::get;
use lead_capture::{AppState, ClientIp};
use voronka_domain::html::escape;

const DEMO_SHOP: &str = include_str!("../assets/demo-shop.html");

/// The API routes and the local pages.
pub fn app(state: AppState, outbox_dir: std::path::PathBuf) -> Router {
    let local =
        Router::new().route("/", get(demo_shop)).route("/healthz", get(|| async { "ok" })).with_state(state.clone());
    let known_host = KnownHost::of(&state.public_base_url);
    // The operator's pages (the mail catcher and the admin pages) answer only requests addressed
    // to this machine by name or address, never one a rebound DNS name brings from a web page.
    let operator_pages = Router::new()
        .route("/outbox", get(crate::outbox::list))
        .route("/outbox/{file}", get(crate::outbox::show))
        .with_state(outbox_dir.clone())
        .layer(axum::middleware::from_fn(crate::dashboard::private_page_headers))
        .merge(crate::dashboard::router(state.clone(), outbox_dir))
        .layer(axum::middleware::from_fn_with_state(known_host, addressed_to_this_machine));
    lead_capture::router(state.clone())
        .merge(qualify_bot::routes_router(state.clone()))
        .merge(kpi_rollup::routes_router(state))
        // Again after the merges: a fallback set before covers only the routes there were then,
        // and the bot's and kpi-api's routes answered a wrong method with an empty 405.
        .method_not_allowed_fallback(lead_capture::http_util::method_not_allowed)
        .merge(local)
        .merge(operator_pages)
        .layer(axum::middleware::from_fn(client_ip_from_socket))
}

/// The host name the public base URL gives, besides loopback names and address literals.
#[derive(Clone)]
struct KnownHost(Option<String>);

impl KnownHost {
    fn of(public_base_url: &str) -> KnownHost {
        let authority = public_base_url.split_once("://").map_or("", |(_, rest)| rest);
        let authority = authority.split(['/', '?', '#']).next().unwrap_or("");
        let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
        let host = host.rsplit_once(':').map_or(host, |(host, _port)| host);
        KnownHost((!host.is_empty()).then(|| host.to_ascii_lowercase()))
    }

    /// `localhost`, an IP address literal, or the public URL's host; any port.
    fn allows(&self, host_header: &str) -> bool {
        let host = match host_header.strip_prefix('[') {
            // `[::1]:8080`
            Some(rest) => return rest.split(']').next().is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok()),
            None => host_header.rsplit_once(':').map_or(host_header, |(host, _port)| host),
        };
        let host = host.to_ascii_lowercase();
        host == "localhost" || host.parse::<std::net::IpAddr>().is_ok() || self.0.as_deref() == Some(host.as_str())
    }
}

async fn addressed_to_this_machine(State(known): State<KnownHost>, request: Request, next: Next) -> Response {
    // A browser always sends `Host`; a request without one (an in-process call) is no rebinding.
    let host = request.headers().get(http::header::HOST).map(|value| value.to_str().unwrap_or(""));
    if host.is_none_or(|host| known.allows(host)) {
        return next.run(request).await;
    }
    let mut response = Response::new(axum::body::Body::from(
        "this page answers only requests addressed to this machine (localhost, an IP address or the public URL's host)",
    ));
    *response.status_mut() = http::StatusCode::MISDIRECTED_REQUEST;
    response
}

/// Puts the socket's peer address where the handlers look for the client (on Lambda, the
/// request context fills the same slot).
async fn client_ip_from_socket(mut request: Request, next: Next) -> Response {
    if let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>().copied() {
        request.extensions_mut().insert(ClientIp(peer.ip()));
    }
    next.run(request).await
}

async fn demo_shop(State(state): State<AppState>) -> Html<String> {
    let consent = |form: &str| {
        state.campaigns.forms.get(form).and_then(|f| f.consent.as_ref()).map(|c| escape(&c.text)).unwrap_or_default()
    };
    Html(
        DEMO_SHOP
            .replace("{{NEWSLETTER_RT}}", &lead_capture::render_token(&state, "newsletter"))
            .replace("{{CONSULTATION_RT}}", &lead_capture::render_token(&state, "consultation"))
            .replace("{{NEWSLETTER_CONSENT}}", &consent("newsletter"))
            .replace("{{CONSULTATION_CONSENT}}", &consent("consultation")),
    )
}

/// Serves until Ctrl-C or SIGTERM, with the queue consumers running in this process.
pub async fn run(stack: crate::stack::Stack, addr: SocketAddr) -> Result<()> {
    let state = stack.state.clone();
    // Where the admin key is, never the key itself: stdout may be a shared log.
    let admin_key_hint = match &stack.data_dir {
        Some(dir) => format!(
            "admin routes take `Authorization: Bearer $(cat {})`",
            dir.join(crate::stack::ADMIN_KEY_FILE).display()
        ),
        None => "admin routes take the in-memory stack's key".to_string(),
    };
    let outbox_dir = stack.outbox.dir().to_path_buf();
    let stack = std::sync::Arc::new(stack);
    tokio::spawn(crate::workers::run_forever(stack.clone()));
    tokio::spawn(crate::workers::schedule_forever(stack.clone()));
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    tracing::info!(address = %local, "serving the Voronka API and demo pages");
    println!(
        "Voronka is listening on http://{local} (demo shop at http://{local}/, sent mail at http://{local}/outbox); {admin_key_hint}"
    );
    axum::serve(listener, app(state, outbox_dir).into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        if let Ok(mut signal) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            signal.recv().await;
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

#[cfg(test)]
mod tests {
    use super::KnownHost;

    #[test]
    fn operator_pages_answer_loopback_names_addresses_and_the_public_host_only() {
        let known = KnownHost::of("https://crm.shop.example:8443/base");
        for host in ["localhost:8080", "LOCALHOST", "127.0.0.1:8080", "[::1]:8080", "192.168.1.5", "crm.shop.example"] {
            assert!(known.allows(host), "{host}");
        }
        for host in ["", "attacker.example", "attacker.example:8080", "localhost.attacker.example", "[evil]:80"] {
            assert!(!known.allows(host), "{host}");
        }
        assert!(!KnownHost::of("not a url").allows("not a url"));
    }
}
