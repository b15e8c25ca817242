//! The reputation guard end to end on the embedded adapters with a simulated clock: the sender
//! counts what SES accepted, the evaluator counts hard bounces from SES feedback (once per
//! notification), a bounce storm pauses marketing, held marketing carries the rate that tripped it
//! and is never sent while paused, transactional mail goes on, and marketing resumes by itself
//! once the storm leaves the window, or at once when an operator resumes it over the admin API.
//! Each sender batch writes one EMF line with its outcomes.

mod support;

use std::sync::Arc;

use axum::body::Body;
use http::{Request, StatusCode, header};
use jiff::Timestamp;
use serde_json::{Map, Value, json};
use support::inprocess::TestStack;
use voronka_domain::model::{
    Channel, ConsentReceipt, Contact, EmailAddress, Priority, SendClass, SendOrigin, SendRequest,
};
use voronka_domain::ports::{Clock, Delivery};
use voronka_domain::repo::journey_state::{Group, JourneyState, RunStatus};
use voronka_domain::repo::reputation::{GuardState, RateKind, ResumedBy};
use voronka_domain::repo::{ContactRepository, SendLedger};
use voronka_domain::sending::reputation;
use voronka_local::outbox;

struct Fixture {
    t: TestStack,
    deps: sender::SenderDeps,
}

/// Few sends count in the tests: the guard judges from 20 on, and 3 hard bounces may pause it.
const MIN_SENDS: u64 = 20;
const MIN_BOUNCES: u64 = 3;

impl Fixture {
    fn new() -> Fixture {
        let mut t = TestStack::new();
        let mut campaigns = (*t.stack.sender.campaigns).clone();
        campaigns.settings.sending.reputation.min_sends = MIN_SENDS;
        campaigns.settings.sending.reputation.min_bounces = MIN_BOUNCES;
        let campaigns = Arc::new(campaigns);
        // One installation, one settings file: the sender and the admin API judge alike.
        t.stack.state.shared.campaigns = campaigns.clone();
        t.stack.sender.shared.campaigns = campaigns;
        t.app = voronka_local::serve::app(t.stack.state.clone(), t.stack.outbox.dir().to_path_buf());
        let deps = t.stack.sender.clone();
        // Noon in Moscow: outside quiet hours.
        t.clock.set("2027-01-12T09:00:00Z".parse().unwrap());
        Fixture { t, deps }
    }

    fn now(&self) -> Timestamp {
        self.t.clock.now()
    }

    async fn subscriber(&self, n: usize) -> Contact {
        let repo = ContactRepository::new(self.t.stack.state.store.as_ref());
        let now = self.now();
        let email = EmailAddress::parse(&format!("person{n}@example.com")).unwrap();
        let (contact, _) = repo
            .upsert_by_email(
                &email,
                now,
                || Contact::new(format!("c_{n}"), now, "en".into(), "Europe/Moscow".into()),
                |c| {
                    c.record_consent(ConsentReceipt {
                        form_id: Some("newsletter".into()),
                        ..ConsentReceipt::granted("r-1", Timestamp::UNIX_EPOCH, "v1", false)
                    })
                },
            )
            .await
            .unwrap();
        let state = JourneyState {
            status: RunStatus::Active,
            version: 1,
            ..JourneyState::new_run("welcome", &contact.id, 1, Group::Treatment, now)
        };
        self.t.stack.state.store.put(state.to_item(), None).await.unwrap();
        contact
    }

    async fn deliver(&self, requests: &[SendRequest]) -> Vec<String> {
        let deliveries = requests
            .iter()
            .enumerate()
            .map(|(i, r)| Delivery { message_id: format!("m-{i}"), body: serde_json::to_string(r).unwrap() })
            .collect();
        sender::process_batch(&self.deps, deliveries).await
    }

    /// An SES hard bounce of `contact`'s message `ses_message_id`, sent and bounced now, handled by
    /// the evaluator.
    async fn bounce(&self, contact: &Contact, ses_message_id: &str) {
        self.late_bounce(contact, ses_message_id, self.now()).await;
    }

    /// An SES hard bounce arriving now of `contact`'s message `ses_message_id` sent at `sent_at`.
    async fn late_bounce(&self, contact: &Contact, ses_message_id: &str, sent_at: Timestamp) {
        let at = self.now().to_string();
        let mail = json!({"timestamp": sent_at.to_string(), "messageId": ses_message_id, "source": "news@shop.example",
            "destination": [format!("{}", contact.email.as_ref().unwrap().as_typed())],
            "tags": {"contact_id": [contact.id], "template": ["welcome"]}});
        let body = json!({"eventType": "Bounce", "mail": mail, "bounce": {"bounceType": "Permanent",
            "bounceSubType": "General", "timestamp": at,
            "bouncedRecipients": [{"emailAddress": contact.email.as_ref().unwrap().as_typed().to_string()}]}});
        let delivery = Delivery { message_id: format!("sqs-{ses_message_id}"), body: body.to_string() };
        let failed = trigger_evaluator::process_batch(&self.t.stack.evaluator, vec![delivery]).await;
        assert!(failed.is_empty(), "{failed:?}");
    }

    fn outbox_keys(&self) -> Vec<String> {
        outbox::entries(self.t.stack.outbox.dir())
            .iter()
            .map(|entry| std::fs::read_to_string(self.t.stack.outbox.dir().join(&entry.file)).unwrap())
            .map(|eml| eml.lines().find(|l| l.starts_with("Message-ID:")).unwrap_or_default().to_string())
            .collect()
    }

    async fn ledger(&self, request: &SendRequest) -> (String, String) {
        let item = SendLedger::new(self.t.stack.state.store.as_ref()).state(&request.idempotency_key).await.unwrap();
        let item = item.expect("a ledger entry");
        (item.get_str("state").unwrap_or_default().into(), item.get_str("reason").unwrap_or_default().into())
    }

    async fn status(&self) -> reputation::Status {
        let settings = &self.deps.campaigns.settings.sending.reputation;
        reputation::evaluate(self.t.stack.state.store.as_ref(), settings, self.now()).await.unwrap()
    }

    /// Past the hold and the container's recheck interval.
    fn wait_out_the_hold(&self) {
        let settings = &self.deps.campaigns.settings.sending.reputation;
        self.t.advance(i64::from(settings.hold_seconds.max(settings.recheck_seconds)) + 1);
    }

    async fn admin(&self, method: &str, path: &str, key: Option<&str>) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(key) = key {
            request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        let answer = self.t.send(request.body(Body::empty()).unwrap()).await;
        (answer.status, serde_json::from_str(&answer.text).unwrap_or(Value::Null))
    }
}

fn marketing(key: &str, contact: &Contact) -> SendRequest {
    request(key, contact, "welcome", SendClass::Marketing, Priority::Journey)
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

/// Twenty subscribers get the welcome email, then `bounced` of them hard-bounce.
async fn storm(f: &Fixture, first: usize, bounced: usize) -> Vec<Contact> {
    let mut contacts = Vec::new();
    for n in first..first + MIN_SENDS as usize {
        contacts.push(f.subscriber(n).await);
    }
    let requests: Vec<SendRequest> =
        contacts.iter().map(|c| marketing(&format!("journey:welcome:{}:s1", c.id), c)).collect();
    assert!(f.deliver(&requests).await.is_empty());
    for contact in &contacts[..bounced] {
        f.bounce(contact, &format!("ses-{}", contact.id)).await;
    }
    contacts
}

#[tokio::test]
async fn a_bounce_storm_holds_marketing_with_its_reason_lets_transactional_mail_through_and_resumes_by_itself() {
    let f = Fixture::new();
    let contacts = storm(&f, 0, 3).await;
    // A notification delivered twice counts once; the evaluator's line says so.
    let capture = voronka_telemetry::metrics::capture();
    f.bounce(&contacts[0], &format!("ses-{}", contacts[0].id)).await;
    let line: Value = serde_json::from_str(&capture.lines()[0]).unwrap();
    assert_eq!(line["Function"], "trigger-evaluator");
    assert_eq!((line["BouncesCounted"].as_f64(), line["Duplicate"].as_f64()), (Some(0.0), Some(1.0)), "{line}");
    drop(capture);
    assert_eq!(f.outbox_keys().len(), 20);
    let status = f.status().await;
    assert_eq!((status.counts.sends, status.counts.bounces), (20, 3), "{status:?}");
    assert!(status.state.paused, "15% hard bounces over 20 sends pause marketing: {status:?}");
    let trip = status.state.trip.unwrap();
    assert_eq!((trip.rate, trip.rate_ppm, trip.threshold_ppm), (RateKind::BounceRate, 150_000, 25_000));

    // This container read the guard before the storm; past its recheck interval it sees the pause.
    f.t.advance(61);
    let next = f.subscriber(100).await;
    let held = marketing("journey:welcome:c_100:s1", &next);
    let capture = voronka_telemetry::metrics::capture();
    assert!(f.deliver(std::slice::from_ref(&held)).await.is_empty(), "a hold is not a failure");
    let (state, reason) = f.ledger(&held).await;
    assert_eq!(state, "deferred");
    assert_eq!(reason, "reputation_paused: bounce_rate 15.000% >= 2.500% over 20 sends");
    assert_eq!(f.outbox_keys().len(), 20, "nothing sent while paused");

    // The sender's one line for that batch says what happened, and nothing personal.
    let lines = capture.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(line["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Voronka");
    assert_eq!(line["Function"], "sender");
    assert_eq!((line["Held"].as_f64(), line["Sent"].as_f64()), (Some(1.0), Some(0.0)), "{line}");
    assert_eq!(line["ReputationPaused"].as_f64(), Some(1.0));
    assert!(!lines[0].contains("example.com") && !lines[0].contains("c_100"), "{}", lines[0]);
    drop(capture);

    // Transactional mail goes on.
    let receipt = request("order:1", &next, "optin_confirmation", SendClass::Transactional, Priority::Transactional);
    assert!(f.deliver(std::slice::from_ref(&receipt)).await.is_empty());
    assert_eq!(f.ledger(&receipt).await.0, "sent");
    assert_eq!(f.outbox_keys().len(), 21);

    // Redelivered while still paused, it is held again.
    f.wait_out_the_hold();
    assert!(f.deliver(std::slice::from_ref(&held)).await.is_empty());
    assert_eq!(f.ledger(&held).await.0, "deferred");
    assert_eq!(f.outbox_keys().len(), 21);

    // A day later the storm's hour has left the window: marketing resumes, and the held message goes.
    f.t.advance(24 * 3600);
    assert!(f.deliver(std::slice::from_ref(&held)).await.is_empty());
    assert_eq!(f.ledger(&held).await.0, "sent");
    assert_eq!(f.outbox_keys().len(), 22);
    let status = f.status().await;
    assert!(!status.state.paused);
    assert_eq!(status.state.resumed_by, Some(ResumedBy::Rates));
}

#[tokio::test]
async fn an_operator_resumes_marketing_over_the_admin_api_and_the_old_storm_does_not_trip_it_again() {
    let f = Fixture::new();
    storm(&f, 0, 5).await;
    f.t.advance(61);
    let next = f.subscriber(100).await;
    let held = marketing("journey:welcome:c_100:s1", &next);
    f.deliver(std::slice::from_ref(&held)).await;
    assert_eq!(f.ledger(&held).await.0, "deferred");

    let (status, _) = f.admin("POST", "/v1/admin/sending/resume", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "operators only");
    let key = f.t.stack.admin_key.clone();
    let (status, body) = f.admin("GET", "/v1/admin/sending", Some(&key)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["paused"], true, "{body}");
    assert_eq!(body["trip"]["rate"], "bounce_rate", "{body}");
    let (status, body) = f.admin("POST", "/v1/admin/sending/resume", Some(&key)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((body["paused"].clone(), body["resumed_by"].clone()), (json!(false), json!("operator")), "{body}");
    // Resuming twice changes nothing.
    let (_, again) = f.admin("POST", "/v1/admin/sending/resume", Some(&key)).await;
    assert_eq!(again["version"], body["version"]);

    // The held message goes out once its hold ends; the storm's hour no longer counts.
    f.wait_out_the_hold();
    assert!(f.deliver(std::slice::from_ref(&held)).await.is_empty());
    assert_eq!(f.ledger(&held).await.0, "sent");
    assert!(!f.status().await.state.paused);
}

#[tokio::test]
async fn the_old_storms_late_bounces_do_not_trip_the_guard_again_after_an_operators_resumption() {
    let f = Fixture::new();
    let storm_sent_at = f.now();
    let contacts = storm(&f, 0, 5).await;
    assert!(f.status().await.state.paused);
    f.t.advance(60);
    let key = f.t.stack.admin_key.clone();
    let (status, _) = f.admin("POST", "/v1/admin/sending/resume", Some(&key)).await;
    assert_eq!(status, StatusCode::OK);

    // The next hour, fresh marketing goes out, and the rest of the storm's bounces arrive late.
    f.t.advance(3600);
    let fresh: Vec<Contact> = {
        let mut fresh = Vec::new();
        for n in 200..200 + MIN_SENDS as usize {
            fresh.push(f.subscriber(n).await);
        }
        fresh
    };
    let requests: Vec<SendRequest> =
        fresh.iter().map(|c| marketing(&format!("journey:welcome:{}:s1", c.id), c)).collect();
    assert!(f.deliver(&requests).await.is_empty());
    assert_eq!(f.outbox_keys().len(), 40);
    for contact in &contacts[5..] {
        f.late_bounce(contact, &format!("ses-late-{}", contact.id), storm_sent_at).await;
    }
    let status = f.status().await;
    // Counted in the storm's hour, before the resumption, not against the fresh mail.
    assert_eq!((status.counts.sends, status.counts.bounces), (20, 0), "{status:?}");
    assert!(!status.state.paused, "{status:?}");
}

#[tokio::test]
async fn a_state_paused_without_a_trip_still_holds_marketing() {
    let f = Fixture::new();
    storm(&f, 0, 5).await;
    let paused = f.status().await.state;
    assert!(paused.paused);
    let store = f.t.stack.state.store.as_ref();
    let without_trip = GuardState { trip: None, version: paused.version + 1, ..paused };
    assert!(voronka_domain::repo::reputation::replace_state(store, &without_trip).await.unwrap());
    f.t.advance(61);
    let next = f.subscriber(100).await;
    let held = marketing("journey:welcome:c_100:s1", &next);
    assert!(f.deliver(std::slice::from_ref(&held)).await.is_empty());
    assert_eq!(f.ledger(&held).await, ("deferred".to_string(), "reputation_paused".to_string()));
    assert_eq!(f.outbox_keys().len(), 20, "nothing sent while paused");
}

#[tokio::test]
async fn two_containers_tripping_at_once_record_one_pause() {
    let f = Fixture::new();
    storm(&f, 0, 4).await;
    let store = f.t.stack.state.store.clone();
    let settings = f.deps.campaigns.settings.sending.reputation.clone();
    let now = f.now();
    let (a, b) = tokio::join!(
        reputation::evaluate(store.as_ref(), &settings, now),
        reputation::evaluate(store.as_ref(), &settings, now)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a.state.paused && b.state.paused);
    assert_eq!(a.state.version, b.state.version, "one write, read by both");
    assert_eq!(a.state.paused_at, b.state.paused_at);
}

#[tokio::test]
async fn voronka_sending_status_and_resume_work_on_a_data_folder() {
    use voronka_domain::ports::SystemClock;
    use voronka_domain::repo::reputation as counts;
    use voronka_local::stack::{Stack, StackOptions};
    let folder = support::inprocess::TempFolder::new("reputation-cli");
    let stack = Stack::open(StackOptions {
        data_dir: Some(folder.path().to_path_buf()),
        metering: None,
        campaigns_dir: None,
        public_base_url: None,
        clock: Arc::new(SystemClock),
        ids: Stack::default_ids(),
        faults: None,
    })
    .unwrap();
    // A storm by the shipped settings: 600 sends, 30 hard bounces (5%) this hour.
    let store = stack.state.store.as_ref();
    let now = SystemClock.now();
    counts::count_sends(store, now, 600).await.unwrap();
    for n in 0..30 {
        assert!(counts::count_feedback(store, &format!("ses-{n}"), counts::Counted::Bounce, now).await.unwrap());
    }
    drop(stack);
    let voronka = |action: &str| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_voronka"))
            .args(["sending", action, "--data-dir"])
            .arg(folder.path())
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice::<Value>(&output.stdout).unwrap()
    };
    let status = voronka("status");
    assert_eq!(status["paused"], true, "{status}");
    assert_eq!(status["trip"]["rate_ppm"], 50_000, "{status}");
    assert_eq!(status["counts"], json!({"sends": 600, "bounces": 30, "complaints": 0}));
    let resumed = voronka("resume");
    assert_eq!((resumed["paused"].clone(), resumed["resumed_by"].clone()), (json!(false), json!("operator")));
    assert_eq!(voronka("status")["paused"], false, "the old storm does not trip it again");
}
