//! Set-up that starts at cold start without holding up the runtime's first poll for work.
//!
//! A function's clients, secrets and campaign content are only needed by its first invocation, so
//! `main` starts building them in a task and hands the runtime a [`Deferred`] that the handler
//! awaits: the Secrets Manager round trips and the content parse overlap the runtime's
//! `GET /next` instead of preceding it. The value is built once and kept for the container; a
//! failed set-up is logged, fails that invocation, and is tried again by the next one.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;
use tokio::task::JoinHandle;

type SetUp<T> = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<T, String>> + Send>> + Send + Sync>;

pub struct Deferred<T> {
    value: OnceCell<T>,
    started: Mutex<Option<JoinHandle<Result<T, String>>>>,
    set_up: SetUp<T>,
}

impl<T: Send + Sync + 'static> Deferred<T> {
    /// Starts `set_up` on the runtime now; [`Deferred::get`] waits for it.
    pub fn start<F, Fut>(set_up: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, String>> + Send + 'static,
    {
        let set_up: SetUp<T> = Arc::new(move || Box::pin(set_up()));
        let started = tokio::spawn(set_up());
        Self { value: OnceCell::new(), started: Mutex::new(Some(started)), set_up }
    }

    /// The value, once set up (at most one set-up runs at a time).
    pub async fn get(&self) -> Result<&T, String> {
        self.value
            .get_or_try_init(|| async {
                let started = self.started.lock().unwrap_or_else(|p| p.into_inner()).take();
                let result = match started {
                    Some(task) => task.await.unwrap_or_else(|e| Err(format!("the set-up task failed: {e}"))),
                    None => (self.set_up)().await,
                };
                if let Err(message) = &result {
                    tracing::error!(error = %message, "set-up failed; the next invocation tries again");
                }
                result
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn a_value_is_set_up_once_and_a_failure_is_tried_again() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let deferred = Deferred::start(move || {
            let call = counter.fetch_add(1, Ordering::SeqCst);
            async move { if call == 0 { Err("the secret is missing".to_string()) } else { Ok(call) } }
        });
        assert_eq!(deferred.get().await.unwrap_err(), "the secret is missing");
        assert_eq!(*deferred.get().await.unwrap(), 1);
        assert_eq!(*deferred.get().await.unwrap(), 1);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
