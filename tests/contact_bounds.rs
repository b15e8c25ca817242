//! A contact item stays small whatever one address is sent: every list on it has a bound and
//! every field a length limit, and consent receipts beyond the latest few live as their own items.

mod support;

use std::collections::BTreeSet;

use axum::body::Body;
use http::{Request, StatusCode, header};
use serde_json::json;
use support::inprocess::TestStack;
use voronka_domain::model::SuppressionReason;
use voronka_domain::ports::{Clock, QueueName};
use voronka_domain::repo::ContactRepository;
use voronka_domain::repo::contacts::contact_key;

/// The longest value a hidden tracking field accepts.
const LONGEST_HIDDEN: usize = 2000;

fn long(prefix: &str, i: usize, chars: usize) -> String {
    let head = format!("{prefix}{i:04}-");
    // Multi-byte characters, so a limit that cuts bytes instead of characters would panic.
    let fill: String = "ж".repeat(chars - head.chars().count());
    format!("{head}{fill}")
}

/// The evaluator's share of the work, as its queue consumer would do it.
async fn run_evaluator(t: &TestStack) {
    while voronka_local::workers::run_events_once(&t.stack).await.unwrap() > 0 {}
    t.drain(QueueName::Sends).await;
}

#[tokio::test]
async fn a_thousand_submissions_for_one_address_leave_a_small_contact_that_still_unsubscribes() {
    let t = TestStack::new();
    let per_ip = t.stack.state.campaigns.settings.limits.per_ip_per_minute as usize;
    let mut contact_id = String::new();
    let mut submission_ids = BTreeSet::new();
    for i in 0..1000 {
        if i % per_ip == 0 {
            // A new rate window: one flooding client stays under its per-IP limit.
            t.advance(61);
        }
        let submission_id = format!("sub-{i:04}-{}", "s".repeat(119));
        submission_ids.insert(format!("cr_{submission_id}"));
        let mut body = json!({
            "name": long("Name ", i, 200), "email": "flood@example.com", "phone": "+79990001122",
            "website": format!("https://site.example/{}", "w".repeat(270)), "company_size": "11-50",
            "consent": true, "submission_id": submission_id,
            "anonymous_id": format!("anon-{i:04}-{}", "a".repeat(118)),
            "referrer": format!("https://ref.example/{}", long("r", i, LONGEST_HIDDEN - 20)),
            "landing_page": format!("https://shop.example/{}", long("l", i, LONGEST_HIDDEN - 21)),
        });
        for field in ["utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term"]
            .into_iter()
            .chain(["gclid", "fbclid", "yclid", "msclkid", "ttclid"])
        {
            body[field] = json!(long(field, i, LONGEST_HIDDEN));
        }
        let request = Request::post("/v1/forms/consultation/submissions")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, format!("Mozilla/5.0 {}", "u".repeat(3000)))
            .body(Body::from(body.to_string()))
            .unwrap();
        let answer = t.send(request).await;
        assert_eq!(answer.status, StatusCode::CREATED, "submission {i}: {}", answer.text);
        contact_id = answer.json()["contact_id"].as_str().unwrap().to_string();
        if i % 100 == 99 {
            run_evaluator(&t).await;
        }
    }
    run_evaluator(&t).await;

    let store = t.stack.state.store.as_ref();
    let stored = store.get(&contact_key(&contact_id)).await.unwrap().expect("the contact is stored");
    let size = serde_json::to_vec(&stored.0).unwrap().len();
    assert!(size < 32 * 1024, "the stored contact holds {size} bytes");
    eprintln!("the stored contact holds {size} bytes after 1 000 submissions");

    let receipts = voronka_domain::repo::ConsentReceipts::new(store).list(&contact_id).await.unwrap();
    let listed: BTreeSet<String> = receipts.iter().map(|r| r.id.clone()).collect();
    assert_eq!(listed, submission_ids, "every receipt is kept as its own item");
    assert!(receipts.windows(2).all(|pair| pair[0].at <= pair[1].at), "receipts are listed oldest first");

    let now = t.clock.now();
    let url = sender::unsubscribe_url(&t.stack.sender, &contact_id, now);
    let path = url.strip_prefix("https://api.voronka.test").unwrap().to_string();
    let unsubscribe = Request::post(path.as_str())
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("List-Unsubscribe=One-Click"))
        .unwrap();
    let answer = t.send(unsubscribe).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let contact = ContactRepository::new(store).get(&contact_id).await.unwrap().unwrap();
    assert!(contact.suppressions.contains_key(&SuppressionReason::Unsubscribed));
    assert!(!contact.email_consent().unwrap().allows_marketing());
    let receipts = voronka_domain::repo::ConsentReceipts::new(store).list(&contact_id).await.unwrap();
    assert_eq!(receipts.len(), 1001, "the withdrawal is kept as proof too");
    assert!(!receipts.last().unwrap().granted);
}

#[tokio::test]
async fn receipts_of_a_contact_stored_before_the_bounds_become_items_when_it_is_next_written() {
    let t = TestStack::new();
    let now = t.clock.now();
    // A contact as it was stored when every receipt lived on it.
    let mut legacy = voronka_domain::model::Contact::new("c_legacy".into(), now, "en".into(), "Europe/Moscow".into());
    legacy.email = Some(voronka_domain::model::EmailAddress::parse("legacy@example.com").unwrap());
    legacy.version = 1;
    legacy.receipts_itemised = false;
    for n in 0..12 {
        let at = now - jiff::SignedDuration::from_hours(100 - n);
        legacy.consent_receipts.push(voronka_domain::model::ConsentReceipt::granted(
            &format!("old-{n}"),
            at,
            "v1",
            false,
        ));
    }
    let mut item = voronka_domain::ports::Item::new(&contact_key("c_legacy"), serde_json::to_value(&legacy).unwrap());
    item.0.insert("gsi1pk".into(), json!("CONTACTS#00"));
    t.stack.state.store.put(item, None).await.unwrap();

    ContactRepository::new(t.stack.state.store.as_ref())
        .update("c_legacy", now, |c| {
            c.tags.insert("touched".into());
            true
        })
        .await
        .unwrap();
    let kept = voronka_domain::repo::consent_receipts::ConsentReceipts::new(t.stack.state.store.as_ref())
        .list("c_legacy")
        .await
        .unwrap();
    let ids: BTreeSet<String> = kept.into_iter().map(|r| r.id).collect();
    assert_eq!(ids.len(), 12, "every receipt the contact held is proof kept as an item: {ids:?}");
}
