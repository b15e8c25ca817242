//! The sender never logs a recipient's address, not even inside a text SES sends back. Alone in
//! its test binary: `tracing` caches which call sites are enabled per process, so a scoped
//! subscriber is only reliable when no other test runs beside it.

mod support;

use support::doubles::Captured;

use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;
use serde_json::{Map, Value};
use support::inprocess::TestStack;
use voronka_domain::model::{
    Channel, ConsentReceipt, Contact, EmailAddress, Priority, SendClass, SendOrigin, SendRequest,
};
use voronka_domain::ports::{Clock, Delivery, MailError, Mailer, OutgoingEmail};
use voronka_domain::repo::{ContactRepository, SendLedger};

/// Answers as SES does for an unverified recipient in the sandbox, naming the address.
struct Rejecting;

#[async_trait]
impl Mailer for Rejecting {
    async fn send(&self, email: &OutgoingEmail) -> Result<String, MailError> {
        Err(MailError::Rejected(format!(
            "MessageRejected: Email address is not verified. The following identities failed the check in \
             region EU-WEST-1: {}, <{}>",
            email.to, email.to
        )))
    }
}

#[tokio::test(flavor = "current_thread")]
async fn an_ses_rejection_naming_the_address_is_logged_and_stored_without_it() {
    let captured = Captured::default();
    let writer = captured.clone();
    let _guard = tracing::subscriber::set_default(voronka_telemetry::json_subscriber(move || writer.clone()));
    let t = TestStack::new();
    let now = t.clock.now();
    let email = EmailAddress::parse("Secret.Person@Example.com").unwrap();
    let (contact, _) = ContactRepository::new(t.stack.state.store.as_ref())
        .upsert_by_email(
            &email,
            now,
            || Contact::new("c_secret".into(), now, "en".into(), "Europe/Moscow".into()),
            |c| c.record_consent(ConsentReceipt::granted("r-1", Timestamp::UNIX_EPOCH, "v1", false)),
        )
        .await
        .unwrap();
    let mut deps = t.stack.sender.clone();
    deps.mailer = Arc::new(Rejecting);
    let request = SendRequest {
        idempotency_key: "form:secret".into(),
        contact_id: contact.id.clone(),
        template: "welcome".into(),
        channel: Channel::Email,
        class: SendClass::Marketing,
        priority: Priority::Journey,
        context: Map::new(),
        origin: SendOrigin::Form { form_id: "newsletter".into(), submission_id: "s-1".into() },
        requested_at: now,
        recipient: voronka_domain::model::Recipient::Contact,
    };
    let delivery = Delivery { message_id: "m-1".into(), body: serde_json::to_string(&request).unwrap() };
    assert!(sender::process_batch(&deps, vec![delivery]).await.is_empty(), "a rejection is final");

    let ledger = SendLedger::new(t.stack.state.store.as_ref()).state("form:secret").await.unwrap().unwrap();
    let reason = ledger.get_str("reason").unwrap().to_string();
    assert_eq!(ledger.get_str("state"), Some("blocked"));
    assert!(reason.starts_with("rejected_by_ses") && reason.contains("identities failed the check"), "{reason}");
    let logs = captured.text();
    let lines: Vec<Value> = logs.lines().map(|l| serde_json::from_str(l).expect("every log line is JSON")).collect();
    assert!(
        lines.iter().any(|l| l["fields"]["outcome"] == "blocked" && l["fields"]["contact_id"] == "c_secret"),
        "the rejection was logged: {logs}"
    );
    for secret in ["secret.person", "example.com"] {
        assert!(!logs.to_lowercase().contains(secret), "`{secret}` appeared in the logs:\n{logs}");
        assert!(!reason.to_lowercase().contains(secret), "`{secret}` was stored in the ledger: {reason}");
    }
}
