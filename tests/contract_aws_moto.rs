//! The port contract on the AWS adapters (DynamoDB, SQS), talking the real wire protocols to a
//! `moto_server` started by the tests. Each test gets its own table and queues.

mod support;

use std::sync::Arc;

use voronka_aws::{DynamoStore, QueueUrls, SqsQueue};
use voronka_contract::{Harness, Wait};
use voronka_domain::ports::SystemClock;

const MAX_RECEIVES: u32 = 5;

async fn moto() -> Harness {
    let config = support::moto::sdk_config().await;
    let suffix = format!("{}-{}", std::process::id(), rand_suffix());
    let table = format!("voronka-{suffix}");
    support::moto::create_table(&config, &table).await;
    let (events, events_dlq) = support::moto::create_queue(&config, &format!("events-{suffix}"), MAX_RECEIVES).await;
    let (sends, sends_dlq) = support::moto::create_queue(&config, &format!("sends-{suffix}"), MAX_RECEIVES).await;
    let clock = Arc::new(SystemClock);
    let store = Arc::new(DynamoStore::new(&config, table, clock.clone()));
    let urls = QueueUrls { events, events_dlq: Some(events_dlq), sends, sends_dlq: Some(sends_dlq) };
    let queue = Arc::new(SqsQueue::new(&config, urls));
    let wait: Wait = Arc::new(|duration| Box::pin(tokio::time::sleep(duration)));
    Harness { store, queue, clock, wait, max_receives: MAX_RECEIVES }
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{}", N.fetch_add(1, Ordering::Relaxed))
}

voronka_contract::contract_tests!(moto);

/// The adapters count their AWS calls, for the cost report.
#[tokio::test]
async fn the_adapters_count_their_calls() {
    use voronka_domain::ports::{Item, Key, Store};
    let config = support::moto::sdk_config().await;
    let table = format!("voronka-calls-{}", std::process::id());
    support::moto::create_table(&config, &table).await;
    let store = DynamoStore::new(&config, table, Arc::new(SystemClock));
    store.put(Item::new(&Key::new("A", "B"), serde_json::json!({})), None).await.unwrap();
    store.get(&Key::new("A", "B")).await.unwrap();
    let calls = store.calls().snapshot();
    assert_eq!(calls.get("dynamodb.PutItem"), Some(&1));
    assert_eq!(calls.get("dynamodb.GetItem"), Some(&1));
}
