//! Trigger counts: one item per counted event, `TRIG#<subject>` /
//! `<count key>#<unix seconds, 12 digits>#<event id>`, so "N times within a window" is one range
//! query. The subject is a contact id or `anon:<id>`; items expire after the longest window.

use jiff::Timestamp;
use serde_json::json;

use crate::ports::{Index, Item, Key, Query, SortKeyRange, Store, StoreError, query_all};

fn partition(subject: &str) -> String {
    format!("TRIG#{subject}")
}

/// Seconds are zero-padded so the sort key orders by time.
fn sort_key_at(count_key: &str, at: Timestamp) -> String {
    format!("{count_key}#{:012}", at.as_second())
}

fn key(subject: &str, count_key: &str, at: Timestamp, event_id: &str) -> Key {
    Key::new(partition(subject), format!("{}#{event_id}", sort_key_at(count_key, at)))
}

/// The count item of one event, to put in the event's transaction.
pub fn item(subject: &str, count_key: &str, at: Timestamp, event_id: &str, expires_at: Timestamp) -> Item {
    Item::new(&key(subject, count_key, at, event_id), json!({"event_id": event_id})).with_ttl(expires_at.as_second())
}

/// How many events under `count_key` the subject had from `from` to `to` (both included, by the
/// second), other than `event_id`.
pub async fn count_between(
    store: &dyn Store,
    subject: &str,
    count_key: &str,
    from: Timestamp,
    to: Timestamp,
    event_id: &str,
) -> Result<usize, StoreError> {
    let range = SortKeyRange::Between(sort_key_at(count_key, from), format!("{}#~", sort_key_at(count_key, to)));
    let query = Query::partition(Index::Table, partition(subject)).range(range);
    Ok(query_all(store, query).await?.iter().filter(|i| i.get_str("event_id") != Some(event_id)).count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_items_sort_by_time_within_their_count_key() {
        let at: Timestamp = "2026-03-01T12:00:00Z".parse().unwrap();
        let expires: Timestamp = "2026-03-03T12:00:00Z".parse().unwrap();
        let counted = item("anon:v1", "page_view#shoes", at, "browser:e1", expires);
        assert_eq!(counted.key(), Some(Key::new("TRIG#anon:v1", "page_view#shoes#001772366400#browser:e1")));
        assert_eq!(counted.get_str("event_id"), Some("browser:e1"));
        assert_eq!(counted.get_i64("ttl"), Some(expires.as_second()));
        let later = key("anon:v1", "page_view#shoes", at + jiff::SignedDuration::from_secs(1), "browser:e0");
        assert!(counted.get_str("sk").unwrap() < later.sk.as_str());
        // The window's upper bound takes every event id of its last second.
        assert!(counted.get_str("sk").unwrap() < format!("{}#~", sort_key_at("page_view#shoes", at)).as_str());
    }
}
