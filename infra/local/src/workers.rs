//! The queue consumers and schedules of the local stack: the same batch handlers and scheduled
//! functions Lambda runs, fed from the embedded queues and a timer instead of SQS event source
//! mappings and EventBridge Scheduler.

use std::time::Duration;

use jiff::civil::Date;
use jiff::{SignedDuration, Timestamp};
use voronka_domain::ports::{Driver, Function, QueueName, consume_batch};

use crate::metering::{invoke, invoke_consumer};
use crate::stack::Stack;

/// As the SAM template sets for the event sources.
pub const BATCH_SIZE: usize = 10;
/// Longer than a batch can take; a crashed batch's messages come back after it.
pub const VISIBILITY: Duration = Duration::from_secs(120);

/// One batch of sends through the sender; returns how many messages were received.
pub async fn run_sends_once(stack: &Stack) -> anyhow::Result<usize> {
    let work = consume_batch(stack.scheduler.queue.as_ref(), QueueName::Sends, &stack.sender, BATCH_SIZE, VISIBILITY);
    Ok(invoke_consumer(stack, Function::Sender, Driver::Email, work).await?)
}

/// One batch of events through the evaluator; returns how many messages were received.
pub async fn run_events_once(stack: &Stack) -> anyhow::Result<usize> {
    let work =
        consume_batch(stack.scheduler.queue.as_ref(), QueueName::Events, &stack.evaluator, BATCH_SIZE, VISIBILITY);
    Ok(invoke_consumer(stack, Function::TriggerEvaluator, Driver::Event, work).await?)
}

/// Runs both consumers until everything visible is handled; returns how many messages they took.
pub async fn drain(stack: &Stack) -> anyhow::Result<usize> {
    let mut total = 0;
    loop {
        let handled = run_events_once(stack).await? + run_sends_once(stack).await?;
        if handled == 0 {
            return Ok(total);
        }
        total += handled;
    }
}

/// Lets the scheduler dispatch what is due, then runs the consumers until the queues are empty:
/// one tick of the whole suite (the demo calls it after moving its clock).
pub async fn tick(stack: &Stack) -> anyhow::Result<usize> {
    invoke(stack, Function::CartScheduler, Driver::Event, async {
        cart_scheduler::run(&stack.scheduler).await?;
        cart_scheduler::finish_erasures(&stack.scheduler, stack.outbox.as_ref()).await;
        anyhow::Ok(())
    })
    .await?;
    drain(stack).await
}

/// How often the local stack runs the scheduler (EventBridge runs it every minute on AWS).
pub const SCHEDULER_PERIOD: Duration = Duration::from_secs(5);

/// When the KPI rollups last ran in this process, by the stack's clock: the local counterpart of
/// the template's two schedules for kpi-rollup (hourly, and nightly at 02:30 UTC).
#[derive(Debug, Default)]
pub struct RollupSchedule {
    last_hourly: Option<Timestamp>,
    last_nightly: Option<Date>,
}

/// The nightly rollup's time of day (UTC), as `infra/template.yaml` schedules it.
pub const NIGHTLY_AT: jiff::civil::Time = jiff::civil::time(2, 30, 0, 0);

impl RollupSchedule {
    /// The rollup kinds due at `now`, marked as run: hourly an hour after the last (and at
    /// start), nightly once per UTC day from 02:30 on.
    pub fn take_due(&mut self, now: Timestamp) -> Vec<&'static str> {
        let mut due = Vec::new();
        if self.last_hourly.is_none_or(|last| now.duration_since(last) >= SignedDuration::from_hours(1)) {
            self.last_hourly = Some(now);
            due.push("hourly");
        }
        let utc = now.to_zoned(jiff::tz::TimeZone::UTC);
        if utc.time() >= NIGHTLY_AT && self.last_nightly != Some(utc.date()) {
            self.last_nightly = Some(utc.date());
            due.push("nightly");
        }
        due
    }
}

/// Runs the due KPI rollups through the function the kpi-rollup Lambda runs, with the same event
/// its schedule sends.
pub async fn run_due_rollups(stack: &Stack, schedule: &mut RollupSchedule) -> anyhow::Result<()> {
    for kind in schedule.take_due(stack.scheduler.clock.now()) {
        let event = serde_json::json!({ "kind": kind });
        kpi_rollup::scheduled(&stack.scheduler, &stack.state.campaigns.settings, &event).await?;
    }
    Ok(())
}

/// Runs the scheduler and the KPI rollups on a timer until the process ends.
pub async fn schedule_forever(stack: std::sync::Arc<Stack>) {
    let mut rollups = RollupSchedule::default();
    loop {
        if let Err(error) = cart_scheduler::run(&stack.scheduler).await {
            tracing::error!(error = %error, "a scheduler run failed; the next one catches up");
        }
        cart_scheduler::finish_erasures(&stack.scheduler, stack.outbox.as_ref()).await;
        if let Err(error) = run_due_rollups(&stack, &mut rollups).await {
            // Idempotent: the next hourly run, and the nightly restatement, redo what failed.
            tracing::error!(error = %error, "a KPI rollup failed; the next one catches up");
        }
        tokio::time::sleep(SCHEDULER_PERIOD).await;
    }
}

/// Runs the consumers until the process ends, polling when the queues are empty.
pub async fn run_forever(stack: std::sync::Arc<Stack>) {
    loop {
        match drain(&stack).await {
            Ok(0) => tokio::time::sleep(Duration::from_millis(250)).await,
            Ok(_) => {}
            Err(error) => {
                tracing::error!(error = %error, "a queue consumer failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn the_hourly_rollup_runs_each_hour_and_the_nightly_once_a_day_from_half_past_two() {
        let mut schedule = RollupSchedule::default();
        assert_eq!(schedule.take_due(at("2026-03-02T01:00:00Z")), ["hourly"], "at start, before 02:30");
        assert!(schedule.take_due(at("2026-03-02T01:59:59Z")).is_empty());
        assert_eq!(schedule.take_due(at("2026-03-02T02:00:00Z")), ["hourly"]);
        assert!(schedule.take_due(at("2026-03-02T02:29:59Z")).is_empty());
        assert_eq!(schedule.take_due(at("2026-03-02T02:30:00Z")), ["nightly"]);
        assert!(schedule.take_due(at("2026-03-02T02:45:00Z")).is_empty(), "the nightly once a day");
        assert_eq!(schedule.take_due(at("2026-03-03T23:00:00Z")), ["hourly", "nightly"], "a missed night catches up");
        assert_eq!(schedule.take_due(at("2026-03-04T02:31:00Z")), ["hourly", "nightly"]);
    }
}
