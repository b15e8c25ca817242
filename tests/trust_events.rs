//! Trust on the event paths: each test is a scenario that worked against Voronka before its fix
//! (issue: trust on every path). Event ids per source, strangers and shop email, transactions that
//! stay within DynamoDB's 100 operations, reused cart ids and journey loops, recovered revenue.

mod support;

use http::{Request, StatusCode, header};
use serde_json::{Value, json};
use support::inprocess::TestStack;
use voronka_domain::model::{Cart, CartStatus, Event, EventType, SuppressionReason};
use voronka_domain::ports::{Clock, Store};
use voronka_domain::repo::ContactRepository;
use voronka_domain::repo::aggregates::{self, Dimensions, Metric};
use voronka_local::outbox;
use voronka_local::workers::tick;

fn store(t: &TestStack) -> &dyn Store {
    t.stack.state.store.as_ref()
}

async fn cart(t: &TestStack, id: &str) -> Cart {
    voronka_domain::repo::carts::load(store(t), id).await.unwrap().expect("the cart exists")
}

/// The shop's back end reports a cart change for a known contact (signed).
async fn shop_add_to_cart(t: &TestStack, contact: &str, cart: &str, sku: &str, price: f64) {
    let id = format!("{cart}:{sku}:{}", t.clock.now().as_second());
    t.post_events(
        vec![json!({"event_id": id, "type": "add_to_cart", "contact_id": contact, "properties": {
            "cart_id": cart, "sku": sku, "name": format!("Item {sku}"), "price": price, "quantity": 1,
            "currency": "RUB", "cart_url": format!("https://shop.example/cart/{cart}")}})],
        true,
    )
    .await;
}

async fn shop_purchase(t: &TestStack, contact: &str, cart: Option<&str>, order: &str, revenue: f64) {
    let mut properties = json!({"order_id": order, "revenue": revenue, "currency": "RUB"});
    if let Some(cart) = cart {
        properties["cart_id"] = json!(cart);
    }
    t.post_events(
        vec![json!({"event_id": format!("{order}:purchase"), "type": "purchase", "contact_id": contact, "properties": properties})],
        true,
    )
    .await;
}

fn mail_to(t: &TestStack, to: &str) -> Vec<(outbox::OutboxEntry, String)> {
    outbox::entries(t.stack.outbox.dir())
        .into_iter()
        .filter(|m| m.to.starts_with(to))
        .map(|m| {
            let raw = std::fs::read(t.stack.outbox.dir().join(&m.file)).unwrap();
            let parsed = mail_parser::MessageParser::default().parse(&raw).unwrap();
            let text =
                format!("{}\n{}", parsed.body_text(0).unwrap_or_default(), parsed.body_html(0).unwrap_or_default());
            (m, text)
        })
        .collect()
}

#[tokio::test]
async fn a_browser_cannot_squat_the_ids_of_the_shops_purchases() {
    let t = TestStack::new();
    let buyer = t.consented_contact("buyer@example.com", json!({"anonymous_id": "anon-buyer"})).await;
    // A hostile page posts behaviour under the ids the shop will give its next purchases.
    let squatting: Vec<Value> = (1000..1005)
        .map(|n| json!({"event_id": format!("order-{n}:purchase"), "type": "page_view", "anonymous_id": "anon-evil"}))
        .collect();
    t.post_events(squatting, false).await;

    let purchase = json!({"event_id": "order-1002:purchase", "type": "purchase", "contact_id": buyer,
        "properties": {"order_id": "order-1002", "revenue": 4990, "currency": "RUB"}});
    let answer = t.post_events_answer(vec![purchase.clone()], true).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text);
    assert_eq!(answer.json()["accepted"], 1, "the shop's purchase is new to Voronka: {}", answer.text);
    voronka_local::workers::drain(&t.stack).await.unwrap();
    let contact = ContactRepository::new(store(&t)).get(&buyer).await.unwrap().unwrap();
    assert_eq!(contact.orders.orders, 1, "the purchase counted");
    assert_eq!(contact.orders.revenue_minor, 499_000);

    // The shop's own retry is still a duplicate.
    let again = t.post_events_answer(vec![purchase], true).await;
    assert_eq!(again.json()["duplicates"], 1, "{}", again.text);
}

#[tokio::test]
async fn a_stranger_cannot_fill_a_subscribers_cart_email() {
    let t = TestStack::new();
    let anna = t.consented_contact("anna@example.com", json!({"anonymous_id": "anon-anna", "locale": "en"})).await;

    // Naming her by address or contact id needs the shop's signature.
    let answer = t
        .post_events_answer(
            vec![
                json!({"event_id": "x1", "type": "add_to_cart", "email": "anna@example.com",
                       "properties": {"cart_id": "evil-1", "sku": "P", "price": 1}}),
                json!({"event_id": "x2", "type": "add_to_cart", "contact_id": anna,
                       "properties": {"cart_id": "evil-2", "sku": "P", "price": 1}}),
            ],
            false,
        )
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text);
    assert_eq!(answer.json()["rejected"], 2, "{}", answer.text);
    let results = answer.json()["results"].clone();
    assert_eq!(results[0]["field"], "events[0].email");
    assert_eq!(results[1]["field"], "events[1].contact_id");
    assert_eq!(results[0]["code"], "signature_required");

    // Her own browser starts a cart whose item data points elsewhere and runs long.
    t.post_events(
        vec![json!({"event_id": "anna:atc:1", "type": "add_to_cart", "anonymous_id": "anon-anna", "properties": {
            "cart_id": "cart-anna", "sku": "SH-1", "name": "<b>Trail shoes</b>\nCALL +1 800 NOW ".repeat(30),
            "price": 1990, "url": "https://evil.example/login", "image": "https://evil.example/pixel.png",
            "cart_url": "https://shop.example/cart/cart-anna"}})],
        false,
    )
    .await;
    // A stranger's browser names her cart.
    t.post_events(
        vec![json!({"event_id": "evil:atc:1", "type": "add_to_cart", "anonymous_id": "anon-evil", "properties": {
            "cart_id": "cart-anna", "sku": "GIFT", "name": "Free gift card", "price": 0,
            "url": "https://evil.example/gift"}})],
        false,
    )
    .await;

    let stored = cart(&t, "cart-anna").await;
    assert_eq!(stored.items.keys().collect::<Vec<_>>(), ["SH-1"], "the stranger's item is not in her cart");
    let item = &stored.items["SH-1"];
    assert!(item.name.chars().count() <= 120 && !item.name.contains('\n'), "{:?}", item.name);
    assert_eq!((item.url.as_deref(), item.image.as_deref()), (None, None), "links off the shop's hosts are dropped");

    t.run_for(70, 10).await;
    let mail = mail_to(&t, "anna@");
    let reminders: Vec<_> = mail.iter().filter(|(m, _)| m.subject.contains("cart")).collect();
    assert_eq!(
        reminders.len(),
        1,
        "her own cart is reminded: {:?}",
        mail.iter().map(|(m, _)| &m.subject).collect::<Vec<_>>()
    );
    let body = &reminders[0].1;
    assert!(!body.contains("evil.example") && !body.contains("Free gift"), "{body}");
    assert!(body.contains("https://shop.example/cart/cart-anna"), "{body}");
}

const INSTANT_PICK_JOURNEY: &str = r#"
id = "instant_pick"
description = "A pick from the category viewed, at once"
holdout_percent = 0
exit_on = ["purchase"]

[trigger]
type = "event"
event = "category_view"

[entry]
re_entry = "once"

[[steps]]
id = "pick"
type = "send"
template = "category_interest"
"#;

#[tokio::test]
async fn a_category_from_a_browser_reaches_a_subject_as_one_short_line() {
    let (t, _campaigns) = TestStack::with_extra_campaign_files(&[("journeys/instant_pick.toml", INSTANT_PICK_JOURNEY)]);
    t.consented_contact("viewer@example.com", json!({"anonymous_id": "anon-viewer", "locale": "en"})).await;
    let category = format!("shoes\r\nBcc: victim@example.org {}", "x".repeat(300));
    t.post_events(
        vec![json!({"event_id": "anon-viewer:cv:1", "type": "category_view", "anonymous_id": "anon-viewer",
                    "properties": {"category": category}})],
        false,
    )
    .await;
    t.run_for(24 * 60, 60).await;
    let mail = mail_to(&t, "viewer@");
    let picks: Vec<_> = mail.iter().filter(|(m, _)| m.subject.starts_with("Picked for you: shoes")).collect();
    assert_eq!(picks.len(), 1, "{:?}", mail.iter().map(|(m, _)| &m.subject).collect::<Vec<_>>());
    let subject = &picks[0].0.subject;
    assert!(subject.chars().count() <= 80, "the category is cut short: {subject:?}");
    let raw = std::fs::read_to_string(t.stack.outbox.dir().join(&picks[0].0.file)).unwrap();
    assert!(!raw.lines().any(|l| l.starts_with("Bcc:")), "no header came from the event:\n{raw}");
}

#[tokio::test]
async fn a_purchase_after_sixty_distinct_touches_commits() {
    let t = TestStack::new();
    let mut contact_id = String::new();
    for i in 0..60 {
        let body = json!({"name": "Many Touches", "email": "many@example.com", "phone": "+79990001122",
            "company_size": "1-10", "consent": true, "utm_source": format!("source{i}"), "utm_campaign": format!("campaign{i}")});
        let request = Request::post("/v1/forms/consultation/submissions")
            .header(header::CONTENT_TYPE, "application/json")
            .body(axum::body::Body::from(body.to_string()))
            .unwrap();
        let answer = t.send_from(request, &format!("198.51.100.{}", i + 1)).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
        contact_id = answer.json()["contact_id"].as_str().unwrap().to_string();
        t.advance(60);
    }
    tick(&t.stack).await.unwrap();
    shop_purchase(&t, &contact_id, None, "o-many", 12_000.0).await;

    let contact = ContactRepository::new(store(&t)).get(&contact_id).await.unwrap().unwrap();
    assert_eq!(contact.orders.orders, 1, "the purchase committed");
    let date = aggregates::date(t.clock.now(), &t.stack.state.campaigns.settings);
    let attributed = t.attributed_conversions(date).await;
    for model in ["first_touch", "last_touch", "linear", "position_based", "time_decay"] {
        let credit = attributed.get(model).copied().unwrap_or_default();
        assert!((credit - 1.0).abs() < 1e-6, "{model}: the credit of one conversion sums to 1, got {credit}");
    }
    // The follow-up finished only the counters: the win-back timer the purchase started is alive.
    let pending = voronka_domain::repo::due::pending_for(store(&t), &contact_id).await.unwrap();
    assert!(pending.iter().any(|d| d.group == "inactivity:winback"), "{pending:?}");
}

#[tokio::test]
async fn a_complaint_from_a_contact_with_fifty_abandoned_carts_commits() {
    let t = TestStack::new();
    let contact = t.consented_contact("carts@example.com", json!({"locale": "en"})).await;
    // Two steps of each cart wait: 100 cancellations, more than one transaction holds.
    let adds: Vec<Value> = (0..50)
        .map(|n| {
            json!({"event_id": format!("cart-{n}:add"), "type": "add_to_cart", "contact_id": contact,
            "properties": {"cart_id": format!("cart-{n}"), "sku": "A", "price": 100, "quantity": 1}})
        })
        .collect();
    t.post_events(adds, true).await;
    t.run_for(70, 10).await;
    let pending_cart_items =
        |items: &[voronka_domain::repo::due::DueItem]| items.iter().filter(|d| d.group.starts_with("cart:")).count();
    let before = voronka_domain::repo::due::pending_for(store(&t), &contact).await.unwrap();
    assert!(pending_cart_items(&before) >= 100, "50 abandoned carts wait for their next steps: {}", before.len());

    let now = t.clock.now();
    let complaint = Event::internal(
        "ses:complaint-1".into(),
        EventType::EmailComplained,
        &contact,
        now,
        now,
        serde_json::Map::new(),
    );
    let outcome = trigger_evaluator::apply_event(&t.stack.evaluator, &complaint).await;
    assert_eq!(outcome.unwrap(), trigger_evaluator::Outcome::Applied);
    voronka_local::workers::drain(&t.stack).await.unwrap();

    let stored = ContactRepository::new(store(&t)).get(&contact).await.unwrap().unwrap();
    assert!(stored.suppressions.contains_key(&SuppressionReason::Complaint), "the complaint suppresses at once");
    let after = voronka_domain::repo::due::pending_for(store(&t), &contact).await.unwrap();
    assert_eq!(pending_cart_items(&after), 0, "the follow-up cancelled every cart step");
    let again = trigger_evaluator::apply_event(&t.stack.evaluator, &complaint).await.unwrap();
    assert_eq!(again, trigger_evaluator::Outcome::Duplicate);
}

#[tokio::test]
async fn a_reused_cart_id_starts_a_new_reminder_sequence() {
    let t = TestStack::new();
    let contact = t.consented_contact("again@example.com", json!({"locale": "en"})).await;
    shop_add_to_cart(&t, &contact, "cart-r", "A", 500.0).await;
    t.advance(600);
    shop_purchase(&t, &contact, Some("cart-r"), "o-r1", 500.0).await;
    t.advance(600);
    // The shop reuses the cart id for the next visit.
    shop_add_to_cart(&t, &contact, "cart-r", "B", 700.0).await;
    t.run_for(80, 10).await;
    let reopened = cart(&t, "cart-r").await;
    assert_eq!(reopened.status, CartStatus::Abandoned, "the new lifecycle reached abandonment");
    let reminders = mail_to(&t, "again@").into_iter().filter(|(m, _)| m.subject.contains("cart")).count();
    assert_eq!(reminders, 1, "the new lifecycle's first reminder went out");
    let dead = t.drain(voronka_domain::ports::QueueName::Events).await;
    assert!(dead.is_empty(), "nothing left failing on the events queue: {dead:?}");
}

const LOOPING_JOURNEY: &str = r#"
id = "daily_tip"
description = "A tip a day: send, wait a day, loop"
holdout_percent = 0
exit_on = ["unsubscribed"]

[trigger]
type = "event"
event = "tips_requested"

[entry]
re_entry = "once"

[[steps]]
id = "tip"
type = "send"
template = "welcome"

[[steps]]
id = "pause"
type = "wait"
days = 1

[[steps]]
id = "again"
type = "goto"
step = "tip"
"#;

#[tokio::test]
async fn a_journey_that_loops_back_to_a_wait_waits_again() {
    let (t, _campaigns) = TestStack::with_extra_campaign_files(&[("journeys/daily_tip.toml", LOOPING_JOURNEY)]);
    let contact = t.consented_contact("tips@example.com", json!({"locale": "en"})).await;
    t.post_events(vec![json!({"event_id": "tips-1", "type": "tips_requested", "contact_id": contact})], true).await;
    t.run_for(3 * 24 * 60 + 60, 60).await;
    let items = voronka_domain::repo::due::items_for(store(&t), &contact).await.unwrap();
    let waits: Vec<_> = items.iter().map(|d| &d.id).filter(|id| id.starts_with("wait:daily_tip")).collect();
    assert!(waits.len() >= 3, "every pass waits with its own item: {waits:?}");
    let sends: Vec<_> = items.iter().map(|d| &d.id).filter(|id| id.starts_with("send:journey:daily_tip")).collect();
    assert!(sends.len() >= 3, "every pass sends its own email: {sends:?}");
    let stuck = t.drain(voronka_domain::ports::QueueName::Events).await;
    assert!(stuck.is_empty(), "nothing left failing on the events queue: {stuck:?}");
}

#[tokio::test]
async fn a_purchase_without_a_cart_id_recovers_one_cart_once() {
    let t = TestStack::new();
    let contact = t.consented_contact("two@example.com", json!({"locale": "en"})).await;
    shop_add_to_cart(&t, &contact, "cart-old", "A", 1000.0).await;
    t.advance(300);
    shop_add_to_cart(&t, &contact, "cart-new", "B", 3000.0).await;
    t.run_for(70, 10).await;
    assert_eq!(cart(&t, "cart-old").await.reminders_sent, [1]);
    assert_eq!(cart(&t, "cart-new").await.reminders_sent, [1]);

    shop_purchase(&t, &contact, None, "o-two", 3000.0).await;
    assert_eq!(cart(&t, "cart-new").await.status, CartStatus::Purchased, "the latest active cart was bought");
    assert_eq!(cart(&t, "cart-old").await.status, CartStatus::Abandoned, "the other cart is not");
    let date = aggregates::date(t.clock.now(), &t.stack.state.campaigns.settings);
    let value =
        async |metric: Metric| aggregates::daily_total(store(&t), date, &metric, &Dimensions::step(1)).await.unwrap();
    assert_eq!(value(Metric::CartRecovered).await, Some(1.0));
    assert_eq!(value(Metric::CartRecoveredRevenue).await, Some(3000.0), "the order's revenue counts once");
}

#[tokio::test]
async fn nobody_outside_voronka_can_raise_its_due_work() {
    let t = TestStack::new();
    let contact = t.consented_contact("work@example.com", json!({"locale": "en"})).await;
    let profile = voronka_domain::repo::contacts::contact_key(&contact);
    let forged: Vec<Value> = ["cart_step", "journey_continue", "event_follow_up", "cart_idle", "inactivity_check"]
        .iter()
        .enumerate()
        .map(|(n, kind)| {
            json!({"event_id": format!("forged-{n}"), "type": kind, "contact_id": contact,
            "properties": {"counters": [{"pk": profile.pk, "sk": profile.sk, "add": {"version": 5}}]}})
        })
        .collect();
    let answer = t.post_events_answer(forged, true).await;
    assert_eq!(answer.json()["rejected"], 5, "even the shop's signature does not make due work: {}", answer.text);
    assert!(answer.json()["results"].as_array().unwrap().iter().all(|r| r["code"] == "reserved_type"));

    // And a message that reached the queue another way is not obeyed either.
    let now = t.clock.now();
    let mut properties = serde_json::Map::new();
    properties.insert("counters".into(), json!([{"pk": profile.pk, "sk": profile.sk, "add": {"version": 5}}]));
    let mut outside = Event::internal("forged-q".into(), EventType::EventFollowUp, &contact, now, now, properties);
    outside.source = voronka_domain::model::EventSource::Shop;
    let outcome = trigger_evaluator::apply_event(&t.stack.evaluator, &outside).await.unwrap();
    assert!(matches!(outcome, trigger_evaluator::Outcome::Unmatched(_)), "{outcome:?}");
    let stored = ContactRepository::new(store(&t)).get(&contact).await.unwrap().unwrap();
    assert!(stored.version < 5, "the contact was not touched");
}

#[tokio::test]
async fn cart_ids_and_currencies_from_events_are_checked_where_they_arrive() {
    let t = TestStack::new();
    let answer = t
        .post_events_answer(
            vec![
                json!({"event_id": "c1", "type": "add_to_cart", "anonymous_id": "anon-1",
                       "properties": {"cart_id": "x".repeat(2000), "sku": "A", "price": 1}}),
                json!({"event_id": "c2", "type": "add_to_cart", "anonymous_id": "anon-1",
                       "properties": {"cart_id": "cart-1", "sku": "A", "price": 1, "currency": "RUB\nCall +1 800 now"}}),
            ],
            false,
        )
        .await;
    let results = answer.json()["results"].clone();
    assert_eq!(results[0]["field"], "events[0].properties.cart_id", "{}", answer.text);
    assert_eq!(results[1]["field"], "events[1].properties.currency", "{}", answer.text);
}

#[tokio::test]
async fn a_cart_id_the_shop_reuses_for_another_person_becomes_theirs() {
    let t = TestStack::new();
    let first = t.consented_contact("first@example.com", json!({"locale": "en"})).await;
    let second = t.consented_contact("second@example.com", json!({"locale": "en"})).await;
    shop_add_to_cart(&t, &first, "cart-shared", "A", 500.0).await;
    shop_purchase(&t, &first, Some("cart-shared"), "o-s1", 500.0).await;
    t.advance(600);
    shop_add_to_cart(&t, &second, "cart-shared", "B", 900.0).await;
    assert_eq!(cart(&t, "cart-shared").await.owner, second);
    t.run_for(70, 10).await;
    let to_second = mail_to(&t, "second@").into_iter().filter(|(m, _)| m.subject.contains("cart")).count();
    let to_first = mail_to(&t, "first@").into_iter().filter(|(m, _)| m.subject.contains("cart")).count();
    assert_eq!((to_first, to_second), (0, 1), "the reminder goes to the cart's new owner");
}

#[tokio::test]
async fn a_stranger_cannot_link_their_browser_to_a_known_subscriber() {
    let t = TestStack::new();
    let victim =
        t.consented_contact("victim@example.com", json!({"locale": "en", "anonymous_id": "anon-victim"})).await;
    // The stranger fills a form with the subscriber's address and their own browser's id.
    let request = Request::post("/v1/forms/consultation/submissions")
        .header(header::CONTENT_TYPE, "application/json")
        .body(axum::body::Body::from(
            json!({"name": "Victim", "email": "victim@example.com", "phone": "+79990001122", "company_size": "1-10",
                   "consent": true, "anonymous_id": "anon-evil"})
            .to_string(),
        ))
        .unwrap();
    assert_eq!(t.send_from(request, "198.51.100.66").await.status, StatusCode::CREATED);
    // And a second newcomer claims the subscriber's own browser id.
    let request = Request::post("/v1/forms/consultation/submissions")
        .header(header::CONTENT_TYPE, "application/json")
        .body(axum::body::Body::from(
            json!({"name": "Other", "email": "other@example.com", "phone": "+79990001122", "company_size": "1-10",
                   "consent": true, "anonymous_id": "anon-victim"})
            .to_string(),
        ))
        .unwrap();
    assert_eq!(t.send_from(request, "198.51.100.67").await.status, StatusCode::CREATED);

    let repo = ContactRepository::new(store(&t));
    assert!(repo.find_by_anonymous_id("anon-evil").await.unwrap().is_none(), "the stranger's browser reaches nobody");
    let owner = repo.find_by_anonymous_id("anon-victim").await.unwrap().unwrap();
    assert_eq!(owner.id, victim, "a browser id stays with the person it was first linked to");
    let other_address = voronka_domain::model::EmailAddress::parse("other@example.com").unwrap();
    let other = repo.find_by_email(&other_address).await.unwrap().unwrap();
    assert!(!other.anonymous_ids.contains(&"anon-victim".to_string()));

    // So the stranger's cart never becomes an email to the subscriber.
    t.post_events(
        vec![json!({"event_id": "evil:atc", "type": "add_to_cart", "anonymous_id": "anon-evil",
                    "properties": {"cart_id": "cart-evil", "sku": "X", "name": "Account locked: call now", "price": 1}})],
        false,
    )
    .await;
    t.run_for(70, 10).await;
    assert!(mail_to(&t, "victim@").iter().all(|(m, _)| !m.subject.contains("cart")));
}

#[tokio::test]
async fn a_shop_login_links_the_browser_so_its_cart_is_reminded() {
    let t = TestStack::new();
    let contact = t.consented_contact("member@example.com", json!({"locale": "en"})).await;
    t.post_events(
        vec![json!({"event_id": "login-1", "type": "login", "email": "member@example.com", "anonymous_id": "anon-member"})],
        true,
    )
    .await;
    let linked = ContactRepository::new(store(&t)).find_by_anonymous_id("anon-member").await.unwrap();
    assert_eq!(linked.map(|c| c.id), Some(contact), "the signed login linked the browser");
    t.post_events(
        vec![json!({"event_id": "member:atc", "type": "add_to_cart", "anonymous_id": "anon-member",
                    "properties": {"cart_id": "cart-member", "sku": "A", "name": "Boots", "price": 2500,
                                   "cart_url": "https://shop.example/cart/cart-member"}})],
        false,
    )
    .await;
    t.run_for(70, 10).await;
    let reminders = mail_to(&t, "member@").into_iter().filter(|(m, _)| m.subject.contains("cart")).count();
    assert_eq!(reminders, 1, "the logged-in visitor's cart is reminded");
}
