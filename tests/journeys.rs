//! Journeys end to end on the local stack's handlers with a simulated clock: counting triggers,
//! segment filters, re-entry cooldowns, exits that cancel waiting work at once, holdouts,
//! win-back without discounts for frequent buyers, aggregates that count once, and the
//! category-interest email arriving (or not) in the outbox.

mod support;

use serde_json::{Value, json};
use support::inprocess::TestStack;
use voronka_domain::journeys::definition::in_holdout;

/// Pending due items of one journey for a contact.
async fn waiting_in(t: &TestStack, contact: &str, journey: &str) -> usize {
    let prefix = format!("journey:{journey}:");
    pending_for(t.stack.state.store.as_ref(), contact)
        .await
        .unwrap()
        .iter()
        .filter(|d| d.group.starts_with(&prefix))
        .count()
}
use voronka_domain::repo::aggregates::{self, Dimensions, Metric};
use voronka_domain::repo::due::pending_for;
use voronka_domain::repo::journey_state::{Group, RunStatus, load_all};
use voronka_local::outbox;
use voronka_local::workers::tick;

async fn subscribe(t: &TestStack, email: &str) -> String {
    t.consented_contact(email, json!({"utm_source": "vk", "utm_campaign": "autumn"})).await
}

async fn send_events(t: &TestStack, events: Vec<Value>, signed: bool) {
    t.post_events(events, signed).await;
    tick(&t.stack).await.unwrap();
}

async fn view(t: &TestStack, contact: &str, category: &str, n: usize) {
    let id = format!("{contact}:view:{n}:{}", t.clock.as_ref().now_seconds());
    send_events(t, vec![json!({"event_id": id, "type": "category_view", "contact_id": contact, "properties": {"category": category}})], true)
        .await;
}

async fn purchase(t: &TestStack, contact: &str, order: &str, revenue: f64) {
    send_events(
        t,
        vec![json!({"event_id": format!("{order}:purchase"), "type": "purchase", "contact_id": contact,
                    "properties": {"order_id": order, "revenue": revenue, "currency": "RUB"}})],
        true,
    )
    .await;
}

trait Seconds {
    fn now_seconds(&self) -> i64;
}

impl Seconds for voronka_domain::ports::SimulatedClock {
    fn now_seconds(&self) -> i64 {
        voronka_domain::ports::Clock::now(self).as_second()
    }
}

async fn state(
    t: &TestStack,
    contact: &str,
    journey: &str,
) -> Option<voronka_domain::repo::journey_state::JourneyState> {
    load_all(t.stack.state.store.as_ref(), contact).await.unwrap().remove(journey)
}

/// Finds a contact address whose id lands in (or out of) a journey's holdout, so tests are
/// deterministic about who gets messages.
async fn subscribe_in_group(t: &TestStack, prefix: &str, journey: &str, holdout: bool) -> String {
    for i in 0..200 {
        let email = format!("{prefix}{i}@example.com");
        let id = t.consented_contact(&email, json!({})).await;
        if in_holdout(&id, journey, 5.0) == holdout {
            return id;
        }
    }
    panic!("no contact in the wanted group among 200");
}

#[tokio::test]
async fn a_count_trigger_fires_exactly_on_the_third_view_inside_the_window() {
    let t = TestStack::new();
    let anna = subscribe_in_group(&t, "anna", "category_interest", false).await;
    view(&t, &anna, "shoes", 1).await;
    t.advance(3600);
    view(&t, &anna, "bags", 1).await;
    view(&t, &anna, "shoes", 2).await;
    assert!(state(&t, &anna, "category_interest").await.is_none(), "two views of shoes, one of bags: not yet");
    t.advance(3600);
    view(&t, &anna, "shoes", 3).await;
    let entered = state(&t, &anna, "category_interest").await.expect("the third view of shoes enters");
    assert_eq!(entered.status, RunStatus::Active);
    assert_eq!(entered.group, Group::Treatment);
    view(&t, &anna, "shoes", 4).await;
    assert_eq!(state(&t, &anna, "category_interest").await.unwrap().run, 1, "the fourth view does not enter again");

    // Spread out: the first view has left the 24-hour window when the third arrives.
    let boris = subscribe_in_group(&t, "boris", "category_interest", false).await;
    view(&t, &boris, "books", 1).await;
    t.advance(13 * 3600);
    view(&t, &boris, "books", 2).await;
    t.advance(12 * 3600);
    view(&t, &boris, "books", 3).await;
    assert!(
        state(&t, &boris, "category_interest").await.is_none(),
        "three views over 25 hours are not three within 24"
    );
    t.advance(600);
    view(&t, &boris, "books", 4).await;
    assert!(state(&t, &boris, "category_interest").await.is_some(), "the views at 13 h, 25 h and 25 h 10 min are");
}

#[tokio::test]
async fn three_views_send_the_email_after_the_wait_and_a_purchase_in_between_cancels_it() {
    let t = TestStack::new();
    let viewer = subscribe_in_group(&t, "viewer", "category_interest", false).await;
    let buyer = subscribe_in_group(&t, "buyer", "category_interest", false).await;
    for n in 1..=3 {
        view(&t, &viewer, "garden", n).await;
        view(&t, &buyer, "garden", n).await;
    }
    assert_eq!(waiting_in(&t, &buyer, "category_interest").await, 1, "a two-hour wait is pending");
    t.advance(1800);
    purchase(&t, &buyer, "order-77", 2490.0).await;
    assert_eq!(waiting_in(&t, &buyer, "category_interest").await, 0, "the purchase cancels the wait at once");
    assert_eq!(state(&t, &buyer, "category_interest").await.unwrap().status, RunStatus::Exited);

    let before = outbox::entries(t.stack.outbox.dir()).len();
    t.advance(3 * 3600);
    tick(&t.stack).await.unwrap();
    let mail = outbox::entries(t.stack.outbox.dir());
    let new: Vec<_> = mail.iter().take(mail.len() - before).collect();
    let interest: Vec<_> =
        new.iter().filter(|m| m.subject.contains("garden") || m.subject.contains("Подборка")).collect();
    assert_eq!(interest.len(), 1, "only the viewer gets the selection: {new:?}");
    assert!(interest[0].to.starts_with("viewer"), "{:?}", interest[0]);
    assert_eq!(state(&t, &viewer, "category_interest").await.unwrap().status, RunStatus::Completed);
}

#[tokio::test]
async fn segment_filters_and_re_entry_cooldowns_hold() {
    let t = TestStack::new();
    // Without marketing consent, the `subscribed` entry segment keeps a contact out.
    let answer = t.submit_json("newsletter", json!({"email": "pending@example.com", "consent": true})).await;
    let pending = answer.json()["contact_id"].as_str().unwrap().to_string();
    tick(&t.stack).await.unwrap();
    for n in 1..=3 {
        view(&t, &pending, "toys", n).await;
    }
    assert!(state(&t, &pending, "category_interest").await.is_none(), "unconfirmed: not in the subscribed segment");

    let eve = subscribe_in_group(&t, "eve", "category_interest", false).await;
    for n in 1..=3 {
        view(&t, &eve, "toys", n).await;
    }
    t.advance(3 * 3600);
    tick(&t.stack).await.unwrap();
    assert_eq!(state(&t, &eve, "category_interest").await.unwrap().status, RunStatus::Completed);
    t.advance(2 * 86_400);
    for n in 4..=6 {
        view(&t, &eve, "toys", n).await;
    }
    assert_eq!(state(&t, &eve, "category_interest").await.unwrap().run, 1, "within the 14-day cooldown: no second run");
    t.advance(15 * 86_400);
    for n in 7..=9 {
        view(&t, &eve, "toys", n).await;
    }
    assert_eq!(state(&t, &eve, "category_interest").await.unwrap().run, 2, "after the cooldown: a second run");
}

#[tokio::test]
async fn holdout_contacts_are_recorded_and_get_nothing() {
    let t = TestStack::new();
    let held = subscribe_in_group(&t, "control", "category_interest", true).await;
    for n in 1..=3 {
        view(&t, &held, "shoes", n).await;
    }
    let s = state(&t, &held, "category_interest").await.expect("entered, as a control");
    assert_eq!(s.group, Group::Holdout);
    assert_eq!(waiting_in(&t, &held, "category_interest").await, 0, "nothing scheduled");
    let counted = aggregates::journey_aggregates(t.stack.state.store.as_ref(), "category_interest").await.unwrap();
    assert!(counted.iter().any(|row| row.group == Group::Holdout && row.entries == 1), "{counted:?}");
}

#[tokio::test]
async fn win_back_offers_the_lapsed_a_bonus_and_leaves_frequent_buyers_alone() {
    let t = TestStack::new();
    let lapsed = subscribe_in_group(&t, "lapsed", "winback", false).await;
    let frequent = subscribe_in_group(&t, "frequent", "winback", false).await;
    purchase(&t, &lapsed, "l-1", 1000.0).await;
    for n in 1..=3 {
        purchase(&t, &frequent, &format!("f-{n}"), 1000.0).await;
        t.advance(86_400);
    }
    // 61 days later both inactivity checks come due; 09:00 UTC is 12:00 in Moscow.
    t.advance(61 * 86_400);
    tick(&t.stack).await.unwrap();
    t.advance(86_400);
    tick(&t.stack).await.unwrap();
    let lapsed_state = state(&t, &lapsed, "winback").await.expect("a lapsed customer enters win-back");
    assert_eq!(lapsed_state.group, Group::Treatment);
    assert!(state(&t, &frequent, "winback").await.is_none(), "a frequent buyer is excluded");
    let mail = outbox::entries(t.stack.outbox.dir());
    let bonus: Vec<_> = mail.iter().filter(|m| m.subject.contains("бонус") || m.subject.contains("bonus")).collect();
    assert_eq!(bonus.len(), 1, "{mail:?}");
    assert!(bonus[0].to.starts_with("lapsed"));
}

#[tokio::test]
async fn a_redelivered_purchase_counts_once_in_every_aggregate() {
    let t = TestStack::new();
    let buyer = subscribe(&t, "counted@example.com").await;
    let event = json!({"event_id": "o-9:purchase", "type": "purchase", "contact_id": buyer,
                       "properties": {"order_id": "o-9", "revenue": 5000, "currency": "RUB"}});
    purchase(&t, &buyer, "o-9", 5000.0).await;
    // The same event again from the queue, as SQS may deliver it (the receipt would stop it at the API).
    let message = voronka_domain::model::Event {
        event_id: "o-9:purchase".into(),
        event_type: "purchase".into(),
        contact: voronka_domain::model::ContactRef { contact_id: Some(buyer.clone()), ..Default::default() },
        occurred_at: voronka_domain::ports::Clock::now(t.clock.as_ref()),
        received_at: voronka_domain::ports::Clock::now(t.clock.as_ref()),
        properties: event["properties"].as_object().unwrap().clone(),
        trusted: true,
        source: voronka_domain::model::EventSource::Shop,
    };
    let outcome = trigger_evaluator::apply_event(&t.stack.evaluator, &message).await.unwrap();
    assert_eq!(outcome, trigger_evaluator::Outcome::Duplicate);

    let store = t.stack.state.store.as_ref();
    let date = aggregates::date(message.occurred_at, &t.stack.state.campaigns.settings);
    let autumn = Dimensions::new("vk", Some("autumn"));
    let orders = aggregates::daily_total(store, date, &Metric::Orders, &autumn).await.unwrap();
    assert_eq!(orders, Some(1.0));
    let revenue = aggregates::daily_total(store, date, &Metric::Revenue, &autumn).await.unwrap();
    assert_eq!(revenue, Some(5000.0));
    let attributed = t.attributed_conversions(date).await;
    for model in ["first_touch", "last_touch", "linear", "position_based", "time_decay"] {
        let credit = attributed.get(model).copied().unwrap_or_default();
        assert!((credit - 1.0).abs() < 1e-9, "{model}: credits sum to one conversion, got {credit}");
    }
    let contact = voronka_domain::repo::ContactRepository::new(store).get(&buyer).await.unwrap().unwrap();
    assert_eq!(contact.orders.orders, 1);
}

#[tokio::test]
async fn a_category_pick_after_a_wait_names_the_category_viewed() {
    let t = TestStack::new();
    let viewer =
        t.consented_contact("picker@example.com", json!({"locale": "en", "anonymous_id": "anon-picker"})).await;
    assert!(!in_holdout(&viewer, "category_interest", 5.0), "this seed's contact is treated");
    for n in 0..3 {
        let id = format!("anon-picker:cv:{n}");
        send_events(
            &t,
            vec![json!({"event_id": id, "type": "category_view", "anonymous_id": "anon-picker",
            "properties": {"category": "trail shoes"}})],
            false,
        )
        .await;
    }
    for _ in 0..36 {
        t.advance(3600);
        tick(&t.stack).await.unwrap();
    }
    let subjects: Vec<String> = outbox::entries(t.stack.outbox.dir())
        .into_iter()
        .filter(|m| m.to.starts_with("picker@"))
        .map(|m| m.subject)
        .collect();
    assert!(
        subjects.iter().any(|s| s == "Picked for you: trail shoes"),
        "the email after the wait shows the category that started the run: {subjects:?}"
    );
}
