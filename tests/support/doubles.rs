//! Test doubles shared by the workspace-level tests: captured logs, and a queue that refuses.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use voronka_domain::ports::{OutgoingMessage, Queue, QueueError, QueueName, ReceivedMessage, SendOutcome};

/// Log output captured by a `tracing` subscriber writing into it.
#[derive(Clone, Default)]
pub struct Captured(pub Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A queue refusing each message sent to one queue (the call itself succeeds, as SQS answers a
/// batch) while told to; everything else goes to `inner`.
pub struct RefusingQueue {
    pub inner: Arc<dyn Queue>,
    pub refuse_events: AtomicBool,
    pub refuse_sends: AtomicBool,
}

impl RefusingQueue {
    pub fn new(inner: Arc<dyn Queue>) -> RefusingQueue {
        RefusingQueue { inner, refuse_events: AtomicBool::new(false), refuse_sends: AtomicBool::new(false) }
    }
}

#[async_trait]
impl Queue for RefusingQueue {
    async fn send_batch(
        &self,
        queue: QueueName,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<SendOutcome>, QueueError> {
        let refuse = match queue {
            QueueName::Events => self.refuse_events.load(Ordering::SeqCst),
            QueueName::Sends => self.refuse_sends.load(Ordering::SeqCst),
        };
        if refuse {
            return Ok(messages
                .into_iter()
                .map(|m| SendOutcome { id: m.id, error: Some("ServiceUnavailable: try again".into()) })
                .collect());
        }
        self.inner.send_batch(queue, messages).await
    }

    async fn receive(
        &self,
        queue: QueueName,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        self.inner.receive(queue, max, visibility).await
    }

    async fn delete(&self, queue: QueueName, receipt: &str) -> Result<(), QueueError> {
        self.inner.delete(queue, receipt).await
    }

    async fn dead_letter_count(&self, queue: QueueName) -> Result<u64, QueueError> {
        self.inner.dead_letter_count(queue).await
    }
}
