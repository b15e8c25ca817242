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
    let outbox = Router::new()
        .route("/outbox", get(crate::outbox::list))
        .route("/outbox/{file}", get(crate::outbox::show))
        .with_state(outbox_dir);
    lead_capture::router(state.clone())
        .merge(qualify_bot::routes_router(state.clone()))
        .merge(kpi_rollup::routes_router(state))
        .merge(local)
        .merge(outbox)
        .layer(axum::middleware::from_fn(client_ip_from_socket))
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
