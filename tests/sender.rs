//! The sender on the embedded adapters with a simulated clock: exactly-once sending, consent and
//! suppression, frequency caps with priorities, quiet hours, escaping, header safety, one-click
//! unsubscribe, error handling, and the double opt-in flow end to end through the outbox.

mod support;

use support::doubles::RefusingQueue;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use axum::body::Body;
use http::{Request, StatusCode};
use jiff::Timestamp;
use serde_json::{Map, json};
use support::inprocess::TestStack;
use voronka_domain::model::{
    Channel, ConsentReceipt, Contact, EmailAddress, EventType, Priority, SendClass, SendOrigin, SendRequest,
    SuppressionReason,
};
use voronka_domain::ports::{
    Clock, Condition, Delivery, Item, Key, MailError, Mailer, OutgoingEmail, Page, Query, QueueName, Store, StoreError,
    TransactOp, UpdateAction,
};
use voronka_domain::repo::journey_state::{Group, JourneyState, RunStatus};
use voronka_domain::repo::{ContactRepository, SendLedger};
use voronka_local::outbox;

/// Counts calls and can fail on demand, in front of the real outbox.
struct Recording {
    inner: Arc<dyn Mailer>,
    calls: AtomicUsize,
    fail_with: std::sync::Mutex<Option<MailError>>,
    /// Hands the message on, then answers with this error anyway: SES took it, the answer was lost.
    accept_then_fail_with: std::sync::Mutex<Option<MailError>>,
}

#[async_trait]
impl Mailer for Recording {
    async fn send(&self, email: &OutgoingEmail) -> Result<String, MailError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(error) = self.fail_with.lock().unwrap().clone() {
            return Err(error);
        }
        let accepted = self.inner.send(email).await;
        if let Some(error) = self.accept_then_fail_with.lock().unwrap().clone() {
            return Err(error);
        }
        accepted
    }
}

struct Fixture {
    t: TestStack,
    mailer: Arc<Recording>,
    deps: sender::SenderDeps,
}

impl Fixture {
    fn new() -> Fixture {
        let t = TestStack::new();
        let mailer = Arc::new(Recording {
            inner: t.stack.outbox.clone(),
            calls: AtomicUsize::new(0),
            fail_with: Default::default(),
            accept_then_fail_with: Default::default(),
        });
        let mut deps = t.stack.sender.clone();
        deps.mailer = mailer.clone();
        Fixture { t, mailer, deps }
    }

    /// Moves the simulated clock to a local time of the day in Moscow (UTC+3).
    fn at_moscow(&self, hour: i8, minute: i8) {
        let now = self.t.clock.now();
        let date = now.to_zoned(jiff::tz::TimeZone::get("Europe/Moscow").unwrap()).date();
        let target = date.at(hour, minute, 0, 0).to_zoned(jiff::tz::TimeZone::get("Europe/Moscow").unwrap()).unwrap();
        let target = if target.timestamp() < now { target.tomorrow().unwrap() } else { target };
        self.t.clock.set(target.timestamp());
    }

    async fn contact(&self, email: &str, setup: impl Fn(&mut Contact)) -> Contact {
        let repo = ContactRepository::new(self.t.stack.state.store.as_ref());
        let now = self.t.clock.now();
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
                |c| setup(c),
            )
            .await
            .unwrap();
        // The helper's requests come from the `welcome` journey: give the contact a live run of it.
        self.journey_state(&contact.id, "welcome", 1, RunStatus::Active).await;
        contact
    }

    async fn journey_state(&self, contact_id: &str, journey_id: &str, run: u32, status: RunStatus) {
        let state = JourneyState {
            status,
            version: 1,
            ..JourneyState::new_run(journey_id, contact_id, run, Group::Treatment, self.t.clock.now())
        };
        self.t.stack.state.store.put(state.to_item(), None).await.unwrap();
    }

    async fn subscribed(&self, email: &str) -> Contact {
        self.contact(email, |c| {
            c.first_name = Some("Anna".into());
            c.record_consent(receipt(false));
        })
        .await
    }

    fn outbox(&self) -> Vec<outbox::OutboxEntry> {
        outbox::entries(self.t.stack.outbox.dir())
    }

    fn eml(&self, entry: &outbox::OutboxEntry) -> String {
        String::from_utf8(std::fs::read(self.t.stack.outbox.dir().join(&entry.file)).unwrap()).unwrap()
    }

    async fn deliver(&self, request: &SendRequest) -> Vec<String> {
        let delivery = Delivery { message_id: "m-1".into(), body: serde_json::to_string(request).unwrap() };
        sender::process_batch(&self.deps, vec![delivery]).await
    }

    async fn ledger_state(&self, key: &str) -> Option<(String, Option<String>)> {
        let item = SendLedger::new(self.t.stack.state.store.as_ref()).state(key).await.unwrap()?;
        Some((item.get_str("state").unwrap().to_string(), item.get_str("reason").map(str::to_string)))
    }
}

fn receipt(double_opt_in: bool) -> ConsentReceipt {
    ConsentReceipt {
        form_id: Some("newsletter".into()),
        ..ConsentReceipt::granted("r-1", Timestamp::UNIX_EPOCH, "v1", double_opt_in)
    }
}

fn request(key: &str, contact: &Contact, template: &str, class: SendClass, priority: Priority) -> SendRequest {
    SendRequest {
        idempotency_key: key.into(),
        contact_id: contact.id.clone(),
        template: template.into(),
        channel: Channel::Email,
        class,
        priority,
        context: Map::new(),
        origin: SendOrigin::Journey { journey_id: "welcome".into(), step_id: "s1".into() },
        requested_at: Timestamp::from_second(1_800_000_000).unwrap(),
        recipient: voronka_domain::model::Recipient::Contact,
    }
}

/// The person is erased while the send waits for its slot of the send rate: nothing goes out.
#[tokio::test]
async fn a_person_erased_while_their_send_waits_for_the_rate_gets_nothing() {
    use voronka_domain::ports::NoMailCopies;
    use voronka_domain::repo::personal_data;
    let mut f = Fixture::new();
    f.at_moscow(12, 0);
    let contact = f.subscribed("erased.midway@example.com").await;
    f.deps.rate = Arc::new(sender::rate::RateGate::per_second(2.0));
    // The first slot is taken: the send waits half a second for the next.
    f.deps.rate.wait().await;
    let welcome = request("journey:welcome:midway:s1", &contact, "welcome", SendClass::Marketing, Priority::Journey);
    let store = f.t.stack.state.store.clone();
    let keys = f.t.stack.state.secrets.token_keys.clone();
    let now = f.t.clock.now();
    let erasing = async {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        personal_data::erase(store.as_ref(), &NoMailCopies, &keys, &contact.id, now).await.unwrap();
    };
    let (failures, ()) = tokio::join!(f.deliver(&welcome), erasing);
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(f.mailer.calls.load(Ordering::SeqCst), 0, "nothing was sent to the erased person");
    assert!(f.outbox().is_empty());
}

#[tokio::test]
async fn one_request_delivered_five_times_two_at_once_is_sent_once() {
    let f = Fixture::new();
    f.at_moscow(12, 0);
    let contact = f.subscribed("anna@example.com").await;
    let welcome = request("journey:welcome:c1:s1", &contact, "welcome", SendClass::Marketing, Priority::Journey);
    let (a, b) = tokio::join!(f.deliver(&welcome), f.deliver(&welcome));
    for _ in 0..3 {
        f.deliver(&welcome).await;
    }
    let failures = a.len() + b.len();
    assert!(failures <= 1, "only a delivery that met the other in flight is retried");
    assert_eq!(f.mailer.calls.load(Ordering::SeqCst), 1, "one call to the mail service");
    assert_eq!(f.outbox().len(), 1);
    assert_eq!(f.ledger_state(&welcome.idempotency_key).await.unwrap().0, "sent");
    let events = f.t.drain_events().await;
    assert_eq!(events.iter().filter(|e| e.event_type == EventType::EmailSent).count(), 1);
}

#[tokio::test]
async fn the_sales_inbox_hears_about_a_lead_whatever_the_leads_own_mail_status_once_per_key() {
    let f = Fixture::new();
    f.at_moscow(22, 0);
    let contact = f
        .contact("complained@example.com", |c| {
            c.suppressions.insert(SuppressionReason::Complaint, Timestamp::UNIX_EPOCH);
        })
        .await;
    let mut context = Map::new();
    context.insert("script_id".into(), json!("b2b_demo"));
    context.insert("conversation".into(), json!([{"speaker": "visitor", "text": "https://acme.example"}]));
    let notification = SendRequest {
        origin: SendOrigin::Bot { script_id: "b2b_demo".into(), session_id: "bs_1".into() },
        context,
        recipient: voronka_domain::model::Recipient::SalesInbox,
        ..request("bot:bs_1:sales", &contact, "sales_notification", SendClass::Transactional, Priority::Transactional)
    };
    assert!(f.deliver(&notification).await.is_empty());
    assert!(f.deliver(&notification).await.is_empty());
    assert_eq!(f.ledger_state("bot:bs_1:sales").await.unwrap().0, "sent");
    assert_eq!(f.mailer.calls.load(Ordering::SeqCst), 1, "one email per key");
    let mail = f.outbox();
    assert_eq!(mail.len(), 1);
    assert!(mail[0].to.contains("sales@shop.example"), "{}", mail[0].to);
    assert!(mail[0].list_unsubscribe.is_none());
    assert!(f.eml(&mail[0]).lines().all(|l| !l.to_ascii_lowercase().contains("complained@")), "To: is the inbox");
}

#[tokio::test]
async fn nobody_without_consent_or_suppressed_gets_marketing() {
    let f = Fixture::new();
    f.at_moscow(12, 0);
    type Setup = Box<dyn Fn(&mut Contact)>;
    let cases: Vec<(&str, Setup, &str)> = vec![
        ("none@example.com", Box::new(|_| {}), "no_marketing_consent"),
        ("pending@example.com", Box::new(|c| c.record_consent(receipt(true))), "consent_not_confirmed"),
        (
            "unsub@example.com",
            Box::new(|c| {
                c.record_consent(receipt(false));
                c.suppressions.insert(SuppressionReason::Unsubscribed, Timestamp::UNIX_EPOCH);
            }),
            "unsubscribed",
        ),
        (
            "bounced@example.com",
            Box::new(|c| {
                c.record_consent(receipt(false));
                c.suppressions.insert(SuppressionReason::HardBounce, Timestamp::UNIX_EPOCH);
            }),
            "hard_bounce",
        ),
        (
            "complained@example.com",
            Box::new(|c| {
                c.record_consent(receipt(false));
                c.suppressions.insert(SuppressionReason::Complaint, Timestamp::UNIX_EPOCH);
            }),
            "complaint",
        ),
    ];
    for (email, setup, reason) in cases {
        let contact = f.contact(email, setup).await;
        let welcome = request(&format!("w:{email}"), &contact, "welcome", SendClass::Marketing, Priority::Journey);
        assert!(f.deliver(&welcome).await.is_empty(), "a block is final, not retried");
        assert_eq!(
            f.ledger_state(&welcome.idempotency_key).await,
            Some(("blocked".into(), Some(reason.into()))),
            "{email}"
        );
    }
    assert_eq!(f.mailer.calls.load(Ordering::SeqCst), 0);

    // Transactional mail needs no marketing consent, but a bounce or a complaint stops it too.
    let pending = f.contact("pending@example.com", |_| {}).await;
    let confirm =
        request("optin:pending", &pending, "optin_confirmation", SendClass::Transactional, Priority::Transactional);
    f.deliver(&confirm).await;
    assert_eq!(f.ledger_state("optin:pending").await.unwrap().0, "sent");
    let complained = f.contact("complained@example.com", |_| {}).await;
    let confirm = request(
        "optin:complained",
        &complained,
        "optin_confirmation",
        SendClass::Transactional,
        Priority::Transactional,
    );
    f.deliver(&confirm).await;
    assert_eq!(f.ledger_state("optin:complained").await, Some(("blocked".into(), Some("complaint".into()))));
    assert_eq!(f.outbox().len(), 1);
}

#[tokio::test]
async fn the_higher_priority_wins_the_frequency_cap_and_the_lower_is_deferred_or_dropped() {
    let f = Fixture::new();
    f.at_moscow(12, 0);
    let contact = f.subscribed("capped@example.com").await;
    let cart = request("cart:1:step1", &contact, "abandoned_cart_1", SendClass::Marketing, Priority::Cart);
    let journey = request("journey:ci:1", &contact, "category_interest", SendClass::Marketing, Priority::Journey);
    let promo = request("promo:black-friday", &contact, "welcome", SendClass::Marketing, Priority::Promo);
    let batch = [&promo, &journey, &cart]
        .iter()
        .enumerate()
        .map(|(i, r)| Delivery { message_id: format!("m{i}"), body: serde_json::to_string(r).unwrap() })
        .collect();
    assert!(sender::process_batch(&f.deps, batch).await.is_empty());
    assert_eq!(f.ledger_state("cart:1:step1").await.unwrap().0, "sent", "the cart reminder has the higher priority");
    assert_eq!(f.ledger_state("journey:ci:1").await, Some(("deferred".into(), Some("frequency_cap_day".into()))));
    assert_eq!(f.ledger_state("promo:black-friday").await, Some(("blocked".into(), Some("frequency_cap_day".into()))));
    assert_eq!(f.outbox().len(), 1);

    // The next local day, once quiet hours are over, the deferred message goes out: parked as a
    // due item (the wait is longer than a queue delay), dispatched by the scheduler.
    assert!(f.t.drain_sends().await.is_empty(), "nothing passes through the queue while it waits");
    f.at_moscow(10, 0);
    cart_scheduler::run(&f.t.stack.scheduler).await.unwrap();
    let requeued = f.t.drain_sends().await;
    assert_eq!(requeued.iter().map(|r| r.idempotency_key.as_str()).collect::<Vec<_>>(), ["journey:ci:1"]);
    assert!(f.deliver(&journey).await.is_empty());
    assert_eq!(f.ledger_state("journey:ci:1").await.unwrap().0, "sent");
    assert_eq!(f.outbox().len(), 2);
}

#[tokio::test]
async fn quiet_hours_defer_marketing_in_the_contacts_own_time_zone() {
    let f = Fixture::new();
    f.at_moscow(22, 30);
    let contact = f.subscribed("night@example.com").await;
    let welcome = request("w:night", &contact, "welcome", SendClass::Marketing, Priority::Journey);
    assert!(f.deliver(&welcome).await.is_empty());
    let ledger = SendLedger::new(f.t.stack.state.store.as_ref()).state("w:night").await.unwrap().unwrap();
    assert_eq!(ledger.get_str("state"), Some("deferred"));
    assert_eq!(ledger.get_str("reason"), Some("quiet_hours"));
    let until = Timestamp::from_second(ledger.get_i64("until").unwrap()).unwrap();
    let local = until.to_zoned(jiff::tz::TimeZone::get("Europe/Moscow").unwrap());
    assert_eq!((local.hour(), local.minute()), (9, 0), "deferred to 09:00 Moscow time, not dropped");
    // Ten and a half hours: longer than a queue can delay a message, so it is parked as a due item
    // the scheduler dispatches at 09:00, not passed through the sender every 15 minutes.
    assert_eq!(f.t.stack.embedded().queue.depth(QueueName::Sends).await.unwrap(), 0, "not on the queue");
    let parked = voronka_domain::repo::due::pending_for(f.t.stack.state.store.as_ref(), &contact.id).await.unwrap();
    assert!(
        parked.iter().any(|item| item.due_at == until
            && matches!(&item.work, voronka_domain::repo::due::DueWork::DeferredSend { request, .. } if request.idempotency_key == "w:night")),
        "parked until 09:00"
    );
    assert!(f.outbox().is_empty());

    // Delivered again before its time (a delay hop): still waits.
    f.at_moscow(3, 0);
    f.deliver(&welcome).await;
    assert!(f.outbox().is_empty());
    f.at_moscow(9, 1);
    f.deliver(&welcome).await;
    assert_eq!(f.outbox().len(), 1);

    // Transactional mail ignores quiet hours.
    f.at_moscow(23, 0);
    let confirm =
        request("optin:night", &contact, "optin_confirmation", SendClass::Transactional, Priority::Transactional);
    f.deliver(&confirm).await;
    assert_eq!(f.outbox().len(), 2);
}

#[tokio::test]
async fn a_send_deferred_for_hours_keeps_its_ledger_entry_the_full_retention_after_it_goes_out() {
    let f = Fixture::new();
    f.at_moscow(22, 30);
    let contact = f.subscribed("late@example.com").await;
    let welcome = request("w:late", &contact, "welcome", SendClass::Marketing, Priority::Journey);
    f.deliver(&welcome).await;
    let ledger = SendLedger::new(f.t.stack.state.store.as_ref());
    let deferred = ledger.state("w:late").await.unwrap().unwrap();
    let retention = voronka_domain::repo::send_ledger::LEDGER_RETENTION.as_secs();
    assert_eq!(deferred.get_str("state"), Some("deferred"));
    assert_eq!(deferred.get_i64("ttl"), Some(deferred.get_i64("until").unwrap() + retention), "kept past the wait");

    f.at_moscow(9, 1);
    f.deliver(&welcome).await;
    let sent = ledger.state("w:late").await.unwrap().unwrap();
    assert_eq!(sent.get_str("state"), Some("sent"));
    let sent_at = sent.get_i64("sent_at").unwrap();
    assert!(sent_at > deferred.get_i64("claimed_at").unwrap(), "sent hours after its first claim");
    assert_eq!(sent.get_i64("ttl"), Some(sent_at + retention), "the retention counts from the send, not the claim");
}

#[tokio::test]
async fn names_are_escaped_in_html_and_cannot_add_headers() {
    let f = Fixture::new();
    f.at_moscow(12, 0);
    let contact = f
        .contact("evil@example.com", |c| {
            c.first_name = Some("<script>alert(1)</script>\r\nBcc: victim@example.com".into());
            c.record_consent(receipt(false));
        })
        .await;
    f.deliver(&request("w:evil", &contact, "welcome", SendClass::Marketing, Priority::Journey)).await;
    let entry = &f.outbox()[0];
    let raw = f.eml(entry);
    let head = raw.split("\r\n\r\n").next().unwrap().replace("\r\n ", " ");
    assert!(!head.lines().any(|l| l.to_ascii_lowercase().starts_with("bcc:")), "{head}");
    let parsed = mail_parser::MessageParser::default().parse(raw.as_bytes()).unwrap();
    let html = parsed.body_html(0).unwrap();
    assert!(html.contains("&lt;script&gt;alert(1)&lt;"), "{html}");
    assert!(!html.contains("<script>"));
    assert!(entry.subject.contains("<script>"), "a subject is plain text, shown as typed: {}", entry.subject);
    assert!(
        entry
            .list_unsubscribe
            .as_deref()
            .is_some_and(|u| u.starts_with("<https://api.voronka.test/v1/unsubscribe?token="))
    );
    assert!(head.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"), "{head}");
}

#[tokio::test]
async fn one_click_post_unsubscribes_and_get_only_asks() {
    let f = Fixture::new();
    f.at_moscow(12, 0);
    let contact = f.subscribed("leaver@example.com").await;
    let url = sender::unsubscribe_url(&f.deps, &contact.id, f.t.clock.now());
    let path = url.strip_prefix("https://api.voronka.test").unwrap().to_string();

    let page = f.t.send(Request::get(path.as_str()).body(Body::empty()).unwrap()).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("<button"), "GET shows a button: {}", page.text);
    let repo = ContactRepository::new(f.t.stack.state.store.as_ref());
    assert!(
        repo.get(&contact.id).await.unwrap().unwrap().suppressions.is_empty(),
        "a link scanner's GET unsubscribes nobody"
    );

    let one_click = Request::post(path.as_str())
        .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("List-Unsubscribe=One-Click"))
        .unwrap();
    let done = f.t.send(one_click).await;
    assert_eq!(done.status, StatusCode::OK);
    let after = repo.get(&contact.id).await.unwrap().unwrap();
    assert!(after.suppressions.contains_key(&SuppressionReason::Unsubscribed));
    assert!(!after.email_consent().unwrap().allows_marketing());
    let events = f.t.drain_events().await;
    assert_eq!(events.iter().filter(|e| e.event_type == EventType::Unsubscribed).count(), 1);

    f.deliver(&request("w:leaver", &contact, "welcome", SendClass::Marketing, Priority::Journey)).await;
    assert_eq!(f.ledger_state("w:leaver").await, Some(("blocked".into(), Some("unsubscribed".into()))));

    let forged = f.t.send(Request::post("/v1/unsubscribe?token=forged.token").body(Body::empty()).unwrap()).await;
    assert_eq!(forged.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn throttling_is_retried_and_a_rejection_is_final() {
    let f = Fixture::new();
    f.at_moscow(12, 0);
    let contact = f.subscribed("retry@example.com").await;
    let welcome = request("w:retry", &contact, "welcome", SendClass::Marketing, Priority::Journey);
    *f.mailer.fail_with.lock().unwrap() = Some(MailError::Throttled("Maximum sending rate exceeded".into()));
    assert_eq!(f.deliver(&welcome).await, ["m-1"], "reported as a batch item failure");
    assert_eq!(f.ledger_state("w:retry").await.unwrap().0, "retry");
    *f.mailer.fail_with.lock().unwrap() = None;
    assert!(f.deliver(&welcome).await.is_empty());
    assert_eq!(f.ledger_state("w:retry").await.unwrap().0, "sent");
    assert_eq!(f.outbox().len(), 1);

    let other = f.subscribed("rejected@example.com").await;
    let doomed = request("w:rejected", &other, "welcome", SendClass::Marketing, Priority::Journey);
    *f.mailer.fail_with.lock().unwrap() = Some(MailError::Rejected("Email address is not verified".into()));
    assert!(f.deliver(&doomed).await.is_empty(), "a permanent rejection is not retried");
    let (state, reason) = f.ledger_state("w:rejected").await.unwrap();
    assert_eq!(state, "blocked");
    assert!(reason.unwrap().starts_with("rejected_by_ses"));
}

#[tokio::test]
async fn a_crash_while_calling_ses_leaves_marketing_unsent_and_transactional_resent() {
    let f = Fixture::new();
    f.at_moscow(12, 0);
    let contact = f.subscribed("crash@example.com").await;
    let ledger = SendLedger::new(f.t.stack.state.store.as_ref());
    // An attempt claimed both requests, started calling SES and died before recording what happened.
    for key in ["w:crash", "optin:crash"] {
        let claim = ledger.claim(key, SendClass::Marketing, "dead-attempt", f.t.clock.now()).await.unwrap();
        assert!(matches!(claim, voronka_domain::repo::Claim::Claimed { .. }));
        ledger.mark_calling(key, "dead-attempt", f.t.clock.now()).await.unwrap();
    }
    let welcome = request("w:crash", &contact, "welcome", SendClass::Marketing, Priority::Journey);
    assert_eq!(f.deliver(&welcome).await, ["m-1"], "within the lease the claim may still be working");
    f.t.advance(300);
    assert!(f.deliver(&welcome).await.is_empty());
    assert_eq!(f.ledger_state("w:crash").await.unwrap().0, "unknown", "outcome unknown: not re-sent");
    let confirm =
        request("optin:crash", &contact, "optin_confirmation", SendClass::Transactional, Priority::Transactional);
    f.deliver(&confirm).await;
    assert_eq!(f.ledger_state("optin:crash").await.unwrap().0, "sent", "transactional mail is sent again");
    // The ledger says why a second copy may exist (the invariants explain it from this).
    let entry = ledger.state("optin:crash").await.unwrap().unwrap();
    assert_eq!(entry.get_str("resent_after"), Some("attempt_died_while_calling_ses"));
    assert_eq!(ledger.state("w:crash").await.unwrap().unwrap().get_str("resent_after"), None);
    assert_eq!(f.outbox().len(), 1);
}

#[tokio::test]
async fn double_opt_in_works_end_to_end_through_the_outbox() {
    let f = Fixture::new();
    let answer =
        f.t.submit_json("newsletter", json!({"email": "dora@example.com", "first_name": "Dora", "consent": true}))
            .await;
    assert_eq!(answer.status, StatusCode::CREATED);
    let id = answer.json()["contact_id"].as_str().unwrap().to_string();
    assert_eq!(voronka_local::workers::run_sends_once(&f.t.stack).await.unwrap(), 1);
    let entries = f.outbox();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].to, "dora@example.com");
    assert!(entries[0].list_unsubscribe.is_none(), "the confirmation is transactional");
    let raw = f.eml(&entries[0]);
    let parsed = mail_parser::MessageParser::default().parse(raw.as_bytes()).unwrap();
    let text = parsed.body_text(0).unwrap().into_owned();
    let link =
        text.split_whitespace().find(|w| w.starts_with("https://api.voronka.test/v1/confirm?token=")).expect("a link");
    let path = link.strip_prefix("https://api.voronka.test").unwrap();
    let confirmed = f.t.send(Request::post(path).body(Body::empty()).unwrap()).await;
    assert_eq!(confirmed.status, StatusCode::OK);
    let contact = ContactRepository::new(f.t.stack.state.store.as_ref()).get(&id).await.unwrap().unwrap();
    assert!(contact.email_consent().unwrap().allows_marketing());
    assert_eq!(f.t.stack.embedded().queue.depth(QueueName::Sends).await.unwrap(), 0);
}

async fn shop_events(f: &Fixture, events: Vec<serde_json::Value>) {
    f.t.post_events(events, true).await;
}

async fn add_to_cart(f: &Fixture, contact_id: &str, cart_id: &str) {
    let id = format!("{cart_id}:add:{}", f.t.clock.now().as_second());
    shop_events(
        f,
        vec![json!({"event_id": id, "type": "add_to_cart", "contact_id": contact_id, "properties": {
            "cart_id": cart_id, "sku": "SH-1", "name": "Shoes", "price": 1990, "quantity": 1, "currency": "RUB"}})],
    )
    .await;
}

/// Moves the clock in steps of `step_minutes`, with the scheduler and the queues run after each.
async fn run_for(f: &Fixture, minutes: i64, step_minutes: i64) {
    let mut left = minutes;
    while left > 0 {
        let step = step_minutes.min(left);
        f.t.advance(step * 60);
        voronka_local::workers::tick(&f.t.stack).await.unwrap();
        left -= step;
    }
}

fn cart_mail_to(f: &Fixture, to: &str) -> Vec<outbox::OutboxEntry> {
    f.outbox().into_iter().filter(|m| m.to.starts_with(to) && m.subject.contains("cart")).collect()
}

#[tokio::test]
async fn a_reminder_deferred_past_a_purchase_is_not_sent() {
    let f = Fixture::new();
    let buyer = f.t.consented_contact("buyer@example.com", json!({"locale": "en"})).await;
    let keeper = f.t.consented_contact("keeper@example.com", json!({"locale": "en"})).await;
    f.at_moscow(20, 30);
    voronka_local::workers::tick(&f.t.stack).await.unwrap();
    add_to_cart(&f, &buyer, "cart-bought").await;
    add_to_cart(&f, &keeper, "cart-kept").await;
    // Abandoned at 21:30, in quiet hours: both first reminders wait for 09:00.
    run_for(&f, 90, 10).await;
    assert_eq!(
        f.ledger_state("cart:cart-bought:1:step1").await,
        Some(("deferred".into(), Some("quiet_hours".into()))),
        "the reminder was issued and deferred"
    );
    f.at_moscow(8, 0);
    voronka_local::workers::tick(&f.t.stack).await.unwrap();
    let order = json!({"event_id": "o-night:purchase", "type": "purchase", "contact_id": buyer,
        "properties": {"cart_id": "cart-bought", "order_id": "o-night", "revenue": 1990, "currency": "RUB"}});
    shop_events(&f, vec![order]).await;
    run_for(&f, 120, 10).await;

    assert!(cart_mail_to(&f, "buyer").is_empty(), "no reminder after the purchase");
    assert_eq!(
        f.ledger_state("cart:cart-bought:1:step1").await,
        Some(("cancelled".into(), Some("cart_purchased".into())))
    );
    assert_eq!(cart_mail_to(&f, "keeper").len(), 1, "the cart still abandoned gets its reminder at 09:00");
}

/// A cart abandoned at `last_activity_at` + idle time, stored as the evaluator stores it.
async fn abandoned_cart(f: &Fixture, cart_id: &str, owner: &str, activity: u64, last_activity_at: Timestamp) {
    let mut cart = voronka_domain::model::Cart::new(cart_id, owner, last_activity_at);
    cart.status = voronka_domain::model::CartStatus::Abandoned;
    cart.activity = activity;
    cart.version = 3;
    let item = voronka_domain::ports::Item::new(
        &voronka_domain::repo::carts::cart_key(cart_id),
        serde_json::to_value(&cart).unwrap(),
    );
    f.t.stack.state.store.put(item, None).await.unwrap();
}

fn cart_step(key: &str, contact: &Contact, cart_id: &str, step: u32) -> SendRequest {
    SendRequest {
        origin: SendOrigin::Cart { cart_id: cart_id.into(), step },
        ..request(key, contact, "abandoned_cart_1", SendClass::Marketing, Priority::Cart)
    }
}

#[tokio::test]
async fn a_reminder_is_dropped_rather_than_deferred_past_its_staleness() {
    let f = Fixture::new();
    f.at_moscow(21, 30);
    let contact = f.subscribed("late@example.com").await;
    // Last activity at 19:00: step 1 was due at 20:00 and is stale twelve hours later, at 08:00,
    // before quiet hours end at 09:00.
    abandoned_cart(&f, "cart-late", &contact.id, 3, f.t.clock.now() - jiff::SignedDuration::from_mins(150)).await;
    let step = cart_step("cart:cart-late:3:step1", &contact, "cart-late", 1);
    assert!(f.deliver(&step).await.is_empty());
    let (state, reason) = f.ledger_state("cart:cart-late:3:step1").await.unwrap();
    assert_eq!((state.as_str(), reason.as_deref()), ("cancelled", Some("stale_before_quiet_hours_ends")));
    assert_eq!(f.t.stack.embedded().queue.depth(QueueName::Sends).await.unwrap(), 0, "not re-queued");

    // A step of an abandonment that has since been replaced by newer activity is not sent either.
    f.at_moscow(12, 0);
    abandoned_cart(&f, "cart-moved", &contact.id, 5, f.t.clock.now() - jiff::SignedDuration::from_mins(70)).await;
    f.deliver(&cart_step("cart:cart-moved:4:step1", &contact, "cart-moved", 1)).await;
    assert_eq!(
        f.ledger_state("cart:cart-moved:4:step1").await,
        Some(("cancelled".into(), Some("cart_changed_since_the_step".into())))
    );
    f.deliver(&cart_step("cart:cart-moved:5:step1", &contact, "cart-moved", 1)).await;
    assert_eq!(f.ledger_state("cart:cart-moved:5:step1").await.unwrap().0, "sent");
    assert_eq!(f.mailer.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_journey_send_after_its_run_exited_or_started_over_is_not_sent() {
    let f = Fixture::new();
    f.at_moscow(12, 0);
    let contact = f.subscribed("runner@example.com").await;
    let journey_send = |run: u32| SendRequest {
        origin: SendOrigin::Journey { journey_id: "winback".into(), step_id: "s1".into() },
        ..request(
            &format!("journey:winback:{}:{run}:s1", contact.id),
            &contact,
            "welcome",
            SendClass::Marketing,
            Priority::Journey,
        )
    };
    f.journey_state(&contact.id, "winback", 1, RunStatus::Exited).await;
    f.deliver(&journey_send(1)).await;
    assert_eq!(
        f.ledger_state(&journey_send(1).idempotency_key).await,
        Some(("cancelled".into(), Some("journey_run_exited".into())))
    );
    f.journey_state(&contact.id, "winback", 3, RunStatus::Active).await;
    f.deliver(&journey_send(2)).await;
    assert_eq!(
        f.ledger_state(&journey_send(2).idempotency_key).await,
        Some(("cancelled".into(), Some("journey_run_replaced".into())))
    );
    f.deliver(&journey_send(3)).await;
    assert_eq!(f.ledger_state(&journey_send(3).idempotency_key).await.unwrap().0, "sent");
    assert_eq!(f.mailer.calls.load(Ordering::SeqCst), 1, "only the live run's email");
}

#[tokio::test]
async fn a_marketing_email_whose_ses_answer_was_lost_is_never_sent_again() {
    let f = Fixture::new();
    f.at_moscow(12, 0);
    for (n, lost_answer) in [
        MailError::Ambiguous("operation timed out after 5s".into()),
        MailError::Ambiguous("service error: InternalFailure (500)".into()),
    ]
    .into_iter()
    .enumerate()
    {
        // One contact each: a message that may have gone out keeps its frequency-cap slot.
        let contact = f.subscribed(&format!("lost{n}@example.com")).await;
        let key = format!("w:lost:{n}");
        let welcome = request(&key, &contact, "welcome", SendClass::Marketing, Priority::Journey);
        *f.mailer.accept_then_fail_with.lock().unwrap() = Some(lost_answer);
        let calls_before = f.mailer.calls.load(Ordering::SeqCst);
        assert!(f.deliver(&welcome).await.is_empty(), "acknowledged, not handed back for another try");
        assert_eq!(f.mailer.calls.load(Ordering::SeqCst), calls_before + 1, "one call, no retry after it");
        let (state, reason) = f.ledger_state(&key).await.unwrap();
        assert_eq!(state, "unknown", "{reason:?}");
        *f.mailer.accept_then_fail_with.lock().unwrap() = None;
        f.t.advance(3600);
        f.deliver(&welcome).await;
        assert_eq!(f.mailer.calls.load(Ordering::SeqCst), calls_before + 1, "a later delivery does not send again");
    }
    assert_eq!(f.outbox().len(), 2, "each message reached the mail service exactly once");
}

#[tokio::test]
async fn an_attempt_that_died_before_calling_ses_is_taken_over_not_written_off() {
    let f = Fixture::new();
    f.at_moscow(12, 0);
    let contact = f.subscribed("early@example.com").await;
    let ledger = SendLedger::new(f.t.stack.state.store.as_ref());
    let claim = ledger.claim("w:early", SendClass::Marketing, "dead-attempt", f.t.clock.now()).await.unwrap();
    assert!(matches!(claim, voronka_domain::repo::Claim::Claimed { .. }));
    let welcome = request("w:early", &contact, "welcome", SendClass::Marketing, Priority::Journey);
    assert_eq!(f.deliver(&welcome).await, ["m-1"], "within the lease the claim may still be working");
    f.t.advance(300);
    assert!(f.deliver(&welcome).await.is_empty());
    assert_eq!(f.ledger_state("w:early").await.unwrap().0, "sent", "it never reached SES: sent now");
    assert_eq!(f.outbox().len(), 1);
}

#[tokio::test]
async fn a_failure_before_the_request_left_is_retried_and_so_is_transactional_mail() {
    let f = Fixture::new();
    f.at_moscow(12, 0);
    let contact = f.subscribed("refused@example.com").await;
    let welcome = request("w:refused", &contact, "welcome", SendClass::Marketing, Priority::Journey);
    *f.mailer.fail_with.lock().unwrap() = Some(MailError::NotSent("connection refused".into()));
    assert_eq!(f.deliver(&welcome).await, ["m-1"], "handed back to the queue");
    assert_eq!(f.mailer.calls.load(Ordering::SeqCst), 3, "tried again with backoff: nothing was sent");
    assert_eq!(f.ledger_state("w:refused").await.unwrap().0, "retry");
    *f.mailer.fail_with.lock().unwrap() = None;
    assert!(f.deliver(&welcome).await.is_empty());
    assert_eq!(f.ledger_state("w:refused").await.unwrap().0, "sent");

    // A confirmation whose answer was lost is sent again: a duplicate beats a lost confirmation.
    let confirm =
        request("optin:refused", &contact, "optin_confirmation", SendClass::Transactional, Priority::Transactional);
    *f.mailer.accept_then_fail_with.lock().unwrap() = Some(MailError::Ambiguous("timed out".into()));
    assert_eq!(f.deliver(&confirm).await, ["m-1"]);
    assert_eq!(f.ledger_state("optin:refused").await.unwrap().0, "retry");
    let ledger = SendLedger::new(f.t.stack.state.store.as_ref());
    let entry = ledger.state("optin:refused").await.unwrap().unwrap();
    assert_eq!(entry.get_str("resent_after"), Some("ambiguous_ses_answer"), "recorded before the next try");
}

#[tokio::test]
async fn an_email_sent_event_the_queue_refused_is_queued_on_the_next_delivery_without_a_second_email() {
    let mut f = Fixture::new();
    f.at_moscow(12, 0);
    let queue = Arc::new(RefusingQueue::new(f.t.stack.embedded().queue.clone()));
    queue.refuse_events.store(true, Ordering::SeqCst);
    f.deps.queue = queue.clone();
    let contact = f.subscribed("counted@example.com").await;
    let welcome = request("w:counted", &contact, "welcome", SendClass::Marketing, Priority::Journey);
    assert_eq!(f.deliver(&welcome).await, ["m-1"], "reported as failed, so the queue delivers it again");
    assert_eq!(f.ledger_state("w:counted").await.unwrap().0, "sent");
    assert!(f.t.drain_events().await.is_empty());

    queue.refuse_events.store(false, Ordering::SeqCst);
    assert!(f.deliver(&welcome).await.is_empty());
    assert!(f.deliver(&welcome).await.is_empty(), "once queued, a later delivery has nothing left to do");
    assert_eq!(f.mailer.calls.load(Ordering::SeqCst), 1, "one email");
    let events = f.t.drain_events().await;
    assert_eq!(events.iter().filter(|e| e.event_type == EventType::EmailSent).count(), 1, "{events:?}");
}

/// Cancels frequency-cap transactions without naming a failed condition (a conflict, a throttle),
/// while `cancel` holds.
struct CancellingCaps {
    inner: Arc<dyn Store>,
    cancel: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl Store for CancellingCaps {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        self.inner.get(key).await
    }
    async fn put(&self, item: Item, condition: Option<Condition>) -> Result<(), StoreError> {
        self.inner.put(item, condition).await
    }
    async fn update(
        &self,
        key: &Key,
        actions: Vec<UpdateAction>,
        condition: Option<Condition>,
    ) -> Result<Item, StoreError> {
        self.inner.update(key, actions, condition).await
    }
    async fn delete(&self, key: &Key, condition: Option<Condition>) -> Result<(), StoreError> {
        self.inner.delete(key, condition).await
    }
    async fn query(&self, query: Query) -> Result<Page, StoreError> {
        self.inner.query(query).await
    }
    async fn transact(&self, ops: Vec<TransactOp>) -> Result<(), StoreError> {
        let on_caps = ops.iter().any(|op| matches!(op, TransactOp::Update { key, .. } if key.pk.starts_with("CAP#")));
        if on_caps && self.cancel.load(Ordering::SeqCst) {
            return Err(StoreError::TransactionCancelled { failed: vec![] });
        }
        self.inner.transact(ops).await
    }
    async fn batch_put(&self, items: Vec<Item>) -> Result<(), StoreError> {
        self.inner.batch_put(items).await
    }
}

#[tokio::test]
async fn a_cap_reservation_cancelled_for_another_reason_is_retried_not_read_as_a_full_day() {
    let mut f = Fixture::new();
    f.at_moscow(12, 0);
    let store = Arc::new(CancellingCaps {
        inner: f.t.stack.state.store.clone(),
        cancel: std::sync::atomic::AtomicBool::new(true),
    });
    f.deps.store = store.clone();
    let contact = f.subscribed("conflict@example.com").await;
    // A promotion is dropped when its day is full: a misread conflict would lose it for good.
    let promo = request("promo:conflict", &contact, "welcome", SendClass::Marketing, Priority::Promo);
    assert_eq!(f.deliver(&promo).await, ["m-1"], "handed back to be tried again");
    assert_eq!(f.ledger_state("promo:conflict").await.unwrap().0, "retry");
    store.cancel.store(false, Ordering::SeqCst);
    assert!(f.deliver(&promo).await.is_empty());
    assert_eq!(f.ledger_state("promo:conflict").await.unwrap().0, "sent");

    // A day that is really full still reads as full, whatever the backend says of which condition failed.
    store.cancel.store(true, Ordering::SeqCst);
    let second = request("promo:second", &contact, "welcome", SendClass::Marketing, Priority::Promo);
    f.deliver(&second).await;
    assert_eq!(f.ledger_state("promo:second").await, Some(("blocked".into(), Some("frequency_cap_day".into()))));
}
