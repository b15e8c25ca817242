//! cart-scheduler's dispatch loop: runs every minute (EventBridge), reads every due item whose
//! time has come through the due-time index, and dispatches each exactly once (a conditional
//! claim), sends to `sends` and continuations to `events`. Every run reads everything due up to
//! now, so a missed minute is caught up, never skipped; overlapping runs split the work through
//! the claims. A cursor item records each run for monitoring, and each run writes one EMF line
//! (`Dispatched`, `Skipped`, `DispatchFailed`, `LeftForNextRun`). Items are dispatched 16 at a time,
//! and a run takes no new ones after 40 s, so a burst leaves the rest to the next minute instead of
//! running into the 60 s timeout.

use jiff::Timestamp;
use voronka_domain::ports::{MailCopies, Store, StoreError};
use voronka_domain::repo::due::{DispatchReport, dispatch_due_within};
use voronka_domain::repo::personal_data;
use voronka_domain::repo::scheduler_cursor::{self, SchedulerRun};

/// The most items one run dispatches; the rest wait for the next minute.
pub const MAX_PER_RUN: usize = 5_000;

/// Wall time after which a run takes no new items: the function's timeout is 60 s (template), and
/// the run still records its cursor and finishes erasures after the dispatch.
pub const DISPATCH_BUDGET: std::time::Duration = std::time::Duration::from_secs(40);

/// The scheduler needs the ports alone: it reads no campaign file and signs nothing.
pub type SchedulerDeps = voronka_domain::deps::Ports;

/// One run: dispatch what is due, then record the run.
pub async fn run(deps: &SchedulerDeps) -> Result<DispatchReport, StoreError> {
    let now = deps.clock.now();
    let previous = scheduler_cursor::last_run(deps.store.as_ref()).await?;
    let report =
        dispatch_due_within(deps.store.as_ref(), deps.queue.as_ref(), now, MAX_PER_RUN, DISPATCH_BUDGET).await?;
    let run = SchedulerRun { at: now, dispatched: report.dispatched, failed: report.failed };
    scheduler_cursor::record(deps.store.as_ref(), &run).await?;
    let gap = previous.map(|p| now.as_second() - p.as_second());
    tracing::info!(dispatched = report.dispatched, skipped = report.skipped, failed = report.failed, left_for_next_run = report.left_for_next_run, seconds_since_last_run = ?gap, "scheduler run");
    voronka_telemetry::metrics::emit(
        "cart-scheduler",
        &[
            ("Dispatched", report.dispatched as f64),
            ("Skipped", report.skipped as f64),
            ("DispatchFailed", report.failed as f64),
            ("LeftForNextRun", report.left_for_next_run as f64),
        ],
    );
    Ok(report)
}

/// Finishes erasures left unfinished (`personal_data::finish_pending_erasures`), a few each
/// minute; `copies` is the mail service's (on AWS SES keeps none). A failure is logged and left
/// to the next run: it must not stop the dispatch.
pub async fn finish_erasures(deps: &SchedulerDeps, copies: &dyn MailCopies) {
    let now = deps.clock.now();
    match personal_data::finish_pending_erasures(deps.store.as_ref(), copies, now, personal_data::WRITE_BUDGET).await {
        Ok(0) => {}
        Ok(completed) => tracing::info!(completed, "unfinished erasures completed"),
        Err(error) => tracing::warn!(error = %error, "unfinished erasures could not be finished"),
    }
}

/// When the last run happened, from the cursor.
pub async fn last_run(store: &dyn Store) -> Result<Option<Timestamp>, StoreError> {
    scheduler_cursor::last_run(store).await
}
