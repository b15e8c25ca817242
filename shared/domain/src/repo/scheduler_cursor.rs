//! The scheduler's cursor, `SCHEDULER` / `CURSOR`: when the last run happened and what it did,
//! for monitoring (the due-time index, not the cursor, decides what is due).

use jiff::Timestamp;
use serde_json::json;

use crate::ports::{Item, Key, Store, StoreError};

fn cursor_key() -> Key {
    Key::new("SCHEDULER", "CURSOR")
}

/// One scheduler run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerRun {
    pub at: Timestamp,
    pub dispatched: usize,
    pub failed: usize,
}

fn run_item(run: &SchedulerRun) -> Item {
    Item::new(
        &cursor_key(),
        json!({"last_run_at": run.at.as_second(), "dispatched": run.dispatched, "failed": run.failed}),
    )
}

fn last_run_at(item: &Item) -> Option<Timestamp> {
    Timestamp::from_second(item.get_i64("last_run_at")?).ok()
}

pub async fn record(store: &dyn Store, run: &SchedulerRun) -> Result<(), StoreError> {
    store.put(run_item(run), None).await
}

/// When the last run happened.
pub async fn last_run(store: &dyn Store) -> Result<Option<Timestamp>, StoreError> {
    Ok(store.get(&cursor_key()).await?.as_ref().and_then(last_run_at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_run_reads_back() {
        let run = SchedulerRun { at: "2026-03-01T12:00:00Z".parse().unwrap(), dispatched: 3, failed: 1 };
        let item = run_item(&run);
        assert_eq!(item.key(), Some(Key::new("SCHEDULER", "CURSOR")));
        assert_eq!(item.get_i64("dispatched"), Some(3));
        assert_eq!(last_run_at(&item), Some(run.at));
    }
}
