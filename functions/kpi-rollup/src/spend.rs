//! `POST /v1/spend`: ad spend rows as JSON or CSV, validated row by row, stored idempotently per
//! (date, channel, campaign), then the affected days rolled up so their snapshots count it.

use std::collections::BTreeSet;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::civil::Date;
use lead_capture::http_util::read_body;
use lead_capture::{ApiError, AppState};
use serde_json::json;
use voronka_domain::kpi::spend_input::{self, RowError};
use voronka_domain::repo::aggregates;
use voronka_domain::repo::spend::{self, SpendRow};

/// The largest body taken: 10 000 CSV rows of a long campaign name fit; more is refused unread.
pub const MAX_SPEND_BODY_BYTES: usize = 2 * 1024 * 1024;

/// Most distinct dates one upload may touch: each is rolled up before the answer, and a year and
/// a bit of daily spend in one file stays within the function's timeout.
pub const MAX_DATES_PER_UPLOAD: usize = 400;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SpendFormat {
    Json,
    Csv,
}

fn spend_format(headers: &HeaderMap) -> Result<SpendFormat, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        .unwrap_or_default();
    match content_type.as_str() {
        "application/json" => Ok(SpendFormat::Json),
        // `application/csv` and Excel's `application/vnd.ms-excel` are what some tools send for a .csv.
        "text/csv" | "application/csv" | "application/vnd.ms-excel" => Ok(SpendFormat::Csv),
        _ => {
            let got = if content_type.is_empty() { "none".to_string() } else { content_type };
            Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("Content-Type must be application/json or text/csv (got {got})"),
            ))
        }
    }
}

/// 400 with every failing row: `{"error":"invalid_rows","errors":[{line, field, message}]}`.
fn invalid_rows(errors: Vec<RowError>) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": "invalid_rows", "errors": errors }))).into_response()
}

fn request_error(field: &str, message: String) -> RowError {
    RowError { line: 0, field: field.to_string(), message }
}

pub async fn upload(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let format = spend_format(&headers)?;
    let bytes = read_body(&headers, body, MAX_SPEND_BODY_BYTES).await?;
    let settings = &state.campaigns.settings;
    let today = aggregates::date(state.clock.now(), settings);
    let parsed = match format {
        SpendFormat::Json => spend_input::parse_json(&bytes, settings, today),
        SpendFormat::Csv => match std::str::from_utf8(&bytes) {
            Ok(text) => spend_input::parse_csv(text, settings, today),
            Err(e) => Err(vec![request_error("body", format!("the CSV is not UTF-8 text: {e}"))]),
        },
    };
    let rows: Vec<SpendRow> = match parsed {
        Ok(rows) => rows,
        Err(errors) => return Ok(invalid_rows(errors)),
    };
    let dates: BTreeSet<Date> = rows.iter().map(|row| row.date).collect();
    if dates.len() > MAX_DATES_PER_UPLOAD {
        return Ok(invalid_rows(vec![request_error(
            "date",
            format!(
                "the rows cover {} dates; one upload covers at most {MAX_DATES_PER_UPLOAD} (split the file)",
                dates.len()
            ),
        )]));
    }
    // Reports read spend live, so once the rows are stored every report shows them: no rollup
    // has to run (or can fail, or race another upload) in this request.
    spend::upsert(state.store.as_ref(), &rows, state.clock.now())
        .await
        .map_err(|e| ApiError::internal("storing ad spend", e))?;
    tracing::info!(rows = rows.len(), dates = dates.len(), "ad spend upserted");
    Ok(Json(json!({ "upserted": rows.len(), "dates": dates.iter().map(Date::to_string).collect::<Vec<_>>() }))
        .into_response())
}
