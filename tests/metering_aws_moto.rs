//! The cost model's count against the AWS adapters' own: real work (a contact captured, a send
//! queued, consumed by the sender and mailed, pages of a query, a batch write, a transaction)
//! runs through `Metered<AWS adapter>` against moto_server, and the meter's requests per operation
//! must equal the calls the adapters counted themselves, exactly.
//!
//! Capacity units: moto does not compute them (it reports a fixed 1.0 per write and query and 0.5
//! per GetItem, whatever the item), so they are compared only where that fixed figure is
//! DynamoDB's own: puts and deletes of small items outside the index, which must agree exactly
//! (moto reports 0.5 for an UpdateItem and nothing for a transaction).
//! The unit rules themselves are pinned by the unit tests of `ports::metered` against DynamoDB's
//! documented examples.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Map, json};
use voronka_aws::{DynamoStore, QueueUrls, SesMailer, SqsQueue};
use voronka_domain::deps::{Deps, Ports};
use voronka_domain::model::{
    Channel, ConsentReceipt, Contact, EmailAddress, Priority, SendClass, SendOrigin, SendRequest,
};
use voronka_domain::ports::{
    Driver, Function, Index, Item, Key, Meter, Metered, OutgoingMessage, Query, Queue, QueueName, SimulatedClock,
    Store, TransactOp, UpdateAction, consume_batch, query_all, send_all,
};
use voronka_domain::repo::ContactRepository;
use voronka_domain::repo::journey_state::{Group, JourneyState};
use voronka_domain::sending::origin::journey_send_key;
use voronka_domain::signing::Secrets;

fn metered_calls(meter: &Meter) -> BTreeMap<String, u64> {
    let mut calls = BTreeMap::new();
    for row in meter.snapshot() {
        for (operation, n) in row.usage.calls {
            *calls.entry(operation.to_string()).or_default() += n;
        }
    }
    calls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_meter_counts_the_calls_the_aws_adapters_make() {
    let config = support::moto::sdk_config().await;
    let suffix = std::process::id();
    let table = format!("voronka-metering-{suffix}");
    support::moto::create_table(&config, &table).await;
    let (events, events_dlq) = support::moto::create_queue(&config, &format!("events-m-{suffix}"), 5).await;
    let (sends, sends_dlq) = support::moto::create_queue(&config, &format!("sends-m-{suffix}"), 5).await;
    let ses = aws_sdk_sesv2::Client::new(&config);
    ses.create_email_identity().email_identity("shop.example").send().await.expect("verify the sending domain in moto");

    // Noon in Moscow: outside quiet hours whatever the real time is.
    let clock = Arc::new(SimulatedClock::starting_at("2026-11-23T09:00:00Z".parse::<Timestamp>().unwrap()));
    let dynamo = Arc::new(DynamoStore::new(&config, table.clone(), clock.clone()));
    let sqs = Arc::new(SqsQueue::new(
        &config,
        QueueUrls { events, events_dlq: Some(events_dlq), sends, sends_dlq: Some(sends_dlq) },
    ));
    let ses_mailer = Arc::new(SesMailer::new(&config, None));
    let meter = Meter::new();
    let store = Arc::new(Metered::new(dynamo.clone(), meter.clone()));
    let queue = Arc::new(Metered::new(sqs.clone(), meter.clone()));
    let campaigns = voronka_campaigns::bundled().unwrap();
    let deps = sender::SenderDeps {
        templates: Arc::new(campaigns.template_set()),
        shared: Deps {
            ports: Ports { store: store.clone(), queue: queue.clone(), clock: clock.clone() },
            secrets: Arc::new(Secrets::new("k".repeat(40), "e".repeat(40))),
            campaigns: Arc::new(campaigns),
        },
        mailer: Arc::new(Metered::new(ses_mailer.clone(), meter.clone())),
        public_base_url: "https://api.shop.example".into(),
        rate: Arc::new(sender::rate::RateGate::per_second(50.0)),
        reputation: Default::default(),
    };
    let now = voronka_domain::ports::Clock::now(clock.as_ref());

    // Lead capture's part: the contact, the journey run, the send queued.
    let request = meter
        .invoke(Function::LeadCapture, Driver::Lead, async {
            let email = EmailAddress::parse("anna@example.com").unwrap();
            let (contact, _) = ContactRepository::new(store.as_ref())
                .upsert_by_email(
                    &email,
                    now,
                    || Contact::new("c_meter1".into(), now, "ru".into(), "Europe/Moscow".into()),
                    |c| {
                        c.first_name = Some("Анна".into());
                        c.record_consent(ConsentReceipt::granted("r1", now, "v1", false));
                    },
                )
                .await
                .unwrap();
            let run =
                JourneyState { version: 1, ..JourneyState::new_run("welcome", &contact.id, 1, Group::Treatment, now) };
            store.put(run.to_item(), None).await.unwrap();
            let request = SendRequest {
                idempotency_key: journey_send_key("welcome", &contact.id, 1, "s1", 1),
                contact_id: contact.id.clone(),
                template: "welcome".into(),
                channel: Channel::Email,
                class: SendClass::Marketing,
                priority: Priority::Journey,
                context: Map::new(),
                origin: SendOrigin::Journey { journey_id: "welcome".into(), step_id: "s1".into() },
                requested_at: now,
                recipient: voronka_domain::model::Recipient::Contact,
            };
            let message = OutgoingMessage::new("0", serde_json::to_string(&request).unwrap());
            send_all(queue.as_ref(), QueueName::Sends, vec![message]).await.unwrap();
            request
        })
        .await;

    // The sender's invocation, as the event source hands it the batch and deletes what it did.
    let mut received = 0;
    for _ in 0..10 {
        received += consume_batch(queue.as_ref(), QueueName::Sends, &deps, 10, Duration::from_secs(30)).await.unwrap();
        if received > 0 {
            break;
        }
    }
    assert_eq!(received, 1, "the send was consumed");
    assert_eq!(ses_mailer.calls().snapshot().get("sesv2.SendEmail"), Some(&1), "and mailed once");
    let _ = request;

    // Reads and writes of every other shape: a batch write of indexed items, a query read in
    // pages on the table and on the index, a transaction, an update and a delete, the DLQ depth.
    let items: Vec<Item> = (0..25)
        .map(|n| {
            Item::new(&Key::new("METER#batch", format!("{n:03}")), json!({"n": n, "text": "x".repeat(300)}))
                .with_gsi1("METERQ#1", format!("{n:03}"))
        })
        .collect();
    store.batch_put(items).await.unwrap();
    let table_pages = query_all(store.as_ref(), Query::partition(Index::Table, "METER#batch").limit(10)).await.unwrap();
    assert_eq!(table_pages.len(), 25);
    let index_pages = query_all(store.as_ref(), Query::partition(Index::Gsi1, "METERQ#1").limit(10)).await.unwrap();
    assert_eq!(index_pages.len(), 25);
    store
        .transact(vec![
            TransactOp::Put { item: Item::new(&Key::new("METER#tx", "a"), json!({"v": 1})), condition: None },
            TransactOp::Update {
                key: Key::new("METER#batch", "000"),
                actions: vec![UpdateAction::add("n", 1)],
                condition: None,
            },
        ])
        .await
        .unwrap();
    store.update(&Key::new("METER#tx", "a"), vec![UpdateAction::set("v", 2)], None).await.unwrap();
    store.delete(&Key::new("METER#tx", "a"), None).await.unwrap();
    queue.dead_letter_count(QueueName::Sends).await.unwrap();

    let mut adapters: BTreeMap<String, u64> = BTreeMap::new();
    for counter in [dynamo.calls(), sqs.calls(), ses_mailer.calls()] {
        for (operation, n) in counter.snapshot() {
            *adapters.entry(operation.to_string()).or_default() += n;
        }
    }
    let metered = metered_calls(&meter);
    assert_eq!(metered, adapters, "the meter counts exactly the requests the AWS adapters made");
    for operation in
        ["dynamodb.BatchWriteItem", "dynamodb.Query", "dynamodb.TransactWriteItems", "sqs.DeleteMessageBatch"]
    {
        assert!(adapters.get(operation).copied().unwrap_or(0) > 0, "the work included {operation}: {adapters:?}");
    }
    // 25 items in pages of 10, on the table and the index; and the sender's one look at the
    // reputation guard's window before its marketing send.
    assert_eq!(
        adapters.get("dynamodb.Query"),
        Some(&(2 * 3 + 1)),
        "25 items in pages of 10, on the table and the index"
    );
    assert_eq!(adapters.get("sqs.DeleteMessage"), None, "the consumer deletes in batches");
    // The adapter asks for and keeps the consumed capacity (moto reports none for transactions).
    let reported = dynamo.calls().capacity();
    for (operation, _) in dynamo.calls().snapshot() {
        let units = reported.get(operation).copied().unwrap_or(0.0);
        assert!(units > 0.0 || operation == "dynamodb.TransactWriteItems", "{operation}: {reported:?}");
    }
    let sender_row = meter.snapshot().into_iter().find(|row| row.function == Function::LeadCapture).unwrap();
    assert_eq!(sender_row.usage.invocations, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_single_item_writes_cost_what_moto_reports() {
    let config = support::moto::sdk_config().await;
    let table = format!("voronka-metering-units-{}", std::process::id());
    support::moto::create_table(&config, &table).await;
    let clock = Arc::new(SimulatedClock::starting_at("2026-11-23T09:00:00Z".parse::<Timestamp>().unwrap()));
    let dynamo = Arc::new(DynamoStore::new(&config, table, clock));
    let meter = Meter::new();
    let store = Metered::new(dynamo.clone(), meter.clone());
    for n in 0..3 {
        store.put(Item::new(&Key::new("SMALL#1", format!("{n}")), json!({"v": n})), None).await.unwrap();
    }
    store.delete(&Key::new("SMALL#1", "1"), None).await.unwrap();
    store.delete(&Key::new("SMALL#1", "2"), None).await.unwrap();

    let ours: f64 = meter.snapshot().iter().map(|row| row.usage.write_units).sum();
    let moto: f64 = dynamo.calls().capacity().values().sum();
    assert_eq!(ours, 5.0, "five writes of items under 1 KB, one unit each");
    assert_eq!(ours, moto, "moto reports one unit per small write too");
}
