//! The queue consumers of the local stack: the same batch handlers Lambda runs, fed from the
//! embedded queues instead of SQS event source mappings.

use std::time::Duration;

use voronka_domain::ports::{Queue, QueueName};

use crate::stack::Stack;

/// As the SAM template sets for the sends queue's event source.
pub const BATCH_SIZE: usize = 10;
/// Longer than a batch can take; a crashed batch's messages come back after it.
pub const VISIBILITY: Duration = Duration::from_secs(120);

/// Receives one batch from `sends`, runs the sender on it and deletes what succeeded, reporting
/// failures exactly as the Lambda does (they become visible again and retry).
/// Returns how many messages were received.
pub async fn run_sends_once(stack: &Stack) -> anyhow::Result<usize> {
    let queue = stack.embedded.queue.clone();
    let messages = queue.receive(QueueName::Sends, BATCH_SIZE, VISIBILITY).await?;
    let count = messages.len();
    if count == 0 {
        return Ok(0);
    }
    let deliveries =
        messages.iter().map(|m| sender::Delivery { message_id: m.message_id.clone(), body: m.body.clone() }).collect();
    let failed = sender::process_batch(&stack.sender, deliveries).await;
    for message in messages.iter().filter(|m| !failed.contains(&m.message_id)) {
        queue.delete(QueueName::Sends, &message.receipt).await?;
    }
    Ok(count)
}

/// Runs the sends consumer until the process ends, polling when the queue is empty.
pub async fn run_sends_forever(stack: std::sync::Arc<Stack>) {
    loop {
        match run_sends_once(&stack).await {
            Ok(0) => tokio::time::sleep(Duration::from_millis(250)).await,
            Ok(_) => {}
            Err(error) => {
                tracing::error!(error = %error, "the sends consumer failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
