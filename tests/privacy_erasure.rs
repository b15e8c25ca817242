//! A person's export and erasure over HTTP on the local stack (the router `voronka serve` runs, on
//! the embedded adapters): a person with a form submission, a chat, behaviour, a cart, journeys
//! and mail; the export shows each; the erasure leaves their address, phone and name nowhere in
//! the database file (every row, every column, queues included) or the outbox; a late event
//! cannot bring them back; the aggregates still count the lead.

mod support;

use std::sync::Arc;

use axum::body::Body;
use http::{Request, StatusCode, header};
use serde_json::{Value, json};
use support::inprocess::{Answer, TestStack};
use voronka_domain::model::EmailAddress;
use voronka_domain::ports::{Clock, MailCopies, MailCopy, NoMailCopies, PersonMarkers};
use voronka_domain::repo::ContactRepository;
use voronka_domain::repo::aggregates::{self, Metric};
use voronka_domain::repo::personal_data::{self, PersonalDataError};

const EMAIL: &str = "Erika.Mustermann@Example.com";
const PHONE: &str = "+79995553311";
const NAME: &str = "Erikaunique Mustermannova";
const SHOP: &str = "https://shop.example";

async fn admin(t: &TestStack, method: &str, path: &str) -> Answer {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {}", t.stack.admin_key))
        .body(Body::empty())
        .unwrap();
    t.send(request).await
}

fn bot_post(path: &str, body: &Value) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ORIGIN, SHOP)
        .body(Body::from(body.to_string()))
        .unwrap()
}

/// Every place the person could be left: each row of the database file and each outbox file,
/// both as written and decoded.
async fn where_the_person_is(t: &TestStack) -> Vec<String> {
    // The plain digest of the address too: a marker kept under it would confirm the person to
    // anyone hashing guesses.
    let digest = EmailAddress::parse(EMAIL).unwrap().identity_digest();
    let needles = [EMAIL.to_lowercase(), PHONE.trim_start_matches('+').to_string(), "erikaunique".to_string(), digest];
    let mut found = Vec::new();
    for row in t.stack.embedded().store.raw_rows().await.unwrap() {
        let lower = row.to_lowercase();
        if needles.iter().any(|needle| lower.contains(needle.as_str())) {
            found.push(format!("row: {}", &row[..row.len().min(300)]));
        }
    }
    for entry in std::fs::read_dir(t.stack.outbox.dir()).unwrap().flatten() {
        let raw = std::fs::read(entry.path()).unwrap();
        let mut texts = vec![String::from_utf8_lossy(&raw).to_lowercase()];
        if let Some(message) = mail_parser::MessageParser::default().parse(&raw) {
            texts.extend((0..message.text_body_count()).filter_map(|i| message.body_text(i)).map(|t| t.to_lowercase()));
            texts.extend(message.subject().map(str::to_lowercase));
        }
        if texts.iter().any(|text| needles.iter().any(|needle| text.contains(needle.as_str()))) {
            found.push(format!("outbox: {}", entry.path().display()));
        }
    }
    found
}

/// The person: the consultation form (name, email, phone, consent, an anonymous id), a chat with
/// the qualification bot that captures the same address, browsing, a cart, a purchase.
async fn a_person_with_everything(t: &TestStack) -> String {
    // Browsing before the person identifies: filed under the anonymous id the form then links.
    t.post_events(
        vec![json!({"event_id": "erika-view-1", "type": "page_view", "anonymous_id": "anon-erika",
            "properties": {"url": "https://shop.example/p/1", "title": "Shoes"}})],
        false,
    )
    .await;
    let fields = json!({"name": NAME, "email": EMAIL, "phone": PHONE, "company_size": "51-200",
        "website": "https://erika.example", "consent": true, "time_zone": "Europe/Berlin",
        "anonymous_id": "anon-erika", "utm_source": "newsletter"});
    let answer = t.submit_json("consultation", fields).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    let contact_id = answer.json()["contact_id"].as_str().unwrap().to_string();
    voronka_local::workers::drain(&t.stack).await.unwrap();

    // Three views of one category enter the category-interest journey (its wait is a due item).
    let views = (1..=3)
        .map(|n| {
            json!({"event_id": format!("erika-category-{n}"), "type": "category_view", "contact_id": contact_id,
                "properties": {"category": "shoes"}})
        })
        .collect();
    t.post_events(views, true).await;
    let started = t.send(bot_post("/v1/bot/b2b_demo/sessions", &json!({"locale": "en"}))).await;
    assert_eq!(started.status, StatusCode::CREATED, "{}", started.text);
    let session = started.json()["session_id"].as_str().unwrap().to_string();
    let answers = ["https://erika.example", "201+", "founder", "this_month", EMAIL, "yes"];
    for (i, value) in answers.iter().enumerate() {
        let path = format!("/v1/bot/sessions/{session}/answers");
        let answer = t.send(bot_post(&path, &json!({"seq": i + 1, "value": value}))).await;
        assert_eq!(answer.status, StatusCode::OK, "answer {}: {}", i + 1, answer.text);
    }
    voronka_local::workers::drain(&t.stack).await.unwrap();

    t.post_events(
        vec![json!({"event_id": "erika-atc-1", "type": "add_to_cart", "contact_id": contact_id, "properties": {
            "cart_id": "cart-erika", "sku": "s1", "name": "Item s1", "price": 10.0, "quantity": 1, "currency": "RUB",
            "cart_url": "https://shop.example/cart/cart-erika"}})],
        true,
    )
    .await;
    t.run_for(90, 15).await;
    t.post_events(
        vec![json!({"event_id": "erika-order-1", "type": "purchase", "contact_id": contact_id,
            "properties": {"order_id": "o-erika-1", "revenue": 25.0, "currency": "RUB"}})],
        true,
    )
    .await;
    contact_id
}

#[tokio::test]
async fn an_erased_person_is_nowhere_in_the_store_or_the_outbox_and_a_late_event_brings_nothing_back() {
    let t = TestStack::new();
    let contact_id = a_person_with_everything(&t).await;
    let settings = &t.stack.state.campaigns.settings;
    let day = aggregates::date(t.clock.now(), settings);
    let leads_before = lead_count(&t, day).await;
    assert!(leads_before >= 1.0, "the lead was counted");
    assert!(!where_the_person_is(&t).await.is_empty(), "the test can find the person before the erasure");

    // The export shows every section.
    let export = admin(&t, "GET", &format!("/v1/contacts/{contact_id}/export")).await;
    assert_eq!(export.status, StatusCode::OK, "{}", export.text);
    let body = export.json();
    assert_eq!(body["contact"]["id"], contact_id.as_str());
    assert_eq!(body["contact"]["phone"], PHONE);
    let receipts = body["consent_receipts"].as_array().unwrap();
    assert!(receipts.len() >= 2, "the form's and the chat's consent: {receipts:?}");
    assert!(receipts.iter().all(|r| r["ip"].is_string() && r["at"].is_string()), "{receipts:?}");
    let timeline = body["timeline"].as_array().unwrap();
    for kind in ["page_view", "add_to_cart", "purchase", "lead_created"] {
        assert!(timeline.iter().any(|entry| entry["event"]["type"] == kind), "{kind} in {timeline:?}");
    }
    assert!(timeline.iter().any(|entry| entry["subject"] == "anon:anon-erika"), "browsing before identifying");
    assert!(!body["journeys"].as_array().unwrap().is_empty(), "{}", body["journeys"]);
    assert_eq!(body["carts"].as_array().unwrap().len(), 1, "{}", body["carts"]);
    assert_eq!(body["orders"]["orders"], 1, "{}", body["orders"]);
    assert_eq!(body["bot_sessions"].as_array().unwrap().len(), 1, "{}", body["bot_sessions"]);
    assert!(!body["messages"]["mail_copies"].as_array().unwrap().is_empty(), "{}", body["messages"]);
    assert!(
        body["messages"]["mail_copies"].as_array().unwrap().iter().any(|m| m["to"] == "sales@shop.example"),
        "the sales email about the person is theirs too: {}",
        body["messages"]
    );
    assert!(!body["messages"]["ledger"].as_array().unwrap().is_empty(), "{}", body["messages"]);
    assert!(body["score"].is_object(), "{}", body["score"]);
    assert_eq!(body["truncated"], json!({}));

    // A late event: queued before the erasure (the shop names the address), processed after.
    let late = vec![
        json!({"event_id": "erika-order-late", "type": "purchase", "email": EMAIL,
            "properties": {"order_id": "o-erika-2", "revenue": 40.0, "currency": "RUB"}}),
        json!({"event_id": "erika-login-late", "type": "page_view", "contact_id": contact_id,
            "properties": {"url": "https://shop.example/account"}}),
    ];
    let queued = t.post_events_answer(late, true).await;
    assert_eq!(queued.status, StatusCode::ACCEPTED, "{}", queued.text);
    t.advance(5);

    let erased = admin(&t, "DELETE", &format!("/v1/contacts/{contact_id}")).await;
    assert_eq!(erased.status, StatusCode::OK, "{}", erased.text);
    let report = erased.json();
    assert_eq!(report["contact_id"], contact_id.as_str());
    assert_eq!((report["already_erased"].clone(), report["complete"].clone()), (json!(false), json!(true)));
    for kind in [
        "profile",
        "email_identity",
        "anonymous_ids",
        "consent_receipts",
        "event_log",
        "bot_sessions",
        "journey_states",
        "due_items",
        "carts",
        "mail_copies",
    ] {
        assert!(report["removed"][kind].as_u64().unwrap_or(0) >= 1, "{kind} removed: {report}");
    }

    voronka_local::workers::drain(&t.stack).await.unwrap();
    t.run_for(60 * 24 * 3, 60).await;
    let left = where_the_person_is(&t).await;
    assert!(left.is_empty(), "the person is still here:\n{}", left.join("\n"));
    let repo = ContactRepository::new(t.stack.state.store.as_ref());
    assert!(repo.find_by_email(&EmailAddress::parse(EMAIL).unwrap()).await.unwrap().is_none(), "no contact again");
    assert!(repo.get(&contact_id).await.unwrap().is_none());

    let export = admin(&t, "GET", &format!("/v1/contacts/{contact_id}/export")).await;
    assert_eq!((export.status, export.error_code().as_str()), (StatusCode::NOT_FOUND, "erased"), "{}", export.text);
    let profile = admin(&t, "GET", &format!("/v1/contacts/{contact_id}")).await;
    assert_eq!(profile.status, StatusCode::NOT_FOUND);

    // Erasing again is a success that says so; an unknown id is not.
    let again = admin(&t, "DELETE", &format!("/v1/contacts/{contact_id}")).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(again.json()["already_erased"], true);
    assert_eq!(again.json()["erased_at"], report["erased_at"]);
    let unknown = admin(&t, "DELETE", "/v1/contacts/c_nobody").await;
    assert_eq!((unknown.status, unknown.error_code().as_str()), (StatusCode::NOT_FOUND, "not_found"));

    assert_eq!(lead_count(&t, day).await, leads_before, "the aggregates still count the lead");

    // A new sign-up after the erasure is a fresh consent: a new contact, never the erased id.
    let fields = json!({"name": "Erika", "email": EMAIL, "phone": PHONE, "company_size": "1-10", "consent": true});
    let answer = t.submit_json("consultation", fields).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    let new_id = answer.json()["contact_id"].as_str().unwrap().to_string();
    assert_ne!(new_id, contact_id);
    assert_eq!(repo.find_by_email(&EmailAddress::parse(EMAIL).unwrap()).await.unwrap().unwrap().id, new_id);
}

async fn lead_count(t: &TestStack, day: jiff::civil::Date) -> f64 {
    aggregates::daily_totals(t.stack.state.store.as_ref(), day)
        .await
        .unwrap()
        .iter()
        .filter(|total| total.metric == Metric::Leads)
        .map(|total| total.value)
        .sum()
}

/// Mail copies that cannot be reached: the erasure stops right after its tombstone, as a crash
/// there would leave it.
struct Unreachable;

#[async_trait::async_trait]
impl MailCopies for Unreachable {
    async fn copies_about(&self, _: &PersonMarkers, _: usize) -> Result<(Vec<MailCopy>, bool), String> {
        Err("unreachable".into())
    }

    async fn erase_copies_about(&self, _: &PersonMarkers) -> Result<usize, String> {
        Err("unreachable".into())
    }
}

#[tokio::test]
async fn an_interrupted_erasure_stops_every_writer_and_a_retry_finishes_it() {
    let t = TestStack::new();
    let contact_id = a_person_with_everything(&t).await;
    let store = t.stack.state.store.as_ref();
    let stopped =
        personal_data::erase(store, &Unreachable, &t.stack.state.secrets.token_keys, &contact_id, t.clock.now()).await;
    assert!(matches!(stopped, Err(PersonalDataError::MailCopies(_))), "{stopped:?}");

    // Only the tombstone is written, and already nothing reads or writes the person.
    let profile = admin(&t, "GET", &format!("/v1/contacts/{contact_id}")).await;
    assert_eq!(profile.status, StatusCode::NOT_FOUND);
    let export = admin(&t, "GET", &format!("/v1/contacts/{contact_id}/export")).await;
    assert_eq!(export.error_code(), "erased", "{}", export.text);
    t.post_events(
        vec![json!({"event_id": "erika-mid-erasure", "type": "purchase", "contact_id": contact_id,
            "properties": {"order_id": "o-erika-3", "revenue": 5.0, "currency": "RUB"}})],
        true,
    )
    .await;
    let fields = json!({"name": NAME, "email": EMAIL, "phone": PHONE, "company_size": "1-10", "consent": true});
    let resubmitted = t.submit_json("consultation", fields).await;
    assert_eq!(resubmitted.status, StatusCode::CREATED, "{}", resubmitted.text);
    let new_id = resubmitted.json()["contact_id"].as_str().unwrap().to_string();
    assert_ne!(new_id, contact_id, "a sign-up during the erasure makes a new contact");

    let retry = admin(&t, "DELETE", &format!("/v1/contacts/{contact_id}")).await;
    assert_eq!(retry.status, StatusCode::OK, "{}", retry.text);
    let report = retry.json();
    assert_eq!(report["already_erased"], true);
    assert!(report["removed"]["mail_copies"].as_u64().unwrap_or(0) >= 1, "{report}");
    assert!(report["removed"]["event_log"].as_u64().unwrap_or(0) >= 1, "{report}");
    assert_eq!(report["removed"].get("email_identity"), None, "the address is the new contact's now: {report}");
    let new_contact = admin(&t, "GET", &format!("/v1/contacts/{new_id}")).await;
    assert_eq!(new_contact.status, StatusCode::OK, "the retry leaves the new contact alone");

    // The new contact goes too; then nothing of the person is left.
    let erased_new = admin(&t, "DELETE", &format!("/v1/contacts/{new_id}")).await;
    assert_eq!(erased_new.status, StatusCode::OK, "{}", erased_new.text);
    voronka_local::workers::drain(&t.stack).await.unwrap();
    let left = where_the_person_is(&t).await;
    assert!(left.is_empty(), "the person is still here:\n{}", left.join("\n"));
}

/// A buyer the shop reported gets a contact id derived from the address; after their erasure, a
/// new order from them makes a new contact instead of running into the tombstone forever.
#[tokio::test]
async fn a_buyer_erased_and_buying_again_is_a_new_contact() {
    let t = TestStack::new();
    let order = |id: &str| {
        json!({"event_id": id, "type": "purchase", "email": "buyer.again@example.com",
            "properties": {"order_id": id, "revenue": 12.0, "currency": "RUB"}})
    };
    t.post_events(vec![order("first-order")], true).await;
    let repo = ContactRepository::new(t.stack.state.store.as_ref());
    let email = EmailAddress::parse("buyer.again@example.com").unwrap();
    let first = repo.find_by_email(&email).await.unwrap().expect("the shop's buyer is a contact");
    let erased = admin(&t, "DELETE", &format!("/v1/contacts/{}", first.id)).await;
    assert_eq!(erased.status, StatusCode::OK, "{}", erased.text);

    t.advance(60);
    t.post_events(vec![order("second-order")], true).await;
    let second = repo.find_by_email(&email).await.unwrap().expect("the new order makes a new contact");
    assert_ne!(second.id, first.id);
    assert_eq!(second.orders.orders, 1, "only the new order: {:?}", second.orders);
    assert!(t.stack.embedded().queue.depth(voronka_domain::ports::QueueName::Events).await.unwrap() == 0);
}

/// However much is held about a person, the export reads a bounded amount: each section at most
/// its cap, newest first, and `truncated` names the sections it cut.
#[tokio::test]
async fn an_export_is_bounded_and_says_what_it_cut() {
    use voronka_domain::model::ConsentReceipt;
    use voronka_domain::repo::consent_receipts::receipt_item;
    let t = TestStack::new();
    let contact_id = t.consented_contact("many.receipts@example.com", json!({})).await;
    let start = t.clock.now();
    let held = personal_data::WRITE_BUDGET + 20;
    let receipts: Vec<_> = (0..held)
        .map(|i| {
            let at = start + jiff::SignedDuration::from_secs(i as i64 + 1);
            receipt_item(&contact_id, &ConsentReceipt::granted(&format!("bulk{i:04}"), at, "v1", false))
        })
        .collect();
    let store = t.stack.state.store.as_ref();
    for chunk in receipts.chunks(25) {
        store.batch_put(chunk.to_vec()).await.unwrap();
    }
    let export = admin(&t, "GET", &format!("/v1/contacts/{contact_id}/export")).await;
    assert_eq!(export.status, StatusCode::OK, "{}", export.text);
    let body = export.json();
    let listed = body["consent_receipts"].as_array().unwrap();
    assert_eq!(listed.len(), personal_data::EXPORT_CAP);
    assert_eq!(listed[0]["id"], format!("bulk{:04}", held - 1), "newest first");
    assert_eq!(body["truncated"], json!({"consent_receipts": true}));
    assert_eq!(body["limits"]["per_section"], personal_data::EXPORT_CAP);

    // Erasing that much takes more than one call's write budget: 202, and the repeat finishes.
    let path = format!("/v1/contacts/{contact_id}");
    let partial = admin(&t, "DELETE", &path).await;
    assert_eq!(partial.status, StatusCode::ACCEPTED, "{}", partial.text);
    assert_eq!(partial.json()["complete"], false);
    let mut calls = 1;
    loop {
        let next = admin(&t, "DELETE", &path).await;
        calls += 1;
        if next.status == StatusCode::OK {
            assert_eq!(
                (next.json()["complete"].clone(), next.json()["already_erased"].clone()),
                (json!(true), json!(true))
            );
            break;
        }
        assert_eq!(next.status, StatusCode::ACCEPTED, "{}", next.text);
        assert!(calls < 10, "each call makes progress");
    }
    let left =
        store.query(voronka_domain::ports::Query::partition(Default::default(), format!("CONSENT#{contact_id}")));
    assert!(left.await.unwrap().items.is_empty());
}

/// `voronka erase` on a data folder does what the route does, for an operator without HTTP.
#[tokio::test]
async fn the_command_line_erases_a_person_in_a_data_folder() {
    use std::process::Command;
    use voronka_domain::model::Contact;
    use voronka_domain::ports::SystemClock;
    use voronka_local::stack::{Stack, StackOptions};
    let dir = support::inprocess::TempFolder::new("erase-cli");
    let email = EmailAddress::parse("cli.person@example.com").unwrap();
    let contact_id = {
        let stack = Stack::open(StackOptions {
            data_dir: Some(dir.path().to_path_buf()),
            metering: None,
            campaigns_dir: None,
            public_base_url: None,
            clock: Arc::new(SystemClock),
            ids: Stack::default_ids(),
            faults: None,
        })
        .unwrap();
        let now = stack.state.clock.now();
        let new_contact = || Contact::new("c_cli_person".into(), now, "en".into(), "UTC".into());
        let repo = ContactRepository::new(stack.state.store.as_ref());
        repo.upsert_by_email(&email, now, new_contact, |_| {}).await.unwrap().0.id
    };
    let erase = |id: &str| {
        Command::new(env!("CARGO_BIN_EXE_voronka"))
            .args(["erase", id, "--data-dir"])
            .arg(dir.path())
            .output()
            .expect("voronka runs")
    };
    let first = erase(&contact_id);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let report: Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(
        (report["already_erased"].clone(), report["removed"]["email_identity"].clone()),
        (json!(false), json!(1))
    );
    let again: Value = serde_json::from_slice(&erase(&contact_id).stdout).unwrap();
    assert_eq!(again["already_erased"], true);
    let unknown = erase("c_nobody");
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no contact with this id"), "{unknown:?}");
}

/// What is filed under an anonymous subject, by partition.
async fn held_under(t: &TestStack, anonymous_id: &str) -> Vec<String> {
    use voronka_domain::ports::{Index, Query};
    let store = t.stack.state.store.as_ref();
    let mut held = Vec::new();
    for partition in ["EVLOG#", "TRIG#", "CARTS#", "DUE#"] {
        let pk = format!("{partition}anon:{anonymous_id}");
        let items = store.query(Query::partition(Index::Table, pk.clone())).await.unwrap().items;
        if !items.is_empty() {
            held.push(format!("{pk}: {}", items.len()));
        }
    }
    held
}

fn browsing(id: &str, anonymous_id: &str) -> Value {
    json!({"event_id": id, "type": "add_to_cart", "anonymous_id": anonymous_id, "properties": {
        "cart_id": format!("cart-{anonymous_id}"), "sku": "s1", "name": "Item s1", "price": 10.0, "quantity": 1,
        "currency": "RUB", "cart_url": "https://shop.example/cart/1"}})
}

/// The browser of an erased person: events naming its anonymous id, late (queued before the
/// erasure) or new (the same browser going on), write nothing again, and a new sign-up from it
/// does not take the id (so nothing of the old person comes back with it).
#[tokio::test]
async fn an_erased_persons_browser_writes_nothing_again_and_a_new_sign_up_does_not_link_it() {
    let t = TestStack::new();
    t.post_events(vec![browsing("gone-1", "anon-gone")], false).await;
    let contact_id = t.consented_contact("gone.browser@example.com", json!({"anonymous_id": "anon-gone"})).await;
    voronka_local::workers::drain(&t.stack).await.unwrap();
    assert!(!held_under(&t, "anon-gone").await.is_empty(), "the test can find the browsing");

    let late = t.post_events_answer(vec![browsing("gone-late", "anon-gone")], false).await;
    assert_eq!(late.status, StatusCode::ACCEPTED, "{}", late.text);
    t.advance(5);
    let erased = admin(&t, "DELETE", &format!("/v1/contacts/{contact_id}")).await;
    assert_eq!(erased.status, StatusCode::OK, "{}", erased.text);
    voronka_local::workers::drain(&t.stack).await.unwrap();
    assert_eq!(held_under(&t, "anon-gone").await, Vec::<String>::new(), "the late event wrote nothing");

    t.advance(60);
    t.post_events(vec![browsing("gone-2", "anon-gone")], false).await;
    assert_eq!(held_under(&t, "anon-gone").await, Vec::<String>::new(), "the browser going on wrote nothing");

    let new_id = t.consented_contact("new.person@example.com", json!({"anonymous_id": "anon-gone"})).await;
    voronka_local::workers::drain(&t.stack).await.unwrap();
    let repo = ContactRepository::new(t.stack.state.store.as_ref());
    let fresh = repo.get(&new_id).await.unwrap().unwrap();
    assert!(!fresh.anonymous_ids.contains(&"anon-gone".to_string()), "{:?}", fresh.anonymous_ids);
    assert!(repo.find_by_anonymous_id("anon-gone").await.unwrap().is_none());
    assert_eq!(held_under(&t, "anon-gone").await, Vec::<String>::new());
}

/// A contact keeps its newest anonymous ids only; the erasure still reaches the older ones and
/// what is filed under them, and the export shows them.
#[tokio::test]
async fn an_erasure_reaches_the_anonymous_ids_trimmed_off_the_contact() {
    use voronka_domain::model::contact::MAX_ANONYMOUS_IDS;
    let t = TestStack::new();
    let count = MAX_ANONYMOUS_IDS + 3;
    let views: Vec<Value> = (0..count)
        .map(|i| {
            json!({"event_id": format!("many-view-{i}"), "type": "page_view", "anonymous_id": format!("many-{i}"),
            "properties": {"url": "https://shop.example/p/1"}})
        })
        .collect();
    t.post_events(views, false).await;
    let contact_id = t.consented_contact("many.browsers@example.com", json!({})).await;
    let repo = ContactRepository::new(t.stack.state.store.as_ref());
    for i in 0..count {
        let id = format!("many-{i}");
        repo.update(&contact_id, t.clock.now(), |contact| {
            contact.anonymous_ids.push(id.clone());
            true
        })
        .await
        .unwrap();
    }
    let contact = repo.get(&contact_id).await.unwrap().unwrap();
    assert!(!contact.anonymous_ids.contains(&"many-0".to_string()), "the oldest was trimmed off");
    assert!(!held_under(&t, "many-0").await.is_empty(), "its browsing is still filed under it");

    let export = admin(&t, "GET", &format!("/v1/contacts/{contact_id}/export")).await;
    let timeline = export.json()["timeline"].as_array().unwrap().clone();
    assert!(timeline.iter().any(|entry| entry["subject"] == "anon:many-0"), "{timeline:?}");

    let erased = admin(&t, "DELETE", &format!("/v1/contacts/{contact_id}")).await;
    assert_eq!(erased.status, StatusCode::OK, "{}", erased.text);
    assert_eq!(erased.json()["removed"]["anonymous_ids"], count, "{}", erased.text);
    for i in 0..count {
        assert_eq!(held_under(&t, &format!("many-{i}")).await, Vec::<String>::new(), "many-{i}");
        assert!(matches!(
            repo.lookup_by_anonymous_id(&format!("many-{i}")).await.unwrap(),
            voronka_domain::repo::contacts::ContactLookup::Erased(_)
        ));
    }
}

/// A store whose query pages stop early, as DynamoDB's do at 1 MB.
struct ShortPages<'a>(&'a dyn voronka_domain::ports::Store);

#[async_trait::async_trait]
impl voronka_domain::ports::Store for ShortPages<'_> {
    async fn get(&self, key: &voronka_domain::ports::Key) -> Result<Option<voronka_domain::ports::Item>, StoreError> {
        self.0.get(key).await
    }
    async fn put(
        &self,
        item: voronka_domain::ports::Item,
        condition: Option<voronka_domain::ports::Condition>,
    ) -> Result<(), StoreError> {
        self.0.put(item, condition).await
    }
    async fn update(
        &self,
        key: &voronka_domain::ports::Key,
        actions: Vec<voronka_domain::ports::UpdateAction>,
        condition: Option<voronka_domain::ports::Condition>,
    ) -> Result<voronka_domain::ports::Item, StoreError> {
        self.0.update(key, actions, condition).await
    }
    async fn delete(
        &self,
        key: &voronka_domain::ports::Key,
        condition: Option<voronka_domain::ports::Condition>,
    ) -> Result<(), StoreError> {
        self.0.delete(key, condition).await
    }
    async fn query(&self, mut query: voronka_domain::ports::Query) -> Result<voronka_domain::ports::Page, StoreError> {
        query.limit = Some(query.limit.unwrap_or(u32::MAX).min(7));
        self.0.query(query).await
    }
    async fn transact(&self, ops: Vec<voronka_domain::ports::TransactOp>) -> Result<(), StoreError> {
        self.0.transact(ops).await
    }
    async fn batch_put(&self, items: Vec<voronka_domain::ports::Item>) -> Result<(), StoreError> {
        self.0.batch_put(items).await
    }
}

use voronka_domain::ports::StoreError;

struct NoCopies;

#[async_trait::async_trait]
impl MailCopies for NoCopies {
    async fn copies_about(&self, _: &PersonMarkers, _: usize) -> Result<(Vec<MailCopy>, bool), String> {
        Ok((Vec::new(), false))
    }

    async fn erase_copies_about(&self, _: &PersonMarkers) -> Result<usize, String> {
        Ok(0)
    }
}

/// A page cut short by the store (DynamoDB stops at 1 MB) is not the end of a section: the export
/// reads on to its cap and claims completeness only when nothing is left.
#[tokio::test]
async fn an_export_reads_on_past_pages_the_store_cut_short() {
    use voronka_domain::model::ConsentReceipt;
    use voronka_domain::repo::consent_receipts::receipt_item;
    let t = TestStack::new();
    let contact_id = t.consented_contact("short.pages@example.com", json!({})).await;
    let start = t.clock.now();
    let receipts: Vec<_> = (0..20)
        .map(|i| {
            let at = start + jiff::SignedDuration::from_secs(i + 1);
            receipt_item(&contact_id, &ConsentReceipt::granted(&format!("short{i:02}"), at, "v1", false))
        })
        .collect();
    let store = ShortPages(t.stack.state.store.as_ref());
    use voronka_domain::ports::Store;
    store.batch_put(receipts).await.unwrap();
    let export = personal_data::export(&store, &NoCopies, &contact_id, t.clock.now()).await.unwrap();
    assert!(export["consent_receipts"].as_array().unwrap().len() > 20, "{}", export["consent_receipts"]);
    assert_eq!(export["truncated"], json!({}));
}

/// A shop that reused a cart id for another person made the cart theirs: the first person's
/// export does not show it and their erasure leaves it to its owner.
#[tokio::test]
async fn a_cart_id_the_shop_reused_for_someone_else_is_theirs_in_the_export_and_the_erasure() {
    let t = TestStack::new();
    let first = t.consented_contact("first.owner@example.com", json!({})).await;
    let second = t.consented_contact("second.owner@example.com", json!({})).await;
    let add = |id: &str, contact: &str| {
        json!({"event_id": id, "type": "add_to_cart", "contact_id": contact, "properties": {
            "cart_id": "reused-cart", "sku": "s1", "name": "Item s1", "price": 10.0, "quantity": 1,
            "currency": "RUB", "cart_url": "https://shop.example/cart/1"}})
    };
    t.post_events(vec![add("reuse-1", &first)], true).await;
    t.post_events(
        vec![json!({"event_id": "reuse-buy", "type": "purchase", "contact_id": first,
            "properties": {"order_id": "o-reuse", "revenue": 10.0, "currency": "RUB", "cart_id": "reused-cart"}})],
        true,
    )
    .await;
    t.post_events(vec![add("reuse-2", &second)], true).await;
    let store = t.stack.state.store.as_ref();
    let cart = voronka_domain::repo::carts::load(store, "reused-cart").await.unwrap().unwrap();
    assert_eq!(cart.owner, second, "the shop's reuse moved the cart");

    let export = admin(&t, "GET", &format!("/v1/contacts/{first}/export")).await;
    assert_eq!(export.json()["carts"], json!([]), "{}", export.text);
    let erased = admin(&t, "DELETE", &format!("/v1/contacts/{first}")).await;
    assert_eq!(erased.status, StatusCode::OK, "{}", erased.text);
    let cart = voronka_domain::repo::carts::load(store, "reused-cart").await.unwrap();
    assert_eq!(cart.map(|c| c.owner), Some(second), "the other person's cart is left alone");
}

/// The shop can log an `email_sent` naming any ledger key: the export and the erasure only follow
/// keys of Voronka's own sends (or that name the contact), never another person's ledger entry.
#[tokio::test]
async fn a_forged_email_sent_leads_the_export_and_the_erasure_to_no_one_elses_ledger_entry() {
    use voronka_domain::ports::{Item, Key, Store};
    let t = TestStack::new();
    let contact_id = t.consented_contact("forger.target@example.com", json!({})).await;
    let store = t.stack.state.store.as_ref();
    let victim = Key::new("SEND#journey:c_someone_else:welcome", "LEDGER");
    store.put(Item::new(&victim, json!({"state": "sent", "message_id": "m-victim"})), None).await.unwrap();
    t.post_events(
        vec![json!({"event_id": "forged-sent", "type": "email_sent", "contact_id": contact_id,
            "properties": {"idempotency_key": "journey:c_someone_else:welcome"}})],
        true,
    )
    .await;
    let export = admin(&t, "GET", &format!("/v1/contacts/{contact_id}/export")).await;
    let ledger = export.json()["messages"]["ledger"].clone();
    assert!(!ledger.to_string().contains("c_someone_else"), "{ledger}");
    let erased = admin(&t, "DELETE", &format!("/v1/contacts/{contact_id}")).await;
    assert_eq!(erased.status, StatusCode::OK, "{}", erased.text);
    assert!(Store::get(store, &victim).await.unwrap().is_some(), "someone else's ledger entry is left");
}

/// An erasure that stopped after its tombstone is finished by the scheduler's run without another
/// `DELETE`, and meanwhile the dashboard's erase page offers to finish it rather than answering 404.
#[tokio::test]
async fn an_unfinished_erasure_is_finished_by_the_scheduler_and_the_dashboard_offers_to_resume_it() {
    let t = TestStack::new();
    let contact_id = a_person_with_everything(&t).await;
    let store = t.stack.state.store.as_ref();
    let keys = &t.stack.state.secrets.token_keys;
    let stopped = personal_data::erase(store, &Unreachable, keys, &contact_id, t.clock.now()).await;
    assert!(matches!(stopped, Err(PersonalDataError::MailCopies(_))), "{stopped:?}");
    assert!(personal_data::erasure_unfinished(store, &contact_id).await.unwrap());

    let confirm_page = || {
        Request::get(format!("/admin/contacts/{contact_id}/erase"))
            .header(header::HOST, "localhost")
            .header(header::AUTHORIZATION, format!("Bearer {}", t.stack.admin_key))
            .body(Body::empty())
            .unwrap()
    };
    let confirm = t.send(confirm_page()).await;
    assert_eq!(confirm.status, StatusCode::OK, "{}", confirm.text);
    assert!(confirm.text.contains("Finish the erasure"), "{}", confirm.text);

    voronka_local::workers::tick(&t.stack).await.unwrap();
    assert!(!personal_data::erasure_unfinished(store, &contact_id).await.unwrap(), "the scheduler finished it");
    let left = where_the_person_is(&t).await;
    assert!(left.is_empty(), "the person is still here:\n{}", left.join("\n"));
    let confirm = t.send(confirm_page()).await;
    assert_eq!(confirm.status, StatusCode::NOT_FOUND, "{}", confirm.text);
}

/// Refuses its first call, then keeps no copies: an erasure that fails once among others.
#[derive(Default)]
struct FailsOnce(std::sync::atomic::AtomicBool);

#[async_trait::async_trait]
impl MailCopies for FailsOnce {
    async fn copies_about(&self, _: &PersonMarkers, _: usize) -> Result<(Vec<MailCopy>, bool), String> {
        Ok((Vec::new(), false))
    }

    async fn erase_copies_about(&self, _: &PersonMarkers) -> Result<usize, String> {
        if self.0.swap(true, std::sync::atomic::Ordering::SeqCst) { Ok(0) } else { Err("unreachable".into()) }
    }
}

#[tokio::test]
async fn an_unfinished_erasure_that_fails_again_does_not_hold_up_the_others() {
    let t = TestStack::new();
    let store = t.stack.state.store.as_ref();
    let keys = &t.stack.state.secrets.token_keys;
    let first = t.consented_contact("first-to-erase@example.com", json!({})).await;
    let second = t.consented_contact("second-to-erase@example.com", json!({})).await;
    for id in [&first, &second] {
        let stopped = personal_data::erase(store, &Unreachable, keys, id, t.clock.now()).await;
        assert!(matches!(stopped, Err(PersonalDataError::MailCopies(_))), "{stopped:?}");
    }

    let completed = personal_data::finish_pending_erasures(store, &FailsOnce::default(), t.clock.now(), 1_000).await;
    assert_eq!(completed.unwrap(), 1, "the one after the failing erasure still completed");
    let unfinished = [
        personal_data::erasure_unfinished(store, &first).await.unwrap(),
        personal_data::erasure_unfinished(store, &second).await.unwrap(),
    ];
    assert_eq!(unfinished.iter().filter(|u| **u).count(), 1, "{unfinished:?}");

    let completed = personal_data::finish_pending_erasures(store, &NoMailCopies, t.clock.now(), 1_000).await;
    assert_eq!(completed.unwrap(), 1, "the next run retries the failed one");
}
