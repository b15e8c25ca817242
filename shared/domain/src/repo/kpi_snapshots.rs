//! KPI snapshots: one day's KPI inputs as the rollup read them, `KPI#<date>` / `DAY`, attributes
//! `inputs` (the `DayInputs` as JSON), `final` and `computed_at`. A final snapshot stands for its
//! day in reports; a day without one (today, or not rolled up yet) is read live.
//!
//! A snapshot must never freeze a wrong number: an event that arrives after its day was rolled up
//! deletes that day's snapshot in its own transaction (`stale_op`), so the day is read live until
//! a rollup covers it again; spend is always read live (`kpi::load`), so an upload needs no
//! rollup and two uploads racing cannot leave a snapshot missing one of them.

use jiff::Timestamp;
use jiff::civil::Date;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::journeys::attribution::Model;
use crate::ports::{Item, Key, Store, StoreError, TransactOp};
use crate::repo::aggregates::{Credit, DailyTotal};
use crate::repo::spend::SpendRow;

/// Largest snapshot written, in bytes of JSON: DynamoDB refuses items over 400 KB. A day with more
/// channel and campaign combinations than fit is not snapshotted and is read live instead.
pub const MAX_SNAPSHOT_BYTES: usize = 350_000;

/// Everything one day's KPIs are computed from: its daily aggregates, the credit of every
/// attribution model, and its spend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DayInputs {
    pub date: Date,
    pub totals: Vec<DailyTotal>,
    pub credits: Vec<(Model, Credit)>,
    pub spend: Vec<SpendRow>,
}

impl DayInputs {
    /// How many stored items these inputs were read from.
    pub fn items(&self) -> usize {
        self.totals.len() + self.credits.len() + self.spend.len()
    }
}

fn key(date: Date) -> Key {
    Key::new(format!("KPI#{date}"), "DAY")
}

/// Deletes `date`'s snapshot: for the transaction of an event counted under a day before today.
pub fn stale_op(date: Date) -> TransactOp {
    TransactOp::Delete { key: key(date), condition: None }
}

/// A stored snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub inputs: DayInputs,
    pub is_final: bool,
    pub computed_at: Timestamp,
}

/// Whether a snapshot was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Yes,
    /// Too large for one item: the day stays live.
    TooLarge,
}

/// Writes (or overwrites) the snapshot of `inputs.date`.
pub async fn put(store: &dyn Store, inputs: &DayInputs, is_final: bool, now: Timestamp) -> Result<Written, StoreError> {
    let inputs_json = serde_json::to_value(inputs).map_err(|e| StoreError::Invalid(e.to_string()))?;
    if inputs_json.to_string().len() > MAX_SNAPSHOT_BYTES {
        tracing::warn!(date = %inputs.date, "a day's KPI inputs are too large for a snapshot; it is read live");
        store.delete(&key(inputs.date), None).await?;
        return Ok(Written::TooLarge);
    }
    let item =
        Item::new(&key(inputs.date), json!({"inputs": inputs_json, "final": is_final, "computed_at": now.to_string()}));
    store.put(item, None).await?;
    Ok(Written::Yes)
}

/// The snapshot of `date`; `None` when there is none or it cannot be read (then the day is read
/// live, which is always right, only slower).
pub async fn get(store: &dyn Store, date: Date) -> Result<Option<Snapshot>, StoreError> {
    let Some(item) = store.get(&key(date)).await? else { return Ok(None) };
    let inputs = item.get("inputs").and_then(|v| serde_json::from_value::<DayInputs>(v.clone()).ok());
    let computed_at = item.get_str("computed_at").and_then(|t| t.parse().ok());
    let is_final = item.get("final").and_then(serde_json::Value::as_bool);
    match (inputs, is_final, computed_at) {
        (Some(inputs), Some(is_final), Some(computed_at)) if inputs.date == date => {
            Ok(Some(Snapshot { inputs, is_final, computed_at }))
        }
        _ => {
            tracing::warn!(%date, "a KPI snapshot cannot be read; the day is read live");
            Ok(None)
        }
    }
}
