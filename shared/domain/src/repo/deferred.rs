//! The deferred part of an event too large for one transaction: its aggregate counters and the
//! due items to cancel, carried as the properties of one `event_follow_up` due item (group
//! `follow-up`) that the evaluator finishes. Written and read here only, so its shape is one.

use jiff::Timestamp;
use serde_json::{Map, Value, json};

use super::aggregates::Counters;
use super::due::{DueItem, DueWork, is_due_item_key};
use crate::model::{Event, EventType};
use crate::ports::Key;

#[derive(Debug, Default)]
pub struct DeferredWork {
    pub counters: Counters,
    /// Due items pending when the event was applied; only `DUE#` keys are ever read back.
    pub cancel: Vec<Key>,
}

impl DeferredWork {
    /// The follow-up due item of the event with `dedupe_key`, filed under `owner`, due `now`.
    pub fn due_item(&self, dedupe_key: &str, owner: String, now: Timestamp) -> DueItem {
        let mut properties = Map::new();
        properties.insert("event".into(), json!(dedupe_key));
        properties.insert("counters".into(), self.counters.to_json());
        properties.insert(
            "cancel".into(),
            json!(self.cancel.iter().map(|k| json!({"pk": k.pk, "sk": k.sk})).collect::<Vec<_>>()),
        );
        DueItem {
            id: super::due::ids::follow_up(dedupe_key),
            contact_id: owner,
            due_at: now,
            group: "follow-up".into(),
            work: DueWork::Evaluate { event_type: EventType::EventFollowUp, properties },
        }
    }

    /// The work a follow-up event carries. Counters that do not parse make it malformed; keys
    /// outside the due items are ignored, so a forged follow-up cannot cancel anything else.
    pub fn read(event: &Event) -> Result<DeferredWork, String> {
        let counters = match event.properties.get("counters") {
            Some(value) => Counters::from_json(value).map_err(|reason| format!("follow-up counters: {reason}"))?,
            None => Counters::default(),
        };
        let cancel = event
            .properties
            .get("cancel")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|k| Some(Key::new(k["pk"].as_str()?, k["sk"].as_str()?)))
            .filter(is_due_item_key)
            .collect();
        Ok(DeferredWork { counters, cancel })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::aggregates::{Dimensions, Metric};

    #[test]
    fn a_follow_up_reads_back_what_it_carried_and_only_due_item_keys() {
        let now: Timestamp = "2026-11-22T10:00:00Z".parse().unwrap();
        let mut work = DeferredWork::default();
        work.counters.daily(now.to_zoned(jiff::tz::TimeZone::UTC).date(), Metric::Leads, &Dimensions::direct(), 1.0);
        work.cancel = vec![Key::new("DUE#c1", "x"), Key::new("CONTACT#c1", "PROFILE")];
        let item = work.due_item("shop:e1", "c1".into(), now);
        let DueWork::Evaluate { event_type, properties } = item.work else { panic!("a follow-up is evaluated") };
        let event = Event::internal("f".into(), event_type, "c1", now, now, properties);
        let read = DeferredWork::read(&event).unwrap();
        assert_eq!(read.counters.len(), 1);
        assert_eq!(read.cancel, vec![Key::new("DUE#c1", "x")]);
    }
}
