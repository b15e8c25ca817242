//! `GET /v1/kpi?from=&to=&group_by=&attribution=&format=json|csv`: the KPI report of a range, from
//! final snapshots where the rollup wrote them and the live daily aggregates elsewhere.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use lead_capture::{ApiError, AppState};
use voronka_domain::errors::FieldError;
use voronka_domain::kpi::{self, KpiQuery};
use voronka_domain::repo::aggregates;

/// The parameters `GET /v1/kpi` reads; any other is refused, so a misspelt one is not ignored.
const PARAMETERS: [&str; 5] = ["from", "to", "group_by", "attribution", "format"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReportFormat {
    Json,
    Csv,
}

fn field_error(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid(vec![FieldError::new(field, "invalid", &message.into())])
}

/// The query string as parameters: each known one at most once.
fn parameters(query: Option<&str>) -> Result<BTreeMap<String, String>, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|_| field_error("query", "the query string is not valid URL encoding"))?;
    let mut params = BTreeMap::new();
    for (name, value) in pairs {
        if !PARAMETERS.contains(&name.as_str()) {
            let shown: String = name.chars().take(40).collect();
            return Err(field_error(
                &shown,
                format!("unknown parameter; the parameters are {}", PARAMETERS.join(", ")),
            ));
        }
        if params.insert(name.clone(), value).is_some() {
            return Err(field_error(&name, "given more than once"));
        }
    }
    Ok(params)
}

pub async fn read(State(state): State<AppState>, RawQuery(query): RawQuery) -> Result<Response, ApiError> {
    let mut params = parameters(query.as_deref())?;
    let format = match params.remove("format").as_deref() {
        None | Some("json") => ReportFormat::Json,
        Some("csv") => ReportFormat::Csv,
        Some(_) => return Err(field_error("format", "must be json or csv")),
    };
    let settings = &state.campaigns.settings;
    // Days are the shop's calendar days, as the aggregates count them.
    let today = aggregates::date(state.clock.now(), settings);
    let query = KpiQuery::parse(&params, today).map_err(|e| ApiError::invalid(vec![e]))?;
    let journeys: Vec<String> = state.campaigns.journeys.keys().cloned().collect();
    let inputs = kpi::load(state.store.as_ref(), settings, &query, today, &journeys)
        .await
        .map_err(|e| ApiError::internal("loading KPI inputs", e))?;
    let report = kpi::compute(&inputs, &query, settings);
    Ok(match format {
        ReportFormat::Json => Json(report).into_response(),
        ReportFormat::Csv => {
            let filename = format!("kpi-{}-{}-{}.csv", query.from, query.to, query.group_by.as_str());
            let mut response = report.rows_csv().into_response();
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
            if let Ok(disposition) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
                headers.insert(header::CONTENT_DISPOSITION, disposition);
            }
            response
        }
    })
}
