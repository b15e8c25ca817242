//! The qualification bot over HTTP on the local stack (the router `voronka serve` runs, on the
//! embedded adapters with a simulated clock): conversations to each outcome with their effects on
//! the contact, the journeys and the outbox, and every way a client can get it wrong.

mod support;

use axum::body::Body;
use http::{Request, StatusCode, header};
use serde_json::{Value, json};
use support::inprocess::{Answer, TestStack};
use voronka_domain::model::{EmailAddress, EventType, LifecycleStage};
use voronka_domain::repo::ContactRepository;
use voronka_domain::repo::journey_state::load_all;
use voronka_local::outbox;

const SHOP: &str = "https://shop.example";

fn post(path: &str, body: &Value) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ORIGIN, SHOP)
        .body(Body::from(body.to_string()))
        .unwrap()
}

async fn start(t: &TestStack, script: &str, body: Value) -> (String, Value) {
    let answer = t.send(post(&format!("/v1/bot/{script}/sessions"), &body)).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    assert_eq!(answer.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], SHOP);
    let json = answer.json();
    (json["session_id"].as_str().unwrap().to_string(), json)
}

async fn say(t: &TestStack, session: &str, seq: u32, value: Value) -> Answer {
    t.send(post(&format!("/v1/bot/sessions/{session}/answers"), &json!({"seq": seq, "value": value}))).await
}

/// Answers in order from seq 1, each accepted; the last answer's body.
async fn converse(t: &TestStack, session: &str, values: &[&str]) -> Value {
    let mut last = Value::Null;
    for (i, value) in values.iter().enumerate() {
        let answer = say(t, session, i as u32 + 1, json!(value)).await;
        assert_eq!(answer.status, StatusCode::OK, "answer {}: {}", i + 1, answer.text);
        last = answer.json();
        assert_eq!(last["accepted"], true, "answer {} ({value}): {last}", i + 1);
    }
    last
}

const QUALIFIED_B2B: [&str; 6] = ["https://acme.example", "201+", "founder", "this_month", "buyer@acme.example", "yes"];

async fn contact_by_email(t: &TestStack, email: &str) -> Option<voronka_domain::model::Contact> {
    let repo = ContactRepository::new(t.stack.state.store.as_ref());
    repo.find_by_email(&EmailAddress::parse(email).unwrap()).await.unwrap()
}

fn mail_body(t: &TestStack, entry: &outbox::OutboxEntry) -> String {
    let raw = std::fs::read(t.stack.outbox.dir().join(&entry.file)).unwrap();
    let parsed = mail_parser::MessageParser::default().parse(&raw).unwrap();
    parsed.body_text(0).unwrap().into_owned()
}

fn mail_to(t: &TestStack, address: &str) -> Vec<outbox::OutboxEntry> {
    outbox::entries(t.stack.outbox.dir()).into_iter().filter(|m| m.to.contains(address)).collect()
}

#[tokio::test]
async fn a_qualified_b2b_conversation_ends_with_stage_sql_and_a_sales_email_with_the_transcript() {
    let t = TestStack::new();
    let (session, started) = start(&t, "b2b_demo", json!({"locale": "en", "utm_source": "google"})).await;
    assert!(session.starts_with("bs_") && session.len() == 35, "128 random bits: {session}");
    assert_eq!(started["seq"], 0);
    assert_eq!(started["message"]["node"], "website");
    assert_eq!(started["message"]["input"]["type"], "url");

    let end = converse(&t, &session, &QUALIFIED_B2B).await;
    assert_eq!(end["outcome"]["kind"], "qualified", "{end}");
    voronka_local::workers::drain(&t.stack).await.unwrap();

    let contact = contact_by_email(&t, "buyer@acme.example").await.expect("the chat captured a contact");
    assert_eq!(contact.stage, LifecycleStage::Sql);
    assert!(contact.tags.contains("bot_qualified"), "{:?}", contact.tags);
    assert_eq!(contact.attributes["company_size"], "201+");
    assert_eq!(contact.first_touch.as_ref().and_then(|touch| touch.source.as_deref()), Some("google"));
    let consent = contact.email_consent().expect("the chat's yes is a consent");
    assert!(!consent.allows_marketing(), "anyone can type an address: marketing waits for the owner's confirmation");
    assert!(!mail_to(&t, "buyer@acme.example").is_empty(), "the owner is asked to confirm");
    let receipt = contact.consent_receipts.iter().find(|r| r.submission_id.as_deref() == Some(session.as_str()));
    let receipt = receipt.expect("the receipt names the session as its submission");
    assert_eq!(receipt.form_id.as_deref(), Some("bot"));
    assert_eq!(receipt.ip.as_deref(), Some("192.0.2.10"), "the address that gave the consent");

    let sales = mail_to(&t, "sales@shop.example");
    assert_eq!(sales.len(), 1, "{:?}", outbox::entries(t.stack.outbox.dir()));
    let body = mail_body(&t, &sales[0]);
    for line in ["https://acme.example", "What is your role?", "Founder or executive", "buyer@acme.example", "75"] {
        assert!(body.contains(line), "the sales email has `{line}`:\n{body}");
    }
    assert!(mail_to(&t, "buyer@acme.example").iter().all(|m| !m.subject.contains(&sales[0].subject)));

    // The visitor's client retries the last answer: the same body, and nothing happens twice.
    let again = say(&t, &session, QUALIFIED_B2B.len() as u32, json!("yes")).await;
    assert_eq!(again.json(), end);
    voronka_local::workers::drain(&t.stack).await.unwrap();
    assert_eq!(mail_to(&t, "sales@shop.example").len(), 1, "one sales email per session");
}

/// The sum of each of a function's EMF values over the captured lines.
fn emf_totals(lines: &[String], function: &str) -> std::collections::BTreeMap<String, f64> {
    let mut totals = std::collections::BTreeMap::new();
    for line in lines {
        let line: Value = serde_json::from_str(line).unwrap();
        if line["Function"] != function {
            continue;
        }
        for metric in line["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array().unwrap() {
            let name = metric["Name"].as_str().unwrap();
            *totals.entry(name.to_string()).or_default() += line[name].as_f64().unwrap();
        }
    }
    totals
}

#[tokio::test]
async fn the_bot_counts_sessions_answers_and_captures_in_emf_lines_with_nothing_personal() {
    let t = TestStack::new();
    let capture = voronka_telemetry::metrics::capture();
    let (session, _) = start(&t, "b2b_demo", json!({"locale": "en"})).await;
    converse(&t, &session, &QUALIFIED_B2B).await;
    assert_ne!(say(&t, &session, 99, json!("late")).await.status, StatusCode::OK);
    let lines = capture.lines();
    drop(capture);
    let totals = emf_totals(&lines, "qualify-bot");
    let expected = [
        ("SessionsStarted", 1.0),
        ("AnswersTaken", QUALIFIED_B2B.len() as f64),
        ("AnswersRefused", 1.0),
        ("ContactsCaptured", 1.0),
    ];
    for (name, value) in expected {
        assert_eq!(totals.get(name), Some(&value), "{name}: {totals:?}");
    }
    assert!(lines.iter().all(|line| !line.contains("acme.example")), "{lines:?}");
}

#[tokio::test]
async fn every_outcome_queues_one_bot_completed_event_and_disqualified_tags_with_a_reason() {
    let t = TestStack::new();
    let (session, _) = start(&t, "b2b_demo", json!({"locale": "en"})).await;
    let values = ["https://uni.example", "1-10", "student", "just_looking", "student@uni.example", "no"];
    let end = converse(&t, &session, &values).await;
    assert_eq!(end["outcome"]["kind"], "disqualified", "{end}");
    let events = t.drain_events().await;
    let completed: Vec<_> = events.iter().filter(|e| e.event_type == EventType::BotCompleted).collect();
    assert_eq!(completed.len(), 1, "{events:?}");
    assert_eq!(completed[0].event_id, format!("bot:{session}:completed"));
    assert_eq!(completed[0].properties["script"], "b2b_demo");
    assert_eq!(completed[0].properties["outcome"], "disqualified");
    assert!(completed[0].properties["score"].is_i64());
    let contact = contact_by_email(&t, "student@uni.example").await.unwrap();
    assert!(contact.tags.contains("not_a_fit"));
    assert!(contact.attributes["disqualified_reason"].as_str().is_some_and(|r| r.contains("score")));
    assert_ne!(contact.stage, LifecycleStage::Sql);
    assert!(!contact.email_consent().is_some_and(|c| c.allows_marketing()), "a no is no consent");
    assert!(t.drain_sends().await.is_empty(), "no sales email for a disqualified lead");
}

#[tokio::test]
async fn the_course_picker_sends_a_beginner_into_the_beginner_journey_and_never_the_advanced_one() {
    let t = TestStack::new();
    let (session, started) = start(&t, "course_picker", json!({"locale": "ru"})).await;
    let choices: Vec<&str> = started["message"]["input"]["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["value"].as_str().unwrap())
        .collect();
    assert_eq!(choices, ["beginner", "advanced"]);
    let end = converse(&t, &session, &["beginner", "novice@school.example", "yes"]).await;
    assert_eq!(end["outcome"]["kind"], "nurture", "{end}");
    voronka_local::workers::drain(&t.stack).await.unwrap();
    t.run_for(60, 10).await;

    let contact = contact_by_email(&t, "novice@school.example").await.unwrap();
    let states = load_all(t.stack.state.store.as_ref(), &contact.id).await.unwrap();
    assert!(states.contains_key("course_beginner"), "enrolled in the beginners' course: {states:?}");
    assert!(!states.contains_key("course_advanced"), "never the advanced one: {states:?}");
    let advanced = outbox::entries(t.stack.outbox.dir()).into_iter().filter(|m| m.to.contains("novice")).count();
    assert!(advanced <= 1, "at most the beginners' offer");
}

#[tokio::test]
async fn a_bad_email_is_re_asked_and_the_seq_moves_on() {
    let t = TestStack::new();
    let (session, _) = start(&t, "b2b_demo", json!({"locale": "en"})).await;
    converse(&t, &session, &QUALIFIED_B2B[..4]).await;
    let bad = say(&t, &session, 5, json!("buyer at acme")).await;
    assert_eq!(bad.status, StatusCode::OK, "{}", bad.text);
    let bad = bad.json();
    assert_eq!(bad["accepted"], false);
    assert_eq!(bad["error"]["field"], "value");
    assert!(!bad["error"]["message"].as_str().unwrap().is_empty());
    assert_eq!(bad["message"]["node"], "email", "the same question again");
    let good = say(&t, &session, 6, json!("buyer@acme.example")).await.json();
    assert_eq!(good["accepted"], true, "{good}");
    assert_eq!(good["message"]["node"], "consent");
}

#[tokio::test]
async fn a_repeated_answer_returns_the_same_body_and_another_value_for_it_is_refused() {
    let t = TestStack::new();
    let (session, _) = start(&t, "b2b_demo", json!({})).await;
    let first = say(&t, &session, 1, json!("https://acme.example")).await;
    let again = say(&t, &session, 1, json!("https://acme.example")).await;
    assert_eq!((first.status, again.status), (StatusCode::OK, StatusCode::OK));
    assert_eq!(first.text, again.text, "byte for byte");
    let other = say(&t, &session, 1, json!("https://other.example")).await;
    assert_eq!(other.status, StatusCode::CONFLICT, "{}", other.text);
    assert_eq!(other.error_fields(), ["seq"]);
    // Long after, past the responses the session keeps, the same bytes still.
    for seq in 2..=12 {
        assert_eq!(say(&t, &session, seq, json!("a dozen")).await.json()["accepted"], false);
    }
    assert_eq!(say(&t, &session, 1, json!("https://acme.example")).await.text, first.text);
}

#[tokio::test]
async fn an_answer_out_of_order_is_a_409() {
    let t = TestStack::new();
    let (session, _) = start(&t, "b2b_demo", json!({})).await;
    let ahead = say(&t, &session, 3, json!("founder")).await;
    assert_eq!(ahead.status, StatusCode::CONFLICT, "{}", ahead.text);
    assert_eq!(ahead.error_code(), "out_of_order");
    assert_eq!(ahead.error_fields(), ["seq"]);
}

#[tokio::test]
async fn a_finished_session_takes_no_more_answers() {
    let t = TestStack::new();
    let (session, _) = start(&t, "b2b_demo", json!({})).await;
    converse(&t, &session, &QUALIFIED_B2B).await;
    let more = say(&t, &session, 7, json!("hello?")).await;
    assert_eq!(more.status, StatusCode::CONFLICT, "{}", more.text);
    assert_eq!(more.error_code(), "session_finished");
}

#[tokio::test]
async fn an_unknown_session_is_a_404_and_an_expired_one_a_410() {
    let t = TestStack::new();
    let guessed = format!("bs_{}", "ab".repeat(16));
    for id in [guessed.as_str(), "bs_short", "anything"] {
        let answer = say(&t, id, 1, json!("x")).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{id}: {}", answer.text);
        assert_eq!(answer.error_code(), "session_not_found");
    }
    let (session, started) = start(&t, "b2b_demo", json!({})).await;
    let expires_at: jiff::Timestamp = started["expires_at"].as_str().unwrap().parse().unwrap();
    let now = voronka_domain::ports::Clock::now(t.clock.as_ref());
    assert_eq!(expires_at.duration_since(now).as_hours(), 24);
    t.advance(24 * 3600 + 1);
    let late = say(&t, &session, 1, json!("https://acme.example")).await;
    assert_eq!(late.status, StatusCode::GONE, "{}", late.text);
    assert_eq!(late.error_code(), "session_expired");
}

#[tokio::test]
async fn a_session_resumes_after_a_restart_of_the_stack() {
    let t = TestStack::new();
    let (session, _) = start(&t, "b2b_demo", json!({})).await;
    converse(&t, &session, &QUALIFIED_B2B[..2]).await;
    // A second router on the same store: nothing of the conversation lives in the process.
    let fresh = voronka_local::serve::app(t.stack.state.clone(), t.stack.outbox.dir().to_path_buf());
    let restarted = TestStack { stack: t.stack, clock: t.clock, app: fresh };
    let next = say(&restarted, &session, 3, json!("founder")).await;
    assert_eq!(next.status, StatusCode::OK, "{}", next.text);
    assert_eq!(next.json()["message"]["node"], "timeline");
}

#[tokio::test]
async fn the_chat_email_dedupes_with_an_existing_contact_through_the_form_path() {
    let t = TestStack::new();
    let existing = t.consented_contact("known@acme.example", json!({})).await;
    let (session, _) = start(&t, "b2b_demo", json!({"anonymous_id": "anon-known", "utm_source": "newsletter"})).await;
    let mut values = QUALIFIED_B2B;
    values[4] = "Known@Acme.Example";
    converse(&t, &session, &values).await;
    voronka_local::workers::drain(&t.stack).await.unwrap();
    let contact = contact_by_email(&t, "known@acme.example").await.unwrap();
    assert_eq!(contact.id, existing, "one person, one contact");
    assert!(contact.form_submissions.contains_key("bot"), "{:?}", contact.form_submissions);
    assert!(contact.consent_receipts.iter().any(|r| r.submission_id.as_deref() == Some(session.as_str())));
    assert_eq!(contact.stage, LifecycleStage::Sql);
    // As with a form: a browser id joins only a contact the chat creates, never an existing
    // person whose address anyone can type.
    assert!(!contact.anonymous_ids.contains(&"anon-known".to_string()));
}

#[tokio::test]
async fn a_new_visitors_earlier_anonymous_behaviour_joins_the_contact_the_chat_creates() {
    let t = TestStack::new();
    t.post_events(
        vec![json!({"event_id": "anon-new:pv:1", "type": "page_view", "anonymous_id": "anon-new",
            "properties": {"url": "https://shop.example/pricing", "page_type": "pricing"}})],
        false,
    )
    .await;
    let (session, _) =
        start(&t, "b2b_demo", json!({"anonymous_id": "anon-new", "page": "https://shop.example/pricing"})).await;
    let mut values = QUALIFIED_B2B;
    values[4] = "new@acme.example";
    converse(&t, &session, &values).await;
    voronka_local::workers::drain(&t.stack).await.unwrap();
    let contact = contact_by_email(&t, "new@acme.example").await.unwrap();
    assert!(contact.anonymous_ids.contains(&"anon-new".to_string()), "{:?}", contact.anonymous_ids);
    let repo = ContactRepository::new(t.stack.state.store.as_ref());
    assert_eq!(repo.find_by_anonymous_id("anon-new").await.unwrap().map(|c| c.id), Some(contact.id.clone()));
    assert_eq!(
        contact.first_touch.as_ref().and_then(|touch| touch.landing_page.as_deref()),
        Some("https://shop.example/pricing")
    );
}

#[tokio::test]
async fn one_sessions_answers_never_reach_another() {
    let t = TestStack::new();
    let (a, _) = start(&t, "b2b_demo", json!({})).await;
    let (b, _) = start(&t, "b2b_demo", json!({})).await;
    assert_ne!(a, b);
    converse(&t, &a, &QUALIFIED_B2B[..3]).await;
    // B has answered nothing: A's seqs mean nothing to it.
    let b_answer = say(&t, &b, 3, json!("founder")).await;
    assert_eq!(b_answer.status, StatusCode::CONFLICT, "{}", b_answer.text);
    let b_first = say(&t, &b, 1, json!("https://b.example")).await.json();
    assert_eq!(b_first["message"]["node"], "size", "B is at its own second question: {b_first}");
    let sessions = voronka_domain::repo::BotSessions::new(t.stack.state.store.as_ref());
    let stored: voronka_domain::repo::StoredBotSession<voronka_domain::bots::BotSession> =
        sessions.load(&b).await.unwrap().unwrap();
    let answers: Vec<_> = stored.session.answers.iter().map(|a| a.value.as_str()).collect();
    assert_eq!(answers, ["https://b.example/"]);
}

#[tokio::test]
async fn hostile_values_get_a_400_naming_the_field() {
    let t = TestStack::new();
    let (session, _) = start(&t, "b2b_demo", json!({})).await;
    let long = format!("https://{}.example", "a".repeat(400));
    let cases = [
        (json!({"seq": 1, "value": long}), "value"),
        (json!({"seq": 1, "value": {"url": "https://acme.example"}}), "value"),
        (json!({"seq": 1, "value": ["https://acme.example"]}), "value"),
        (json!({"seq": "1", "value": "https://acme.example"}), "seq"),
        (json!({"seq": 0, "value": "https://acme.example"}), "seq"),
        (json!({"seq": 1}), "value"),
        (json!({"seq": 1, "value": "https://acme.example", "session_id": "bs_other"}), "session_id"),
    ];
    for (body, field) in cases {
        let answer = t.send(post(&format!("/v1/bot/sessions/{session}/answers"), &body)).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}: {}", answer.text);
        assert_eq!(answer.error_fields(), [field], "{body}");
    }
    // None of that used a seq: the first real answer is still answer 1.
    assert_eq!(say(&t, &session, 1, json!("https://acme.example")).await.status, StatusCode::OK);

    let start_cases = [
        (json!({"utm_source": 7}), "utm_source"),
        (json!({"page": "x".repeat(2001)}), "page"),
        (json!({"anonymous_id": "has spaces"}), "anonymous_id"),
        (json!({"email": "someone@example.com"}), "email"),
    ];
    for (body, field) in start_cases {
        let answer = t.send(post("/v1/bot/b2b_demo/sessions", &body)).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}: {}", answer.text);
        assert_eq!(answer.error_fields(), [field], "{body}");
    }

    let huge = json!({"seq": 2, "value": "x".repeat(20_000)});
    let answer = t.send(post(&format!("/v1/bot/sessions/{session}/answers"), &huge)).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    let form = Request::post(format!("/v1/bot/sessions/{session}/answers"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("seq=2&value=11-50"))
        .unwrap();
    assert_eq!(t.send(form).await.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let unknown = t.send(post("/v1/bot/no_such_bot/sessions", &json!({}))).await;
    assert_eq!((unknown.status, unknown.error_code()), (StatusCode::NOT_FOUND, "script_not_found".to_string()));
}

#[tokio::test]
async fn pages_the_scripts_form_does_not_allow_are_refused() {
    let t = TestStack::new();
    let foreign = Request::post("/v1/bot/b2b_demo/sessions")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ORIGIN, "https://evil.example")
        .body(Body::from("{}"))
        .unwrap();
    assert_eq!(t.send(foreign).await.status, StatusCode::FORBIDDEN);
    let own = Request::post("/v1/bot/b2b_demo/sessions")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ORIGIN, "https://api.voronka.test")
        .body(Body::from("{}"))
        .unwrap();
    assert_eq!(t.send(own).await.status, StatusCode::CREATED, "the API's own pages (the demo) may");
    let (session, _) = start(&t, "b2b_demo", json!({})).await;
    for (path, origin, status) in [
        ("/v1/bot/b2b_demo/sessions".to_string(), SHOP, StatusCode::NO_CONTENT),
        ("/v1/bot/b2b_demo/sessions".to_string(), "https://evil.example", StatusCode::FORBIDDEN),
        (format!("/v1/bot/sessions/{session}/answers"), SHOP, StatusCode::NO_CONTENT),
        (format!("/v1/bot/sessions/{session}/answers"), "https://evil.example", StatusCode::FORBIDDEN),
    ] {
        let preflight = Request::options(&path)
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .body(Body::empty())
            .unwrap();
        let answer = t.send(preflight).await;
        assert_eq!(answer.status, status, "{path} from {origin}");
        if status == StatusCode::NO_CONTENT {
            assert_eq!(answer.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], origin);
        }
    }
}

#[tokio::test]
async fn one_session_and_one_address_are_rate_limited() {
    let t = TestStack::new();
    let (session, _) = start(&t, "b2b_demo", json!({})).await;
    let mut limited = None;
    for seq in 1..=30 {
        let answer = say(&t, &session, seq, json!("not a url")).await;
        if answer.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(seq);
            break;
        }
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    }
    assert_eq!(limited, Some(21), "20 answers a minute per session");
    t.advance(61);
    assert_eq!(say(&t, &session, 21, json!("not a url")).await.status, StatusCode::OK, "the next minute is free");

    let mut starts = 0;
    loop {
        let answer = t.send_from(post("/v1/bot/b2b_demo/sessions", &json!({})), "198.51.100.9").await;
        if answer.status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(answer.error_code(), "rate_limited");
            break;
        }
        assert_eq!(answer.status, StatusCode::CREATED);
        starts += 1;
        assert!(starts <= 30, "one address is limited within 31 starts a minute");
    }
}

#[tokio::test]
async fn a_session_written_since_it_was_read_is_not_overwritten() {
    use voronka_domain::bots::BotSession;
    use voronka_domain::repo::{BotSessions, SessionWriteError, StoredBotSession};
    let t = TestStack::new();
    let (session, _) = start(&t, "b2b_demo", json!({})).await;
    let sessions = BotSessions::new(t.stack.state.store.as_ref());
    let mut first: StoredBotSession<BotSession> = sessions.load(&session).await.unwrap().unwrap();
    let mut second: StoredBotSession<BotSession> = sessions.load(&session).await.unwrap().unwrap();
    first.remember_response(1, "first".into());
    sessions.save(&mut first).await.unwrap();
    second.remember_response(1, "second".into());
    assert!(matches!(sessions.save(&mut second).await, Err(SessionWriteError::Conflict)));
    let stored: StoredBotSession<BotSession> = sessions.load(&session).await.unwrap().unwrap();
    assert_eq!(stored.responses[&1], "first");
    assert_eq!(stored.version, 2);
}
