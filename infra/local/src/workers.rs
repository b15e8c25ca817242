//! The queue consumers of the local stack: the same batch handlers Lambda runs, fed from the
//! embedded queues instead of SQS event source mappings.

use std::time::Duration;

use voronka_domain::ports::{QueueName, consume_batch};

use crate::stack::Stack;

/// As the SAM template sets for the event sources.
pub const BATCH_SIZE: usize = 10;
/// Longer than a batch can take; a crashed batch's messages come back after it.
pub const VISIBILITY: Duration = Duration::from_secs(120);

/// One batch of sends through the sender; returns how many messages were received.
pub async fn run_sends_once(stack: &Stack) -> anyhow::Result<usize> {
    Ok(consume_batch(stack.embedded.queue.as_ref(), QueueName::Sends, &stack.sender, BATCH_SIZE, VISIBILITY).await?)
}

/// One batch of events through the evaluator; returns how many messages were received.
pub async fn run_events_once(stack: &Stack) -> anyhow::Result<usize> {
    Ok(consume_batch(stack.embedded.queue.as_ref(), QueueName::Events, &stack.evaluator, BATCH_SIZE, VISIBILITY)
        .await?)
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
    cart_scheduler::run(&stack.scheduler).await?;
    drain(stack).await
}

/// How often the local stack runs the scheduler (EventBridge runs it every minute on AWS).
pub const SCHEDULER_PERIOD: Duration = Duration::from_secs(5);

/// Runs the scheduler on a timer until the process ends.
pub async fn schedule_forever(stack: std::sync::Arc<Stack>) {
    loop {
        if let Err(error) = cart_scheduler::run(&stack.scheduler).await {
            tracing::error!(error = %error, "a scheduler run failed; the next one catches up");
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
