//! Shared HTTP plumbing: errors as JSON, bounded bodies, content types, CORS, client identity.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use voronka_domain::errors::FieldError;
use voronka_domain::repo::{RateDecision, RateLimiter};
use voronka_domain::signing::keyed_digest;

use crate::{AppState, ClientIp};

/// An error answered to the client: `{"error":{"code","message","fields":[...]}}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub fields: Vec<FieldError>,
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), fields: Vec::new(), retry_after: None }
    }

    pub fn invalid(fields: Vec<FieldError>) -> Self {
        let names: Vec<_> = fields.iter().map(|f| f.field.as_str()).collect();
        let message = format!("invalid input in: {}", names.join(", "));
        ApiError { fields, ..ApiError::new(StatusCode::BAD_REQUEST, "validation_failed", message) }
    }

    pub fn internal(context: &str, error: impl std::fmt::Display) -> Self {
        tracing::error!(error = %error, "{context}");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "please retry in a moment")
            .with_retry_after(5)
    }

    pub fn with_retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn body(&self) -> serde_json::Value {
        json!({ "error": { "code": self.code, "message": self.message, "fields": self.fields } })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this route does not take that method")
}

/// Longest plain-text refusal carried over into a JSON error (axum's are one short line).
const MAX_REFUSAL_TEXT_BYTES: usize = 1024;

/// axum refuses in plain text what its extractors cannot read before a handler runs (a path
/// segment that is not UTF-8 once percent-decoded, a body over its default limit); every route's
/// clients read errors as `{"error":{...}}`, so such a refusal is answered in that shape with
/// axum's own words. The router puts this in front of every route, so a new one cannot miss it.
pub async fn json_refusals(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let plain_text =
        response.headers().get(header::CONTENT_TYPE).is_some_and(|value| value.as_bytes().starts_with(b"text/plain"));
    if !plain_text || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let text = axum::body::to_bytes(response.into_body(), MAX_REFUSAL_TEXT_BYTES).await.unwrap_or_default();
    let code = match status {
        StatusCode::BAD_REQUEST => "invalid_request",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        _ => "request_refused",
    };
    ApiError::new(status, code, String::from_utf8_lossy(&text).trim().to_string()).into_response()
}

/// The two body formats forms post.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    Json,
    UrlEncoded,
}

pub fn body_format(headers: &HeaderMap, accepted: &[BodyFormat]) -> Result<BodyFormat, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        .unwrap_or_default();
    let format = match content_type.as_str() {
        "application/json" => Some(BodyFormat::Json),
        "application/x-www-form-urlencoded" => Some(BodyFormat::UrlEncoded),
        _ => None,
    };
    match format {
        Some(format) if accepted.contains(&format) => Ok(format),
        _ => {
            let names: Vec<_> = accepted
                .iter()
                .map(|f| match f {
                    BodyFormat::Json => "application/json",
                    BodyFormat::UrlEncoded => "application/x-www-form-urlencoded",
                })
                .collect();
            let got = if content_type.is_empty() { "none".to_string() } else { content_type };
            Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("Content-Type must be {} (got {got})", names.join(" or ")),
            ))
        }
    }
}

/// Reads the whole body, refusing more than `limit` bytes.
pub async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body must be at most {limit} bytes"),
        )
    };
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit).await.map_err(|_| too_large())
}

/// Whether the client is a browser that wants an HTML page back (a plain HTML form post).
pub fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.split(',').any(|part| part.trim().starts_with("text/html")))
}

pub fn origin(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()).filter(|o| !o.is_empty() && *o != "null")
}

/// Adds CORS headers allowing `origin` to read the response.
pub fn allow_origin(response: &mut Response, origin: &str) {
    if let Ok(value) = HeaderValue::from_str(origin) {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

/// Answers a CORS preflight for `allowed` origins.
pub fn preflight_response(headers: &HeaderMap, allowed: impl Fn(&str) -> bool, extra_headers: &str) -> Response {
    let Some(origin) = origin(headers).filter(|o| allowed(o)) else {
        return ApiError::new(StatusCode::FORBIDDEN, "origin_not_allowed", "this origin may not call this route")
            .into_response();
    };
    let mut response = StatusCode::NO_CONTENT.into_response();
    allow_origin(&mut response, origin);
    let h = response.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST, OPTIONS"));
    if let Ok(value) = HeaderValue::from_str(&format!("content-type, accept{extra_headers}")) {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, value);
    }
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    response
}

/// The client's address as a keyed digest: enough to rate-limit, useless to identify anyone.
pub fn client_subject(state: &AppState, client: Option<ClientIp>) -> String {
    match client {
        Some(ClientIp(ip)) => keyed_digest(state.secrets.token_key(), &ip.to_string()),
        None => "unknown".to_string(),
    }
}

/// Counts a request against a fixed one-minute window; over the limit is a 429.
pub async fn enforce_rate_limit(state: &AppState, scope: &str, subject: &str, limit: u32) -> Result<(), ApiError> {
    let decision = RateLimiter::new(state.store.as_ref())
        .hit(scope, subject, limit, 60, state.clock.now())
        .await
        .map_err(|e| ApiError::internal("rate limiter unavailable", e))?;
    match decision {
        RateDecision::Allowed => Ok(()),
        RateDecision::Limited { retry_after_seconds } => Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many requests; retry in {retry_after_seconds} s"),
        )
        .with_retry_after(retry_after_seconds)),
    }
}
