//! lead-capture's handlers in process, on embedded storage with a simulated clock: every status
//! the API promises, deduplication, anti-spam, consent and double opt-in, events, CORS, and logs.

mod support;

use axum::body::Body;
use http::{Request, StatusCode, header};
use serde_json::{Value, json};
use support::inprocess::TestStack;
use tower::ServiceExt;
use voronka_domain::model::{DoubleOptIn, EmailAddress};
use voronka_domain::repo::ContactRepository;
use voronka_domain::signing::{EVENTS_SIGNATURE_HEADER, sign_body};

fn newsletter(email: &str) -> Value {
    json!({"email": email, "first_name": "Anna", "consent": true})
}

async fn contact_count(stack: &TestStack) -> usize {
    ContactRepository::new(stack.stack.state.store.as_ref()).list_all().await.unwrap().len()
}

#[tokio::test]
async fn a_json_submission_creates_a_contact_and_other_spellings_update_it() {
    let t = TestStack::new();
    let first = t.submit_json("newsletter", newsletter("Anna.Petrova@Example.com")).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    let body = first.json();
    assert_eq!(body["status"], "created");
    assert_eq!(body["double_opt_in"], "pending");
    let id = body["contact_id"].as_str().unwrap().to_string();

    let again = t.submit_json("newsletter", newsletter("  ANNA.PETROVA@EXAMPLE.COM  ")).await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.json()["contact_id"], id.as_str(), "the same person is the same contact");
    assert_eq!(again.json()["status"], "updated");
    assert_eq!(contact_count(&t).await, 1);

    let contact = ContactRepository::new(t.stack.state.store.as_ref()).get(&id).await.unwrap().unwrap();
    assert_eq!(
        contact.email.unwrap().as_typed(),
        "ANNA.PETROVA@EXAMPLE.COM",
        "the address as last typed is kept for sending"
    );
    assert_eq!(contact.form_submissions["newsletter"], 2);
}

#[tokio::test]
async fn a_browser_posting_an_html_form_lands_on_a_thank_you_page_the_api_itself_serves() {
    let t = TestStack::new();
    let request = Request::post("/v1/forms/consultation/submissions")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ACCEPT, "text/html,application/xhtml+xml,*/*;q=0.8")
        .body(Body::from(
            "name=Ivan+Ivanov&email=ivan%40example.com&phone=%2B7+916+123-45-67&website=ivan.example&company_size=11-50&consent=on",
        ))
        .unwrap();
    let answer = t.send(request).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.text);
    let location = answer.headers[header::LOCATION].to_str().unwrap().to_string();
    assert_eq!(location, "https://api.voronka.test/v1/forms/consultation/thanks");
    // The function's own router, as on AWS: no page of the local stack helps here.
    let path = location.strip_prefix("https://api.voronka.test").unwrap();
    let thanks = lead_capture::router(t.stack.state.clone())
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(thanks.status(), StatusCode::OK);
    let page = axum::body::to_bytes(thanks.into_body(), usize::MAX).await.unwrap();
    assert!(String::from_utf8_lossy(&page).contains("Thank you"));
    let contact = ContactRepository::new(t.stack.state.store.as_ref())
        .find_by_email(&EmailAddress::parse("ivan@example.com").unwrap())
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(contact.phone.unwrap().as_str(), "+79161234567");
    assert_eq!(contact.first_name.as_deref(), Some("Ivan"));
    assert_eq!(contact.attributes["company_size"], "11-50");
    assert_eq!(contact.stage.as_str(), "lead");
}

#[tokio::test]
async fn bad_input_is_answered_with_its_status_and_the_fields_named() {
    let t = TestStack::new();

    let unknown = t.submit_json("no-such-form", newsletter("a@example.com")).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.error_code(), "form_not_found");

    let wrong_type = t
        .send(
            Request::post("/v1/forms/newsletter/submissions")
                .header(header::CONTENT_TYPE, "text/plain")
                .body(Body::from("email=a@example.com"))
                .unwrap(),
        )
        .await;
    assert_eq!(wrong_type.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(wrong_type.error_code(), "unsupported_media_type");

    let huge = json!({"email": "a@example.com", "consent": true, "first_name": "x".repeat(70_000)});
    let too_large = t.submit_json("newsletter", huge).await;
    assert_eq!(too_large.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(too_large.error_code(), "payload_too_large");

    let invalid = t
        .submit_json(
            "consultation",
            json!({"name": "", "email": "not an email", "phone": "12345", "website": "nope", "company_size": "huge"}),
        )
        .await;
    assert_eq!(invalid.status, StatusCode::BAD_REQUEST);
    assert_eq!(invalid.error_code(), "validation_failed");
    let mut fields = invalid.error_fields();
    fields.sort();
    assert_eq!(fields, ["company_size", "consent", "email", "name", "phone", "website"]);

    let malformed = t
        .send(
            Request::post("/v1/forms/newsletter/submissions")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{not json"))
                .unwrap(),
        )
        .await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_eq!(malformed.error_code(), "malformed_body");

    let hidden = t
        .submit_json(
            "newsletter",
            json!({"email": "b@example.com", "consent": true, "anonymous_id": "has spaces", "utm_source": ["a"]}),
        )
        .await;
    assert_eq!(hidden.status, StatusCode::BAD_REQUEST);
    let mut fields = hidden.error_fields();
    fields.sort();
    assert_eq!(fields, ["anonymous_id", "utm_source"]);

    let wrong_method = t.send(Request::get("/v1/forms/newsletter/submissions").body(Body::empty()).unwrap()).await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(contact_count(&t).await, 0, "nothing invalid was stored");
}

#[tokio::test]
async fn a_browser_gets_an_html_page_naming_the_fields_it_got_wrong() {
    let t = TestStack::new();
    let answer = t
        .send(
            Request::post("/v1/forms/newsletter/submissions")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::ACCEPT, "text/html")
                .body(Body::from("email=%3Cscript%3E&first_name=Anna"))
                .unwrap(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.text.contains("<strong>Email</strong>"), "{}", answer.text);
    assert!(!answer.text.contains("<script>"), "input is never echoed unescaped");
}

#[tokio::test]
async fn too_many_requests_from_one_address_are_limited() {
    let t = TestStack::new();
    let limit = t.stack.state.campaigns.settings.limits.per_ip_per_minute as usize;
    for i in 0..limit {
        let answer = t.submit_json("newsletter", newsletter(&format!("p{i}@example.com"))).await;
        assert_eq!(answer.status, StatusCode::CREATED, "request {i}: {}", answer.text);
    }
    let limited = t.submit_json("newsletter", newsletter("over@example.com")).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.error_code(), "rate_limited");
    assert!(limited.headers.contains_key(header::RETRY_AFTER));
    let other_address = t
        .send_from(
            Request::post("/v1/forms/newsletter/submissions")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(newsletter("other@example.com").to_string()))
                .unwrap(),
            "192.0.2.99",
        )
        .await;
    assert_eq!(other_address.status, StatusCode::CREATED, "the limit is per client address");
    t.advance(60);
    assert_eq!(t.submit_json("newsletter", newsletter("later@example.com")).await.status, StatusCode::CREATED);
}

#[tokio::test]
async fn bots_get_a_success_and_nothing_is_stored() {
    let t = TestStack::new();
    let honeypot =
        t.submit_json("newsletter", json!({"email": "bot1@example.com", "consent": true, "fax": "123"})).await;
    assert_eq!(honeypot.status, StatusCode::CREATED);
    assert_eq!(honeypot.json()["status"], "created", "a bot cannot tell it was caught");

    let token = t.send(Request::get("/v1/forms/newsletter").body(Body::empty()).unwrap()).await.json()["render_token"]
        .as_str()
        .unwrap()
        .to_string();
    t.advance(1);
    let fast = t.submit_json("newsletter", json!({"email": "bot2@example.com", "consent": true, "_rt": token})).await;
    assert_eq!(fast.status, StatusCode::CREATED);
    let forged =
        t.submit_json("newsletter", json!({"email": "bot3@example.com", "consent": true, "_rt": "abc.def"})).await;
    assert_eq!(forged.status, StatusCode::CREATED);
    assert_eq!(contact_count(&t).await, 0, "no bot was stored");
    assert!(t.drain_sends().await.is_empty(), "and no bot was sent a confirmation");

    t.advance(10);
    let person =
        t.submit_json("newsletter", json!({"email": "person@example.com", "consent": true, "_rt": token})).await;
    assert_eq!(person.status, StatusCode::CREATED);
    assert_eq!(contact_count(&t).await, 1, "a person taking their time is stored");
}

#[tokio::test]
async fn double_opt_in_sends_a_confirmation_and_the_link_confirms() {
    let t = TestStack::new();
    let answer = t.submit_json("newsletter", newsletter("dora@example.com")).await;
    let id = answer.json()["contact_id"].as_str().unwrap().to_string();
    let sends = t.drain_sends().await;
    assert_eq!(sends.len(), 1);
    let request = &sends[0];
    assert_eq!(request.template, "optin_confirmation");
    assert_eq!(request.contact_id, id);
    assert_eq!(serde_json::to_value(request.class).unwrap(), "transactional");
    let url = request.context["confirm_url"].as_str().unwrap();
    let path = url.strip_prefix("https://api.voronka.test").expect("links point at the public URL");

    let repo = ContactRepository::new(t.stack.state.store.as_ref());
    let contact = repo.get(&id).await.unwrap().unwrap();
    let consent = contact.email_consent().unwrap();
    assert_eq!(consent.double_opt_in, DoubleOptIn::Pending);
    assert!(!consent.allows_marketing(), "marketing waits for the confirmation");
    let receipt = &contact.consent_receipts[0];
    assert_eq!(receipt.text_version, "newsletter-2026-01");
    assert_eq!(receipt.ip.as_deref(), Some("192.0.2.10"));
    assert_eq!(receipt.form_id.as_deref(), Some("newsletter"));

    t.drain_events().await;
    let confirmed = t.send(Request::post(path).body(Body::empty()).unwrap()).await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.text);
    assert!(confirmed.text.contains("Subscription confirmed"));
    let contact = repo.get(&id).await.unwrap().unwrap();
    assert_eq!(contact.email_consent().unwrap().double_opt_in, DoubleOptIn::Confirmed);
    assert!(contact.email_consent().unwrap().allows_marketing());
    let events = t.drain_events().await;
    assert_eq!(events.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>(), ["optin_confirmed"]);

    let again = t.send(Request::post(path).body(Body::empty()).unwrap()).await;
    assert_eq!(again.status, StatusCode::OK, "following the link twice is fine");
    let resubmitted = t.submit_json("newsletter", newsletter("dora@example.com")).await;
    assert_eq!(resubmitted.json()["double_opt_in"], "confirmed");
    assert!(t.drain_sends().await.is_empty(), "a confirmed subscriber is not asked again");
}

#[tokio::test]
async fn a_link_scanner_following_the_confirmation_link_confirms_nobody() {
    let t = TestStack::new();
    let id = t.submit_json("newsletter", newsletter("scanned@example.com")).await.json()["contact_id"]
        .as_str()
        .unwrap()
        .to_string();
    let url = t.drain_sends().await[0].context["confirm_url"].as_str().unwrap().to_string();
    let path = url.strip_prefix("https://api.voronka.test").unwrap().to_string();
    t.drain_events().await;

    let scanned = t.send(Request::get(path.as_str()).body(Body::empty()).unwrap()).await;
    assert_eq!(scanned.status, StatusCode::OK, "{}", scanned.text);
    let token = path.split_once("token=").unwrap().1;
    assert!(
        scanned.text.contains(&format!("<form method=\"post\" action=\"/v1/confirm?token={token}\"")),
        "the page's button posts the token: {}",
        scanned.text
    );
    assert_eq!(scanned.headers[header::CACHE_CONTROL], "no-store");
    let repo = ContactRepository::new(t.stack.state.store.as_ref());
    let contact = repo.get(&id).await.unwrap().unwrap();
    assert_eq!(contact.email_consent().unwrap().double_opt_in, DoubleOptIn::Pending, "a GET confirms nothing");
    assert!(t.drain_events().await.is_empty());

    let clicked = t.send(Request::post(path.as_str()).body(Body::empty()).unwrap()).await;
    assert_eq!(clicked.status, StatusCode::OK, "{}", clicked.text);
    assert!(clicked.text.contains("Subscription confirmed"));
    assert_eq!(repo.get(&id).await.unwrap().unwrap().email_consent().unwrap().double_opt_in, DoubleOptIn::Confirmed);
}

#[tokio::test]
async fn a_confirmation_token_naming_another_receipt_confirms_nothing() {
    let t = TestStack::new();
    let id = t.submit_json("newsletter", newsletter("receipt@example.com")).await.json()["contact_id"]
        .as_str()
        .unwrap()
        .to_string();
    let now = voronka_domain::ports::Clock::now(t.clock.as_ref());
    let forged_subject = format!("{id}|cr_some-other-submission");
    let token = t.stack.state.secrets.token_signer().sign(
        lead_capture::CONFIRM_TOKEN_PURPOSE,
        &forged_subject,
        now,
        now + jiff::SignedDuration::from_hours(24),
    );
    let answer = t.send(Request::post(format!("/v1/confirm?token={token}")).body(Body::empty()).unwrap()).await;
    assert_eq!(answer.status, StatusCode::CONFLICT, "{}", answer.text);
    assert!(answer.text.contains("could not confirm"), "{}", answer.text);
    let contact = ContactRepository::new(t.stack.state.store.as_ref()).get(&id).await.unwrap().unwrap();
    assert_eq!(contact.email_consent().unwrap().double_opt_in, DoubleOptIn::Pending);
}

#[tokio::test]
async fn tampered_or_expired_confirmation_links_get_a_clear_page() {
    let t = TestStack::new();
    t.submit_json("newsletter", newsletter("eve@example.com")).await;
    let url = t.drain_sends().await[0].context["confirm_url"].as_str().unwrap().to_string();
    let path = url.strip_prefix("https://api.voronka.test").unwrap().to_string();
    let (base, token) = path.split_once("token=").unwrap();
    let (payload, signature) = token.split_once('.').unwrap();
    let mut forged_payload = payload.to_string();
    forged_payload.replace_range(0..1, if payload.starts_with('e') { "f" } else { "e" });

    for bad in
        [format!("{base}token={forged_payload}.{signature}"), format!("{base}token=garbage"), format!("{base}token=")]
    {
        let answer = t.send(Request::get(bad.as_str()).body(Body::empty()).unwrap()).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(answer.text.contains("could not confirm"), "a page, not a crash: {}", answer.text);
    }
    t.advance(8 * 24 * 3600);
    let expired = t.send(Request::get(path.as_str()).body(Body::empty()).unwrap()).await;
    assert_eq!(expired.status, StatusCode::GONE);
    assert!(expired.text.contains("expired"));
}

#[tokio::test]
async fn single_opt_in_forms_send_no_confirmation_and_emit_lead_events() {
    let t = TestStack::new();
    let answer = t
        .submit_json(
            "consultation",
            json!({"name": "Oleg", "email": "oleg@example.com", "phone": "+79990001122", "company_size": "1-10", "consent": "on"}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    assert_eq!(answer.json()["double_opt_in"], "not_required");
    assert!(t.drain_sends().await.is_empty());
    let events = t.drain_events().await;
    let types: Vec<_> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["form_submitted", "lead_created"]);
    assert!(
        events.iter().all(|e| e.trusted && e.contact.contact_id.as_deref() == answer.json()["contact_id"].as_str())
    );
    assert_eq!(events[0].properties["form_id"], "consultation");
}

#[tokio::test]
async fn first_touch_is_kept_and_last_touch_follows_the_latest_visit() {
    let t = TestStack::new();
    let mut first = newsletter("touch@example.com");
    first["utm_source"] = json!("google");
    first["utm_medium"] = json!("cpc");
    first["utm_campaign"] = json!("brand");
    first["gclid"] = json!("abc123");
    first["anonymous_id"] = json!("anon-1");
    first["time_zone"] = json!("Asia/Kolkata");
    first["locale"] = json!("en-GB");
    t.submit_json("newsletter", first).await;
    t.advance(3600);
    let mut second = newsletter("touch@example.com");
    second["utm_source"] = json!("vk");
    second["referrer"] = json!("https://vk.com/feed");
    second["anonymous_id"] = json!("anon-2");
    second["time_zone"] = json!("Not/AZone");
    t.submit_json("newsletter", second).await;

    let contact = ContactRepository::new(t.stack.state.store.as_ref())
        .find_by_email(&EmailAddress::parse("touch@example.com").unwrap())
        .await
        .unwrap()
        .unwrap();
    let first_touch = contact.first_touch.as_ref().unwrap();
    assert_eq!(first_touch.channel, "google");
    assert_eq!(first_touch.campaign.as_deref(), Some("brand"));
    assert_eq!(first_touch.click_ids["gclid"], "abc123");
    assert_eq!(contact.last_touch.as_ref().unwrap().channel, "vk");
    assert_eq!(contact.touches.len(), 2);
    assert_eq!(
        contact.anonymous_ids,
        ["anon-1"],
        "the creating form links its browser; a later one does not (anyone can type an address)"
    );
    assert_eq!(contact.locale, "en");
    assert_eq!(contact.time_zone, "Europe/Moscow", "an unknown zone falls back to the default");
    let by_anonymous =
        ContactRepository::new(t.stack.state.store.as_ref()).find_by_anonymous_id("anon-1").await.unwrap();
    assert_eq!(by_anonymous.map(|c| c.id), Some(contact.id));
}

#[tokio::test]
async fn a_retried_submission_is_applied_once() {
    let t = TestStack::new();
    let mut body = newsletter("retry@example.com");
    body["submission_id"] = json!("sub-0001");
    t.submit_json("newsletter", body.clone()).await;
    let again = t.submit_json("newsletter", body).await;
    assert_eq!(again.json()["submission_id"], "sub-0001");
    let contact = ContactRepository::new(t.stack.state.store.as_ref())
        .find_by_email(&EmailAddress::parse("retry@example.com").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(contact.form_submissions["newsletter"], 1);
    assert_eq!(contact.consent_receipts.len(), 1);
    let events = t.drain_events().await;
    let ids: std::collections::BTreeSet<_> = events.iter().map(|e| e.event_id.clone()).collect();
    assert_eq!(ids.len(), 2, "the retry re-sends the same event ids, which consumers drop: {ids:?}");
}

fn events_request(body: &Value, signature: Option<String>) -> Request<Body> {
    let mut request = Request::post("/v1/events").header(header::CONTENT_TYPE, "application/json");
    if let Some(signature) = signature {
        request = request.header(EVENTS_SIGNATURE_HEADER, signature);
    }
    request.body(Body::from(body.to_string())).unwrap()
}

#[tokio::test]
async fn events_are_checked_one_by_one_and_queued_once() {
    let t = TestStack::new();
    let batch = json!({"events": [
        {"event_id": "e1", "type": "page_view", "anonymous_id": "anon-9", "properties": {"url": "https://shop.example/"}},
        {"event_id": "e2", "type": "category_view", "anonymous_id": "anon-9", "properties": {"category": "shoes"}},
        {"event_id": "e3", "type": "purchase", "anonymous_id": "anon-9", "properties": {"order_id": "o1", "revenue": 100}},
        {"event_id": "e4", "type": "page_view"},
        {"event_id": "e1", "type": "page_view", "anonymous_id": "anon-9"},
        {"type": "page_view", "anonymous_id": "anon-9"},
        {"event_id": "e5", "type": "add_to_cart", "anonymous_id": "anon-9", "properties": {"price": 10}},
        {"event_id": "e6", "type": "page_view", "anonymous_id": "anon-9", "occurred_at": "2030-01-01T00:00:00Z"},
    ]});
    let answer = t.send(events_request(&batch, None)).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text);
    let results = answer.json()["results"].as_array().unwrap().clone();
    let summary: Vec<(String, String)> = results
        .iter()
        .map(|r| (r["status"].as_str().unwrap().to_string(), r["code"].as_str().unwrap_or("").to_string()))
        .collect();
    let expected = [
        ("accepted", ""),
        ("accepted", ""),
        ("rejected", "signature_required"),
        ("rejected", "required"),
        ("rejected", "duplicate_in_batch"),
        ("rejected", "required"),
        ("rejected", "required"),
        ("rejected", "occurred_at_in_future"),
    ];
    assert_eq!(summary, expected.map(|(a, b)| (a.to_string(), b.to_string())));
    assert_eq!(results[3]["field"], "events[3].contact_id");
    assert_eq!(results[6]["field"], "events[6].properties.sku");
    assert_eq!(t.drain_events().await.len(), 2);

    let replay = t.send(events_request(&batch, None)).await;
    assert_eq!(replay.json()["duplicates"], 2, "a retried batch queues nothing twice");
    assert!(t.drain_events().await.is_empty());
}

#[tokio::test]
async fn server_events_need_the_shop_back_ends_signature() {
    let t = TestStack::new();
    let batch = json!({"events": [
        {"event_id": "order-1:purchase", "type": "purchase", "email": "buyer@example.com",
         "occurred_at": "2027-01-01T10:00:00Z", "properties": {"order_id": "order-1", "revenue": 1990, "currency": "RUB"}},
        {"event_id": "webinar-1", "type": "webinar_attended", "contact_id": "c_123"},
    ]});
    let body = batch.to_string();
    let signature = sign_body(t.stack.state.secrets.events_key(), body.as_bytes());
    let answer = t.send(events_request(&batch, Some(signature.clone()))).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text);
    assert_eq!(answer.json()["accepted"], 2);
    let events = t.drain_events().await;
    assert!(events.iter().all(|e| e.trusted));
    assert_eq!(events[0].contact.email.as_deref(), Some("buyer@example.com"));

    let forged = t.send(events_request(&batch, Some("sha256=00ff".into()))).await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    assert_eq!(forged.error_code(), "invalid_signature");
    let tampered = json!({"events": [{"event_id": "order-2:purchase", "type": "purchase", "email": "x@example.com",
        "properties": {"order_id": "order-2", "revenue": 1}}]});
    let wrong_body = t.send(events_request(&tampered, Some(signature))).await;
    assert_eq!(wrong_body.status, StatusCode::UNAUTHORIZED, "a signature covers exactly its body");
}

#[tokio::test]
async fn event_batches_have_a_size_limit_and_a_shape() {
    let t = TestStack::new();
    let events: Vec<Value> =
        (0..101).map(|i| json!({"event_id": format!("e{i}"), "type": "page_view", "anonymous_id": "a"})).collect();
    let too_many = t.send(events_request(&json!({ "events": events }), None)).await;
    assert_eq!(too_many.status, StatusCode::BAD_REQUEST);
    assert_eq!(too_many.error_fields(), ["events"]);
    let no_events = t.send(events_request(&json!({"items": []}), None)).await;
    assert_eq!(no_events.status, StatusCode::BAD_REQUEST);
    assert_eq!(no_events.error_fields(), ["events"]);
    let form_encoded = t
        .send(
            Request::post("/v1/events")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from("a=b"))
                .unwrap(),
        )
        .await;
    assert_eq!(form_encoded.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn browsers_on_other_sites_are_refused_and_allowed_sites_get_cors_headers() {
    let t = TestStack::new();
    let post = |origin: &str| {
        Request::post("/v1/forms/newsletter/submissions")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ORIGIN, origin)
            .body(Body::from(newsletter("cors@example.com").to_string()))
            .unwrap()
    };
    let evil = t.send(post("https://evil.example")).await;
    assert_eq!(evil.status, StatusCode::FORBIDDEN);
    assert_eq!(evil.error_code(), "origin_not_allowed");
    assert_eq!(contact_count(&t).await, 0);

    let shop = t.send(post("https://shop.example")).await;
    assert_eq!(shop.status, StatusCode::CREATED);
    assert_eq!(shop.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://shop.example");
    let own = t.send(post("https://api.voronka.test")).await;
    assert_eq!(own.status, StatusCode::CREATED, "pages on the API's own host may post");

    let preflight = t
        .send(
            Request::options("/v1/forms/newsletter/submissions")
                .header(header::ORIGIN, "https://shop.example")
                .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(preflight.status, StatusCode::NO_CONTENT);
    assert_eq!(preflight.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://shop.example");
    let refused = t
        .send(
            Request::options("/v1/events").header(header::ORIGIN, "https://evil.example").body(Body::empty()).unwrap(),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
}
