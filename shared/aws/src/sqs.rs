//! The queue port on Amazon SQS.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName, SendMessageBatchRequestEntry,
};
use voronka_domain::ports::{
    MAX_SEND_BATCH, OutgoingMessage, Queue, QueueError, QueueName, ReceivedMessage, SendOutcome, check_receive,
    check_send_batch,
};

use crate::CallCounter;

/// The URLs of each queue and of its dead-letter queue.
#[derive(Debug, Clone)]
pub struct QueueUrls {
    pub events: String,
    pub events_dlq: Option<String>,
    pub sends: String,
    pub sends_dlq: Option<String>,
}

impl QueueUrls {
    /// From `EVENTS_QUEUE_URL`, `SENDS_QUEUE_URL` and, optionally, `EVENTS_DLQ_URL`, `SENDS_DLQ_URL`.
    pub fn from_env() -> Result<QueueUrls, String> {
        Ok(QueueUrls {
            events: crate::required_env("EVENTS_QUEUE_URL")?,
            events_dlq: std::env::var("EVENTS_DLQ_URL").ok(),
            sends: crate::required_env("SENDS_QUEUE_URL")?,
            sends_dlq: std::env::var("SENDS_DLQ_URL").ok(),
        })
    }

    fn url(&self, queue: QueueName) -> &str {
        match queue {
            QueueName::Events => &self.events,
            QueueName::Sends => &self.sends,
        }
    }

    /// The queue's URL, or its dead-letter queue's.
    pub fn url_of(&self, queue: QueueName, dead_letters: bool) -> Option<&str> {
        if dead_letters { self.dead_letter_url(queue) } else { Some(self.url(queue)) }
    }

    fn dead_letter_url(&self, queue: QueueName) -> Option<&str> {
        match queue {
            QueueName::Events => self.events_dlq.as_deref(),
            QueueName::Sends => self.sends_dlq.as_deref(),
        }
    }
}

pub struct SqsQueue {
    client: Client,
    urls: QueueUrls,
    calls: Arc<CallCounter>,
    /// How long an empty receive waits for a message (long polling).
    receive_wait: Duration,
}

/// Long polling's wait on an empty receive: a consumer asking again right away would pay for
/// empty receives.
const RECEIVE_WAIT: Duration = Duration::from_secs(1);

fn backend<E: std::error::Error + 'static>(error: aws_sdk_sqs::error::SdkError<E>) -> QueueError {
    QueueError::Backend(DisplayErrorContext(error).to_string())
}

impl SqsQueue {
    pub fn new(config: &aws_config::SdkConfig, urls: QueueUrls) -> Self {
        SqsQueue { client: Client::new(config), urls, calls: Arc::default(), receive_wait: RECEIVE_WAIT }
    }

    /// The same queue with another wait on an empty receive: zero for a simulation against
    /// moto, whose consumers drain the queues after every simulated step and would otherwise
    /// wait a real second on each empty queue.
    pub fn with_receive_wait(mut self, wait: Duration) -> Self {
        self.receive_wait = wait;
        self
    }

    pub fn calls(&self) -> Arc<CallCounter> {
        self.calls.clone()
    }
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send_batch(
        &self,
        queue: QueueName,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<SendOutcome>, QueueError> {
        check_send_batch(&messages)?;
        let entries = messages
            .iter()
            .map(|m| {
                SendMessageBatchRequestEntry::builder()
                    .id(&m.id)
                    .message_body(&m.body)
                    .set_delay_seconds(m.delay.map(|d| d.as_secs().min(900) as i32))
                    .build()
                    .map_err(|e| QueueError::Invalid(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.calls.record("sqs.SendMessageBatch");
        let output = self
            .client
            .send_message_batch()
            .queue_url(self.urls.url(queue))
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(backend)?;
        let mut outcomes: Vec<SendOutcome> =
            output.successful().iter().map(|s| SendOutcome { id: s.id().to_string(), error: None }).collect();
        outcomes.extend(output.failed().iter().map(|f| SendOutcome {
            id: f.id().to_string(),
            error: Some(format!("{}: {}", f.code(), f.message().unwrap_or(""))),
        }));
        Ok(outcomes)
    }

    async fn receive(
        &self,
        queue: QueueName,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        check_receive(max)?;
        self.calls.record("sqs.ReceiveMessage");
        let output = self
            .client
            .receive_message()
            .queue_url(self.urls.url(queue))
            .max_number_of_messages(max as i32)
            .visibility_timeout(visibility.as_secs().min(43_200) as i32)
            .wait_time_seconds(self.receive_wait.as_secs().min(20) as i32)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(backend)?;
        Ok(output
            .messages()
            .iter()
            .map(|m| ReceivedMessage {
                message_id: m.message_id().unwrap_or_default().to_string(),
                receipt: m.receipt_handle().unwrap_or_default().to_string(),
                body: m.body().unwrap_or_default().to_string(),
                receive_count: m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(1),
            })
            .collect())
    }

    async fn delete(&self, queue: QueueName, receipt: &str) -> Result<(), QueueError> {
        self.calls.record("sqs.DeleteMessage");
        self.client
            .delete_message()
            .queue_url(self.urls.url(queue))
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn delete_batch(&self, queue: QueueName, receipts: Vec<String>) -> Result<(), QueueError> {
        if receipts.is_empty() {
            return Ok(());
        }
        if receipts.len() > MAX_SEND_BATCH {
            return Err(QueueError::Invalid(format!("a delete batch holds 1 to {MAX_SEND_BATCH} receipts")));
        }
        let entries = receipts
            .iter()
            .enumerate()
            .map(|(n, receipt)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(n.to_string())
                    .receipt_handle(receipt)
                    .build()
                    .map_err(|e| QueueError::Invalid(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.calls.record("sqs.DeleteMessageBatch");
        let output = self
            .client
            .delete_message_batch()
            .queue_url(self.urls.url(queue))
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(backend)?;
        // A message not deleted comes back after its visibility timeout and is handled again,
        // which consumers are built for; say so rather than pretend it went.
        match output.failed().first() {
            Some(failed) => Err(QueueError::Backend(format!(
                "{} of {} deletes failed, the first with {}: {}",
                output.failed().len(),
                receipts.len(),
                failed.code(),
                failed.message().unwrap_or("")
            ))),
            None => Ok(()),
        }
    }

    async fn dead_letter_count(&self, queue: QueueName) -> Result<u64, QueueError> {
        let Some(url) = self.urls.dead_letter_url(queue) else {
            return Err(QueueError::Invalid(format!("no dead-letter queue URL is configured for {}", queue.as_str())));
        };
        self.calls.record("sqs.GetQueueAttributes");
        let output = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .map_err(backend)?;
        Ok(output
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0))
    }
}

/// What an operator does with a queue, and what a check reads after a run: the messages a queue
/// holds and the dead-letter redrive. Not calls the functions make, so not counted in `calls`.
impl SqsQueue {
    pub fn urls(&self) -> &QueueUrls {
        &self.urls
    }

    /// Messages waiting, in flight or delayed in the queue or, with `dead_letters`, in its
    /// dead-letter queue (SQS's approximate counts, exact on an idle queue).
    pub async fn depth(&self, queue: QueueName, dead_letters: bool) -> Result<u64, QueueError> {
        let Some(url) = self.urls.url_of(queue, dead_letters) else {
            return Err(QueueError::Invalid(format!("no dead-letter queue URL is configured for {}", queue.as_str())));
        };
        let counts = [
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            QueueAttributeName::ApproximateNumberOfMessagesDelayed,
        ];
        let output = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .set_attribute_names(Some(counts.to_vec()))
            .send()
            .await
            .map_err(backend)?;
        let attributes = output.attributes();
        Ok(counts
            .iter()
            .filter_map(|name| attributes.and_then(|a| a.get(name)).and_then(|n| n.parse::<u64>().ok()))
            .sum())
    }

    /// Moves every message of the dead-letter queue back to its queue (receive, send, delete, ten
    /// at a time: SQS's `StartMessageMoveTask` does the same server-side on AWS, which moto does
    /// not offer); returns how many moved. A message sent but not deleted (a failure between the
    /// two) is on both queues, which consumers are built for.
    pub async fn redrive(&self, queue: QueueName) -> Result<u64, QueueError> {
        let Some(dead) = self.urls.dead_letter_url(queue) else {
            return Err(QueueError::Invalid(format!("no dead-letter queue URL is configured for {}", queue.as_str())));
        };
        let mut moved = 0;
        loop {
            let output = self
                .client
                .receive_message()
                .queue_url(dead)
                .max_number_of_messages(MAX_SEND_BATCH as i32)
                .visibility_timeout(60)
                .send()
                .await
                .map_err(backend)?;
            let messages = output.messages();
            if messages.is_empty() {
                return Ok(moved);
            }
            let entries = messages
                .iter()
                .enumerate()
                .map(|(n, m)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(n.to_string())
                        .message_body(m.body().unwrap_or_default())
                        .build()
                        .map_err(|e| QueueError::Invalid(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let sent = self
                .client
                .send_message_batch()
                .queue_url(self.urls.url(queue))
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(backend)?;
            if let Some(failed) = sent.failed().first() {
                return Err(QueueError::Backend(format!(
                    "redriving failed: {}: {}",
                    failed.code(),
                    failed.message().unwrap_or("")
                )));
            }
            let deletes = messages
                .iter()
                .enumerate()
                .map(|(n, m)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(n.to_string())
                        .receipt_handle(m.receipt_handle().unwrap_or_default())
                        .build()
                        .map_err(|e| QueueError::Invalid(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            self.client
                .delete_message_batch()
                .queue_url(dead)
                .set_entries(Some(deletes))
                .send()
                .await
                .map_err(backend)?;
            moved += messages.len() as u64;
        }
    }
}
