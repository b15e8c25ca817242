//! The event log: every event the evaluator processes, as it was on the queue, written in the
//! event's own transaction (so exactly once, with the processed marker) for the contact page's
//! timeline and for `voronka export events`. KPIs never read it: they read the aggregates.
//!
//! Items: `EVLOG#<subject>` / `<occurred_at, RFC 3339 UTC with nanoseconds>#<dedupe key>`, the
//! subject being a contact id or `anon:<id>`; attributes `event` (the event's JSON text),
//! `subject`, a `ttl` of occurred_at + the retention, and in `gsi1` under
//! `EVLOGDAY#<date>#<shard>` (the aggregates' calendar day, and one of `DAY_SHARDS` picked by the
//! dedupe key) with the same sort key. One partition per day would take every event's write in
//! the index, a hot key that throttles the table's writes with it (DynamoDB throttles a base
//! write whose index cannot take it); sharded, a day is read shard by shard and merged in time
//! order.
//!
//! What is logged is the event less what the subject already says: the address it arrived with
//! is dropped (the contact holds it, and erasing the contact must not leave it here), and
//! properties too large for one item are replaced by a marker, so a large event can never make
//! its own transaction fail.
//!
//! The sort key ends in the dedupe key (`<source>:<event_id>`) rather than the bare event id:
//! ids are unique only within their source, and the dedupe key is what makes a redelivered event
//! land on the same item.

use jiff::civil::Date;
use jiff::{SignedDuration, Timestamp};
use serde_json::json;

use crate::campaigns::Settings;
use crate::journeys::definition::stable_hash;
use crate::model::Event;
use crate::ports::{Cursor, Index, Item, Key, Query, Store, StoreError, TransactOp};
use crate::repo::aggregates;

const PARTITION_PREFIX: &str = "EVLOG#";
const DAY_PREFIX: &str = "EVLOGDAY#";
const EVENT: &str = "event";
const SUBJECT: &str = "subject";

/// How long events are kept when the settings do not say (`[kpi] event_log_days`).
pub const DEFAULT_RETENTION_DAYS: u32 = 400;
/// Most events one timeline read returns.
pub const MAX_TIMELINE: usize = 500;
/// Items one page of a day's events holds; a day is read page by page.
const DAY_PAGE: u32 = 500;
/// Index partitions a day's events are spread over.
pub const DAY_SHARDS: u64 = 16;
/// Largest logged event JSON: well inside DynamoDB's 400 KB item, with room for the keys.
pub const MAX_LOGGED_EVENT_BYTES: usize = 64 * 1024;
/// Top-level property names that carry a person's address; the subject links to the contact.
const PERSONAL_PROPERTIES: [&str; 2] = ["email", "phone"];

/// One logged event and whom it was filed under.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    /// The contact id, or `anon:<id>` for a visitor not identified when the event was processed.
    pub subject: String,
    pub event: Event,
}

/// Fixed width (nanoseconds, `Z`), so sort keys order by time whatever the precision of the
/// instant.
fn sort_key_time(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%S.%9fZ").to_string()
}

fn key(subject: &str, event: &Event) -> Key {
    Key::new(
        format!("{PARTITION_PREFIX}{subject}"),
        format!("{}#{}", sort_key_time(event.occurred_at), event.dedupe_key()),
    )
}

fn day_partition(day: Date, shard: u64) -> String {
    format!("{DAY_PREFIX}{day}#{shard:02}")
}

/// The event as logged: without the address it arrived with, and with oversized properties
/// replaced by `{"truncated": true}`.
fn logged_text(event: &Event) -> String {
    let mut logged = event.clone();
    logged.contact.email = None;
    for name in PERSONAL_PROPERTIES {
        logged.properties.remove(name);
    }
    let text = serde_json::to_string(&logged).expect("events serialise");
    if text.len() <= MAX_LOGGED_EVENT_BYTES {
        return text;
    }
    logged.properties = serde_json::Map::from_iter([("truncated".to_string(), json!(true))]);
    serde_json::to_string(&logged).expect("events serialise")
}

/// The log item of an event processed for `subject`.
pub fn entry_item(event: &Event, subject: &str, settings: &Settings, retention_days: u32) -> Item {
    let key = key(subject, event);
    let day = aggregates::date(event.occurred_at, settings);
    let shard = stable_hash(&event.dedupe_key()) % DAY_SHARDS;
    let expires_at = event.occurred_at + SignedDuration::from_hours(24 * i64::from(retention_days));
    Item::new(&key, json!({ EVENT: logged_text(event), SUBJECT: subject }))
        .with_gsi1(day_partition(day, shard), key.sk.clone())
        .with_ttl(expires_at.as_second())
}

/// The log write for the event's transaction. Unconditional: a redelivery that got this far
/// writes the same item under the same key (and the processed marker refuses it anyway).
pub fn entry_op(event: &Event, subject: &str, settings: &Settings, retention_days: u32) -> TransactOp {
    TransactOp::Put { item: entry_item(event, subject, settings, retention_days), condition: None }
}

fn read_entry(item: &Item) -> Option<LogEntry> {
    let parsed = item.get_str(EVENT).and_then(|text| serde_json::from_str::<Event>(text).ok());
    let Some(event) = parsed else {
        // An item this version cannot read (a newer event shape): skipped, named by its key only.
        tracing::warn!(sk = item.get_str("sk").unwrap_or_default(), "an event log item does not parse");
        return None;
    };
    let subject = item
        .get_str(SUBJECT)
        .map(str::to_string)
        .or_else(|| item.get_str("pk").and_then(|pk| pk.strip_prefix(PARTITION_PREFIX)).map(str::to_string))?;
    Some(LogEntry { subject, event })
}

/// The subject's most recent events, newest first, at most `limit` (capped at `MAX_TIMELINE`).
pub async fn timeline(store: &dyn Store, subject: &str, limit: usize) -> Result<Vec<Event>, StoreError> {
    let limit = limit.min(MAX_TIMELINE);
    let mut events = Vec::with_capacity(limit);
    let mut query = Query::partition(Index::Table, format!("{PARTITION_PREFIX}{subject}")).backward();
    while events.len() < limit {
        query.limit = Some((limit - events.len()) as u32);
        let page = store.query(query.clone()).await?;
        events.extend(page.items.iter().filter_map(read_entry).map(|entry| entry.event));
        match page.next {
            Some(cursor) => query.start_after = Some(cursor),
            None => break,
        }
    }
    events.truncate(limit);
    Ok(events)
}

/// One page of one shard of a day's logged events, in time order, and where the next page
/// starts.
pub async fn entries_on_page(
    store: &dyn Store,
    date: Date,
    shard: u64,
    start_after: Option<Cursor>,
) -> Result<(Vec<LogEntry>, Option<Cursor>), StoreError> {
    let mut query = Query::partition(Index::Gsi1, day_partition(date, shard)).limit(DAY_PAGE);
    query.start_after = start_after;
    let page = store.query(query).await?;
    Ok((page.items.iter().filter_map(read_entry).collect(), page.next))
}

/// Every logged event of a calendar day (the aggregates' day), in time order, with its subject.
/// Holds the day in memory to merge its shards: a day of the reference workload (about 35 000
/// events) is some tens of megabytes.
pub async fn entries_on(store: &dyn Store, date: Date) -> Result<Vec<LogEntry>, StoreError> {
    let mut entries = Vec::new();
    for shard in 0..DAY_SHARDS {
        let mut cursor = None;
        loop {
            let (page, next) = entries_on_page(store, date, shard, cursor).await?;
            entries.extend(page);
            match next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
    }
    entries.sort_by_key(|entry| (entry.event.occurred_at, entry.event.dedupe_key()));
    Ok(entries)
}

/// Every logged event of a calendar day, in time order.
pub async fn events_on(store: &dyn Store, date: Date) -> Result<Vec<Event>, StoreError> {
    Ok(entries_on(store, date).await?.into_iter().map(|entry| entry.event).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ContactRef, EventSource, EventType};

    fn event(id: &str, at: &str) -> Event {
        Event {
            event_id: id.into(),
            event_type: EventType::PageView,
            contact: ContactRef { anonymous_id: Some("v1".into()), ..Default::default() },
            occurred_at: at.parse().unwrap(),
            received_at: at.parse().unwrap(),
            properties: serde_json::Map::new(),
            trusted: false,
            source: EventSource::Browser,
        }
    }

    #[test]
    fn the_item_is_keyed_by_subject_time_and_dedupe_key_and_expires_after_the_retention() {
        let settings = Settings::parse("settings.toml", include_str!("../../../campaigns/settings.toml")).unwrap();
        let whole = event("e1", "2026-03-01T12:00:00Z");
        let item = entry_item(&whole, "anon:v1", &settings, 400);
        assert_eq!(item.key(), Some(Key::new("EVLOG#anon:v1", "2026-03-01T12:00:00.000000000Z#browser:e1")));
        assert_eq!(item.get_str("gsi1sk"), item.get_str("sk"));
        let day = aggregates::date(whole.occurred_at, &settings);
        let shard = stable_hash("browser:e1") % DAY_SHARDS;
        assert_eq!(item.get_str("gsi1pk"), Some(format!("EVLOGDAY#{day}#{shard:02}").as_str()));
        assert_eq!(item.get_i64("ttl"), Some(whole.occurred_at.as_second() + 400 * 86_400));
        assert_eq!(read_entry(&item), Some(LogEntry { subject: "anon:v1".into(), event: whole.clone() }));

        // Sort keys order by time whatever the instant's precision.
        let fraction = entry_item(&event("e0", "2026-03-01T12:00:00.5Z"), "anon:v1", &settings, 400);
        let next_second = entry_item(&event("e0", "2026-03-01T12:00:01Z"), "anon:v1", &settings, 400);
        assert!(item.get_str("sk") < fraction.get_str("sk"));
        assert!(fraction.get_str("sk") < next_second.get_str("sk"));
    }

    #[test]
    fn a_days_events_spread_over_the_shards() {
        let settings = Settings::parse("settings.toml", include_str!("../../../campaigns/settings.toml")).unwrap();
        let partitions: std::collections::BTreeSet<String> = (0..200)
            .map(|i| entry_item(&event(&format!("e{i}"), "2026-03-01T12:00:00Z"), "anon:v1", &settings, 400))
            .map(|item| item.get_str("gsi1pk").unwrap().to_string())
            .collect();
        assert_eq!(partitions.len(), DAY_SHARDS as usize, "{partitions:?}");
    }

    #[test]
    fn the_logged_event_drops_the_address_it_came_with_and_oversized_properties() {
        let settings = Settings::parse("settings.toml", include_str!("../../../campaigns/settings.toml")).unwrap();
        let mut purchase = event("o1", "2026-03-01T12:00:00Z");
        purchase.contact.email = Some("anna@example.com".into());
        purchase.properties.insert("email".into(), serde_json::json!("anna@example.com"));
        purchase.properties.insert("phone".into(), serde_json::json!("+79990000000"));
        purchase.properties.insert("revenue".into(), serde_json::json!(10.0));
        let item = entry_item(&purchase, "c1", &settings, 400);
        let text = item.get_str(EVENT).unwrap();
        assert!(!text.contains("anna@example.com") && !text.contains("79990000000"), "{text}");
        let logged = read_entry(&item).unwrap().event;
        assert_eq!(logged.properties.get("revenue"), Some(&serde_json::json!(10.0)));
        assert_eq!(logged.contact.anonymous_id.as_deref(), Some("v1"));

        let mut huge = event("big", "2026-03-01T12:00:00Z");
        huge.properties.insert("blob".into(), serde_json::json!("x".repeat(MAX_LOGGED_EVENT_BYTES)));
        let item = entry_item(&huge, "c1", &settings, 400);
        assert!(item.get_str(EVENT).unwrap().len() < 1024);
        assert_eq!(read_entry(&item).unwrap().event.properties.get("truncated"), Some(&serde_json::json!(true)));
    }
}
