//! The demo's inspection (`voronka_local::inspect::Inspect`) over the AWS adapters against moto,
//! and SQS on the simulation's clock. Lives in the tests: the `voronka` binary links no AWS SDK.
//!
//! - Items: DynamoDB Scan filtered with `begins_with` on the partition key, paginated
//!   (`DynamoStore::scan_under`).
//! - Depth, dead-letter counts and the redrive: SQS's own API (`SqsQueue::depth`, `redrive`:
//!   receive, send, delete, as moto has no `StartMessageMoveTask`).
//! - Bodies left in a queue or its DLQ: moto's queue state through the test server's read-only
//!   route (`tests/moto_server.py`), because SQS has no way to list messages without receiving
//!   them (which counts towards maxReceiveCount, and in-flight or delayed ones cannot be received).
//! - Sent mail: moto keeps every raw message SES v2's `SendEmail` took (its SES backend's
//!   `sent_messages`, served by the test server's read-only route); each is written to the outbox folder as the `.eml` the invariants
//!   read, byte for byte what the SES adapter sent (moto decodes the base64 to UTF-8 text; the
//!   sender's MIME is 7-bit ASCII, so nothing is re-encoded).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use voronka_aws::{DynamoStore, SqsQueue};
use voronka_domain::ports::{
    Clock, OutgoingMessage, Queue, QueueError, QueueName, ReceivedMessage, SendOutcome, StoreError,
};
use voronka_local::inspect::{Inspect, ItemVisitor, KeyVisitor};

pub struct MotoInspect {
    pub dynamo: Arc<DynamoStore>,
    pub sqs: Arc<SqsQueue>,
    pub endpoint: String,
    pub http: reqwest::Client,
}

impl MotoInspect {
    pub fn new(endpoint: String, dynamo: Arc<DynamoStore>, sqs: Arc<SqsQueue>) -> Self {
        MotoInspect { dynamo, sqs, endpoint, http: reqwest::Client::new() }
    }
}

/// The queue's name: the last segment of its URL.
fn queue_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

#[async_trait]
impl Inspect for MotoInspect {
    async fn visit_items_under(&self, prefix: &str, mut visit: ItemVisitor) -> Result<(), StoreError> {
        self.dynamo.scan_under(prefix, &mut visit).await
    }

    async fn visit_keys_under(&self, prefix: &str, mut visit: KeyVisitor) -> Result<(), StoreError> {
        self.dynamo.scan_keys_under(prefix, &mut visit).await
    }

    async fn bodies(&self, queue: QueueName, dead_letters: bool) -> Result<Vec<String>, QueueError> {
        let url = self
            .sqs
            .urls()
            .url_of(queue, dead_letters)
            .ok_or_else(|| QueueError::Invalid(format!("no dead-letter queue for {}", queue.as_str())))?;
        let backend = |e: reqwest::Error| QueueError::Backend(e.to_string());
        self.http
            .get(format!("{}/_voronka/sqs/bodies", self.endpoint))
            .query(&[("queue", queue_name(url))])
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(backend)?
            .json()
            .await
            .map_err(backend)
    }

    async fn depth(&self, queue: QueueName, dead_letters: bool) -> Result<u64, QueueError> {
        self.sqs.depth(queue, dead_letters).await
    }

    async fn redrive(&self, queue: QueueName) -> Result<u64, QueueError> {
        self.sqs.redrive(queue).await
    }

    /// DynamoDB's TTL sweeper deletes expired items on its own (moto's does not run, and reads
    /// skip expired items either way).
    async fn sweep_expired(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn export_sent_mail(&self, outbox: &Path) -> anyhow::Result<()> {
        let messages: Vec<serde_json::Value> = self
            .http
            .get(format!("{}/_voronka/ses/raw-messages", self.endpoint))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        std::fs::create_dir_all(outbox)?;
        for (n, message) in messages.iter().enumerate() {
            let id = message["id"].as_str().unwrap_or_default();
            let raw = message["raw_data"].as_str().ok_or_else(|| anyhow::anyhow!("a sent message without raw_data"))?;
            std::fs::write(outbox.join(format!("{n:06}-{id}.eml")), raw)?;
        }
        Ok(())
    }
}

/// The queue adapter with moto's SQS clock kept at the simulation's before every call, as the
/// embedded queue reads the simulation's clock: visibility timeouts and delays then run out as
/// simulated time passes (a crashed batch's messages come back, a deferred send comes due).
pub struct SimulatedSqsClock<Q> {
    inner: Q,
    clock: Arc<dyn Clock>,
    endpoint: String,
    http: reqwest::Client,
    synced: Mutex<Option<Timestamp>>,
}

impl<Q> SimulatedSqsClock<Q> {
    pub fn new(inner: Q, clock: Arc<dyn Clock>, endpoint: String) -> Self {
        SimulatedSqsClock { inner, clock, endpoint, http: reqwest::Client::new(), synced: Mutex::new(None) }
    }

    async fn sync(&self) -> Result<(), QueueError> {
        let now = self.clock.now();
        if *self.synced.lock().unwrap() == Some(now) {
            return Ok(());
        }
        let seconds = now.as_millisecond() as f64 / 1000.0;
        self.http
            .post(format!("{}/_voronka/sqs/clock", self.endpoint))
            .json(&serde_json::json!({ "now": seconds }))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| QueueError::Backend(format!("setting moto's SQS clock: {e}")))?;
        *self.synced.lock().unwrap() = Some(now);
        Ok(())
    }
}

#[async_trait]
impl<Q: Queue> Queue for SimulatedSqsClock<Q> {
    async fn send_batch(
        &self,
        queue: QueueName,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<SendOutcome>, QueueError> {
        self.sync().await?;
        self.inner.send_batch(queue, messages).await
    }

    async fn receive(
        &self,
        queue: QueueName,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        self.sync().await?;
        self.inner.receive(queue, max, visibility).await
    }

    async fn delete(&self, queue: QueueName, receipt: &str) -> Result<(), QueueError> {
        self.inner.delete(queue, receipt).await
    }

    async fn delete_batch(&self, queue: QueueName, receipts: Vec<String>) -> Result<(), QueueError> {
        self.inner.delete_batch(queue, receipts).await
    }

    async fn dead_letter_count(&self, queue: QueueName) -> Result<u64, QueueError> {
        self.inner.dead_letter_count(queue).await
    }
}
