//! The sender on the AWS adapters against moto_server: DynamoDB holds the ledger and the caps,
//! SQS the queues, SES v2 takes the mail. The same request delivered five times, two of them at
//! once, makes exactly one SES call.

mod support;

use std::sync::Arc;

use jiff::Timestamp;
use serde_json::Map;
use voronka_aws::{DynamoStore, QueueUrls, SesMailer, SqsQueue};
use voronka_domain::deps::{Deps, Ports};
use voronka_domain::model::{
    Channel, ConsentReceipt, Contact, EmailAddress, Priority, SendClass, SendOrigin, SendRequest,
};
use voronka_domain::ports::{Delivery, SimulatedClock};
use voronka_domain::repo::journey_state::{Group, JourneyState};
use voronka_domain::repo::{ContactRepository, SendLedger};
use voronka_domain::sending::origin::journey_send_key;
use voronka_domain::signing::Secrets;

async fn sent_messages(endpoint: &str) -> Vec<serde_json::Value> {
    let data: serde_json::Value =
        reqwest::get(format!("{endpoint}/moto-api/data.json")).await.unwrap().json().await.unwrap();
    // moto's SES backend (shared by v1 and v2) lists raw sends under `RawMessage`.
    data["ses"]["RawMessage"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_deliveries_two_concurrent_make_exactly_one_ses_call() {
    let config = support::moto::sdk_config().await;
    let suffix = std::process::id();
    let table = format!("voronka-sender-{suffix}");
    support::moto::create_table(&config, &table).await;
    let (events, events_dlq) = support::moto::create_queue(&config, &format!("events-s-{suffix}"), 5).await;
    let (sends, sends_dlq) = support::moto::create_queue(&config, &format!("sends-s-{suffix}"), 5).await;
    let ses = aws_sdk_sesv2::Client::new(&config);
    ses.create_email_identity().email_identity("shop.example").send().await.expect("verify the sending domain in moto");

    // Noon in Moscow: outside quiet hours whatever the real time is.
    let clock = Arc::new(SimulatedClock::starting_at("2026-11-23T09:00:00Z".parse::<Timestamp>().unwrap()));
    let store = Arc::new(DynamoStore::new(&config, table, clock.clone()));
    let mailer = Arc::new(SesMailer::new(&config, None));
    let campaigns = voronka_campaigns::bundled().unwrap();
    let deps = sender::SenderDeps {
        templates: Arc::new(campaigns.template_set()),
        shared: Deps {
            ports: Ports {
                store: store.clone(),
                queue: Arc::new(SqsQueue::new(
                    &config,
                    QueueUrls { events, events_dlq: Some(events_dlq), sends, sends_dlq: Some(sends_dlq) },
                )),
                clock: clock.clone(),
            },
            secrets: Arc::new(Secrets::new("k".repeat(40), "e".repeat(40))),
            campaigns: Arc::new(campaigns),
        },
        mailer: mailer.clone(),
        public_base_url: "https://api.shop.example".into(),
        rate: Arc::new(sender::rate::RateGate::per_second(50.0)),
        reputation: Default::default(),
    };

    let now = clock.as_ref();
    let now = voronka_domain::ports::Clock::now(now);
    let email = EmailAddress::parse("anna@example.com").unwrap();
    let (contact, _) = ContactRepository::new(store.as_ref())
        .upsert_by_email(
            &email,
            now,
            || Contact::new("c_moto1".into(), now, "ru".into(), "Europe/Moscow".into()),
            |c| {
                c.first_name = Some("Анна".into());
                c.record_consent(ConsentReceipt::granted("r1", now, "v1", false));
            },
        )
        .await
        .unwrap();
    // The journey run that issues the email, live (the sender asks it at send time).
    let run = JourneyState { version: 1, ..JourneyState::new_run("welcome", &contact.id, 1, Group::Treatment, now) };
    voronka_domain::ports::Store::put(store.as_ref(), run.to_item(), None).await.unwrap();
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
    let delivery = || Delivery { message_id: "m".into(), body: serde_json::to_string(&request).unwrap() };
    let (a, b) =
        tokio::join!(sender::process_batch(&deps, vec![delivery()]), sender::process_batch(&deps, vec![delivery()]));
    assert!(a.len() + b.len() <= 1);
    for _ in 0..3 {
        sender::process_batch(&deps, vec![delivery()]).await;
    }
    assert_eq!(mailer.calls().snapshot().get("sesv2.SendEmail"), Some(&1), "exactly one SES call");
    let ledger = SendLedger::new(store.as_ref()).state(&request.idempotency_key).await.unwrap().unwrap();
    assert_eq!(ledger.get_str("state"), Some("sent"));
    let message_id = ledger.get_str("message_id").unwrap().to_string();
    assert!(!message_id.is_empty(), "SES's message id is recorded");

    let sent = sent_messages(&support::moto::endpoint()).await;
    let ours: Vec<_> =
        sent.iter().filter(|m| m["raw_data"].as_str().is_some_and(|r| r.contains("anna@example.com"))).collect();
    assert_eq!(ours.len(), 1, "moto saw one message: {sent:?}");
    let raw = ours[0]["raw_data"].as_str().unwrap();
    assert!(raw.contains("List-Unsubscribe: <https://api.shop.example/v1/unsubscribe?token="), "{raw}");
    assert!(raw.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"));
    assert_eq!(ours[0]["id"].as_str(), Some(message_id.as_str()), "the ledger holds SES's message id");
}
