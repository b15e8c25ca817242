//! Processed markers: the evaluator's exactly-once record of an event,
//! `PROCESSED#<source>:<event_id>` / `EVENT` (`Event::dedupe_key`), written conditionally in the
//! event's own transaction so a redelivery finds it and changes nothing. A follow-up finishing a
//! large event marks each of its parts, `PROCESSED#<key>#part<n>`.

use jiff::Timestamp;
use serde_json::json;

use crate::model::EventType;
use crate::ports::{Condition, Item, Key, Store, StoreError, TransactOp};

fn marker_key(dedupe_key: &str) -> Key {
    Key::new(format!("PROCESSED#{dedupe_key}"), "EVENT")
}

fn part_key(dedupe_key: &str, part: usize) -> Key {
    marker_key(&format!("{dedupe_key}#part{part}"))
}

/// Whether the event with this dedupe key was applied already.
pub async fn is_processed(store: &dyn Store, dedupe_key: &str) -> Result<bool, StoreError> {
    Ok(store.get(&marker_key(dedupe_key)).await?.is_some())
}

fn claim(key: &Key, event_type: &str, expires_at: Timestamp) -> TransactOp {
    let item = Item::new(key, json!({"type": event_type})).with_ttl(expires_at.as_second());
    TransactOp::Put { item, condition: Some(Condition::NotExists) }
}

/// Marks an event processed, for its transaction: the transaction fails at this operation when
/// the event was applied already.
pub fn marker_op(dedupe_key: &str, event_type: &EventType, expires_at: Timestamp) -> TransactOp {
    claim(&marker_key(dedupe_key), event_type.as_str(), expires_at)
}

/// Marks part `part` of an event's follow-up processed, for that part's transaction.
pub fn part_marker_op(dedupe_key: &str, part: usize, expires_at: Timestamp) -> TransactOp {
    claim(&part_key(dedupe_key, part), EventType::EventFollowUp.as_str(), expires_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(op: TransactOp) -> (Item, Option<Condition>) {
        let TransactOp::Put { item, condition } = op else { panic!("a marker is a put") };
        (item, condition)
    }

    #[test]
    fn markers_are_keyed_by_the_dedupe_key_and_written_once() {
        let expires: Timestamp = "2026-03-01T00:00:00Z".parse().unwrap();
        let (item, condition) = put(marker_op("shop:order-1:purchase", &EventType::Purchase, expires));
        assert_eq!(item.key(), Some(Key::new("PROCESSED#shop:order-1:purchase", "EVENT")));
        assert_eq!(item.get_str("type"), Some("purchase"));
        assert_eq!(item.get_i64("ttl"), Some(expires.as_second()));
        assert_eq!(condition, Some(Condition::NotExists));

        let (part, condition) = put(part_marker_op("shop:order-1:purchase", 2, expires));
        assert_eq!(part.key(), Some(Key::new("PROCESSED#shop:order-1:purchase#part2", "EVENT")));
        assert_eq!(part.get_str("type"), Some("event_follow_up"));
        assert_eq!(condition, Some(Condition::NotExists));
    }
}
