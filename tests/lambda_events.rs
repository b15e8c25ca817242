//! Every sample payload in `events/` goes through the Lambda entry point (`lead_capture::lambda`,
//! which qualify-bot's and kpi-api's `main.rs` run too) exactly as API Gateway would deliver it,
//! and answers the status `expectations.json` lists; the scheduled samples run the rollup theirs
//! names.
//! A sample without an expectation, or an expectation without a sample, fails the test.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;

use support::inprocess::TestStack;
use voronka_domain::ports::Delivery;

fn samples_dir(function: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../events").join(function)
}

/// The sample files of `dir` (sorted) and what `expectations.json` expects of each; every
/// sample has exactly one expectation.
fn samples_and_expectations<T: serde::de::DeserializeOwned>(
    dir: &std::path::Path,
) -> (Vec<String>, BTreeMap<String, T>) {
    let expectations: BTreeMap<String, T> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expectations.json")).unwrap()).unwrap();
    let mut samples: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".json") && name != "expectations.json")
        .collect();
    samples.sort();
    assert_eq!(samples, expectations.keys().cloned().collect::<Vec<_>>(), "every sample has one expectation");
    (samples, expectations)
}

/// Feeds every API Gateway sample of `function` through the Lambda entry point with `router` and
/// checks each status against `expectations.json` (one expectation per sample, no more).
async fn every_sample_answers_its_expected_status(function: &str, router: axum::Router) {
    let dir = samples_dir(function);
    let (samples, expectations) = samples_and_expectations::<u16>(&dir);
    for name in samples {
        let text = std::fs::read_to_string(dir.join(&name)).unwrap();
        let request =
            lambda_http::request::from_str(&text).unwrap_or_else(|e| panic!("{name} is not an API Gateway event: {e}"));
        let source_ip = lead_capture::lambda::client_ip(&request);
        assert!(source_ip.is_some(), "{name}: the client address comes from the request context");
        let response = lead_capture::lambda::handle(router.clone(), request).await.unwrap();
        assert_eq!(response.status().as_u16(), expectations[&name], "{name}: {:?}", response.body());
    }
}

#[tokio::test]
async fn every_lead_capture_sample_answers_its_expected_status() {
    let t = TestStack::new();
    every_sample_answers_its_expected_status("lead-capture", lead_capture::router(t.stack.state.clone())).await;
}

#[tokio::test]
async fn every_qualify_bot_sample_answers_its_expected_status() {
    use voronka_domain::repo::bot_sessions::{DEFAULT_SESSION_TTL, SessionOrigin};
    use voronka_domain::repo::{BotSessions, StoredBotSession};

    let t = TestStack::new();
    // The answer samples talk to this session, waiting for its first answer.
    let now = voronka_domain::ports::Clock::now(t.clock.as_ref());
    let script = &t.stack.state.campaigns.bots["b2b_demo"];
    let started = voronka_domain::bots::start(script, Some("en"), now);
    let mut stored = StoredBotSession::new(
        format!("bs_{}1", "0".repeat(31)),
        script.id.clone(),
        started.session,
        SessionOrigin::default(),
        now,
        DEFAULT_SESSION_TTL,
    );
    BotSessions::new(t.stack.state.store.as_ref()).save(&mut stored).await.unwrap();

    every_sample_answers_its_expected_status("qualify-bot", qualify_bot::router(t.stack.state.clone())).await;
}

#[tokio::test]
async fn every_kpi_api_sample_answers_its_expected_status() {
    let t = TestStack::new();
    // As on Lambda: the admin guard trusts the IAM identity API Gateway's authoriser left in the
    // request context, and refuses a request without one.
    let mut state = t.stack.state.clone();
    state.admin_access = lead_capture::admin::AdminAccess::IamAuthorizer;
    every_sample_answers_its_expected_status("kpi-api", kpi_rollup::router(state)).await;
    let stored = voronka_domain::repo::spend::spend_on(t.stack.state.store.as_ref(), "2026-11-20".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(stored.len(), 2, "the JSON sample's rows are stored: {stored:?}");
}

/// Every sample of `events/kpi-rollup/` is what EventBridge hands the kpi-rollup function; each
/// runs the rollup `expectations.json` names for it.
#[tokio::test]
async fn every_kpi_rollup_sample_runs_its_rollup() {
    let dir = samples_dir("kpi-rollup");
    let (samples, expectations) = samples_and_expectations::<String>(&dir);
    let t = TestStack::new();
    let settings = &t.stack.state.campaigns.settings;
    let today = voronka_domain::repo::aggregates::date(voronka_domain::ports::Clock::now(t.clock.as_ref()), settings);
    for name in samples {
        let event: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(&name)).unwrap()).unwrap();
        let outcome =
            kpi_rollup::scheduled(&t.stack.scheduler, settings, &event).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        let days = match expectations[&name].as_str() {
            "hourly" => vec![today],
            "nightly" => (1..=i64::from(settings.kpi.restate_days) + 1)
                .rev()
                .map(|back| today.checked_sub(jiff::Span::new().days(back)).unwrap())
                .collect(),
            other => panic!("{name}: unknown kind {other} in expectations.json"),
        };
        assert_eq!(outcome.days, days, "{name}");
    }
}

/// A sample SQS event as the Lambda entry point hands it to a consumer.
fn sqs_batch(path: &str) -> Vec<Delivery> {
    let text =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../events").join(path)).unwrap();
    let event: aws_lambda_events::event::sqs::SqsEvent =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not an SQS event: {e}"));
    voronka_aws::lambda_sqs::deliveries(event)
}

async fn sample_contact(t: &TestStack, email: &str) -> voronka_domain::model::Contact {
    use voronka_domain::model::{ConsentReceipt, Contact, EmailAddress};
    let now = voronka_domain::ports::Clock::now(t.clock.as_ref());
    let repo = voronka_domain::repo::ContactRepository::new(t.stack.state.store.as_ref());
    let (contact, _) = repo
        .upsert_by_email(
            &EmailAddress::parse(email).unwrap(),
            now,
            || Contact::new("c_sample".into(), now, "ru".into(), "Europe/Moscow".into()),
            |c| c.record_consent(ConsentReceipt::granted("r1", now, "v1", false)),
        )
        .await
        .unwrap();
    contact
}

#[tokio::test]
async fn the_sender_sample_batch_sends_two_and_fails_the_malformed_one() {
    let t = TestStack::new();
    sample_contact(&t, "anna.petrova@example.com").await;
    // The sample's journey send comes from a live run of `welcome` (the sender asks it at send time).
    let now = voronka_domain::ports::Clock::now(t.clock.as_ref());
    use voronka_domain::repo::journey_state::{Group, JourneyState};
    let run = JourneyState { version: 1, ..JourneyState::new_run("welcome", "c_sample", 1, Group::Treatment, now) };
    t.stack.state.store.put(run.to_item(), None).await.unwrap();
    let deliveries = sqs_batch("sender/sqs-send-requests.json");
    let failed = sender::process_batch(&t.stack.sender, deliveries).await;
    assert_eq!(failed, ["0c2a7f3e-0000-4000-8000-000000000003"], "only the malformed record fails, into the DLQ");
    assert_eq!(voronka_local::outbox::entries(t.stack.outbox.dir()).len(), 2);
}

#[tokio::test]
async fn the_evaluator_sample_batch_applies_ses_feedback_and_events() {
    use voronka_domain::model::SuppressionReason;
    let t = TestStack::new();
    let contact = sample_contact(&t, "anna.petrova@example.com").await;
    let deliveries = || sqs_batch("trigger-evaluator/sqs-events-and-ses-feedback.json");
    assert!(trigger_evaluator::process_batch(&t.stack.evaluator, deliveries()).await.is_empty());
    // A redelivered batch changes nothing twice.
    assert!(trigger_evaluator::process_batch(&t.stack.evaluator, deliveries()).await.is_empty());
    let repo = voronka_domain::repo::ContactRepository::new(t.stack.state.store.as_ref());
    let after = repo.get(&contact.id).await.unwrap().unwrap();
    assert!(after.suppressions.contains_key(&SuppressionReason::HardBounce));
    assert!(after.suppressions.contains_key(&SuppressionReason::Complaint));
    assert!(!after.email_consent().unwrap().allows_marketing(), "a complaint withdraws consent");
    assert_eq!(after.engagement_score, 3, "one click, counted once");
    let buyer = repo
        .find_by_email(&voronka_domain::model::EmailAddress::parse("buyer@example.com").unwrap())
        .await
        .unwrap()
        .expect("a signed purchase makes its buyer a contact");
    assert_eq!(buyer.orders.orders, 1);
    assert_eq!(buyer.orders.revenue_minor, 799_000);
    assert_eq!(buyer.stage.as_str(), "customer");
    assert!(buyer.email_consent().is_none(), "a purchase grants no marketing consent");
}

#[tokio::test]
async fn the_scheduler_sample_event_runs_a_dispatch() {
    let text = std::fs::read_to_string(samples_dir("cart-scheduler").join("scheduled-event.json")).unwrap();
    let event: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(event["detail-type"], "Scheduled Event");
    let t = TestStack::new();
    let report = cart_scheduler::run(&t.stack.scheduler).await.unwrap();
    assert_eq!(report.dispatched, 0);
    assert!(
        cart_scheduler::last_run(t.stack.state.store.as_ref()).await.unwrap().is_some(),
        "the cursor records the run"
    );
}

#[tokio::test]
async fn the_cart_sample_batch_builds_and_abandons_a_cart() {
    let t = TestStack::new();
    let deliveries = sqs_batch("trigger-evaluator/sqs-cart-events.json");
    assert!(trigger_evaluator::process_batch(&t.stack.evaluator, deliveries).await.is_empty());
    let cart =
        trigger_evaluator::carts::load(t.stack.state.store.as_ref(), "cart-1001").await.unwrap().expect("a cart");
    assert_eq!(cart.owner, "anon:anon-7f3a");
    assert_eq!(cart.status, voronka_domain::model::CartStatus::Abandoned, "idle since its only activity");
    assert_eq!(cart.total(), 7990.0);
}
