//! Ad spend as uploaded (JSON or CSV), checked row by row: every problem of every row is
//! reported with its line, so a marketer fixes a file in one go.
//!
//! Amounts are taken in the installation's currency only: there is no conversion, so a row in
//! another currency is an error rather than a silently wrong sum.

use std::collections::BTreeMap;

use jiff::civil::Date;
use serde::Serialize;
use serde_json::Value;

use crate::campaigns::Settings;
use crate::repo::spend::{SpendRow, round_cents};

/// Most rows one upload may carry.
pub const MAX_ROWS: usize = 10_000;
pub const MAX_CHANNEL_CHARS: usize = 64;
pub const MAX_CAMPAIGN_CHARS: usize = 128;
pub const MAX_AMOUNT: f64 = 1e9;
/// The columns a CSV upload's header must name, in any order.
pub const CSV_COLUMNS: [&str; 5] = ["date", "channel", "campaign", "amount", "currency"];

/// One problem of one row: the 1-based row number for JSON, the physical line (header = 1) for CSV.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    pub line: usize,
    pub field: String,
    pub message: String,
}

impl RowError {
    fn new(line: usize, field: &str, message: impl Into<String>) -> RowError {
        RowError { line, field: field.into(), message: message.into() }
    }
}

/// A row's fields as they came, before checking.
#[derive(Default)]
struct RawRow {
    line: usize,
    date: Option<String>,
    channel: Option<String>,
    campaign: Option<String>,
    amount: Option<RawAmount>,
    currency: Option<String>,
}

enum RawAmount {
    Number(f64),
    Text(String),
    /// A JSON value of the wrong type.
    Invalid,
}

/// Reads `{"rows": [...]}` or a bare array of `{date, channel, campaign?, amount, currency}`.
pub fn parse_json(body: &[u8], settings: &Settings) -> Result<Vec<SpendRow>, Vec<RowError>> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| vec![RowError::new(0, "body", format!("is not valid JSON: {e}"))])?;
    let rows = match &value {
        Value::Array(rows) => rows,
        Value::Object(object) => match object.get("rows") {
            Some(Value::Array(rows)) => rows,
            _ => return Err(vec![RowError::new(0, "rows", "must be a list of spend rows")]),
        },
        _ => return Err(vec![RowError::new(0, "body", "must be an object with `rows` or a list of rows")]),
    };
    if rows.len() > MAX_ROWS {
        return Err(vec![too_many(rows.len())]);
    }
    let mut errors = Vec::new();
    let mut raw_rows = Vec::with_capacity(rows.len());
    for (index, row) in rows.iter().enumerate() {
        let line = index + 1;
        let Some(object) = row.as_object() else {
            errors.push(RowError::new(line, "row", "must be an object"));
            continue;
        };
        let mut raw = RawRow { line, ..RawRow::default() };
        for (name, value) in object {
            let text = || match value {
                Value::String(s) => Some(s.clone()),
                _ => None,
            };
            let slot = match name.as_str() {
                "date" => &mut raw.date,
                "channel" => &mut raw.channel,
                "campaign" => {
                    if !value.is_null() && text().is_none() {
                        errors.push(RowError::new(line, "campaign", "must be a string"));
                    }
                    raw.campaign = text();
                    continue;
                }
                "currency" => &mut raw.currency,
                "amount" => {
                    raw.amount = Some(match value {
                        Value::Number(n) => n.as_f64().map_or(RawAmount::Invalid, RawAmount::Number),
                        Value::String(s) => RawAmount::Text(s.clone()),
                        _ => RawAmount::Invalid,
                    });
                    continue;
                }
                other => {
                    errors.push(RowError::new(
                        line,
                        other,
                        "is not a spend field (date, channel, campaign, amount, currency)",
                    ));
                    continue;
                }
            };
            match text() {
                Some(text) => *slot = Some(text),
                None => errors.push(RowError::new(line, name, "must be a string")),
            }
        }
        raw_rows.push(raw);
    }
    check_rows(raw_rows, settings, today(settings), errors)
}

/// Reads CSV with a header naming `date,channel,campaign,amount,currency` in any order.
pub fn parse_csv(text: &str, settings: &Settings) -> Result<Vec<SpendRow>, Vec<RowError>> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(true).from_reader(text.as_bytes());
    let header: Vec<String> = match reader.headers() {
        Ok(header) => {
            header.iter().map(|name| name.trim().trim_start_matches('\u{feff}').to_ascii_lowercase()).collect()
        }
        Err(e) => return Err(vec![RowError::new(1, "header", format!("cannot be read: {e}"))]),
    };
    let mut errors = Vec::new();
    let mut columns = BTreeMap::new();
    for (index, name) in header.iter().enumerate() {
        if !CSV_COLUMNS.contains(&name.as_str()) {
            errors.push(RowError::new(1, name, "is not a spend column (date, channel, campaign, amount, currency)"));
        } else if columns.insert(name.clone(), index).is_some() {
            errors.push(RowError::new(1, name, "is named twice in the header"));
        }
    }
    for required in CSV_COLUMNS {
        if !columns.contains_key(required) {
            errors.push(RowError::new(1, required, "is missing from the header"));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut raw_rows = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line() as usize);
                errors.push(RowError::new(line, "row", format!("cannot be read: {e}")));
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line() as usize);
        if record.iter().all(|field| field.trim().is_empty()) {
            continue;
        }
        if raw_rows.len() == MAX_ROWS {
            return Err(vec![too_many(MAX_ROWS + 1)]);
        }
        if record.len() != header.len() {
            errors.push(RowError::new(
                line,
                "row",
                format!("has {} fields where the header names {}", record.len(), header.len()),
            ));
            continue;
        }
        let field = |name: &str| record.get(columns[name]).map(str::to_string);
        raw_rows.push(RawRow {
            line,
            date: field("date"),
            channel: field("channel"),
            campaign: field("campaign"),
            amount: field("amount").map(RawAmount::Text),
            currency: field("currency"),
        });
    }
    check_rows(raw_rows, settings, today(settings), errors)
}

fn too_many(count: usize) -> RowError {
    RowError::new(0, "rows", format!("at most {MAX_ROWS} rows per upload (got {count}); split the file"))
}

fn today(settings: &Settings) -> Date {
    crate::repo::aggregates::date(jiff::Timestamp::now(), settings)
}

/// Checks every row against `today` (a date may be at most tomorrow, for time zones ahead).
fn check_rows(
    rows: Vec<RawRow>,
    settings: &Settings,
    today: Date,
    mut errors: Vec<RowError>,
) -> Result<Vec<SpendRow>, Vec<RowError>> {
    let latest = today.tomorrow().unwrap_or(today);
    let mut seen: BTreeMap<(Date, String, Option<String>), usize> = BTreeMap::new();
    let mut parsed = Vec::with_capacity(rows.len());
    for raw in rows {
        let line = raw.line;
        let mut error = |field: &str, message: String| errors.push(RowError::new(line, field, message));
        let date = match raw.date.as_deref().map(str::trim) {
            None | Some("") => {
                error("date", "is required (YYYY-MM-DD)".into());
                None
            }
            Some(text) => match text.parse::<Date>() {
                Ok(date) if text.len() == 10 && date <= latest => Some(date),
                Ok(_) if text.len() == 10 => {
                    error("date", format!("{text} is in the future (spend is reported after it is spent)"));
                    None
                }
                _ => {
                    error("date", format!("`{}` is not a date YYYY-MM-DD", shorten(text)));
                    None
                }
            },
        };
        let channel = raw.channel.as_deref().map(|c| c.trim().to_ascii_lowercase()).unwrap_or_default();
        let channel_ok = !channel.is_empty()
            && channel.chars().count() <= MAX_CHANNEL_CHARS
            && channel.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if !channel_ok {
            error("channel", format!("is required: 1 to {MAX_CHANNEL_CHARS} characters of a-z, 0-9, _ and -"));
        }
        let campaign = raw.campaign.as_deref().map(str::trim).filter(|c| !c.is_empty()).map(str::to_string);
        let campaign_ok = match &campaign {
            Some(campaign) if campaign.chars().count() > MAX_CAMPAIGN_CHARS => {
                error("campaign", format!("is longer than {MAX_CAMPAIGN_CHARS} characters"));
                false
            }
            Some(campaign) if campaign.contains('#') || campaign == "-" => {
                error("campaign", "must not contain `#` or be `-`".into());
                false
            }
            _ => true,
        };
        let amount = match raw.amount {
            None => {
                error("amount", "is required".into());
                None
            }
            Some(RawAmount::Invalid) => {
                error("amount", "must be a number".into());
                None
            }
            Some(RawAmount::Number(n)) => Some(n),
            Some(RawAmount::Text(text)) => match text.trim().parse::<f64>() {
                Ok(n) if !text.trim().is_empty() => Some(n),
                _ => {
                    error("amount", format!("`{}` is not a number (use a dot for decimals)", shorten(&text)));
                    None
                }
            },
        };
        let amount = amount.filter(|amount| {
            let ok = amount.is_finite() && (0.0..=MAX_AMOUNT).contains(amount);
            if !ok {
                error("amount", format!("must be a number from 0 to {MAX_AMOUNT:.0}"));
            }
            ok
        });
        let currency = raw.currency.as_deref().map(|c| c.trim().to_ascii_uppercase()).unwrap_or_default();
        if currency != settings.currency {
            error(
                "currency",
                format!(
                    "must be {} (the shop's currency; amounts are not converted), got `{}`",
                    settings.currency,
                    shorten(&currency)
                ),
            );
        }
        let (Some(date), Some(amount), true) =
            (date, amount, channel_ok && campaign_ok && currency == settings.currency)
        else {
            continue;
        };
        if let Some(first) = seen.insert((date, channel.clone(), campaign.clone()), line) {
            error(
                "row",
                format!(
                    "repeats date, channel and campaign of line {first} ({date}, {channel}, {}); give each once",
                    campaign.as_deref().unwrap_or("no campaign")
                ),
            );
            continue;
        }
        parsed.push(SpendRow { date, channel, campaign, amount: round_cents(amount), currency });
    }
    if errors.is_empty() {
        Ok(parsed)
    } else {
        errors.sort_by_key(|e| e.line);
        Err(errors)
    }
}

/// A value echoed in an error, cut so a huge field does not make a huge answer.
fn shorten(text: &str) -> String {
    const MAX: usize = 40;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(MAX).collect::<String>())
    }
}
