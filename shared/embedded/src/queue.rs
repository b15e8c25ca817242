//! The embedded queues: SQS's at-least-once delivery, visibility timeout and dead-letter limit
//! on an SQLite table.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::params;
use voronka_domain::ports::{
    Clock, MAX_DELAY, OutgoingMessage, Queue, QueueError, QueueName, ReceivedMessage, SendOutcome, check_receive,
    check_send_batch,
};

use crate::{Db, WriteTx};

/// SQS's largest message body (1 MiB since 2025).
const MAX_BODY_BYTES: usize = 1024 * 1024;

pub struct EmbeddedQueue {
    db: Db,
    clock: Arc<dyn Clock>,
    max_receives: u32,
}

fn backend(error: rusqlite::Error) -> QueueError {
    QueueError::Backend(error.to_string())
}

fn dead_letter_name(queue: QueueName) -> String {
    format!("{}-dlq", queue.as_str())
}

impl EmbeddedQueue {
    pub(crate) fn new(db: Db, clock: Arc<dyn Clock>, max_receives: u32) -> Self {
        EmbeddedQueue { db, clock, max_receives }
    }

    /// Messages waiting or in flight in a queue (for reports and tests).
    pub async fn depth(&self, queue: QueueName) -> Result<u64, QueueError> {
        self.count_in(queue.as_str().to_string()).await
    }

    /// Messages under one queue name (a queue or its dead-letter queue).
    async fn count_in(&self, name: String) -> Result<u64, QueueError> {
        self.db
            .run(move |connection| {
                connection
                    .prepare_cached("SELECT COUNT(*) FROM queue_messages WHERE queue = ?1")
                    .and_then(|mut statement| statement.query_row(params![name], |row| row.get::<_, i64>(0)))
                    .map(|n| n as u64)
                    .map_err(backend)
            })
            .await
    }

    /// Moves every message of `queue`'s dead-letter queue back to `queue`, visible now and with
    /// its receive count reset: SQS's dead-letter redrive, what an operator runs after a fix.
    /// Returns how many moved.
    pub async fn redrive(&self, queue: QueueName) -> Result<u64, QueueError> {
        let (live, dead) = (queue.as_str().to_string(), dead_letter_name(queue));
        let now = self.clock.now().as_microsecond();
        self.db
            .run(move |connection| {
                let tx = WriteTx::begin(connection).map_err(backend)?;
                let moved = tx
                    .prepare_cached(
                        "UPDATE queue_messages SET queue = ?1, receive_count = 0, receipt = NULL, visible_at = ?2 \
                         WHERE queue = ?3",
                    )
                    .and_then(|mut statement| statement.execute(params![live, now, dead]))
                    .map_err(backend)?;
                tx.commit().map_err(backend)?;
                Ok(moved as u64)
            })
            .await
    }

    /// The bodies of every message in a queue or, with `dead_letters`, in its dead-letter queue,
    /// waiting or in flight, oldest first: what the demo's invariants count and explain.
    pub async fn bodies(&self, queue: QueueName, dead_letters: bool) -> Result<Vec<String>, QueueError> {
        let name = if dead_letters { dead_letter_name(queue) } else { queue.as_str().to_string() };
        self.db
            .run(move |connection| {
                let mut statement = connection
                    .prepare("SELECT body FROM queue_messages WHERE queue = ?1 ORDER BY seq")
                    .map_err(backend)?;
                let bodies: Vec<String> = statement
                    .query_map(params![name], |row| row.get::<_, String>(0))
                    .map_err(backend)?
                    .collect::<Result<_, _>>()
                    .map_err(backend)?;
                Ok(bodies)
            })
            .await
    }
}

fn micros(duration: Duration) -> i64 {
    duration.as_micros().min(i64::MAX as u128) as i64
}

#[async_trait]
impl Queue for EmbeddedQueue {
    async fn send_batch(
        &self,
        queue: QueueName,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<SendOutcome>, QueueError> {
        check_send_batch(&messages)?;
        let now = self.clock.now().as_microsecond();
        let name = queue.as_str().to_string();
        self.db
            .run(move |connection| {
                let tx = WriteTx::begin(connection).map_err(backend)?;
                let mut outcomes = Vec::with_capacity(messages.len());
                for message in messages {
                    if message.body.len() > MAX_BODY_BYTES {
                        outcomes
                            .push(SendOutcome { id: message.id, error: Some("the message body exceeds 1 MiB".into()) });
                        continue;
                    }
                    if message.delay.is_some_and(|d| d > MAX_DELAY) {
                        outcomes
                            .push(SendOutcome { id: message.id, error: Some("the delay exceeds 15 minutes".into()) });
                        continue;
                    }
                    let visible_at = now + message.delay.map_or(0, micros);
                    let message_id = format!("m-{}-{}", now, rand_suffix());
                    tx.prepare_cached(
                        "INSERT INTO queue_messages (queue, message_id, body, visible_at) VALUES (?1, ?2, ?3, ?4)",
                    )
                    .and_then(|mut statement| statement.execute(params![name, message_id, message.body, visible_at]))
                    .map_err(backend)?;
                    outcomes.push(SendOutcome { id: message.id, error: None });
                }
                tx.commit().map_err(backend)?;
                Ok(outcomes)
            })
            .await
    }

    async fn receive(
        &self,
        queue: QueueName,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        check_receive(max)?;
        let now = self.clock.now().as_microsecond();
        let hidden_until = now + micros(visibility);
        let name = queue.as_str().to_string();
        let dead_letters = dead_letter_name(queue);
        let max_receives = self.max_receives;
        self.db.run(move |connection| {
            let tx = WriteTx::begin(connection).map_err(backend)?;
            let mut received = Vec::new();
            loop {
                let candidates: Vec<(i64, String, String, u32)> = {
                    let mut statement = tx
                        .prepare_cached(
                            "SELECT seq, message_id, body, receive_count FROM queue_messages
                             WHERE queue = ?1 AND visible_at <= ?2 ORDER BY seq LIMIT ?3",
                        )
                        .map_err(backend)?;
                    statement
                        .query_map(params![name, now, (max - received.len()) as i64], |row| {
                            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                        })
                        .map_err(backend)?
                        .collect::<Result<_, _>>()
                        .map_err(backend)?
                };
                if candidates.is_empty() {
                    break;
                }
                for (seq, message_id, body, count) in candidates {
                    if count >= max_receives {
                        // Received too often without being deleted: park it for a person to look at.
                        tx.prepare_cached(
                            "UPDATE queue_messages SET queue = ?1, receipt = NULL, visible_at = ?2 WHERE seq = ?3",
                        )
                        .and_then(|mut statement| statement.execute(params![dead_letters, now, seq]))
                        .map_err(backend)?;
                        continue;
                    }
                    let receipt = format!("r-{seq}-{}", rand_suffix());
                    tx.prepare_cached(
                        "UPDATE queue_messages SET receive_count = receive_count + 1, receipt = ?1, visible_at = ?2 WHERE seq = ?3",
                    )
                    .and_then(|mut statement| statement.execute(params![receipt, hidden_until, seq]))
                    .map_err(backend)?;
                    received.push(ReceivedMessage { message_id, receipt, body, receive_count: count + 1 });
                }
                if received.len() >= max {
                    break;
                }
            }
            tx.commit().map_err(backend)?;
            Ok(received)
        })
        .await
    }

    async fn delete(&self, _queue: QueueName, receipt: &str) -> Result<(), QueueError> {
        let receipt = receipt.to_string();
        self.db
            .run(move |connection| {
                // A stale receipt (the message was received again since) deletes nothing, like SQS.
                connection
                    .prepare_cached("DELETE FROM queue_messages WHERE receipt = ?1")
                    .and_then(|mut statement| statement.execute(params![receipt]))
                    .map_err(backend)?;
                Ok(())
            })
            .await
    }

    async fn dead_letter_count(&self, queue: QueueName) -> Result<u64, QueueError> {
        self.count_in(dead_letter_name(queue)).await
    }
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{n:x}{nanos:x}")
}
