//! Running the router on Lambda: the client address comes from API Gateway's request context.

use std::sync::Arc;

use axum::Router;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Error, Request, RequestExt, Response, service_fn};
use tower::ServiceExt;
use voronka_domain::ports::{NoMailCopies, RandomIds};

use crate::admin::{AdminAccess, IamCaller};
use crate::{AppState, ClientIp};

/// Where links in email point (`PUBLIC_BASE_URL`); empty means the host each request came to
/// (the API Gateway URL).
pub fn public_base_url_from_env() -> String {
    std::env::var("PUBLIC_BASE_URL").unwrap_or_default().trim_end_matches('/').to_string()
}

/// The caller's address as API Gateway saw it.
pub fn client_ip(request: &Request) -> Option<ClientIp> {
    let source_ip = match request.request_context_ref()? {
        RequestContext::ApiGatewayV2(context) => context.http.source_ip.clone(),
        _ => None,
    }?;
    source_ip.parse().ok().map(ClientIp)
}

/// The caller API Gateway's IAM authoriser verified, if the route has one: API Gateway builds the
/// request context, so no client can put an identity there.
pub fn iam_caller(request: &Request) -> Option<IamCaller> {
    let RequestContext::ApiGatewayV2(context) = request.request_context_ref()? else { return None };
    let iam = context.authorizer.as_ref()?.iam.as_ref()?;
    let user_arn = iam.user_arn.clone().filter(|arn| !arn.is_empty())?;
    Some(IamCaller { user_arn })
}

/// Runs one of the HTTP functions (lead-capture, qualify-bot, kpi-api) on Lambda: JSON logs,
/// one SDK config, the shared deps from the environment and the router `router` builds over them,
/// all once per container, set up beside the runtime's first poll (`voronka_aws::Deferred`). API
/// Gateway's IAM authoriser guards every admin route (`Auth: Authorizer: AWS_IAM`), so the admin
/// guard expects the caller it verified.
pub async fn run(router: fn(AppState) -> Router) -> Result<(), Error> {
    voronka_telemetry::init_json_logging(std::io::stdout);
    voronka_telemetry::metrics::write_to_stdout();
    let app = Arc::new(voronka_aws::Deferred::start(move || async move {
        let config = voronka_aws::sdk_config(None).await;
        let state = AppState {
            shared: voronka_aws::deps_from_env(&config, voronka_campaigns::load_bundled).await?,
            ids: Arc::new(RandomIds),
            public_base_url: public_base_url_from_env(),
            admin_access: AdminAccess::IamAuthorizer,
            mail_copies: Arc::new(NoMailCopies),
        };
        Ok(router(state))
    }));
    lambda_http::run(service_fn(move |request| {
        let app = app.clone();
        async move { handle(app.get().await?.clone(), request).await }
    }))
    .await
}

/// Handles one Lambda HTTP request with the router: what `main.rs` runs, and what the event
/// fixture tests call with the sample payloads in `events/`.
pub async fn handle(router: Router, mut request: Request) -> Result<Response<Body>, Error> {
    if let Some(ip) = client_ip(&request) {
        request.extensions_mut().insert(ip);
    }
    if let Some(caller) = iam_caller(&request) {
        request.extensions_mut().insert(caller);
    }
    let request = request.map(|body| match body {
        Body::Empty => axum::body::Body::empty(),
        Body::Text(text) => axum::body::Body::from(text),
        Body::Binary(bytes) => axum::body::Body::from(bytes),
        _ => axum::body::Body::empty(),
    });
    let response = router.oneshot(request).await?;
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await?;
    let body = match String::from_utf8(bytes.to_vec()) {
        Ok(text) => Body::Text(text),
        Err(e) => Body::Binary(e.into_bytes()),
    };
    Ok(Response::from_parts(parts, body))
}
