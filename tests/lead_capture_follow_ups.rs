//! What a form submission owes its queues, whatever the client's retry looks like: `lead_created`
//! queued exactly once even when the queue refused it, one confirmation email per person however
//! often their address is posted, and re-subscribing through a new, confirmed consent.

mod support;

use support::doubles::RefusingQueue;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Body;
use http::{Request, StatusCode, header};
use lead_capture::ClientIp;
use serde_json::{Value, json};
use support::inprocess::{Answer, TestStack};
use tower::ServiceExt;
use voronka_domain::model::{Contact, EmailAddress, EventType, SendClass, SuppressionReason};
use voronka_domain::ports::Clock;
use voronka_domain::repo::ContactRepository;
use voronka_domain::repo::aggregates::{self, Metric};
use voronka_domain::sending::policy::{BlockReason, check_recipient};
use voronka_domain::signing::UNSUBSCRIBE_TOKEN_PURPOSE;

struct Fixture {
    t: TestStack,
    queue: Arc<RefusingQueue>,
    app: Router,
}

impl Fixture {
    fn new() -> Fixture {
        let t = TestStack::new();
        let queue = Arc::new(RefusingQueue::new(t.stack.embedded().queue.clone()));
        let mut state = t.stack.state.clone();
        state.queue = queue.clone();
        let app = lead_capture::router(state);
        Fixture { t, queue, app }
    }

    async fn send(&self, mut request: Request<Body>) -> Answer {
        request.extensions_mut().insert(ClientIp("192.0.2.10".parse().unwrap()));
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        Answer { status, headers, text: String::from_utf8_lossy(&bytes).into_owned() }
    }

    async fn submit(&self, form: &str, body: Value) -> Answer {
        let request = Request::post(format!("/v1/forms/{form}/submissions"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        self.send(request).await
    }

    async fn contact(&self, email: &str) -> Contact {
        ContactRepository::new(self.t.stack.state.store.as_ref())
            .find_by_email(&EmailAddress::parse(email).unwrap())
            .await
            .unwrap()
            .expect("the contact exists")
    }

    /// The confirmation links queued since the last call, as paths.
    async fn confirmation_paths(&self) -> Vec<String> {
        self.t
            .drain_sends()
            .await
            .iter()
            .filter(|s| s.template == "optin_confirmation")
            .map(|s| {
                s.context["confirm_url"].as_str().unwrap().strip_prefix("https://api.voronka.test").unwrap().to_string()
            })
            .collect()
    }

    async fn post(&self, path: &str) -> Answer {
        self.send(Request::post(path).body(Body::empty()).unwrap()).await
    }

    /// A person pressing the confirmation page's button (which sends the button's field).
    async fn press(&self, path: &str) -> Answer {
        let request = Request::post(path)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from("pressed=1"))
            .unwrap();
        self.send(request).await
    }
}

fn consultation(email: &str) -> Value {
    json!({"name": "Oleg Petrov", "email": email, "phone": "+79990001122", "company_size": "1-10", "consent": true})
}

fn newsletter(email: &str) -> Value {
    json!({"email": email, "first_name": "Vera", "consent": true})
}

#[tokio::test]
async fn lead_created_refused_by_the_queue_is_queued_by_the_clients_retry_with_a_new_submission_id() {
    let f = Fixture::new();
    f.queue.refuse_events.store(true, Ordering::SeqCst);
    let refused = f.submit("consultation", consultation("lead@example.com")).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE, "{}", refused.text);
    let created_by = f.contact("lead@example.com").await;

    f.queue.refuse_events.store(false, Ordering::SeqCst);
    f.t.advance(5);
    let retried = f.submit("consultation", consultation("lead@example.com")).await;
    assert_eq!(retried.status, StatusCode::CREATED, "{}", retried.text);
    assert_eq!(retried.json()["status"], "updated", "the first attempt stored the contact");

    let events = f.t.drain_events().await;
    let leads: Vec<_> = events.iter().filter(|e| e.event_type == EventType::LeadCreated).collect();
    assert_eq!(leads.len(), 1, "the retry queues the lead the first attempt could not: {events:?}");
    assert!(leads[0].event_id.ends_with(":lead_created"));
    assert_ne!(
        leads[0].event_id,
        format!("{}:{}:lead_created", created_by.id, retried.json()["submission_id"].as_str().unwrap()),
        "the lead keeps the id of the submission that created the contact"
    );
    assert_eq!(leads[0].occurred_at, created_by.created_at);

    f.t.advance(5);
    let later = f.submit("consultation", consultation("lead@example.com")).await;
    assert_eq!(later.status, StatusCode::CREATED);
    let events = f.t.drain_events().await;
    assert!(
        events.iter().all(|e| e.event_type != EventType::LeadCreated),
        "once the queue took it, no later submission queues it again: {events:?}"
    );
}

#[tokio::test]
async fn lead_created_refused_by_the_queue_is_queued_by_a_retry_with_the_same_submission_id() {
    let f = Fixture::new();
    let mut body = consultation("same@example.com");
    body["submission_id"] = json!("sub-0042");
    f.queue.refuse_events.store(true, Ordering::SeqCst);
    assert_eq!(f.submit("consultation", body.clone()).await.status, StatusCode::SERVICE_UNAVAILABLE);
    f.queue.refuse_events.store(false, Ordering::SeqCst);
    let retried = f.submit("consultation", body).await;
    assert_eq!(retried.status, StatusCode::CREATED, "{}", retried.text);
    let contact = retried.json()["contact_id"].as_str().unwrap().to_string();
    let ids: Vec<_> = f.t.drain_events().await.into_iter().map(|e| e.event_id).collect();
    assert_eq!(ids, [format!("{contact}:sub-0042:form_submitted"), format!("{contact}:sub-0042:lead_created")]);
}

#[tokio::test]
async fn one_address_posted_again_and_again_gets_one_confirmation_per_ten_minutes_and_three_a_day() {
    let f = Fixture::new();
    for _ in 0..5 {
        let answer = f.submit("newsletter", newsletter("flooded@example.com")).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
        assert_eq!(answer.json()["double_opt_in"], "pending", "every post looks the same to the poster");
        f.t.advance(30);
    }
    assert_eq!(f.confirmation_paths().await.len(), 1, "a double click or a retried post sends one");

    let mut sent = 1;
    for _ in 0..4 {
        f.t.advance(11 * 60);
        f.submit("newsletter", newsletter("flooded@example.com")).await;
        sent += f.confirmation_paths().await.len();
    }
    assert_eq!(sent, 3, "at most three confirmations a day reach one address");

    f.t.advance(24 * 3600);
    f.submit("newsletter", newsletter("flooded@example.com")).await;
    assert_eq!(f.confirmation_paths().await.len(), 1, "a new day, a new confirmation");
    let other = f.submit("newsletter", newsletter("someone.else@example.com")).await;
    assert_eq!(other.status, StatusCode::CREATED);
    assert_eq!(f.confirmation_paths().await.len(), 1, "the limit is per recipient");
}

#[tokio::test]
async fn a_confirmation_refused_by_the_queue_is_sent_by_the_retry_despite_the_per_recipient_limit() {
    let f = Fixture::new();
    f.queue.refuse_sends.store(true, Ordering::SeqCst);
    let refused = f.submit("newsletter", newsletter("unlucky@example.com")).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    f.queue.refuse_sends.store(false, Ordering::SeqCst);
    f.t.advance(5);
    let retried = f.submit("newsletter", newsletter("unlucky@example.com")).await;
    assert_eq!(retried.status, StatusCode::CREATED);
    let paths = f.confirmation_paths().await;
    assert_eq!(paths.len(), 1, "the confirmation the queue refused goes out with the retry");
    let confirmed = f.post(&paths[0]).await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.text);

    f.t.advance(5);
    f.submit("newsletter", newsletter("unlucky@example.com")).await;
    assert!(f.confirmation_paths().await.is_empty(), "a confirmed person is not asked again");
}

async fn unsubscribe(f: &Fixture, contact_id: &str) {
    let now = f.t.clock.now();
    let token = f.t.stack.state.secrets.token_signer().sign(
        UNSUBSCRIBE_TOKEN_PURPOSE,
        contact_id,
        now,
        now + jiff::SignedDuration::from_hours(24),
    );
    let answer = f.post(&format!("/v1/unsubscribe?token={token}")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
}

#[tokio::test]
async fn a_person_who_unsubscribed_signs_up_again_confirms_and_gets_marketing_again() {
    let f = Fixture::new();
    f.submit("newsletter", newsletter("back@example.com")).await;
    let first_link = f.confirmation_paths().await.remove(0);
    assert_eq!(f.post(&first_link).await.status, StatusCode::OK);
    let id = f.contact("back@example.com").await.id;
    unsubscribe(&f, &id).await;
    let left = f.contact("back@example.com").await;
    assert_eq!(check_recipient(&left, SendClass::Marketing), Err(BlockReason::Unsubscribed));

    let replayed = f.post(&first_link).await;
    assert_eq!(replayed.status, StatusCode::CONFLICT, "an old link does not undo an unsubscribe: {}", replayed.text);
    assert_eq!(
        check_recipient(&f.contact("back@example.com").await, SendClass::Marketing),
        Err(BlockReason::Unsubscribed)
    );

    f.t.advance(3600);
    let again = f.submit("newsletter", newsletter("back@example.com")).await;
    assert_eq!(again.json()["double_opt_in"], "pending", "{}", again.text);
    assert_eq!(
        check_recipient(&f.contact("back@example.com").await, SendClass::Marketing),
        Err(BlockReason::Unsubscribed),
        "a submission alone does not lift the unsubscribe: anyone can type an address"
    );
    let links = f.confirmation_paths().await;
    assert_eq!(links.len(), 1, "the new sign-up is confirmed by email");
    // A mail scanner that runs the page's script posts the form without the button's field.
    let scanned = f.post(&links[0]).await;
    assert_eq!(scanned.status, StatusCode::OK, "{}", scanned.text);
    assert!(scanned.text.contains("name=\"pressed\"") && !scanned.text.contains("<script>"), "{}", scanned.text);
    assert_eq!(
        check_recipient(&f.contact("back@example.com").await, SendClass::Marketing),
        Err(BlockReason::Unsubscribed),
        "a script's post does not lift an unsubscribe; the person's press does"
    );
    let confirmed = f.press(&links[0]).await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.text);
    let back = f.contact("back@example.com").await;
    assert_eq!(check_recipient(&back, SendClass::Marketing), Ok(()), "re-subscribed: {:?}", back.suppressions);
}

#[tokio::test]
async fn a_person_who_complained_signs_up_again_and_confirms_but_gets_no_marketing() {
    let f = Fixture::new();
    f.submit("newsletter", newsletter("complained@example.com")).await;
    let id = f.contact("complained@example.com").await.id;
    f.confirmation_paths().await;
    let now = f.t.clock.now();
    ContactRepository::new(f.t.stack.state.store.as_ref())
        .update(&id, now, |c| {
            c.suppressions.insert(SuppressionReason::Complaint, now);
            true
        })
        .await
        .unwrap();
    unsubscribe(&f, &id).await;

    f.t.advance(3600);
    f.submit("newsletter", newsletter("complained@example.com")).await;
    assert!(f.confirmation_paths().await.is_empty(), "an address that complained is sent no confirmation");
    let now = f.t.clock.now();
    let pending =
        f.contact("complained@example.com").await.email_consent().unwrap().pending_receipt().unwrap().to_string();
    let token = f.t.stack.state.secrets.token_signer().sign(
        lead_capture::CONFIRM_TOKEN_PURPOSE,
        &format!("{id}|{pending}"),
        now,
        now + jiff::SignedDuration::from_hours(24),
    );
    f.post(&format!("/v1/confirm?token={token}")).await;
    let contact = f.contact("complained@example.com").await;
    assert_eq!(check_recipient(&contact, SendClass::Marketing), Err(BlockReason::Complaint));
    assert!(contact.suppressions.contains_key(&SuppressionReason::Complaint));
}

#[tokio::test]
async fn an_unsubscribe_after_a_new_sign_up_is_not_undone_by_confirming_that_sign_up() {
    let f = Fixture::new();
    f.submit("newsletter", newsletter("twice@example.com")).await;
    let first = f.confirmation_paths().await;
    f.press(&first[0]).await;
    let id = f.contact("twice@example.com").await.id;
    unsubscribe(&f, &id).await;

    f.t.advance(3600);
    f.submit("newsletter", newsletter("twice@example.com")).await;
    let second = f.confirmation_paths().await;
    assert_eq!(second.len(), 1);
    // The person unsubscribes again from an old email before confirming: that is their latest word.
    f.t.advance(60);
    unsubscribe(&f, &id).await;
    f.press(&second[0]).await;
    assert_eq!(
        check_recipient(&f.contact("twice@example.com").await, SendClass::Marketing),
        Err(BlockReason::Unsubscribed),
        "the later unsubscribe stands"
    );
}

#[tokio::test]
async fn a_confirmation_whose_event_the_queue_refused_is_reported_when_the_link_is_pressed_again() {
    let f = Fixture::new();
    f.submit("newsletter", newsletter("later@example.com")).await;
    let links = f.confirmation_paths().await;
    // A second sign-up while the first waits: its link names the pending receipt too.
    f.t.advance(11 * 60);
    f.submit("newsletter", newsletter("later@example.com")).await;
    f.t.drain_events().await;

    f.queue.refuse_events.store(true, Ordering::SeqCst);
    let failed = f.press(&links[0]).await;
    assert_eq!(failed.status, StatusCode::SERVICE_UNAVAILABLE, "{}", failed.text);
    f.queue.refuse_events.store(false, Ordering::SeqCst);
    f.t.advance(120);
    let again = f.press(&links[0]).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    let events = f.t.drain_events().await;
    assert_eq!(
        events.iter().filter(|e| e.event_type == EventType::OptinConfirmed).count(),
        1,
        "the confirmation reaches the evaluator: {:?}",
        events.iter().map(|e| &e.event_type).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn one_submission_id_reused_for_two_people_makes_two_leads() {
    let f = Fixture::new();
    for email in ["static-1@example.com", "static-2@example.com"] {
        let mut body = consultation(email);
        body["submission_id"] = json!("sub-static");
        assert_eq!(f.submit("consultation", body).await.status, StatusCode::CREATED);
    }
    voronka_local::workers::drain(&f.t.stack).await.unwrap();
    let date = aggregates::date(f.t.clock.now(), &f.t.stack.state.campaigns.settings);
    let totals = aggregates::daily_totals(f.t.stack.state.store.as_ref(), date).await.unwrap();
    let leads: f64 = totals.iter().filter(|row| row.metric == Metric::Leads).map(|row| row.value).sum();
    assert_eq!(leads, 2.0, "a page with a fixed submission id still counts both people");
}
