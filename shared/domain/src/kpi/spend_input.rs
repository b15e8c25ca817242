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
pub const MAX_CHANNEL_BYTES: usize = crate::model::attribution::MAX_UTM_BYTES;
pub const MAX_CAMPAIGN_CHARS: usize = 128;
pub const MAX_AMOUNT: f64 = 1e9;
/// The columns a CSV upload's header must name, in any order.
pub const CSV_COLUMNS: [&str; 5] = ["date", "channel", "campaign", "amount", "currency"];
/// Columns a CSV must have; `campaign` defaults to none and `currency` to the shop's.
pub const REQUIRED_CSV_COLUMNS: [&str; 3] = ["date", "channel", "amount"];

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

/// Reads a JSON upload (`{"rows": [...]}` or a bare list). `today` is the caller's clock's date in
/// the installation's time zone: a row may be dated at most tomorrow.
pub fn parse_json(body: &[u8], settings: &Settings, today: Date) -> Result<Vec<SpendRow>, Vec<RowError>> {
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
                        &shorten(other),
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
    check_rows(raw_rows, settings, today, errors)
}

/// Reads a CSV upload with a header line; `today` as for `parse_json`.
pub fn parse_csv(text: &str, settings: &Settings, today: Date) -> Result<Vec<SpendRow>, Vec<RowError>> {
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
    // A sheet without campaigns, or in the shop's currency only, may leave those columns out.
    for required in REQUIRED_CSV_COLUMNS {
        if !columns.contains_key(required) {
            errors.push(RowError::new(1, required, "is missing from the header"));
        }
    }
    if !errors.is_empty() {
        return Err(capped(errors));
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
        let field = |name: &str| columns.get(name).and_then(|&index| record.get(index)).map(str::to_string);
        raw_rows.push(RawRow {
            line,
            date: field("date"),
            channel: field("channel"),
            campaign: field("campaign"),
            amount: field("amount").map(RawAmount::Text),
            currency: field("currency"),
        });
    }
    check_rows(raw_rows, settings, today, errors)
}

fn too_many(count: usize) -> RowError {
    RowError::new(0, "rows", format!("at most {MAX_ROWS} rows per upload (got {count}); split the file"))
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
        // Lowercased as a touch's channel is (`utm_source`), so `vk.com` or `yandex.direct` spend
        // lands on the same row as the customers that channel brought.
        let channel = raw.channel.as_deref().map(|c| c.trim().to_lowercase()).unwrap_or_default();
        let channel_ok = !channel.is_empty()
            && channel.len() <= MAX_CHANNEL_BYTES
            && !channel.chars().any(|c| c == '#' || c.is_control());
        if !channel_ok {
            error("channel", format!("is required: 1 to {MAX_CHANNEL_BYTES} bytes, without `#` or control characters"));
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
        // Left out, the currency is the shop's; given, it must be (there is no conversion).
        let currency = match raw.currency.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
            Some(given) => given.to_ascii_uppercase(),
            None => settings.currency.clone(),
        };
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
        Err(capped(errors))
    }
}

/// Most errors listed in one answer: a file of garbage lines must not make an answer larger than
/// the file (API Gateway refuses responses over 6 MB). The rest are counted in a last entry.
pub const MAX_LISTED_ERRORS: usize = 200;

fn capped(mut errors: Vec<RowError>) -> Vec<RowError> {
    if errors.len() > MAX_LISTED_ERRORS {
        let more = errors.len() - MAX_LISTED_ERRORS;
        errors.truncate(MAX_LISTED_ERRORS);
        errors.push(RowError::new(0, "rows", format!("and {more} more errors; fix these and upload again")));
    }
    errors
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

#[cfg(test)]
mod tests {
    /// Every fixture date is in the past of this day.
    fn test_today() -> Date {
        jiff::civil::date(2027, 1, 15)
    }

    use super::*;

    fn settings() -> Settings {
        Settings::parse("settings.toml", include_str!("../../../campaigns/settings.toml")).unwrap()
    }

    fn row(date: &str, channel: &str, campaign: Option<&str>, amount: f64) -> SpendRow {
        SpendRow {
            date: date.parse().unwrap(),
            channel: channel.into(),
            campaign: campaign.map(str::to_string),
            amount,
            currency: "RUB".into(),
        }
    }

    /// (line, field) of every error.
    fn located(errors: &[RowError]) -> Vec<(usize, &str)> {
        errors.iter().map(|e| (e.line, e.field.as_str())).collect()
    }

    #[test]
    fn json_rows_in_an_object_or_a_bare_list_are_read_and_normalised() {
        let body = br#"{"rows": [
            {"date": "2026-03-02", "channel": "VK", "campaign": "autumn", "amount": 100.456, "currency": "rub"},
            {"date": "2026-03-02", "channel": "paid_search", "amount": "20.5", "currency": "RUB"},
            {"date": "2026-03-02", "channel": "organic", "campaign": null, "amount": 0, "currency": "RUB"}
        ]}"#;
        let rows = parse_json(body, &settings(), test_today()).unwrap();
        assert_eq!(
            rows,
            [
                row("2026-03-02", "vk", Some("autumn"), 100.46),
                row("2026-03-02", "paid_search", None, 20.5),
                row("2026-03-02", "organic", None, 0.0),
            ]
        );
        let bare = br#"[{"date": "2026-03-02", "channel": "vk", "amount": 1, "currency": "RUB"}]"#;
        assert_eq!(parse_json(bare, &settings(), test_today()).unwrap(), [row("2026-03-02", "vk", None, 1.0)]);
    }

    #[test]
    fn a_file_of_garbage_gets_a_bounded_answer() {
        let mut text = String::from("date,channel,campaign,amount,currency\n");
        for _ in 0..5000 {
            text.push_str("x\n");
        }
        let errors = parse_csv(&text, &settings(), test_today()).unwrap_err();
        assert_eq!(errors.len(), MAX_LISTED_ERRORS + 1);
        let last = errors.last().unwrap();
        assert_eq!((last.line, last.field.as_str()), (0, "rows"));
        assert!(last.message.starts_with("and "), "{last:?}");
    }

    #[test]
    fn every_bad_json_row_is_reported_with_its_row_number_and_field() {
        let body = br#"{"rows": [
            {"date": "2026-03-02", "channel": "vk", "amount": 1, "currency": "RUB"},
            {"date": "2026-02-30", "channel": "v#k", "amount": -1, "currency": "USD"},
            {"date": "2999-01-01", "channel": "vk", "campaign": "a#b", "amount": 1e10, "currency": "RUB"},
            {"channel": "", "amount": "lots", "currency": "RUB", "cost": 3},
            "not a row",
            {"date": "2026-03-02", "channel": "VK", "amount": 2, "currency": "RUB"}
        ]}"#;
        let errors = parse_json(body, &settings(), test_today()).unwrap_err();
        assert_eq!(
            located(&errors),
            [
                (2, "date"),
                (2, "channel"),
                (2, "amount"),
                (2, "currency"),
                (3, "date"),
                (3, "campaign"),
                (3, "amount"),
                (4, "cost"),
                (4, "date"),
                (4, "channel"),
                (4, "amount"),
                (5, "row"),
                (6, "row"),
            ]
        );
        assert!(errors[3].message.contains("RUB") && errors[3].message.contains("not converted"), "{:?}", errors[3]);
        assert!(errors[4].message.contains("future"), "{:?}", errors[4]);
        assert!(errors[12].message.contains("line 1"), "a duplicate names the first line: {:?}", errors[12]);
    }

    #[test]
    fn the_future_is_judged_by_the_given_day() {
        let body = br#"[{"date": "2027-01-16", "channel": "vk", "amount": 1, "currency": "RUB"},
                        {"date": "2027-01-17", "channel": "vk", "amount": 1, "currency": "RUB"}]"#;
        let today = "2027-01-15".parse().unwrap();
        // Tomorrow is allowed (a zone ahead of the shop's may already be there); the day after is not.
        assert_eq!(located(&parse_json(body, &settings(), today).unwrap_err()), [(2, "date")]);
        let csv = "date,channel,campaign,amount,currency\n2027-01-16,vk,,1,RUB\n";
        assert_eq!(parse_csv(csv, &settings(), today).unwrap().len(), 1);
        assert!(parse_csv(csv, &settings(), "2027-01-14".parse().unwrap()).is_err());
    }

    #[test]
    fn a_json_body_that_is_not_rows_is_one_error_naming_it() {
        for (body, field) in [(&b"{"[..], "body"), (b"{\"rows\": 3}", "rows"), (b"42", "body")] {
            let errors = parse_json(body, &settings(), test_today()).unwrap_err();
            assert_eq!(located(&errors), [(0, field)]);
        }
        let too_many = format!(
            "[{}]",
            vec![r#"{"date":"2026-03-02","channel":"vk","amount":1,"currency":"RUB"}"#; MAX_ROWS + 1].join(",")
        );
        assert_eq!(located(&parse_json(too_many.as_bytes(), &settings(), test_today()).unwrap_err()), [(0, "rows")]);
    }

    #[test]
    fn csv_with_columns_in_any_order_is_read_and_errors_name_the_physical_line() {
        let text = "currency,amount,campaign,channel,date\n\
                    RUB,100.5,autumn,vk,2026-03-02\n\
                    \n\
                    RUB,7,,organic,2026-03-02\n\
                    RUB,\"1,5\",\"spring, sale\",vk,2026-03-03\n";
        let errors = parse_csv(text, &settings(), test_today()).unwrap_err();
        // Line 5: a comma decimal inside quotes is not a number.
        assert_eq!(located(&errors), [(5, "amount")]);
        let text = text.replace("\"1,5\"", "1.5");
        assert_eq!(
            parse_csv(&text, &settings(), test_today()).unwrap(),
            [
                row("2026-03-02", "vk", Some("autumn"), 100.5),
                row("2026-03-02", "organic", None, 7.0),
                row("2026-03-03", "vk", Some("spring, sale"), 1.5),
            ]
        );
    }

    #[test]
    fn several_bad_csv_rows_and_duplicates_are_all_reported() {
        let text = "date,channel,campaign,amount,currency\n\
                    2026-03-02,vk,autumn,10,RUB\n\
                    03/02/2026,vk,autumn,10,RUB\n\
                    2026-03-02,vk,autumn,11,RUB\n\
                    2026-03-02,vk,autumn,NaN,EUR\n\
                    2026-03-02,vk\n";
        let errors = parse_csv(text, &settings(), test_today()).unwrap_err();
        assert_eq!(located(&errors), [(3, "date"), (4, "row"), (5, "amount"), (5, "currency"), (6, "row")]);
        assert!(errors[1].message.contains("line 2"), "{:?}", errors[1]);
    }

    #[test]
    fn a_csv_header_must_name_each_column_once() {
        let errors = parse_csv("date,channel,amount,amount,cost\n", &settings(), test_today()).unwrap_err();
        assert_eq!(located(&errors), [(1, "amount"), (1, "cost")]);
        let errors = parse_csv("campaign,currency\n", &settings(), test_today()).unwrap_err();
        assert_eq!(located(&errors), [(1, "date"), (1, "channel"), (1, "amount")]);
        // Without campaign and currency columns: no campaign, the shop's currency.
        let rows = parse_csv("date,channel,amount\n2026-03-02,vk,10\n", &settings(), test_today()).unwrap();
        assert_eq!(rows, [row("2026-03-02", "vk", None, 10.0)]);
        let json = br#"[{"date": "2026-03-02", "channel": "vk", "amount": 10}]"#;
        assert_eq!(parse_json(json, &settings(), test_today()).unwrap(), rows, "JSON may leave the currency out too");
        let many = format!("date,channel,campaign,amount,currency\n{}", "2026-03-02,vk,,1,RUB\n".repeat(MAX_ROWS + 1));
        assert_eq!(located(&parse_csv(&many, &settings(), test_today()).unwrap_err()), [(0, "rows")]);
    }
}
