//! cart-scheduler's dispatch loop: runs every minute (EventBridge), reads every due item whose
//! time has come through the due-time index, and dispatches each exactly once (a conditional
//! claim), sends to `sends` and continuations to `events`. Every run reads everything due up to
//! now, so a missed minute is caught up, never skipped; overlapping runs split the work through
//! the claims. A cursor item records each run for monitoring.

use jiff::Timestamp;
use serde_json::json;
use voronka_domain::ports::{Item, Key, Store, StoreError};
use voronka_domain::repo::due::{DispatchReport, dispatch_due};

/// The most items one run dispatches; the rest wait for the next minute.
pub const MAX_PER_RUN: usize = 5_000;

/// The scheduler needs the ports alone: it reads no campaign file and signs nothing.
pub type SchedulerDeps = voronka_domain::deps::Ports;

fn cursor_key() -> Key {
    Key::new("SCHEDULER", "CURSOR")
}

/// One run: dispatch what is due, then record the run.
pub async fn run(deps: &SchedulerDeps) -> Result<DispatchReport, StoreError> {
    let now = deps.clock.now();
    let previous = deps.store.get(&cursor_key()).await?.and_then(|item| item.get_i64("last_run_at"));
    let report = dispatch_due(deps.store.as_ref(), deps.queue.as_ref(), now, MAX_PER_RUN).await?;
    let cursor = Item::new(
        &cursor_key(),
        json!({"last_run_at": now.as_second(), "dispatched": report.dispatched, "failed": report.failed}),
    );
    deps.store.put(cursor, None).await?;
    let gap = previous.map(|p| now.as_second() - p);
    tracing::info!(dispatched = report.dispatched, skipped = report.skipped, failed = report.failed, seconds_since_last_run = ?gap, "scheduler run");
    Ok(report)
}

/// When the last run happened, from the cursor.
pub async fn last_run(store: &dyn Store) -> Result<Option<Timestamp>, StoreError> {
    Ok(store
        .get(&cursor_key())
        .await?
        .and_then(|i| i.get_i64("last_run_at"))
        .and_then(|s| Timestamp::from_second(s).ok()))
}
