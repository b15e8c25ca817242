//! Signatures and tokens over HTTP on the local stack: shop event signatures carry a time and a key
//! id and are refused outside the tolerance, the legacy `sha256=` format is bounded to recent
//! events, link tokens are scoped, and keys rotate without breaking links already sent.

mod support;

use std::sync::Arc;

use axum::body::Body;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Request, StatusCode, header};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use support::inprocess::{Answer, TempFolder, TestStack};
use voronka_domain::model::SuppressionReason;
use voronka_domain::ports::{Clock, SeededIds, SimulatedClock};
use voronka_domain::repo::ContactRepository;
use voronka_domain::signing::{
    EVENTS_SIGNATURE_HEADER, KeyRing, RingKey, Secrets, TokenScope, UNSUBSCRIBE_TOKEN_PURPOSE, sign_body,
    sign_events_body,
};
use voronka_local::stack::{Stack, StackOptions};

const K2_TOKEN_KEY: &str = "second-token-key-second-token-key-2027";
const K2_EVENTS_KEY: &str = "second-events-key-second-events-key-2027";

fn ring(keys: &[(&str, &str)]) -> KeyRing {
    KeyRing::new(keys.iter().map(|(id, key)| RingKey { id: id.to_string(), key: key.to_string() }).collect(), "keys")
        .unwrap()
}

fn purchase(order: &str, occurred_at: Option<Timestamp>) -> Value {
    let mut event = json!({"event_id": format!("{order}:purchase"), "type": "purchase", "email": "buyer@example.com",
        "properties": {"order_id": order, "revenue": 1990, "currency": "RUB"}});
    if let Some(at) = occurred_at {
        event["occurred_at"] = json!(at.to_string());
    }
    event
}

fn batch(events: Vec<Value>) -> String {
    json!({ "events": events }).to_string()
}

async fn post_signed(t: &TestStack, body: &str, signature: &str) -> Answer {
    let request = Request::post("/v1/events")
        .header(header::CONTENT_TYPE, "application/json")
        .header(EVENTS_SIGNATURE_HEADER, signature)
        .body(Body::from(body.to_string()))
        .unwrap();
    t.send_from(request, "203.0.113.10").await
}

fn assert_accepted(answer: &Answer, accepted: u64) {
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text);
    assert_eq!(answer.json()["accepted"], accepted, "{}", answer.text);
}

fn assert_refused(answer: &Answer, reason: &str, mentions: &str) {
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.text);
    assert_eq!(answer.error_code(), "invalid_signature", "{}", answer.text);
    let field = &answer.json()["error"]["fields"][0];
    assert_eq!(
        (field["field"].as_str(), field["code"].as_str()),
        (Some(EVENTS_SIGNATURE_HEADER), Some(reason)),
        "{}",
        answer.text
    );
    let message = answer.json()["error"]["message"].as_str().unwrap_or_default().to_string();
    assert!(message.contains(EVENTS_SIGNATURE_HEADER), "the error names the header: {message}");
    assert!(message.contains(mentions), "expected `{mentions}` in: {message}");
}

/// The secrets with the events ring replaced (tokens unchanged), or the token ring replaced.
fn with_events_ring(t: &TestStack, events: KeyRing) -> Secrets {
    Secrets { token_keys: t.stack.state.secrets.token_keys.clone(), events_keys: events }
}

fn with_token_ring(t: &TestStack, tokens: KeyRing) -> Secrets {
    Secrets { token_keys: tokens, events_keys: t.stack.state.secrets.events_keys.clone() }
}

#[tokio::test]
async fn rotating_the_events_key_keeps_the_old_key_working_until_it_is_dropped() {
    let mut t = TestStack::new();
    let old_key = t.stack.state.secrets.events_key().to_string();
    let before = ring(&[("k1", &old_key)]);
    let body = batch(vec![purchase("order-1", None)]);
    assert_accepted(&post_signed(&t, &body, &sign_events_body(&before, t.clock.now(), body.as_bytes())).await, 1);

    t.restart_with_secrets(with_events_ring(&t, ring(&[("k2", K2_EVENTS_KEY), ("k1", &old_key)])));
    let body = batch(vec![purchase("order-2", None)]);
    let old_sender = sign_events_body(&before, t.clock.now(), body.as_bytes());
    assert_accepted(&post_signed(&t, &body, &old_sender).await, 1);
    let body = batch(vec![purchase("order-3", None)]);
    let new_sender = t.shop_signature(body.as_bytes());
    assert!(new_sender.contains(",kid=k2,"), "new signatures use the first key: {new_sender}");
    assert_accepted(&post_signed(&t, &body, &new_sender).await, 1);
    let body = batch(vec![purchase("order-4", None)]);
    assert_accepted(&post_signed(&t, &body, &sign_body(&old_key, body.as_bytes())).await, 1);

    t.restart_with_secrets(with_events_ring(&t, ring(&[("k2", K2_EVENTS_KEY)])));
    let body = batch(vec![purchase("order-5", None)]);
    let refused = post_signed(&t, &body, &sign_events_body(&before, t.clock.now(), body.as_bytes())).await;
    assert_refused(&refused, "unknown_key", "k1");
    assert_refused(
        &post_signed(&t, &body, &sign_body(&old_key, body.as_bytes())).await,
        "bad_signature",
        "does not match",
    );
    assert_accepted(&post_signed(&t, &body, &t.shop_signature(body.as_bytes())).await, 1);
    assert_eq!(t.drain_events().await.len(), 5, "only accepted batches reached the queue");
}

#[tokio::test]
async fn replayed_future_dated_tampered_or_mislabelled_signatures_are_refused() {
    let t = TestStack::new();
    let keys = t.stack.state.secrets.events_keys.clone();
    let now = t.clock.now();
    let body = batch(vec![purchase("order-1", None)]);

    let captured = sign_events_body(&keys, now, body.as_bytes());
    t.advance(301);
    assert_refused(&post_signed(&t, &body, &captured).await, "stale", "seconds ago");
    let future = sign_events_body(&keys, t.clock.now() + SignedDuration::from_secs(301), body.as_bytes());
    assert_refused(&post_signed(&t, &body, &future).await, "stale", "in the future");
    let tampered = body.replace("1990", "1");
    assert_refused(
        &post_signed(&t, &tampered, &t.shop_signature(body.as_bytes())).await,
        "bad_signature",
        "does not match",
    );
    let mislabelled = t.shop_signature(body.as_bytes()).replace("kid=k1", "kid=k9");
    assert_refused(&post_signed(&t, &body, &mislabelled).await, "unknown_key", "k9");
    for malformed in ["t=now,v1=00", "v1=abc", "t=1800000000", "sha256=not-hex", "t=1800000000,v1=00,x=1"] {
        assert_refused(&post_signed(&t, &body, malformed).await, "malformed", "malformed");
    }
    assert!(t.drain_events().await.is_empty(), "nothing refused reached the queue");

    // Within the tolerance a slow or skewed sender is fine.
    let skewed = sign_events_body(&keys, t.clock.now() - SignedDuration::from_secs(299), body.as_bytes());
    assert_accepted(&post_signed(&t, &body, &skewed).await, 1);
}

#[tokio::test]
async fn legacy_signed_events_are_accepted_only_within_the_receipts_lifetime() {
    let t = TestStack::new();
    let key = t.stack.state.secrets.events_key().to_string();
    let now = t.clock.now();
    let recent = purchase("order-recent", Some(now - SignedDuration::from_hours(24 * 10)));
    let old = purchase("order-old", Some(now - SignedDuration::from_hours(24 * 31)));
    let body = batch(vec![old.clone(), recent]);
    let answer = post_signed(&t, &body, &sign_body(&key, body.as_bytes())).await;
    assert_accepted(&answer, 1);
    let results = answer.json()["results"].clone();
    assert_eq!(results[0]["status"], "rejected", "{results}");
    assert_eq!(results[0]["code"], "legacy_signature_too_old");
    assert_eq!(results[0]["field"], "events[0].occurred_at");
    assert_eq!(results[1]["status"], "accepted");

    // The same old event with a timestamped signature is history being imported: accepted.
    let body = batch(vec![old]);
    assert_accepted(&post_signed(&t, &body, &t.shop_signature(body.as_bytes())).await, 1);

    // A captured legacy batch replayed: caught by its receipts while they last, then too old.
    let body = batch(vec![purchase("order-captured", Some(now))]);
    let captured = sign_body(&key, body.as_bytes());
    assert_accepted(&post_signed(&t, &body, &captured).await, 1);
    assert_eq!(post_signed(&t, &body, &captured).await.json()["duplicates"], 1);
    t.advance(31 * 24 * 3600);
    let replay = post_signed(&t, &body, &captured).await;
    assert_eq!(replay.status, StatusCode::ACCEPTED, "{}", replay.text);
    assert_eq!((replay.json()["accepted"].as_u64(), replay.json()["rejected"].as_u64()), (Some(0), Some(1)));
    assert_eq!(replay.json()["results"][0]["code"], "legacy_signature_too_old");
    assert_eq!(t.drain_events().await.len(), 3);
}

#[tokio::test]
async fn a_legacy_batch_without_times_replayed_after_a_year_is_a_duplicate() {
    let t = TestStack::new();
    let key = t.stack.state.secrets.events_key().to_string();
    // No occurred_at: the event counts as now whenever the batch arrives, so no age check can
    // catch its replay; the receipt of a legacy event is kept for good instead.
    let body = batch(vec![purchase("order-timeless", None)]);
    let captured = sign_body(&key, body.as_bytes());
    assert_accepted(&post_signed(&t, &body, &captured).await, 1);
    t.advance(365 * 24 * 3600);
    let replay = post_signed(&t, &body, &captured).await;
    assert_eq!(replay.status, StatusCode::ACCEPTED, "{}", replay.text);
    assert_eq!(replay.json()["results"][0]["status"], "duplicate", "{}", replay.text);
    assert_eq!(t.drain_events().await.len(), 1, "the replay queued nothing");

    // A timed signature's receipts still expire: they need not outlive the signature's window.
    let body = batch(vec![purchase("order-timed", None)]);
    assert_accepted(&post_signed(&t, &body, &t.shop_signature(body.as_bytes())).await, 1);
    t.advance(31 * 24 * 3600);
    assert_accepted(&post_signed(&t, &body, &t.shop_signature(body.as_bytes())).await, 1);
}

#[tokio::test]
async fn an_operator_can_turn_the_legacy_format_off() {
    let settings = voronka_campaigns::bundled_files().into_iter().find(|f| f.path == "settings.toml").unwrap().text;
    let strict = settings.replace("accept_legacy_signatures = true", "accept_legacy_signatures = false");
    assert_ne!(settings, strict);
    let (t, _campaigns) = TestStack::with_extra_campaign_files(&[("settings.toml", strict.as_str())]);
    let body = batch(vec![purchase("order-1", None)]);
    let legacy = sign_body(t.stack.state.secrets.events_key(), body.as_bytes());
    assert_refused(&post_signed(&t, &body, &legacy).await, "legacy_refused", "legacy");
    assert_accepted(&post_signed(&t, &body, &t.shop_signature(body.as_bytes())).await, 1);
}

async fn confirm_link(t: &TestStack) -> String {
    let sends = t.drain_sends().await;
    let confirmation = sends.iter().find(|s| s.template == "optin_confirmation").expect("a confirmation email");
    path_of(confirmation.context["confirm_url"].as_str().unwrap())
}

fn path_of(url: &str) -> String {
    url.strip_prefix("https://api.voronka.test").unwrap().to_string()
}

async fn post(t: &TestStack, path: &str) -> Answer {
    t.send(Request::post(path).body(Body::empty()).unwrap()).await
}

async fn is_unsubscribed(t: &TestStack, contact_id: &str) -> bool {
    let contact = ContactRepository::new(t.stack.state.store.as_ref()).get(contact_id).await.unwrap().unwrap();
    contact.suppressions.contains_key(&SuppressionReason::Unsubscribed)
}

fn unsubscribe_path(t: &TestStack, contact_id: &str) -> String {
    path_of(&sender::unsubscribe_url(&t.stack.sender, contact_id, t.clock.now()))
}

fn token_claims(path: &str) -> Value {
    let token = path.split_once("token=").unwrap().1;
    let payload = token.split_once('.').unwrap().0;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// An unsubscribe token as Voronka made them before key ids: the payload names no key.
fn pre_key_id_unsubscribe_path(key: &str, contact_id: &str, now: Timestamp) -> String {
    let expires = (now + SignedDuration::from_hours(24 * 30)).as_second();
    let payload = URL_SAFE_NO_PAD
        .encode(format!(r#"{{"p":"unsubscribe","s":"{contact_id}","i":{},"x":{expires}}}"#, now.as_second()));
    // `sign_body` is HMAC-SHA256 in hex: the token's signature is the same bytes in base64url.
    let hex = sign_body(key, payload.as_bytes()).strip_prefix("sha256=").unwrap().to_string();
    let bytes: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
    format!("/v1/unsubscribe?token={payload}.{}", URL_SAFE_NO_PAD.encode(bytes))
}

#[tokio::test]
async fn rotating_the_token_key_breaks_no_link_already_sent_until_the_old_key_is_dropped() {
    let mut t = TestStack::new();
    let old_key = t.stack.state.secrets.token_key().to_string();
    t.submit_json("newsletter", json!({"email": "confirm-me@example.com", "consent": true})).await;
    let confirm_link = confirm_link(&t).await;
    assert_eq!(token_claims(&confirm_link)["k"], "k1");
    assert_eq!(token_claims(&confirm_link)["f"], "newsletter", "a confirm token names its form");
    let [b, c, d, e] = [
        t.consented_contact("b@example.com", json!({})).await,
        t.consented_contact("c@example.com", json!({})).await,
        t.consented_contact("d@example.com", json!({})).await,
        t.consented_contact("e@example.com", json!({})).await,
    ];
    let b_link = unsubscribe_path(&t, &b);
    assert_eq!(
        (token_claims(&b_link)["k"].as_str(), token_claims(&b_link)["l"].as_str()),
        (Some("k1"), Some("marketing"))
    );
    let c_pre_key_ids = pre_key_id_unsubscribe_path(&old_key, &c, t.clock.now());
    let d_link = unsubscribe_path(&t, &d);

    t.restart_with_secrets(with_token_ring(&t, ring(&[("k2", K2_TOKEN_KEY), ("k1", &old_key)])));
    let confirmed = post(&t, &confirm_link).await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.text);
    assert!(confirmed.text.contains("Subscription confirmed"), "{}", confirmed.text);
    for (contact, link) in [(&b, &b_link), (&c, &c_pre_key_ids)] {
        let answer = post(&t, link).await;
        assert_eq!(answer.status, StatusCode::OK, "{link}: {}", answer.text);
        assert!(is_unsubscribed(&t, contact).await);
    }
    let e_link = unsubscribe_path(&t, &e);
    assert_eq!(token_claims(&e_link)["k"], "k2", "new links are signed with the first key");
    assert_eq!(post(&t, &e_link).await.status, StatusCode::OK);
    assert!(is_unsubscribed(&t, &e).await);

    t.restart_with_secrets(with_token_ring(&t, ring(&[("k2", K2_TOKEN_KEY)])));
    let refused = post(&t, &d_link).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.text);
    assert!(!is_unsubscribed(&t, &d).await, "a link signed with a dropped key does nothing");
    assert_eq!(post(&t, &unsubscribe_path(&t, &d)).await.status, StatusCode::OK);
    assert!(is_unsubscribed(&t, &d).await);
}

#[tokio::test]
async fn a_token_acts_only_on_its_contact_and_only_for_its_purpose_and_list() {
    let t = TestStack::new();
    let a = t.consented_contact("a@example.com", json!({})).await;
    let b = t.consented_contact("b@example.com", json!({})).await;
    t.submit_json("newsletter", json!({"email": "pending@example.com", "consent": true})).await;
    let confirm_link = confirm_link(&t).await;
    let confirm_token = confirm_link.split_once("token=").unwrap().1;

    let as_unsubscribe = post(&t, &format!("/v1/unsubscribe?token={confirm_token}")).await;
    assert_eq!(as_unsubscribe.status, StatusCode::BAD_REQUEST, "a confirm token never unsubscribes");

    let now = t.clock.now();
    let other_list = t.stack.state.secrets.token_signer().sign_scoped(
        UNSUBSCRIBE_TOKEN_PURPOSE,
        &a,
        &TokenScope { list: Some("transactional".into()), form: None },
        now,
        now + SignedDuration::from_hours(24),
    );
    let answer = post(&t, &format!("/v1/unsubscribe?token={other_list}")).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "only the marketing list can be left by link");
    assert!(!is_unsubscribed(&t, &a).await);

    assert_eq!(post(&t, &unsubscribe_path(&t, &a)).await.status, StatusCode::OK);
    assert!(is_unsubscribed(&t, &a).await);
    assert!(!is_unsubscribed(&t, &b).await, "A's link does nothing to B");
}

#[tokio::test]
async fn the_local_secrets_file_may_hold_key_rings() {
    let dir = TempFolder::new("secret-rings");
    let old = "old-events-key-old-events-key-old-events";
    let text = json!({
        "token_keys": [{"id": "k2", "key": K2_TOKEN_KEY}, {"id": "k1", "key": "old-token-key-old-token-key-old-token"}],
        "events_keys": [{"id": "k2", "key": K2_EVENTS_KEY}, {"id": "k1", "key": old}],
    });
    std::fs::write(dir.path().join("secrets.json"), text.to_string()).unwrap();
    let open = || {
        Stack::open(StackOptions {
            data_dir: Some(dir.path().to_path_buf()),
            metering: None,
            campaigns_dir: None,
            public_base_url: None,
            clock: Arc::new(SimulatedClock::starting_at(Timestamp::from_second(1_800_000_000).unwrap())),
            ids: Arc::new(SeededIds::new(7)),
            faults: None,
        })
    };
    let stack = open().unwrap();
    assert_eq!(stack.state.secrets.events_keys.signing().id, "k2");
    assert_eq!(stack.state.secrets.token_key(), K2_TOKEN_KEY);
    assert!(stack.state.secrets.events_keys.get("k1").is_some_and(|k| k.key == old));
    drop(stack);

    let duplicate = json!({"token_key": K2_TOKEN_KEY, "events_keys": [{"id": "k1", "key": K2_EVENTS_KEY}, {"id": "k1", "key": old}]});
    std::fs::write(dir.path().join("secrets.json"), duplicate.to_string()).unwrap();
    let error = format!("{:#}", open().err().expect("duplicate ids are refused"));
    assert!(error.contains("secrets.json") && error.contains("`events_keys[1].id` repeats"), "{error}");
    assert!(!error.contains(K2_EVENTS_KEY) && !error.contains(old), "no key in the error: {error}");

    // A key where a ring was expected: serde would quote the value; the error must not.
    let mistyped = json!({"token_key": K2_TOKEN_KEY, "events_keys": [K2_EVENTS_KEY]});
    std::fs::write(dir.path().join("secrets.json"), mistyped.to_string()).unwrap();
    let error = format!("{:#}", open().err().expect("a list of bare keys is refused"));
    assert!(error.contains("secrets.json") && error.contains("invalid type"), "{error}");
    assert!(!error.contains(K2_EVENTS_KEY), "no key in the error: {error}");
}
