//! kpi-rollup: KPI snapshots on a schedule, and the admin routes that take ad spend and read KPIs.
//!
//! Two Lambdas share this library. `kpi-rollup` (EventBridge Scheduler, hourly and nightly) calls
//! `scheduled`, which runs the domain's `kpi::rollup::roll_up`; the local stack's workers call the
//! same function on a timer. `kpi-api` serves `routes()` (all admin routes, behind lead-capture's
//! guard) through lead-capture's API Gateway adapter; the local stack merges `routes_router` into
//! its server. The handlers are thin: parsing, validation and the KPIs themselves are the
//! domain's (`kpi::spend_input`, `kpi::load`, `kpi::compute`).

mod report;
mod spend;

use axum::Router;
use http::Method;
use lead_capture::{AppState, Route, admin_route};
use serde_json::Value;
use voronka_domain::campaigns::settings::Settings;
use voronka_domain::deps::Ports;
use voronka_domain::kpi::rollup::{RollupKind, RollupOutcome, roll_up};
use voronka_domain::ports::StoreError;

pub use spend::{MAX_DATES_PER_UPLOAD, MAX_SPEND_BODY_BYTES};

/// Every route kpi-api serves; `tests/api_routes.rs` holds the template's `HttpApi` events of
/// the KpiApi function to this list, each with IAM authorisation.
pub fn routes() -> Vec<Route> {
    vec![admin_route(Method::POST, "/v1/spend", spend::upload), admin_route(Method::GET, "/v1/kpi", report::read)]
}

/// The (method, path) of every route, as API Gateway spells them.
pub fn route_table() -> Vec<(String, String)> {
    routes().into_iter().map(|r| (r.method.to_string(), r.path.to_string())).collect()
}

/// The (method, path) of every admin route (all of them).
pub fn admin_route_table() -> Vec<(String, String)> {
    routes().into_iter().filter(|r| r.admin).map(|r| (r.method.to_string(), r.path.to_string())).collect()
}

/// The KPI routes alone, each behind the admin guard, to merge into the local server's router.
pub fn routes_router(state: AppState) -> Router {
    lead_capture::routes_router(routes(), state)
}

/// The KPI routes as the Lambda serves them: anything else is a JSON 404 or 405.
pub fn router(state: AppState) -> Router {
    routes_router(state)
        .fallback(lead_capture::http_util::not_found)
        .method_not_allowed_fallback(lead_capture::http_util::method_not_allowed)
}

/// Why a scheduled invocation did nothing.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "the scheduled event names no rollup: expected {{\"kind\": \"hourly\"}} or {{\"kind\": \"nightly\"}} \
         (the schedule's Input), or an EventBridge event with detail.kind; {0}"
    )]
    UnknownKind(String),
    #[error("the rollup failed (it is idempotent: a retry is safe): {0}")]
    Store(#[from] StoreError),
}

/// The rollup a scheduled event asks for. EventBridge Scheduler delivers the schedule's `Input`
/// as the whole event (`{"kind":"hourly"}`); an EventBridge rule delivers an envelope whose
/// `detail` (an object, or JSON text) carries the same `kind`. Both are read, nothing else is.
pub fn rollup_kind(event: &Value) -> Result<RollupKind, ScheduleError> {
    let detail = match event.get("detail") {
        Some(Value::String(text)) => serde_json::from_str::<Value>(text)
            .map_err(|e| ScheduleError::UnknownKind(format!("detail is not JSON: {e}")))?,
        Some(detail) => detail.clone(),
        None => event.clone(),
    };
    match detail.get("kind") {
        Some(Value::String(kind)) if kind == "hourly" => Ok(RollupKind::Hourly),
        Some(Value::String(kind)) if kind == "nightly" => Ok(RollupKind::Nightly),
        Some(Value::String(kind)) => Err(ScheduleError::UnknownKind(format!("kind is `{}`", truncated(kind)))),
        Some(other) => Err(ScheduleError::UnknownKind(format!("kind is not text but {}", json_type(other)))),
        None => Err(ScheduleError::UnknownKind("the event has no `kind`".to_string())),
    }
}

/// One scheduled run: the rollup the event names, at the clock's now. What the kpi-rollup Lambda
/// runs per invocation and the local stack's workers run on their timer.
pub async fn scheduled(ports: &Ports, settings: &Settings, event: &Value) -> Result<RollupOutcome, ScheduleError> {
    let kind = rollup_kind(event)?;
    let label = match kind {
        RollupKind::Hourly => "hourly",
        RollupKind::Nightly => "nightly",
        RollupKind::Days(_) => "days",
    };
    let outcome = match roll_up(ports.store.as_ref(), settings, kind, ports.clock.now()).await {
        Ok(outcome) => outcome,
        Err(error) => {
            voronka_telemetry::metrics::emit("kpi-rollup", &[("RollupFailed", 1.0)]);
            return Err(error.into());
        }
    };
    tracing::info!(kind = label, days = outcome.days.len(), items_read = outcome.items_read, "KPI rollup");
    voronka_telemetry::metrics::emit(
        "kpi-rollup",
        &[("RollupsRun", 1.0), ("DaysRolledUp", outcome.days.len() as f64), ("ItemsRead", outcome.items_read as f64)],
    );
    Ok(outcome)
}

/// A client's text in an error message, cut short so a hostile event cannot flood the logs.
fn truncated(text: &str) -> String {
    const MAX: usize = 40;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(MAX).collect::<String>())
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_schedules_input_and_an_eventbridge_envelope_both_name_the_kind() {
        assert!(matches!(rollup_kind(&json!({"kind": "hourly"})), Ok(RollupKind::Hourly)));
        assert!(matches!(rollup_kind(&json!({"kind": "nightly"})), Ok(RollupKind::Nightly)));
        let envelope = json!({"detail-type": "Scheduled Event", "detail": {"kind": "nightly"}});
        assert!(matches!(rollup_kind(&envelope), Ok(RollupKind::Nightly)));
        let text_detail = json!({"detail-type": "Scheduled Event", "detail": "{\"kind\":\"hourly\"}"});
        assert!(matches!(rollup_kind(&text_detail), Ok(RollupKind::Hourly)));
    }

    #[test]
    fn anything_else_is_refused_with_what_was_wrong() {
        for (event, says) in [
            (json!({}), "no `kind`"),
            (json!({"detail": "{}"}), "no `kind`"),
            (json!({"detail": "not json"}), "detail is not JSON"),
            (json!({"kind": "weekly"}), "kind is `weekly`"),
            (json!({"kind": 7}), "not text but a number"),
            (json!("hourly"), "no `kind`"),
            (json!({"kind": "x".repeat(10_000)}), "…"),
        ] {
            let error = rollup_kind(&event).err().unwrap_or_else(|| panic!("{event} was accepted")).to_string();
            assert!(error.contains(says), "{error}");
            assert!(error.contains("\"kind\": \"hourly\""), "the message says what is expected: {error}");
            assert!(error.len() < 400, "bounded: {error}");
        }
    }
}
