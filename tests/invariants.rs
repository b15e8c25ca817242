//! The invariants the demo checks at its end, each shown to catch what it is about: a message
//! written twice, marketing to a suppressed or unconsenting contact, at 03:00 local time or past
//! the cap, a due item left in the past, a send the ledger never made, an acknowledged lead or
//! event lost, a dead-lettered message; and a clean demo run reporting none.

mod support;

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, json};
use support::inprocess::TestStack;
use voronka_domain::model::{
    Channel, ConsentReceipt, Contact, EmailAddress, Priority, SendClass, SendOrigin, SendRequest, SuppressionReason,
};
use voronka_domain::ports::{Clock, Delivery, Item, Key, OutgoingMessage, QueueName};
use voronka_domain::repo::ContactRepository;
use voronka_domain::repo::due::{DueItem, DueWork};
use voronka_local::invariants::{self, Acknowledged, InvariantReport};

struct Fixture {
    t: TestStack,
    /// The leads the fixture's contacts stand for, as the API would have acknowledged them.
    leads: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

fn moscow() -> jiff::tz::TimeZone {
    jiff::tz::TimeZone::get("Europe/Moscow").unwrap()
}

impl Fixture {
    /// At 12:00 in Moscow, outside quiet hours.
    fn new() -> Fixture {
        let t = TestStack::new();
        let now = t.clock.now();
        let noon = now.to_zoned(moscow()).date().at(12, 0, 0, 0).to_zoned(moscow()).unwrap().timestamp();
        t.clock.set(if noon < now { noon + SignedDuration::from_hours(24) } else { noon });
        Fixture { t, leads: Default::default() }
    }

    fn now(&self) -> Timestamp {
        self.t.clock.now()
    }

    async fn contact(&self, email: &str, setup: impl Fn(&mut Contact)) -> Contact {
        let repo = ContactRepository::new(self.t.stack.state.store.as_ref());
        let now = self.now();
        let email = EmailAddress::parse(email).unwrap();
        let (contact, _) = repo
            .upsert_by_email(
                &email,
                now,
                || {
                    Contact::new(
                        format!("c_{}", &email.identity_digest()[..12]),
                        now,
                        "en".into(),
                        "Europe/Moscow".into(),
                    )
                },
                |c| {
                    c.record_submission("newsletter", "s-1");
                    setup(c)
                },
            )
            .await
            .unwrap();
        self.leads.lock().unwrap().insert(email.identity().to_string());
        contact
    }

    /// A contact who subscribed an hour ago, on a form without double opt-in.
    async fn subscriber(&self, email: &str) -> Contact {
        let an_hour_ago = self.now() - SignedDuration::from_hours(1);
        self.contact(email, move |c| {
            c.record_consent(ConsentReceipt::granted("r-1", an_hour_ago, "v1", false));
        })
        .await
    }

    /// Sends through the real sender, which writes the message to the outbox.
    async fn send(&self, key: &str, contact: &Contact, class: SendClass) {
        let request = SendRequest {
            idempotency_key: key.into(),
            contact_id: contact.id.clone(),
            template: if class == SendClass::Marketing { "welcome" } else { "optin_confirmation" }.into(),
            channel: Channel::Email,
            class,
            priority: if class == SendClass::Marketing { Priority::Journey } else { Priority::Transactional },
            context: Map::new(),
            origin: SendOrigin::Form { form_id: "newsletter".into(), submission_id: "s-1".into() },
            requested_at: self.now(),
            recipient: voronka_domain::model::Recipient::Contact,
        };
        let delivery = Delivery { message_id: "m-1".into(), body: serde_json::to_string(&request).unwrap() };
        let failed = sender::process_batch(&self.t.stack.sender, vec![delivery]).await;
        assert!(failed.is_empty(), "the send failed: {failed:?}");
    }

    fn outbox_files(&self) -> Vec<std::path::PathBuf> {
        let mut files: Vec<_> = std::fs::read_dir(self.t.stack.outbox.dir())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect();
        files.sort();
        files
    }

    /// A message written by hand, as a faulty sender might have: its send tag, date, class and
    /// contact in the headers the sender writes.
    fn write_eml(&self, file: &str, tag: &str, date: Timestamp, class: &str, contact_id: &str) {
        let date = jiff::fmt::rfc2822::to_string(&date.to_zoned(jiff::tz::TimeZone::UTC)).unwrap();
        let raw = format!(
            "From: Shop <news@shop.example>\r\nTo: someone@example.com\r\nSubject: Hi\r\n\
             Message-ID: <{tag}@shop.example>\r\nDate: {date}\r\nX-Voronka-Class: {class}\r\n\
             X-Voronka-Contact: {contact_id}\r\nMIME-Version: 1.0\r\n\r\nHello\r\n"
        );
        std::fs::write(self.t.stack.outbox.dir().join(file), raw).unwrap();
    }

    /// Marks `key` sent in the sender's ledger, as a send that really went through would.
    async fn ledger_sent(&self, key: &str) {
        self.ledger(key, json!({"state": "sent"})).await;
    }

    async fn ledger(&self, key: &str, attributes: serde_json::Value) {
        let item = Item::new(&Key::new(format!("SEND#{key}"), "LEDGER"), attributes);
        self.t.stack.state.store.put(item, None).await.unwrap();
    }

    /// Parks `body` in `queue`'s dead letters: received until the queue gives up on it.
    async fn dead_letter(&self, queue: QueueName, body: String) {
        let queues = self.t.stack.state.queue.as_ref();
        queues.send_batch(queue, vec![OutgoingMessage::new("0", body)]).await.unwrap();
        for _ in 0..10 {
            queues.receive(queue, 10, Duration::ZERO).await.unwrap();
        }
    }

    /// The invariants, with the fixture's contacts acknowledged as leads and `events` as events.
    async fn check_with(&self, events: &[&str]) -> InvariantReport {
        let acknowledged = Acknowledged {
            leads: self.leads.lock().unwrap().clone(),
            events: events.iter().map(|e| e.to_string()).collect(),
        };
        invariants::check(&self.t.stack, &acknowledged).await.unwrap()
    }

    async fn check(&self) -> InvariantReport {
        self.check_with(&[]).await
    }
}

fn explained(report: &InvariantReport, name: &str) -> (u64, Vec<String>) {
    let invariant = report.invariants.iter().find(|i| i.name == name).unwrap_or_else(|| panic!("no invariant {name}"));
    (invariant.explained, invariant.explained_examples.clone())
}

fn count(report: &InvariantReport, name: &str) -> (u64, u64, Vec<String>) {
    let invariant = report.invariants.iter().find(|i| i.name == name).unwrap_or_else(|| panic!("no invariant {name}"));
    (invariant.checked, invariant.violations, invariant.examples.clone())
}

fn only_violation(report: &InvariantReport, name: &str) {
    for invariant in &report.invariants {
        let expected = invariant.name == name;
        assert_eq!(
            invariant.violations > 0,
            expected,
            "{}: {} violations ({:?}); expected only {name} to be violated",
            invariant.name,
            invariant.violations,
            invariant.examples
        );
    }
}

#[tokio::test]
async fn real_sends_break_nothing_and_are_all_checked() {
    let f = Fixture::new();
    let anna = f.subscriber("anna@example.com").await;
    f.send("welcome:anna", &anna, SendClass::Marketing).await;
    f.send("optin:anna", &anna, SendClass::Transactional).await;
    let report = f.check().await;
    assert_eq!(report.outbox_messages, 2);
    assert_eq!(report.violations(), 0, "{report:#?}");
    assert_eq!(count(&report, "one_send_per_idempotency_key").0, 2);
    assert_eq!(count(&report, "marketing_only_with_consent").0, 2, "both messages checked against suppressions");
    assert_eq!(count(&report, "no_marketing_in_quiet_hours").0, 1);
    assert_eq!(count(&report, "frequency_cap_held").0, 1);
}

#[tokio::test]
async fn a_second_copy_of_one_idempotency_key_is_a_violation() {
    let f = Fixture::new();
    let anna = f.subscriber("anna@example.com").await;
    f.send("welcome:anna", &anna, SendClass::Marketing).await;
    let first = f.outbox_files().remove(0);
    // The same message again under another file name, as a resend after a lost answer would be.
    std::fs::copy(&first, first.with_file_name("9999999999999-copy.eml")).unwrap();
    let report = f.check().await;
    let (_, violations, examples) = count(&report, "one_send_per_idempotency_key");
    assert_eq!(violations, 1);
    assert_eq!(
        examples,
        vec![format!("{} (marketing)", SendRequest::send_tag("welcome:anna"))],
        "named by its send tag, not its address"
    );
    // Two copies on one day are also past the cap of one marketing message a day.
    assert_eq!(count(&report, "frequency_cap_held").1, 1);
}

/// Transactional mail is sent at least once: a second copy after the ledger recorded that SES may
/// have taken the first (an ambiguous answer, an attempt that died calling SES) is explained. The
/// same copy without that record, or a marketing copy even with it, is a violation.
#[tokio::test]
async fn a_transactional_resend_the_ledger_explains_is_not_a_violation_but_others_are() {
    let f = Fixture::new();
    let anna = f.subscriber("anna@example.com").await;
    let now = f.now();
    let cases = [
        ("optin:ambiguous", "transactional", Some("ambiguous_ses_answer")),
        ("optin:crashed", "transactional", Some("attempt_died_while_calling_ses")),
        ("optin:unrecorded", "transactional", None),
        ("welcome:recorded", "marketing", Some("ambiguous_ses_answer")),
    ];
    for (n, (key, class, resent_after)) in cases.iter().enumerate() {
        let mut ledger = json!({"state": "sent"});
        if let Some(reason) = resent_after {
            ledger["resent_after"] = json!(reason);
        }
        f.ledger(key, ledger).await;
        let at = now - SignedDuration::from_hours(24 * n as i64);
        for copy in ["a", "b"] {
            f.write_eml(&format!("{n}-{copy}.eml"), &SendRequest::send_tag(key), at, class, &anna.id);
        }
    }
    let report = f.check().await;
    let (_, violations, examples) = count(&report, "one_send_per_idempotency_key");
    assert_eq!(violations, 2, "{examples:?}");
    assert!(examples.contains(&format!("{} (transactional)", SendRequest::send_tag("optin:unrecorded"))));
    assert!(examples.contains(&format!("{} (marketing)", SendRequest::send_tag("welcome:recorded"))));
    let (explained, why) = explained(&report, "one_send_per_idempotency_key");
    assert_eq!(explained, 2, "{why:?}");
    assert!(why.iter().any(|e| e.starts_with(&SendRequest::send_tag("optin:ambiguous")) && e.contains("ambiguous")));
    assert!(why.iter().any(|e| e.starts_with(&SendRequest::send_tag("optin:crashed")) && e.contains("died")));
}

#[tokio::test]
async fn marketing_at_three_in_the_morning_local_time_is_a_violation() {
    let f = Fixture::new();
    let anna = f.subscriber("anna@example.com").await;
    let night = f.now().to_zoned(moscow()).date().at(3, 0, 0, 0).to_zoned(moscow()).unwrap().timestamp();
    f.ledger_sent("night:anna").await;
    f.write_eml("1-night.eml", &SendRequest::send_tag("night:anna"), night, "marketing", &anna.id);
    // Transactional mail is exempt from quiet hours by design.
    f.ledger_sent("optin:anna").await;
    f.write_eml("2-optin.eml", &SendRequest::send_tag("optin:anna"), night, "transactional", &anna.id);
    let report = f.check().await;
    let (checked, violations, examples) = count(&report, "no_marketing_in_quiet_hours");
    assert_eq!((checked, violations), (1, 1), "{examples:?}");
    assert!(examples[0].contains("03:00 local"), "{examples:?}");
    // The night message predates the hour-old consent too: the two checks see the same message.
    assert_eq!(count(&report, "marketing_only_with_consent").1, 1);
}

#[tokio::test]
async fn mail_to_a_suppressed_or_unconsenting_contact_is_a_violation() {
    let f = Fixture::new();
    let now = f.now();
    let unsubscribed = f
        .contact("gone@example.com", move |c| {
            c.record_consent(ConsentReceipt::granted("r-1", now - SignedDuration::from_hours(48), "v1", false));
            c.suppressions.insert(SuppressionReason::Unsubscribed, now - SignedDuration::from_hours(2));
        })
        .await;
    let pending = f
        .contact("pending@example.com", move |c| {
            c.record_consent(ConsentReceipt::granted("r-2", now - SignedDuration::from_hours(48), "v1", true));
        })
        .await;
    for (key, contact) in [("m:gone", &unsubscribed), ("m:pending", &pending)] {
        f.ledger_sent(key).await;
        f.write_eml(&format!("1-{key}.eml"), &SendRequest::send_tag(key), now, "marketing", &contact.id);
    }
    // Before the unsubscribe (the day before: the cap allows one a day) it was allowed.
    let before = now - SignedDuration::from_hours(26);
    f.ledger_sent("m:before").await;
    f.write_eml("0-before.eml", &SendRequest::send_tag("m:before"), before, "marketing", &unsubscribed.id);
    // A hard bounce stops transactional mail too; before it, transactional mail was fine.
    let bounced = f
        .contact("bounced@example.com", move |c| {
            c.suppressions.insert(SuppressionReason::HardBounce, now - SignedDuration::from_hours(2));
        })
        .await;
    for (key, at) in [("t:after", now), ("t:before", now - SignedDuration::from_hours(3))] {
        f.ledger_sent(key).await;
        f.write_eml(&format!("2-{key}.eml"), &SendRequest::send_tag(key), at, "transactional", &bounced.id);
    }
    let report = f.check().await;
    let (checked, violations, examples) = count(&report, "marketing_only_with_consent");
    assert_eq!((checked, violations), (5, 3), "{examples:?}");
    assert!(
        examples.iter().any(|e| e.starts_with(&SendRequest::send_tag("t:after")) && e.contains("transactional")),
        "{examples:?}"
    );
    assert!(examples.iter().any(|e| e.contains("after unsubscribing") && e.contains(&unsubscribed.id)), "{examples:?}");
    assert!(examples.iter().any(|e| e.contains(&pending.id)), "unconfirmed double opt-in: {examples:?}");
    assert!(!examples.iter().any(|e| e.contains('@')), "no address in an example: {examples:?}");
    only_violation(&report, "marketing_only_with_consent");
}

/// SES feedback carries SES's own time, which can come well before Voronka processes it: a message
/// sent in between was not sent to a suppressed contact as far as anyone could know; one sent
/// after is a violation.
#[tokio::test]
async fn a_bounce_counts_from_when_voronka_processed_it_not_from_sess_time() {
    let f = Fixture::new();
    let now = f.now();
    let contact = f
        .contact("recipient@example.com", move |c| {
            c.record_consent(ConsentReceipt::granted("r-1", now - SignedDuration::from_hours(72), "v1", false));
        })
        .await;
    // The SES guide's bounce and complaint (timestamped 2017), processed now.
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../events/trigger-evaluator/sqs-ses-feedback-without-tags.json");
    let event: aws_lambda_events::event::sqs::SqsEvent =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let failed =
        trigger_evaluator::process_batch(&f.t.stack.evaluator, voronka_aws::lambda_sqs::deliveries(event)).await;
    assert!(failed.is_empty(), "{failed:?}");
    let stored = ContactRepository::new(f.t.stack.state.store.as_ref()).get(&contact.id).await.unwrap().unwrap();
    assert!(stored.suppressions[&SuppressionReason::HardBounce] < now - SignedDuration::from_hours(24 * 365));
    for (key, at) in
        [("m:before", now - SignedDuration::from_hours(49)), ("m:after", now + SignedDuration::from_hours(1))]
    {
        f.ledger_sent(key).await;
        f.write_eml(&format!("1-{key}.eml"), &SendRequest::send_tag(key), at, "marketing", &contact.id);
    }
    let report = f.check().await;
    let (_, violations, examples) = count(&report, "marketing_only_with_consent");
    assert_eq!(violations, 1, "{examples:?}");
    assert!(examples[0].starts_with(&SendRequest::send_tag("m:after")), "{examples:?}");
}

#[tokio::test]
async fn more_marketing_than_the_cap_allows_is_a_violation() {
    let f = Fixture::new();
    let anna = f.subscriber("anna@example.com").await;
    let per_week = f.t.stack.state.campaigns.settings.sending.marketing_per_week;
    // One a day on consecutive days of one ISO week (Monday noon onwards): the week cap is passed
    // without passing the day cap.
    let today = f.now().to_zoned(moscow()).date();
    let monday = today.checked_sub(jiff::Span::new().days(today.weekday().to_monday_zero_offset())).unwrap();
    for day in 0..=per_week {
        let at = monday.checked_add(jiff::Span::new().days(day)).unwrap().at(12, 0, 0, 0).to_zoned(moscow()).unwrap();
        let key = format!("m:{day}");
        f.ledger_sent(&key).await;
        f.write_eml(&format!("{day}.eml"), &SendRequest::send_tag(&key), at.timestamp(), "marketing", &anna.id);
    }
    let report = f.check().await;
    let (_, violations, examples) = count(&report, "frequency_cap_held");
    assert_eq!(violations, 1, "one over the week's {per_week}: {examples:?}");
    assert!(examples[0].contains("-W"), "named by contact and week: {examples:?}");
}

#[tokio::test]
async fn a_due_item_left_in_the_past_and_a_send_the_ledger_never_made_are_violations() {
    let f = Fixture::new();
    let anna = f.subscriber("anna@example.com").await;
    let past = DueItem {
        id: "wait:welcome:test:1".into(),
        contact_id: anna.id.clone(),
        due_at: f.now() - SignedDuration::from_hours(1),
        group: "journey:welcome:test".into(),
        work: DueWork::Evaluate {
            event_type: voronka_domain::model::EventType::JourneyContinue,
            properties: Map::new(),
        },
    };
    f.t.stack.state.store.put(past.to_item(), None).await.unwrap();
    let future = DueItem { id: "wait:welcome:test:2".into(), due_at: f.now() + SignedDuration::from_hours(1), ..past };
    f.t.stack.state.store.put(future.to_item(), None).await.unwrap();
    // A message in the outbox no ledger entry sent.
    f.write_eml("1-stray.eml", &SendRequest::send_tag("stray"), f.now(), "transactional", &anna.id);
    let report = f.check().await;
    let (checked, violations, examples) = count(&report, "no_due_item_lost_or_doubled");
    assert_eq!(violations, 2, "{examples:?}");
    assert!(checked >= 1);
    assert!(examples.iter().any(|e| e.starts_with("wait:welcome:test:1 ")), "{examples:?}");
    assert!(examples.iter().any(|e| e.contains("not sent by the ledger")), "{examples:?}");
    only_violation(&report, "no_due_item_lost_or_doubled");
}

/// The ledger keeps an entry 90 days from its claim (TTL, swept locally as on DynamoDB): a message
/// older than that has nothing left to match and is explained; a younger one without an entry is
/// still a violation. (A 90-day demo run flagged 103 564 early messages before this.)
#[tokio::test]
async fn a_message_older_than_the_ledgers_retention_is_explained_not_a_violation() {
    let f = Fixture::new();
    let anna = f.subscriber("anna@example.com").await;
    let retention = voronka_domain::repo::send_ledger::LEDGER_RETENTION;
    let old = f.now() - retention - SignedDuration::from_hours(1);
    f.write_eml("1-old.eml", &SendRequest::send_tag("old"), old, "transactional", &anna.id);
    let young = f.now() - retention + SignedDuration::from_hours(1);
    f.write_eml("2-young.eml", &SendRequest::send_tag("young"), young, "transactional", &anna.id);
    let report = f.check().await;
    let (_, violations, examples) = count(&report, "no_due_item_lost_or_doubled");
    assert_eq!(violations, 1, "{examples:?}");
    assert!(examples[0].starts_with(&SendRequest::send_tag("young")), "{examples:?}");
    let (explained, examples) = explained(&report, "no_due_item_lost_or_doubled");
    assert_eq!(explained, 1, "{examples:?}");
    assert!(examples[0].contains("retention"), "{examples:?}");
}

#[tokio::test]
async fn an_acknowledged_lead_or_event_not_kept_is_a_violation() {
    let f = Fixture::new();
    // Accepted and processed: kept.
    f.t.post_events(
        vec![json!({"event_id": "pv-1", "type": "page_view", "anonymous_id": "anon-1",
            "properties": {"url": "https://shop.example/"}})],
        false,
    )
    .await;
    f.leads.lock().unwrap().insert("lost@example.com".into());
    let report = f.check_with(&["browser:pv-1", "browser:pv-never-processed"]).await;
    let (checked, violations, examples) = count(&report, "no_acknowledged_lead_or_event_lost");
    assert_eq!((checked, violations), (3, 2), "one lead, no contact, two events: {examples:?}");
    assert!(examples.iter().any(|e| e.contains("browser:pv-never-processed")), "{examples:?}");
    assert!(!examples.iter().any(|e| e.contains("lost@")), "a lead is named by a digest: {examples:?}");

    // Still on the events queue counts as kept: it will be processed.
    let waiting = json!({"event_id": "pv-2", "type": "page_view", "contact": {"anonymous_id": "anon-1"},
        "occurred_at": f.now(), "received_at": f.now(), "properties": {}, "trusted": false, "source": "browser"});
    let queue = f.t.stack.state.queue.as_ref();
    queue.send_batch(QueueName::Events, vec![OutgoingMessage::new("0", waiting.to_string())]).await.unwrap();
    f.leads.lock().unwrap().clear();
    assert_eq!(count(&f.check_with(&["browser:pv-2"]).await, "no_acknowledged_lead_or_event_lost").1, 0);
}

/// A form's contact the client never saw acknowledged (the request was killed after the write and
/// the client gave up) lost nothing: reported, not a violation.
#[tokio::test]
async fn a_lead_stored_without_acknowledgement_is_explained_not_a_violation() {
    let f = Fixture::new();
    f.subscriber("acknowledged@example.com").await;
    f.subscriber("unacknowledged@example.com").await;
    f.leads.lock().unwrap().remove("unacknowledged@example.com");
    let report = f.check().await;
    let (_, violations, examples) = count(&report, "no_acknowledged_lead_or_event_lost");
    assert_eq!(violations, 0, "{examples:?}");
    let (explained, why) = explained(&report, "no_acknowledged_lead_or_event_lost");
    assert_eq!(explained, 1, "{why:?}");
    assert!(why[0].contains("stored without acknowledgement") && !why[0].contains('@'), "{why:?}");
}

/// A parked event the client sent is kept for replay, explained; a parked copy of a send the
/// ledger finished is redundant, explained.
#[tokio::test]
async fn a_dead_lettered_message_is_counted_by_queue_kind_and_reason() {
    let f = Fixture::new();
    let anna = f.subscriber("anna@example.com").await;
    let poison = json!({"event_id": "bad-1", "type": "purchase", "contact": {}, "properties": {}});
    f.dead_letter(QueueName::Events, poison.to_string()).await;
    f.ledger_sent("welcome:done").await;
    f.dead_letter(QueueName::Sends, send_request("welcome:done", &anna.id, f.now())).await;
    let report = f.check().await;
    let (_, violations, examples) = count(&report, "dead_letters_explained");
    assert_eq!(violations, 0, "{examples:?}");
    assert_eq!(explained(&report, "dead_letters_explained").0, 2);
    assert_eq!(report.dead_letters.len(), 2, "{:?}", report.dead_letters);
    let dead = &report.dead_letters[0];
    assert_eq!((dead.queue.as_str(), dead.kind.as_str(), dead.count), ("events-dlq", "purchase", 1));
    assert!(dead.reason.contains("kept for replay"), "{dead:?}");
    assert_eq!(dead.examples, vec!["bad-1".to_string()]);
    let send = &report.dead_letters[1];
    assert_eq!((send.queue.as_str(), send.kind.as_str()), ("sends-dlq", "send:welcome"));
    assert!(send.reason.contains("redundant"), "{send:?}");
}

/// A parked send the ledger never finished, or a parked due item's evaluation never processed:
/// that work is lost, a violation.
#[tokio::test]
async fn a_dead_lettered_send_or_due_item_whose_work_is_lost_is_a_violation() {
    let f = Fixture::new();
    let anna = f.subscriber("anna@example.com").await;
    f.dead_letter(QueueName::Sends, send_request("welcome:lost", &anna.id, f.now())).await;
    let due = json!({"event_id": "due:wait:welcome:lost:1", "type": "journey_continue",
        "contact": {"contact_id": anna.id}, "occurred_at": f.now(), "received_at": f.now(),
        "properties": {}, "trusted": true, "source": "voronka"});
    f.dead_letter(QueueName::Events, due.to_string()).await;
    let report = f.check().await;
    let (_, violations, examples) = count(&report, "dead_letters_explained");
    assert_eq!(violations, 2, "{examples:?}");
    assert!(examples.iter().any(|e| e.contains("sends-dlq send:welcome")), "{examples:?}");
    assert!(examples.iter().any(|e| e.contains("due:wait:welcome:lost:1")), "{examples:?}");
    assert!(report.dead_letters.iter().all(|d| d.reason.contains("LOST")), "{:?}", report.dead_letters);
    only_violation(&report, "dead_letters_explained");
}

fn send_request(key: &str, contact_id: &str, at: Timestamp) -> String {
    let request = SendRequest {
        idempotency_key: key.into(),
        contact_id: contact_id.into(),
        template: "welcome".into(),
        channel: Channel::Email,
        class: SendClass::Marketing,
        priority: Priority::Journey,
        context: Map::new(),
        origin: SendOrigin::Form { form_id: "newsletter".into(), submission_id: "s-1".into() },
        requested_at: at,
        recipient: voronka_domain::model::Recipient::Contact,
    };
    serde_json::to_string(&request).unwrap()
}

/// The demo end to end: every invariant checked on something, and none violated.
#[test]
fn a_clean_demo_run_reports_zero_violations() {
    let dashboard = support::inprocess::TempFolder::new("invariants-demo-dashboard");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_voronka"))
        .args(["demo", "--visitors", "300", "--seed", "5", "--json", "--dashboard-dir"])
        .arg(dashboard.path())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "the demo failed:\n{}\n{}", stdout, String::from_utf8_lossy(&run.stderr));
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let invariants = report["invariants"]["invariants"].as_array().unwrap();
    assert_eq!(invariants.len(), 7);
    for invariant in invariants {
        assert_eq!(invariant["violations"], 0, "{invariant}");
        if invariant["name"] != "dead_letters_explained" {
            assert!(invariant["checked"].as_u64().unwrap() > 0, "nothing checked: {invariant}");
        }
    }
}

/// `voronka demo` fails when an invariant does not hold: here its data folder's outbox already
/// holds one message twice, as a broken sender would have left it.
#[test]
fn the_demo_exits_non_zero_on_a_violation() {
    let data = support::inprocess::TempFolder::new("invariants-demo-violation");
    let outbox = data.path().join("outbox");
    std::fs::create_dir_all(&outbox).unwrap();
    let raw = "From: news@shop.example\r\nTo: someone@example.com\r\nMessage-ID: <0123456789abcdef@shop.example>\r\n\
               Date: Sun, 01 Nov 2026 09:00:00 +0000\r\nX-Voronka-Class: transactional\r\n\r\nHello\r\n";
    for name in ["1-a.eml", "2-a.eml"] {
        std::fs::write(outbox.join(name), raw).unwrap();
    }
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_voronka"))
        .args(["demo", "--visitors", "20", "--seed", "3", "--data-dir"])
        .arg(data.path())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "the demo passed with a duplicated message:\n{stdout}");
    assert!(stderr.contains("invariant violations"), "{stderr}");
    let line = stdout.lines().find(|l| l.contains("no email sent twice for one idempotency key")).unwrap();
    // Columns: checked, violations, explained. A transactional copy without a ledger record of
    // why it may have been resent is not explained.
    let columns: Vec<&str> = line.split_whitespace().rev().take(2).collect();
    assert_eq!(columns, ["0", "1"], "one violation, none explained, in the table: {line}");
}
