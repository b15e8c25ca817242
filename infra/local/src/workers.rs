//! The queue consumers and schedules of the local stack: the same batch handlers and scheduled
//! functions Lambda runs, fed from the embedded queues and a timer instead of SQS event source
//! mappings and EventBridge Scheduler.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use jiff::civil::Date;
use jiff::{SignedDuration, Timestamp};
use voronka_domain::ports::{
    BatchHandler, Delivery, Driver, Fault, Faults, Function, Killed, Queue, QueueError, QueueName, ReceivedMessage,
    consume_batch,
};

use crate::metering::{invoke, invoke_consumer};
use crate::stack::Stack;

/// As the SAM template sets for the event sources.
pub const BATCH_SIZE: usize = 10;
/// Longer than a batch can take; a crashed batch's messages come back after it.
pub const VISIBILITY: Duration = Duration::from_secs(120);

/// What the consumers and the scheduler lived through when faults were injected: each failure
/// is counted and the work goes on, its messages coming back after their visibility timeout.
#[derive(Debug, Default)]
pub struct WorkerStats {
    pub batches: AtomicU64,
    /// Batches whose invocation was killed: nothing of them was deleted.
    pub batches_killed: AtomicU64,
    /// Messages a handler reported failed (a throttled store, an unanswered SES), left to come back.
    pub messages_failed: AtomicU64,
    pub scheduler_runs_failed: AtomicU64,
}

/// The counts of `WorkerStats`, for a report.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WorkerCounts {
    pub batches: u64,
    pub batches_killed: u64,
    pub messages_failed: u64,
    pub scheduler_runs_failed: u64,
}

impl WorkerStats {
    pub fn counts(&self) -> WorkerCounts {
        WorkerCounts {
            batches: self.batches.load(Ordering::Relaxed),
            batches_killed: self.batches_killed.load(Ordering::Relaxed),
            messages_failed: self.messages_failed.load(Ordering::Relaxed),
            scheduler_runs_failed: self.scheduler_runs_failed.load(Ordering::Relaxed),
        }
    }
}

/// One batch of sends through the sender; returns how many messages were received.
pub async fn run_sends_once(stack: &Stack) -> anyhow::Result<usize> {
    invoke_consumer(stack, Function::Sender, Driver::Email, consume(stack, QueueName::Sends, &stack.sender)).await
}

/// One batch of events through the evaluator; returns how many messages were received.
pub async fn run_events_once(stack: &Stack) -> anyhow::Result<usize> {
    invoke_consumer(
        stack,
        Function::TriggerEvaluator,
        Driver::Event,
        consume(stack, QueueName::Events, &stack.evaluator),
    )
    .await
}

async fn consume(stack: &Stack, name: QueueName, handler: &dyn BatchHandler) -> anyhow::Result<usize> {
    let Some(faults) = &stack.faults else {
        return Ok(consume_batch(stack.scheduler.queue.as_ref(), name, handler, BATCH_SIZE, VISIBILITY).await?);
    };
    let queue = stack.state.queue.as_ref();
    let first = queue.receive(name, BATCH_SIZE, VISIBILITY).await?;
    // With duplicate delivery on, two consumers run at once, as Lambda runs several batches of
    // one queue concurrently: a message delivered again in the next receive is then handled by
    // both at the same time. The receives come first, in order, so the faults replay.
    let second = if faults.plan().rate(Fault::DuplicateDelivery) > 0.0 && !first.is_empty() {
        queue.receive(name, BATCH_SIZE, VISIBILITY).await?
    } else {
        Vec::new()
    };
    let received = first.len() + second.len();
    // Outside tokio's cooperative budget: a forced yield after so many operations would let the
    // twins swap turns at the ports by timing, and the run would no longer replay.
    let (a, b) = tokio::task::unconstrained(async {
        tokio::join!(
            invoke_batch(stack, faults, queue, name, handler, first),
            invoke_batch(stack, faults, queue, name, handler, second)
        )
    })
    .await;
    a?;
    b?;
    Ok(received)
}

/// One consumer invocation over a received batch: the handler runs as one invocation, and what it
/// did not fail is deleted, unless the invocation was killed (then nothing is: the messages come
/// back after their visibility timeout, as on SQS).
async fn invoke_batch(
    stack: &Stack,
    faults: &Faults,
    queue: &dyn Queue,
    name: QueueName,
    handler: &dyn BatchHandler,
    messages: Vec<ReceivedMessage>,
) -> Result<(), QueueError> {
    if messages.is_empty() {
        return Ok(());
    }
    let stats = &stack.worker_stats;
    stats.batches.fetch_add(1, Ordering::Relaxed);
    let receipts: Vec<(String, String)> = messages.iter().map(|m| (m.message_id.clone(), m.receipt.clone())).collect();
    let deliveries = messages.into_iter().map(Delivery::from).collect();
    match faults.invocation(handler.handle_batch(deliveries)).await {
        Err(Killed) => {
            stats.batches_killed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                queue = name.as_str(),
                messages = receipts.len(),
                "a consumer invocation was killed; its messages come back after the visibility timeout"
            );
            Ok(())
        }
        Ok(failed) => {
            stats.messages_failed.fetch_add(failed.len() as u64, Ordering::Relaxed);
            let done: Vec<String> =
                receipts.into_iter().filter(|(id, _)| !failed.contains(id)).map(|(_, receipt)| receipt).collect();
            if done.is_empty() {
                return Ok(());
            }
            queue.delete_batch(name, done).await
        }
    }
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

/// One scheduler run (and its unfinished erasures). With faults injected it is an invocation: a
/// failed or killed run is counted and the next one catches up, as on EventBridge.
async fn run_scheduler(stack: &Stack) -> anyhow::Result<()> {
    let Some(faults) = &stack.faults else {
        cart_scheduler::run(&stack.scheduler).await?;
        cart_scheduler::finish_erasures(&stack.scheduler, stack.outbox.as_ref()).await;
        return Ok(());
    };
    let run = faults.invocation(async {
        let dispatched = cart_scheduler::run(&stack.scheduler).await;
        cart_scheduler::finish_erasures(&stack.scheduler, stack.outbox.as_ref()).await;
        dispatched
    });
    match run.await {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => {
            stack.worker_stats.scheduler_runs_failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %error, "a scheduler run failed; the next one catches up");
        }
        Err(Killed) => {
            stack.worker_stats.scheduler_runs_failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("a scheduler run was killed; the next one catches up");
        }
    }
    Ok(())
}

/// Lets the scheduler dispatch what is due, then runs the consumers until the queues are empty:
/// one tick of the whole suite (the demo calls it after moving its clock).
pub async fn tick(stack: &Stack) -> anyhow::Result<usize> {
    invoke(stack, Function::CartScheduler, Driver::Event, run_scheduler(stack)).await?;
    sweep_expired(stack).await;
    drain(stack).await
}

/// Deletes expired items, as DynamoDB's TTL sweeper does on AWS: reads already skip them, and
/// without the sweep the database would keep every receipt and rate counter ever written.
async fn sweep_expired(stack: &Stack) {
    if let Err(error) = stack.inspect.sweep_expired().await {
        tracing::warn!(error = %error, "expired items were not swept; the next run tries again");
    }
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
        if let Err(error) = run_scheduler(&stack).await {
            tracing::error!(error = %error, "a scheduler run failed; the next one catches up");
        }
        sweep_expired(&stack).await;
        if let Err(error) = run_due_rollups(&stack, &mut rollups).await {
            // Idempotent: the next hourly run, and the nightly restatement, redo what failed.
            tracing::error!(error = %error, "a KPI rollup failed; the next one catches up");
        }
        tokio::time::sleep(SCHEDULER_PERIOD).await;
    }
}

/// Batches of the events queue `voronka serve` handles at once, as Lambda runs several batches of
/// a queue side by side (the evaluator retries a transaction a concurrent batch changed under it).
/// One loop alone could not keep up with ingest: each of its writes waits for a commit.
pub const EVENT_CONSUMERS: usize = 4;
/// Batches of the sends queue at once: the template's default `SenderMaxConcurrency`.
pub const SEND_CONSUMERS: usize = 2;

/// Runs the consumers until the process ends, each polling its queue when it is empty.
pub async fn run_forever(stack: std::sync::Arc<Stack>) {
    let mut consumers = Vec::new();
    for _ in 0..EVENT_CONSUMERS {
        consumers.push(tokio::spawn(supervise(stack.clone(), QueueName::Events)));
    }
    for _ in 0..SEND_CONSUMERS {
        consumers.push(tokio::spawn(supervise(stack.clone(), QueueName::Sends)));
    }
    for consumer in consumers {
        let _ = consumer.await;
    }
}

/// Keeps one consumer running: a panic in a handler ends its task, and is logged and followed by a
/// fresh consumer, so the server never goes on accepting work nobody handles.
async fn supervise(stack: std::sync::Arc<Stack>, queue: QueueName) {
    loop {
        if let Err(error) = tokio::spawn(consume_forever(stack.clone(), queue)).await {
            tracing::error!(error = %error, queue = queue.as_str(), "a queue consumer stopped; starting another");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

async fn consume_forever(stack: std::sync::Arc<Stack>, queue: QueueName) {
    loop {
        let handled = match queue {
            QueueName::Events => run_events_once(&stack).await,
            QueueName::Sends => run_sends_once(&stack).await,
        };
        match handled {
            Ok(0) => tokio::time::sleep(Duration::from_millis(250)).await,
            Ok(_) => {}
            Err(error) => {
                tracing::error!(error = %error, queue = queue.as_str(), "a queue consumer failed; retrying");
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
