//! Abandoned carts on the local stack's handlers with a simulated clock: carts from events, the
//! reminder sequence, codes only for those who need them, cancellation the moment a cart is bought,
//! independent carts, overlapping scheduler runs, the catch-up rule after an outage, and recovery.

mod support;

use http::StatusCode;
use serde_json::{Value, json};
use support::inprocess::TestStack;
use voronka_domain::repo::aggregates::{self, Dimensions, Metric};
use voronka_local::outbox;
use voronka_local::workers::{drain, tick};

async fn customer(t: &TestStack, email: &str) -> String {
    t.consented_contact(email, json!({"locale": "en"})).await
}

async fn events(t: &TestStack, events: Vec<Value>, signed: bool) {
    t.post_events(events, signed).await;
}

async fn add_to_cart(t: &TestStack, contact: &str, cart: &str, sku: &str, price: f64) {
    let id = format!("{cart}:{sku}:{}", voronka_domain::ports::Clock::now(t.clock.as_ref()).as_second());
    events(
        t,
        vec![json!({"event_id": id, "type": "add_to_cart", "contact_id": contact, "properties": {
            "cart_id": cart, "sku": sku, "name": format!("Item {sku}"), "price": price, "quantity": 1, "currency": "RUB",
            "image": format!("https://shop.example/img/{sku}.jpg"), "cart_url": format!("https://shop.example/cart/{cart}")}})],
        // The shop's back end reports its cart changes signed; browsers name only their anonymous id.
        true,
    )
    .await;
}

async fn purchase(t: &TestStack, contact: &str, cart: Option<&str>, order: &str, revenue: f64, code: Option<&str>) {
    let mut properties = json!({"order_id": order, "revenue": revenue, "currency": "RUB"});
    if let Some(cart) = cart {
        properties["cart_id"] = json!(cart);
    }
    if let Some(code) = code {
        properties["discount_code"] = json!(code);
    }
    events(t, vec![json!({"event_id": format!("{order}:purchase"), "type": "purchase", "contact_id": contact, "properties": properties})], true)
        .await;
}

fn cart_mail(t: &TestStack, to: &str) -> Vec<outbox::OutboxEntry> {
    let mut mail: Vec<_> = outbox::entries(t.stack.outbox.dir())
        .into_iter()
        .filter(|m| m.to.starts_with(to) && m.subject.contains("cart"))
        .collect();
    mail.reverse();
    mail
}

fn body(t: &TestStack, entry: &outbox::OutboxEntry) -> String {
    let raw = std::fs::read(t.stack.outbox.dir().join(&entry.file)).unwrap();
    let parsed = mail_parser::MessageParser::default().parse(&raw).unwrap();
    parsed.body_text(0).unwrap().into_owned()
}

#[tokio::test]
async fn a_purchase_at_thirty_minutes_sends_nothing() {
    let t = TestStack::new();
    let c = customer(&t, "quick@example.com").await;
    add_to_cart(&t, &c, "cart-q", "SH-1", 1990.0).await;
    t.run_for(30, 10).await;
    purchase(&t, &c, Some("cart-q"), "o-q", 1990.0, None).await;
    t.run_for(4 * 24 * 60, 60).await;
    assert!(cart_mail(&t, "quick").is_empty());
}

#[tokio::test]
async fn a_purchase_at_two_hours_stops_after_the_first_reminder_and_counts_as_recovered() {
    let t = TestStack::new();
    let c = customer(&t, "two@example.com").await;
    add_to_cart(&t, &c, "cart-2", "SH-1", 1990.0).await;
    add_to_cart(&t, &c, "cart-2", "SO-2", 500.0).await;
    t.run_for(120, 10).await;
    let mail = cart_mail(&t, "two");
    assert_eq!(mail.len(), 1, "{mail:?}");
    assert!(mail[0].subject.contains("you left something in your cart"), "{}", mail[0].subject);
    purchase(&t, &c, Some("cart-2"), "o-2", 2490.0, None).await;
    t.run_for(4 * 24 * 60, 60).await;
    assert_eq!(cart_mail(&t, "two").len(), 1, "nothing after the purchase");

    let store = t.stack.state.store.as_ref();
    let date = aggregates::date(
        voronka_domain::ports::Clock::now(t.clock.as_ref()) - jiff::SignedDuration::from_hours(96),
        &t.stack.state.campaigns.settings,
    );
    let recovered = aggregates::daily_total(store, date, &Metric::CartRecovered, &Dimensions::step(1)).await.unwrap();
    assert_eq!(recovered, Some(1.0), "recovered by the first reminder");
}

#[tokio::test]
async fn the_whole_sequence_shows_the_items_and_a_code_only_for_those_who_need_it() {
    let t = TestStack::new();
    let lapsed = customer(&t, "lapsed@example.com").await;
    let frequent = customer(&t, "frequent@example.com").await;
    // Three orders in the last weeks: a frequent buyer.
    for n in 0..3 {
        purchase(&t, &frequent, None, &format!("f-{n}"), 1000.0, None).await;
        t.advance(86_400);
    }
    // Let the post-purchase cross-sell run its course first, so no other email competes with the
    // cart reminders for the daily frequency cap.
    t.run_for(10 * 24 * 60, 240).await;
    add_to_cart(&t, &lapsed, "cart-l", "SH-1", 1990.0).await;
    add_to_cart(&t, &frequent, "cart-f", "SH-1", 1990.0).await;
    t.run_for(73 * 60, 60).await;

    let lapsed_mail = cart_mail(&t, "lapsed");
    assert_eq!(lapsed_mail.len(), 3, "{lapsed_mail:?}");
    let second = body(&t, &lapsed_mail[1]);
    assert!(second.contains("Item SH-1") && second.contains("₽1,990"), "the items with prices: {second}");
    let third = body(&t, &lapsed_mail[2]);
    let code_line = third.lines().find(|l| l.contains("personal code")).expect("a code for the lapsed customer");
    assert!(code_line.contains("10%"), "{code_line}");
    let frequent_mail = cart_mail(&t, "frequent");
    assert_eq!(frequent_mail.len(), 3);
    assert!(!body(&t, &frequent_mail[2]).contains("personal code"), "no discount for a frequent buyer");

    // The code is single-use and counted when redeemed.
    let code = code_line.split(": ").nth(1).unwrap().split(' ').next().unwrap().to_string();
    purchase(&t, &lapsed, Some("cart-l"), "o-l", 1791.0, Some(&code)).await;
    let store = t.stack.state.store.as_ref();
    let redeemed = voronka_domain::repo::discount_codes::load(store, &code).await.unwrap().unwrap();
    assert!(redeemed.redeemed);
    let holder = voronka_domain::repo::ContactRepository::new(store).get(&lapsed).await.unwrap().unwrap();
    assert_eq!(holder.discount_codes.len(), 1, "the code is stored with the contact");
    assert_eq!(holder.discount_codes[0].code, code);
    assert!(holder.discount_codes[0].redeemed_at.is_some());
    let frequent_contact = voronka_domain::repo::ContactRepository::new(store).get(&frequent).await.unwrap().unwrap();
    assert!(frequent_contact.discount_codes.is_empty());
    // Used once: a second purchase with the same code redeems nothing more.
    purchase(&t, &lapsed, None, "o-l2", 1791.0, Some(&code)).await;
    let date = aggregates::date(voronka_domain::ports::Clock::now(t.clock.as_ref()), &t.stack.state.campaigns.settings);
    let origin = Dimensions::discount_origin(aggregates::CART_RECOVERY);
    let uses = aggregates::daily_total(store, date, &Metric::DiscountCodesRedeemed, &origin).await.unwrap();
    assert_eq!(uses, Some(1.0));
    // 10% off: 1791 paid after it, so 1791 × 10 / 90 = 199 given away.
    let cost = aggregates::daily_total(store, date, &Metric::DiscountCost, &origin).await.unwrap();
    assert_eq!(cost, Some(199.0), "the cost of the redeemed code is counted under its origin");
}

#[tokio::test]
async fn two_carts_of_one_contact_run_their_own_sequences() {
    let t = TestStack::new();
    let c = customer(&t, "twocarts@example.com").await;
    add_to_cart(&t, &c, "cart-a", "A", 1000.0).await;
    t.run_for(30, 10).await;
    add_to_cart(&t, &c, "cart-b", "B", 2000.0).await;
    t.run_for(100, 10).await;
    purchase(&t, &c, Some("cart-a"), "o-a", 1000.0, None).await;
    let store = t.stack.state.store.as_ref();
    let a = trigger_evaluator::carts::load(store, "cart-a").await.unwrap().unwrap();
    let b = trigger_evaluator::carts::load(store, "cart-b").await.unwrap().unwrap();
    assert_eq!(a.status, voronka_domain::model::CartStatus::Purchased);
    assert_eq!(
        b.status,
        voronka_domain::model::CartStatus::Abandoned,
        "buying cart A leaves cart B's sequence running"
    );
    assert_eq!(a.reminders_sent, [1]);
    // Cart B's first reminder competes with cart A's on the same day; the daily cap defers it.
    t.run_for(30 * 60, 60).await;
    let b = trigger_evaluator::carts::load(store, "cart-b").await.unwrap().unwrap();
    assert!(b.reminders_sent.contains(&1) && b.reminders_sent.contains(&2), "{:?}", b.reminders_sent);
}

#[tokio::test]
async fn activity_before_abandonment_re_arms_the_timer_instead_of_stacking_them() {
    let t = TestStack::new();
    let c = customer(&t, "busy@example.com").await;
    for n in 0..4 {
        add_to_cart(&t, &c, "cart-busy", &format!("I{n}"), 100.0).await;
        t.run_for(50, 10).await;
    }
    assert!(cart_mail(&t, "busy").is_empty(), "still active: not abandoned");
    let pending = voronka_domain::repo::due::pending_for(t.stack.state.store.as_ref(), &c).await.unwrap();
    assert_eq!(pending.iter().filter(|d| d.group == "cart:cart-busy").count(), 1, "one idle timer, not four");
    t.run_for(20, 10).await;
    assert_eq!(cart_mail(&t, "busy").len(), 1);
}

#[tokio::test]
async fn overlapping_scheduler_runs_send_each_step_once() {
    let t = TestStack::new();
    let c = customer(&t, "overlap@example.com").await;
    add_to_cart(&t, &c, "cart-o", "X", 990.0).await;
    t.advance(61 * 60);
    for _ in 0..3 {
        let (a, b) = tokio::join!(cart_scheduler::run(&t.stack.scheduler), cart_scheduler::run(&t.stack.scheduler));
        a.unwrap();
        b.unwrap();
        drain(&t.stack).await.unwrap();
    }
    assert_eq!(cart_mail(&t, "overlap").len(), 1);
}

#[tokio::test]
async fn after_an_outage_only_the_relevant_step_goes_out() {
    let t = TestStack::new();
    let late = customer(&t, "late@example.com").await;
    let later = customer(&t, "later@example.com").await;
    add_to_cart(&t, &late, "cart-late", "X", 990.0).await;
    // The scheduler is down for six hours: the first reminder is late but still relevant.
    t.advance(6 * 3600);
    tick(&t.stack).await.unwrap();
    let late_mail = cart_mail(&t, "late@");
    assert_eq!(late_mail.len(), 1, "one reminder, not a burst: {late_mail:?}");
    // Down for 25 hours: the first reminder is stale, the second goes out alone.
    add_to_cart(&t, &later, "cart-later", "Y", 990.0).await;
    t.advance(25 * 3600 + 60);
    tick(&t.stack).await.unwrap();
    let later_mail = cart_mail(&t, "later@");
    assert_eq!(later_mail.len(), 1, "{later_mail:?}");
    assert!(
        later_mail[0].subject.contains("may sell out"),
        "the second step, not the first: {}",
        later_mail[0].subject
    );
    let cart = trigger_evaluator::carts::load(t.stack.state.store.as_ref(), "cart-later").await.unwrap().unwrap();
    assert_eq!(cart.reminders_skipped, [1]);
}

#[tokio::test]
async fn an_anonymous_cart_is_reminded_once_its_visitor_identifies() {
    let t = TestStack::new();
    events(
        &t,
        vec![json!({"event_id": "anon-x:atc", "type": "add_to_cart", "anonymous_id": "anon-x",
                    "properties": {"cart_id": "cart-anon", "sku": "Z", "name": "Thing", "price": 300}})],
        false,
    )
    .await;
    let answer = t
        .submit_json("consultation", json!({"name": "Anon", "email": "anon@example.com", "phone": "+79990001122",
            "company_size": "1-10", "consent": true, "anonymous_id": "anon-x", "locale": "en", "time_zone": "Europe/Moscow"}))
        .await;
    assert_eq!(answer.status, StatusCode::CREATED);
    t.run_for(70, 10).await;
    assert_eq!(cart_mail(&t, "anon@").len(), 1, "the cart started anonymously is reminded to the person");
}
