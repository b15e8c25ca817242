//! The queue consumers of the local stack: the same batch handlers Lambda runs, fed from the
//! embedded queues instead of SQS event source mappings.

use std::future::Future;
use std::time::Duration;

use voronka_domain::ports::{Queue, QueueName};

use crate::stack::Stack;

/// As the SAM template sets for the event sources.
pub const BATCH_SIZE: usize = 10;
/// Longer than a batch can take; a crashed batch's messages come back after it.
pub const VISIBILITY: Duration = Duration::from_secs(120);

/// Receives one batch, hands it to `handler` (which returns the ids of failed messages, as the
/// Lambda does) and deletes the rest. Returns how many messages were received.
pub async fn run_once<F, Fut>(stack: &Stack, queue_name: QueueName, handler: F) -> anyhow::Result<usize>
where
    F: FnOnce(Vec<(String, String)>) -> Fut,
    Fut: Future<Output = Vec<String>>,
{
    let queue = stack.embedded.queue.clone();
    let messages = queue.receive(queue_name, BATCH_SIZE, VISIBILITY).await?;
    if messages.is_empty() {
        return Ok(0);
    }
    let failed = handler(messages.iter().map(|m| (m.message_id.clone(), m.body.clone())).collect()).await;
    for message in messages.iter().filter(|m| !failed.contains(&m.message_id)) {
        queue.delete(queue_name, &message.receipt).await?;
    }
    Ok(messages.len())
}

pub async fn run_sends_once(stack: &Stack) -> anyhow::Result<usize> {
    run_once(stack, QueueName::Sends, |batch| async {
        let deliveries = batch.into_iter().map(|(message_id, body)| sender::Delivery { message_id, body }).collect();
        sender::process_batch(&stack.sender, deliveries).await
    })
    .await
}

pub async fn run_events_once(stack: &Stack) -> anyhow::Result<usize> {
    run_once(stack, QueueName::Events, |batch| async {
        let deliveries =
            batch.into_iter().map(|(message_id, body)| trigger_evaluator::Delivery { message_id, body }).collect();
        trigger_evaluator::process_batch(&stack.evaluator, deliveries).await
    })
    .await
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
