//! The queue port, shaped like SQS: batches of at most ten with an optional delay; receive with a
//! visibility timeout, delete by receipt, and a dead-letter queue after too many receives.

use std::collections::BTreeSet;
use std::time::Duration;

use async_trait::async_trait;

/// Most messages one `send_batch` call may carry (SQS's limit).
pub const MAX_SEND_BATCH: usize = 10;
/// Longest delay SQS allows on a message.
pub const MAX_DELAY: Duration = Duration::from_secs(15 * 60);

/// The queues of the suite. Adapters map each name to a real queue (an SQS URL, a table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueueName {
    /// Behaviour and outcome events, consumed by the trigger evaluator.
    Events,
    /// Send requests, consumed by the sender.
    Sends,
}

impl QueueName {
    pub const ALL: [QueueName; 2] = [QueueName::Events, QueueName::Sends];

    pub fn as_str(self) -> &'static str {
        match self {
            QueueName::Events => "events",
            QueueName::Sends => "sends",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// Unique within one batch; results refer to it.
    pub id: String,
    pub body: String,
    pub delay: Option<Duration>,
}

impl OutgoingMessage {
    pub fn new(id: impl Into<String>, body: impl Into<String>) -> Self {
        OutgoingMessage { id: id.into(), body: body.into(), delay: None }
    }
}

/// The outcome of one message of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendOutcome {
    pub id: String,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    pub message_id: String,
    /// Needed to delete the message; valid until its visibility timeout ends.
    pub receipt: String,
    pub body: String,
    /// How many times the message has been received, this time included.
    pub receive_count: u32,
}

/// A message as a consumer is handed it: by the SQS event source on Lambda, by a
/// `consume_batch` of the local stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub message_id: String,
    pub body: String,
}

impl From<ReceivedMessage> for Delivery {
    fn from(message: ReceivedMessage) -> Self {
        Delivery { message_id: message.message_id, body: message.body }
    }
}

/// A queue's consumer (the sender, the evaluator). It answers the ids of the messages that failed,
/// which the queue delivers again; the rest of the batch is done (SQS's partial batch failures).
#[async_trait]
pub trait BatchHandler: Send + Sync {
    async fn handle_batch(&self, deliveries: Vec<Delivery>) -> Vec<String>;
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("invalid request to the queue: {0}")]
    Invalid(String),
    #[error("queue backend error: {0}")]
    Backend(String),
}

#[async_trait]
pub trait Queue: Send + Sync {
    /// Sends at most `MAX_SEND_BATCH` messages; each gets its own outcome, so one failure does
    /// not fail its neighbours. An error means the whole call failed and nothing can be assumed sent.
    async fn send_batch(
        &self,
        queue: QueueName,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<SendOutcome>, QueueError>;

    /// Receives up to `max` visible messages and hides them for `visibility`.
    async fn receive(
        &self,
        queue: QueueName,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError>;

    async fn delete(&self, queue: QueueName, receipt: &str) -> Result<(), QueueError>;

    /// Deletes at most `MAX_SEND_BATCH` messages by receipt; on SQS one `DeleteMessageBatch`
    /// request instead of one request each. An adapter without a batch call deletes one by one.
    async fn delete_batch(&self, queue: QueueName, receipts: Vec<String>) -> Result<(), QueueError> {
        for receipt in receipts {
            self.delete(queue, &receipt).await?;
        }
        Ok(())
    }

    /// Messages waiting in the queue's dead-letter queue (approximate on SQS).
    async fn dead_letter_count(&self, queue: QueueName) -> Result<u64, QueueError>;
}

/// SQS's limits on one `send_batch`, checked by every adapter before it calls its backend, so both
/// refuse the same batches the same way.
pub fn check_send_batch(messages: &[OutgoingMessage]) -> Result<(), QueueError> {
    if messages.is_empty() || messages.len() > MAX_SEND_BATCH {
        return Err(QueueError::Invalid(format!("a batch holds 1 to {MAX_SEND_BATCH} messages")));
    }
    if messages.iter().map(|m| &m.id).collect::<BTreeSet<_>>().len() != messages.len() {
        return Err(QueueError::Invalid("batch entry ids must be unique".into()));
    }
    Ok(())
}

/// SQS's limit on one `receive`, checked by every adapter before it calls its backend.
pub fn check_receive(max: usize) -> Result<(), QueueError> {
    if max == 0 || max > MAX_SEND_BATCH {
        return Err(QueueError::Invalid(format!("receive takes 1 to {MAX_SEND_BATCH} messages")));
    }
    Ok(())
}

/// Receives one batch, hands it to `handler` and deletes every message it did not fail: what the
/// SQS event source does for a Lambda that reports partial batch failures. Returns how many
/// messages were received.
pub async fn consume_batch(
    queue: &dyn Queue,
    name: QueueName,
    handler: &dyn BatchHandler,
    max: usize,
    visibility: Duration,
) -> Result<usize, QueueError> {
    let messages = queue.receive(name, max, visibility).await?;
    if messages.is_empty() {
        return Ok(0);
    }
    let received = messages.len();
    let receipts: Vec<(String, String)> = messages.iter().map(|m| (m.message_id.clone(), m.receipt.clone())).collect();
    let failed = handler.handle_batch(messages.into_iter().map(Delivery::from).collect()).await;
    let done: Vec<String> = receipts
        .into_iter()
        .filter(|(message_id, _)| !failed.contains(message_id))
        .map(|(_, receipt)| receipt)
        .collect();
    // One request per ten messages rather than one each, as the SQS event source deletes.
    for chunk in done.chunks(MAX_SEND_BATCH) {
        queue.delete_batch(name, chunk.to_vec()).await?;
    }
    Ok(received)
}

/// Sends any number of messages in batches of `MAX_SEND_BATCH`, returning every outcome.
pub async fn send_all(
    queue: &dyn Queue,
    name: QueueName,
    messages: Vec<OutgoingMessage>,
) -> Result<Vec<SendOutcome>, QueueError> {
    let mut outcomes = Vec::with_capacity(messages.len());
    let mut rest = messages;
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().min(MAX_SEND_BATCH));
        outcomes.extend(queue.send_batch(name, rest).await?);
        rest = tail;
    }
    Ok(outcomes)
}

#[async_trait]
impl<T: Queue + ?Sized> Queue for std::sync::Arc<T> {
    async fn send_batch(
        &self,
        queue: QueueName,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<SendOutcome>, QueueError> {
        (**self).send_batch(queue, messages).await
    }

    async fn receive(
        &self,
        queue: QueueName,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        (**self).receive(queue, max, visibility).await
    }

    async fn delete(&self, queue: QueueName, receipt: &str) -> Result<(), QueueError> {
        (**self).delete(queue, receipt).await
    }

    async fn delete_batch(&self, queue: QueueName, receipts: Vec<String>) -> Result<(), QueueError> {
        (**self).delete_batch(queue, receipts).await
    }

    async fn dead_letter_count(&self, queue: QueueName) -> Result<u64, QueueError> {
        (**self).dead_letter_count(queue).await
    }
}
