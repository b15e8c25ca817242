//! Frequency caps across every journey: counters per contact and local calendar day and week,
//! reserved with one conditional transaction before a marketing message is sent.

use jiff::{SignedDuration, Timestamp};

use crate::ports::{Condition, Key, Store, StoreError, TransactOp, UpdateAction};

/// The calendar windows a frequency cap counts in, in the contact's own zone (computed by
/// `sending::policy::cap_windows`): the counters' sort keys, and where a capped message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapWindows {
    /// e.g. `2026-11-22`
    pub day: String,
    /// ISO week, e.g. `2026-W47`
    pub week: String,
    /// The start of the next local day: where a message deferred by the daily cap goes.
    pub next_day: Timestamp,
    /// The start of the next ISO week: where a message deferred by the weekly cap goes.
    pub next_week: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    Reserved,
    DayFull,
    WeekFull,
}

pub struct FrequencyCaps<'a> {
    store: &'a dyn Store,
}

fn day_key(contact_id: &str, windows: &CapWindows) -> Key {
    Key::new(format!("CAP#{contact_id}"), format!("DAY#{}", windows.day))
}

fn week_key(contact_id: &str, windows: &CapWindows) -> Key {
    Key::new(format!("CAP#{contact_id}"), format!("WEEK#{}", windows.week))
}

fn below(limit: u32) -> Condition {
    Condition::Or(vec![Condition::attribute_not_exists("sent"), Condition::less_than("sent", limit)])
}

impl<'a> FrequencyCaps<'a> {
    pub fn new(store: &'a dyn Store) -> Self {
        FrequencyCaps { store }
    }

    /// Takes one slot of the day and of the week, or neither.
    pub async fn reserve(
        &self,
        contact_id: &str,
        windows: &CapWindows,
        per_day: u32,
        per_week: u32,
        now: Timestamp,
    ) -> Result<Reservation, StoreError> {
        let expires = (now + SignedDuration::from_hours(24 * 10)).as_second();
        let slot = |key: Key, limit: u32| TransactOp::Update {
            key,
            actions: vec![UpdateAction::add("sent", 1), UpdateAction::set_if_not_exists("ttl", expires)],
            condition: Some(below(limit)),
        };
        let ops = vec![slot(day_key(contact_id, windows), per_day), slot(week_key(contact_id, windows), per_week)];
        match self.store.transact(ops).await {
            Ok(()) => Ok(Reservation::Reserved),
            Err(StoreError::TransactionCancelled { .. }) => {
                // Which cap is full, read back rather than trusting every backend to name the
                // failed condition; and if neither is, the transaction failed for another reason
                // (a conflict, a throttle): retry it rather than call the day full.
                let count = |item: Option<crate::ports::Item>| item.and_then(|i| i.get_i64("sent")).unwrap_or(0);
                let week = count(self.store.get(&week_key(contact_id, windows)).await?);
                if week >= i64::from(per_week) {
                    return Ok(Reservation::WeekFull);
                }
                let day = count(self.store.get(&day_key(contact_id, windows)).await?);
                if day >= i64::from(per_day) {
                    return Ok(Reservation::DayFull);
                }
                Err(StoreError::Throttled("the cap reservation was cancelled with room left in both caps".into()))
            }
            Err(other) => Err(other),
        }
    }

    /// Gives a slot back when the message it was reserved for did not go out.
    pub async fn release(&self, contact_id: &str, windows: &CapWindows) -> Result<(), StoreError> {
        let give_back = |key: Key| TransactOp::Update {
            key,
            actions: vec![UpdateAction::add("sent", -1)],
            condition: Some(Condition::GreaterThan("sent".into(), 0.into())),
        };
        self.store
            .transact(vec![give_back(day_key(contact_id, windows)), give_back(week_key(contact_id, windows))])
            .await
    }
}
