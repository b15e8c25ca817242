//! Reading back what a run left, below the ports the functions use: every item of a kind, the
//! messages a queue or its dead-letter queue holds, and the sent mail as `.eml` files; plus the
//! two operator actions the demo performs on the adapters themselves (the dead-letter redrive of
//! the runbook, and the TTL sweep DynamoDB runs on its own). The demo's end-of-run steps and the
//! invariants go through this trait only, so the same checks run over the embedded adapters
//! (`EmbeddedInspect`) and over the AWS ones against moto (`tests/support/moto_inspect.rs`: the
//! binary links no AWS SDK).

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use voronka_domain::ports::{Item, QueueError, QueueName, StoreError};
use voronka_embedded::{Embedded, EmbeddedQueue, EmbeddedStore};

/// Called once per item, in no promised order.
pub type ItemVisitor = Box<dyn FnMut(Item) + Send>;
/// Called once per key (pk, sk), in no promised order.
pub type KeyVisitor = Box<dyn FnMut(&str, &str) + Send>;

#[async_trait]
pub trait Inspect: Send + Sync {
    /// Every item whose partition key starts with `prefix`, expired or not.
    async fn visit_items_under(&self, prefix: &str, visit: ItemVisitor) -> Result<(), StoreError>;
    /// The key of every item whose partition key starts with `prefix`, expired or not.
    async fn visit_keys_under(&self, prefix: &str, visit: KeyVisitor) -> Result<(), StoreError>;
    /// The bodies of every message in the queue or, with `dead_letters`, in its dead-letter
    /// queue: waiting, in flight or delayed.
    async fn bodies(&self, queue: QueueName, dead_letters: bool) -> Result<Vec<String>, QueueError>;
    /// Messages waiting, in flight or delayed in the queue or, with `dead_letters`, in its
    /// dead-letter queue.
    async fn depth(&self, queue: QueueName, dead_letters: bool) -> Result<u64, QueueError>;
    /// Moves every dead letter of the queue back onto it (the runbook's replay); returns how many.
    async fn redrive(&self, queue: QueueName) -> Result<u64, QueueError>;
    /// Deletes expired items where the store does not do it on its own.
    async fn sweep_expired(&self) -> Result<(), StoreError>;
    /// Makes every message the mail service took an `.eml` file in `outbox`, the bytes it was
    /// given (the invariants read the files).
    async fn export_sent_mail(&self, outbox: &Path) -> anyhow::Result<()>;
}

impl dyn Inspect {
    /// Folds every item under `prefix` into `init`, one at a time (a whole kind is never held).
    pub async fn fold_items_under<T: Send + 'static>(
        &self,
        prefix: &str,
        init: T,
        mut fold: impl FnMut(&mut T, Item) + Send + 'static,
    ) -> Result<T, StoreError> {
        let state = Arc::new(Mutex::new(init));
        let folding = state.clone();
        self.visit_items_under(prefix, Box::new(move |item| fold(&mut folding.lock().expect("not poisoned"), item)))
            .await?;
        Ok(unwrap_state(state))
    }

    /// Folds the key of every item under `prefix` into `init`.
    pub async fn fold_keys_under<T: Send + 'static>(
        &self,
        prefix: &str,
        init: T,
        mut fold: impl FnMut(&mut T, &str, &str) + Send + 'static,
    ) -> Result<T, StoreError> {
        let state = Arc::new(Mutex::new(init));
        let folding = state.clone();
        self.visit_keys_under(prefix, Box::new(move |pk, sk| fold(&mut folding.lock().expect("not poisoned"), pk, sk)))
            .await?;
        Ok(unwrap_state(state))
    }
}

/// The folded state, once the visitor holding the other reference is gone.
fn unwrap_state<T>(state: Arc<Mutex<T>>) -> T {
    match Arc::try_unwrap(state) {
        Ok(state) => state.into_inner().expect("not poisoned"),
        Err(_) => panic!("an inspection kept its visitor after it returned"),
    }
}

/// The embedded database read directly; its outbox mailer already wrote every message.
pub struct EmbeddedInspect {
    store: Arc<EmbeddedStore>,
    queue: Arc<EmbeddedQueue>,
}

impl EmbeddedInspect {
    pub fn new(embedded: &Embedded) -> Self {
        EmbeddedInspect { store: embedded.store.clone(), queue: embedded.queue.clone() }
    }
}

#[async_trait]
impl Inspect for EmbeddedInspect {
    async fn visit_items_under(&self, prefix: &str, mut visit: ItemVisitor) -> Result<(), StoreError> {
        self.store.fold_items_under(prefix, (), move |_, item| visit(item)).await
    }

    async fn visit_keys_under(&self, prefix: &str, mut visit: KeyVisitor) -> Result<(), StoreError> {
        self.store.fold_keys_under(prefix, (), move |_, pk, sk| visit(pk, sk)).await
    }

    async fn bodies(&self, queue: QueueName, dead_letters: bool) -> Result<Vec<String>, QueueError> {
        self.queue.bodies(queue, dead_letters).await
    }

    async fn depth(&self, queue: QueueName, dead_letters: bool) -> Result<u64, QueueError> {
        if dead_letters {
            voronka_domain::ports::Queue::dead_letter_count(self.queue.as_ref(), queue).await
        } else {
            self.queue.depth(queue).await
        }
    }

    async fn redrive(&self, queue: QueueName) -> Result<u64, QueueError> {
        self.queue.redrive(queue).await
    }

    async fn sweep_expired(&self) -> Result<(), StoreError> {
        self.store.purge_expired().await.map(|_| ())
    }

    async fn export_sent_mail(&self, _outbox: &Path) -> anyhow::Result<()> {
        Ok(())
    }
}
