//! SES feedback that lacks Voronka's tags (mail the shop's other systems sent on the same identity,
//! or a lost tag) still suppresses the person, found by the recipient address; feedback that
//! matches nobody is logged with its reason and without the address.
//!
//! Alone in its test binary with one test: it captures logs with a scoped subscriber, which is only
//! reliable when no other test runs beside it.

mod support;

use support::doubles::Captured;

use std::path::PathBuf;

use serde_json::Value;
use support::inprocess::TestStack;
use voronka_domain::model::{ConsentReceipt, Contact, EmailAddress, SuppressionReason};
use voronka_domain::ports::Clock;
use voronka_domain::repo::ContactRepository;

/// The SES developer guide's Bounce and Complaint examples, as an SQS batch.
fn guide_examples() -> Vec<voronka_domain::ports::Delivery> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../events/trigger-evaluator/sqs-ses-feedback-without-tags.json");
    let event: aws_lambda_events::event::sqs::SqsEvent =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    voronka_aws::lambda_sqs::deliveries(event)
}

#[tokio::test(flavor = "current_thread")]
async fn ses_feedback_without_voronkas_tags_suppresses_the_contact_found_by_the_recipient_address() {
    let captured = Captured::default();
    let writer = captured.clone();
    let _guard = tracing::subscriber::set_default(voronka_telemetry::json_subscriber(move || writer.clone()));

    // Nobody has the address yet: the feedback is unmatched, creates nobody, and says why.
    let t = TestStack::new();
    let failed = trigger_evaluator::process_batch(&t.stack.evaluator, guide_examples()).await;
    assert!(failed.is_empty(), "unmatched feedback is not retried into the DLQ: {failed:?}");
    let repo = ContactRepository::new(t.stack.state.store.as_ref());
    assert!(repo.list_all().await.unwrap().is_empty(), "feedback never creates a contact");
    let logs = captured.text();
    let lines: Vec<Value> = logs.lines().map(|l| serde_json::from_str(l).expect("every log line is JSON")).collect();
    let unmatched: Vec<&Value> = lines
        .iter()
        .filter(|l| l["level"] == "INFO" && l["fields"]["message"] == "ses feedback matched no contact")
        .collect();
    assert_eq!(unmatched.len(), 2, "each unmatched record is logged at info: {logs}");
    assert!(unmatched.iter().all(|l| l["fields"]["reason"].as_str().is_some_and(|r| r.contains("recipient"))));
    assert!(!logs.to_lowercase().contains("example.com"), "no address in the logs:\n{logs}");

    // The address is a contact (typed in another spelling): both records reach it.
    let now = t.clock.now();
    let (contact, _) = repo
        .upsert_by_email(
            &EmailAddress::parse("Recipient@Example.com").unwrap(),
            now,
            || Contact::new("c_recipient".into(), now, "ru".into(), "Europe/Moscow".into()),
            |c| c.record_consent(ConsentReceipt::granted("r1", now, "v1", false)),
        )
        .await
        .unwrap();
    assert!(trigger_evaluator::process_batch(&t.stack.evaluator, guide_examples()).await.is_empty());
    assert!(trigger_evaluator::process_batch(&t.stack.evaluator, guide_examples()).await.is_empty());
    let after = repo.get(&contact.id).await.unwrap().unwrap();
    assert!(after.suppressions.contains_key(&SuppressionReason::HardBounce), "the bounce suppresses");
    assert!(after.suppressions.contains_key(&SuppressionReason::Complaint), "the complaint suppresses");
    assert!(!after.email_consent().unwrap().allows_marketing(), "a complaint withdraws consent");
    assert_eq!(after.version, contact.version + 2, "each record applied once, redelivery changes nothing");
    assert_eq!(repo.list_all().await.unwrap().len(), 1);
}
