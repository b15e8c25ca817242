//! The port contract on the embedded adapters (SQLite), with a simulated clock.

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use voronka_contract::{Harness, Wait};
use voronka_domain::ports::SimulatedClock;
use voronka_embedded::{DEFAULT_MAX_RECEIVES, Embedded};

async fn embedded() -> Harness {
    let clock = Arc::new(SimulatedClock::starting_at(Timestamp::now()));
    let embedded = Embedded::in_memory(clock.clone());
    let advancing = clock.clone();
    let wait: Wait = Arc::new(move |duration| {
        advancing.advance(SignedDuration::try_from(duration).expect("short duration"));
        Box::pin(async {})
    });
    Harness { store: embedded.store, queue: embedded.queue, clock, wait, max_receives: DEFAULT_MAX_RECEIVES }
}

voronka_contract::contract_tests!(embedded);

/// The embedded database is a file: what was written survives closing and reopening it.
#[tokio::test]
async fn embedded_data_survives_a_restart() {
    use serde_json::json;
    use voronka_domain::ports::{Item, Key, OutgoingMessage, Queue, QueueName, Store};
    let dir = std::env::temp_dir().join(format!("voronka-restart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("voronka.db");
    let _ = std::fs::remove_file(&path);
    let clock = Arc::new(voronka_domain::ports::SystemClock);
    {
        let embedded = Embedded::open(&path, clock.clone()).unwrap();
        embedded.store.put(Item::new(&Key::new("P", "S"), json!({"kept": true})), None).await.unwrap();
        embedded.queue.send_batch(QueueName::Events, vec![OutgoingMessage::new("1", "queued")]).await.unwrap();
    }
    let reopened = Embedded::open(&path, clock).unwrap();
    assert_eq!(reopened.store.get(&Key::new("P", "S")).await.unwrap().unwrap().get("kept"), Some(&json!(true)));
    let messages = reopened.queue.receive(QueueName::Events, 10, std::time::Duration::from_secs(30)).await.unwrap();
    assert_eq!(messages.len(), 1);
    std::fs::remove_dir_all(&dir).ok();
}
