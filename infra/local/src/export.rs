//! `voronka export`: data for people and BI tools, as JSON lines or CSV with a fixed header.
//!
//! Events come from the event log (the only reader of raw events), one calendar day at a time in
//! the aggregates' day, so an export of a range counts what the KPIs of that range count.
//! Addresses leave only with contacts: an exported event names its subject (the contact id, or
//! `anon:<id>`) instead of carrying the email or phone it arrived with.

use std::io::Write;

use anyhow::{Result, bail};
use jiff::civil::Date;
use serde_json::{Value, json};
use voronka_domain::model::{Contact, Touch};
use voronka_domain::repo::ContactRepository;
use voronka_domain::repo::event_log::{self, LogEntry};

use crate::stack::Stack;

/// Longest range one export reads, in days (a bit more than the event log keeps by default).
pub const MAX_EXPORT_DAYS: i64 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Jsonl,
}

/// Calendar days, both included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateRange {
    pub from: Date,
    pub to: Date,
}

impl DateRange {
    /// Checks the order and the length of the range, naming the option that is wrong.
    pub fn new(from: Date, to: Date) -> Result<DateRange> {
        if from > to {
            bail!("--from ({from}) is after --to ({to})");
        }
        if i64::from(to.since(from)?.get_days()) + 1 > MAX_EXPORT_DAYS {
            bail!("--from..--to spans more than {MAX_EXPORT_DAYS} days; export in parts");
        }
        Ok(DateRange { from, to })
    }

    pub fn days(&self) -> impl Iterator<Item = Date> + use<> {
        let to = self.to;
        self.from.series(jiff::Span::new().days(1)).take_while(move |day| *day <= to)
    }

    pub fn contains(&self, date: Date) -> bool {
        self.from <= date && date <= self.to
    }
}

/// The fixed header of `export events --format csv`.
pub const EVENT_CSV_HEADER: [&str; 13] = [
    "date",
    "occurred_at",
    "received_at",
    "subject",
    "source",
    "event_id",
    "type",
    "trusted",
    "contact_id",
    "anonymous_id",
    "order_id",
    "revenue",
    "properties",
];

/// The fixed header of `export contacts --format csv`.
pub const CONTACT_CSV_HEADER: [&str; 22] = [
    "id",
    "email",
    "first_name",
    "last_name",
    "locale",
    "time_zone",
    "stage",
    "fit_score",
    "engagement_score",
    "created_at",
    "first_touch_at",
    "first_touch_channel",
    "first_touch_campaign",
    "last_touch_at",
    "last_touch_channel",
    "last_touch_campaign",
    "orders",
    "revenue",
    "currency",
    "first_order_at",
    "last_order_at",
    "anonymous_ids",
];

/// One CSV field: the domain's (RFC 4180 quoting, and a text a spreadsheet would run as a
/// formula defused), quoted also at edge spaces so BI tools keep them.
pub fn csv_field(value: &str) -> String {
    let field = voronka_domain::kpi::csv_field(value);
    if !field.starts_with('"') && (field.starts_with(' ') || field.ends_with(' ')) {
        format!("\"{field}\"")
    } else {
        field
    }
}

fn csv_line(out: &mut dyn Write, fields: &[String]) -> Result<()> {
    let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
    // CRLF as RFC 4180 says; every BI tool reads it.
    write!(out, "{}\r\n", line.join(","))?;
    Ok(())
}

/// Every logged event of the range, oldest day first and in time order within a day. Returns how
/// many were written.
pub async fn events(stack: &Stack, out: &mut dyn Write, format: Format, range: DateRange) -> Result<usize> {
    let store = stack.state.store.as_ref();
    if format == Format::Csv {
        csv_line(out, &EVENT_CSV_HEADER.map(str::to_string))?;
    }
    let mut written = 0;
    for day in range.days() {
        // One day at a time: its shards are merged into time order in memory.
        for entry in &event_log::entries_on(store, day).await? {
            match format {
                Format::Jsonl => writeln!(out, "{}", serde_json::to_string(&event_record(day, entry))?)?,
                Format::Csv => csv_line(out, &event_row(day, entry))?,
            }
            written += 1;
        }
    }
    Ok(written)
}

/// The exported shape of an event: the event as it was on the queue with its day and subject,
/// less the address it may have arrived with.
pub fn event_record(day: Date, entry: &LogEntry) -> Value {
    let mut value = serde_json::to_value(&entry.event).expect("events serialise");
    if let Some(map) = value.as_object_mut() {
        if let Some(contact) = map.get_mut("contact").and_then(Value::as_object_mut) {
            contact.remove("email");
            contact.remove("phone");
        }
        map.insert("date".into(), json!(day.to_string()));
        map.insert("subject".into(), json!(entry.subject));
    }
    value
}

fn event_row(day: Date, entry: &LogEntry) -> Vec<String> {
    let event = &entry.event;
    let text = |name: &str| match event.properties.get(name) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    vec![
        day.to_string(),
        event.occurred_at.to_string(),
        event.received_at.to_string(),
        entry.subject.clone(),
        event.source.as_str().to_string(),
        event.event_id.clone(),
        event.event_type.to_string(),
        event.trusted.to_string(),
        event.contact.contact_id.clone().unwrap_or_default(),
        event.contact.anonymous_id.clone().unwrap_or_default(),
        text("order_id"),
        text("revenue"),
        Value::Object(event.properties.clone()).to_string(),
    ]
}

/// Every contact (created within `range`, when given), oldest first.
pub async fn contacts_as(
    stack: &Stack,
    out: &mut dyn Write,
    format: Format,
    range: Option<DateRange>,
) -> Result<usize> {
    let settings = &stack.state.campaigns.settings;
    let mut contacts = ContactRepository::new(stack.state.store.as_ref()).list_all().await?;
    if let Some(range) = range {
        contacts.retain(|c| range.contains(voronka_domain::repo::aggregates::date(c.created_at, settings)));
    }
    if format == Format::Csv {
        csv_line(out, &CONTACT_CSV_HEADER.map(str::to_string))?;
    }
    for contact in &contacts {
        match format {
            Format::Jsonl => writeln!(out, "{}", serde_json::to_string(&contact_record(contact))?)?,
            Format::Csv => csv_line(out, &contact_row(contact))?,
        }
    }
    Ok(contacts.len())
}

/// Every contact as one JSON object per line, oldest first.
pub async fn contacts(stack: &Stack, out: &mut dyn Write) -> Result<usize> {
    contacts_as(stack, out, Format::Jsonl, None).await
}

/// The exported shape: the contact as stored, less internal bookkeeping.
pub fn contact_record(contact: &Contact) -> serde_json::Value {
    let mut value = serde_json::to_value(contact).expect("contacts serialise");
    if let Some(map) = value.as_object_mut() {
        map.remove("recent_submission_ids");
        map.remove("version");
        if let Some(email) = &contact.email {
            map.insert("email".into(), json!(email.as_typed()));
        }
    }
    value
}

fn contact_row(contact: &Contact) -> Vec<String> {
    let touch = |touch: &Option<Touch>| match touch {
        Some(t) => [t.at.to_string(), t.channel.clone(), t.campaign.clone().unwrap_or_default()],
        None => [String::new(), String::new(), String::new()],
    };
    let [first_at, first_channel, first_campaign] = touch(&contact.first_touch);
    let [last_at, last_channel, last_campaign] = touch(&contact.last_touch);
    let orders = &contact.orders;
    let optional = |t: Option<jiff::Timestamp>| t.map(|t| t.to_string()).unwrap_or_default();
    vec![
        contact.id.clone(),
        contact.email.as_ref().map(|e| e.as_typed().to_string()).unwrap_or_default(),
        contact.first_name.clone().unwrap_or_default(),
        contact.last_name.clone().unwrap_or_default(),
        contact.locale.clone(),
        contact.time_zone.clone(),
        contact.stage.as_str().to_string(),
        contact.fit_score.to_string(),
        contact.engagement_score.to_string(),
        contact.created_at.to_string(),
        first_at,
        first_channel,
        first_campaign,
        last_at,
        last_channel,
        last_campaign,
        orders.orders.to_string(),
        format!("{:.2}", orders.revenue_minor as f64 / 100.0),
        orders.currency.clone().unwrap_or_default(),
        optional(orders.first_order_at),
        optional(orders.last_order_at),
        contact.anonymous_ids.join(" "),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_only_when_they_must_be() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_field(" edge"), "\" edge\"");
        assert_eq!(csv_field(""), "");
    }

    #[test]
    fn a_range_is_ordered_and_bounded() {
        let day = |d: &str| d.parse::<Date>().unwrap();
        let range = DateRange::new(day("2026-02-27"), day("2026-03-02")).unwrap();
        assert_eq!(range.days().count(), 4);
        assert!(DateRange::new(day("2026-03-02"), day("2026-03-01")).unwrap_err().to_string().contains("--from"));
        assert!(DateRange::new(day("2020-01-01"), day("2026-03-01")).is_err());
    }
}
