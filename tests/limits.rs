//! Limits on hostile input (the ones other tests do not already hold): submissions per form from
//! every address together, field lengths, an event's properties, event bodies over the size limit
//! (declared or streamed), unsigned event batches per address, CORS per form, and campaign files
//! of absurd size, count or depth that `voronka validate` must refuse quickly, naming the file,
//! instead of reading, looping or overflowing its stack.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use axum::body::Body;
use http::{Request, StatusCode, header};
use serde_json::{Value, json};
use support::inprocess::{TempFolder, TestStack};

fn newsletter(email: &str) -> Value {
    json!({"email": email, "consent": true})
}

fn submission(form: &str, body: &Value, origin: Option<&str>) -> Request<Body> {
    let mut request =
        Request::post(format!("/v1/forms/{form}/submissions")).header(header::CONTENT_TYPE, "application/json");
    if let Some(origin) = origin {
        request = request.header(header::ORIGIN, origin);
    }
    request.body(Body::from(body.to_string())).unwrap()
}

#[tokio::test]
async fn a_form_takes_at_most_its_submissions_per_minute_from_all_addresses_together() {
    let settings = voronka_campaigns::bundled_files().into_iter().find(|f| f.path == "settings.toml").unwrap().text;
    let settings = settings.replace("per_form_per_minute = 600", "per_form_per_minute = 3");
    let (t, _dir) = TestStack::with_extra_campaign_files(&[("settings.toml", &settings)]);
    for i in 0..3 {
        let answer = t
            .send_from(
                submission("newsletter", &newsletter(&format!("p{i}@example.com")), None),
                &format!("192.0.2.{i}"),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    }
    let limited = t.send_from(submission("newsletter", &newsletter("p9@example.com"), None), "192.0.2.9").await;
    assert_eq!((limited.status, limited.error_code().as_str()), (StatusCode::TOO_MANY_REQUESTS, "rate_limited"));
    assert!(limited.headers.contains_key(header::RETRY_AFTER));
    let consultation = json!({"name": "Anna", "email": "anna@example.com", "phone": "+79161234567",
        "company_size": "11-50", "consent": true});
    let other_form = t.send_from(submission("consultation", &consultation, None), "192.0.2.10").await;
    assert_eq!(other_form.status, StatusCode::CREATED, "the limit is per form: {}", other_form.text);
    t.advance(60);
    let later = t.send_from(submission("newsletter", &newsletter("p10@example.com"), None), "192.0.2.11").await;
    assert_eq!(later.status, StatusCode::CREATED, "a new minute, a new window");
}

#[tokio::test]
async fn fields_longer_than_their_limit_are_refused_by_name() {
    let t = TestStack::new();
    let long_name = json!({"email": "a@example.com", "consent": true, "first_name": "x".repeat(101)});
    let answer = t.send(submission("newsletter", &long_name, None)).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.error_fields(), ["first_name"], "max_length = 100 in forms/newsletter.toml");
    let at_limit = json!({"email": "a@example.com", "consent": true, "first_name": "x".repeat(100)});
    assert_eq!(t.send(submission("newsletter", &at_limit, None)).await.status, StatusCode::CREATED);

    let long_hidden = json!({"email": "b@example.com", "consent": true, "utm_campaign": "c".repeat(2001)});
    let answer = t.send(submission("newsletter", &long_hidden, None)).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.error_fields(), ["utm_campaign"]);
    assert_eq!(answer.json()["error"]["fields"][0]["code"], "too_long");

    let long_address = json!({"email": format!("{}@example.com", "a".repeat(250)), "consent": true});
    let answer = t.send(submission("newsletter", &long_address, None)).await;
    assert_eq!((answer.status, answer.error_fields()), (StatusCode::BAD_REQUEST, vec!["email".to_string()]));

    let many_fields: serde_json::Map<String, Value> =
        (0..2000).map(|i| (format!("f{i}"), json!("x"))).chain([("email".into(), json!("c@example.com"))]).collect();
    let answer = t.send(submission("newsletter", &Value::Object(many_fields), None)).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "unknown fields are refused, each by name");
    assert!(answer.error_fields().len() >= 2000);
}

#[tokio::test]
async fn an_event_with_oversized_properties_is_refused_alone() {
    let t = TestStack::new();
    let limit = t.stack.state.campaigns.settings.limits.max_event_properties_bytes;
    let events = vec![
        json!({"event_id": "big", "type": "page_view", "anonymous_id": "a1", "properties": {"note": "x".repeat(limit)}}),
        json!({"event_id": "small", "type": "page_view", "anonymous_id": "a1", "properties": {"note": "x"}}),
    ];
    let answer = t.post_events_answer(events, false).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text);
    let results = answer.json()["results"].clone();
    assert_eq!(results[0]["status"], "rejected");
    assert_eq!(
        (results[0]["code"].as_str(), results[0]["field"].as_str()),
        (Some("too_large"), Some("events[0].properties"))
    );
    assert_eq!(results[1]["status"], "accepted");
}

fn events_body(body: String, declared_length: bool) -> Request<Body> {
    let mut request = Request::post("/v1/events").header(header::CONTENT_TYPE, "application/json");
    if declared_length {
        request = request.header(header::CONTENT_LENGTH, body.len());
    }
    request.body(Body::from(body)).unwrap()
}

#[tokio::test]
async fn an_event_body_over_the_limit_is_refused_whether_or_not_it_declares_its_length() {
    let t = TestStack::new();
    let limit = t.stack.state.campaigns.settings.limits.max_body_bytes;
    let event =
        json!({"event_id": "e1", "type": "page_view", "anonymous_id": "a1", "properties": {"note": "x".repeat(limit)}});
    let body = json!({ "events": [event] }).to_string();
    for declared in [true, false] {
        let answer = t.send(events_body(body.clone(), declared)).await;
        assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE, "declared length: {declared}");
        assert_eq!(answer.error_code(), "payload_too_large");
    }
}

#[tokio::test]
async fn unsigned_event_batches_are_limited_per_address() {
    let t = TestStack::new();
    let limit = t.stack.state.campaigns.settings.limits.per_ip_per_minute as usize;
    let batch =
        |i: usize| json!({"events": [{"event_id": format!("e{i}"), "type": "page_view", "anonymous_id": "a1"}]});
    for i in 0..limit {
        let answer = t.send_from(events_body(batch(i).to_string(), true), "198.51.100.7").await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "batch {i}: {}", answer.text);
    }
    let limited = t.send_from(events_body(batch(limit).to_string(), true), "198.51.100.7").await;
    assert_eq!((limited.status, limited.error_code().as_str()), (StatusCode::TOO_MANY_REQUESTS, "rate_limited"));
    assert!(limited.headers.contains_key(header::RETRY_AFTER));
    let other = t.send_from(events_body(batch(limit + 1).to_string(), true), "198.51.100.8").await;
    assert_eq!(other.status, StatusCode::ACCEPTED, "the limit is per address");
}

#[tokio::test]
async fn each_form_allows_its_own_origins() {
    let partner_form = r#"
id = "partner"
title = "Partner sign-up"
allowed_origins = ["https://partner.example"]
target_stage = "subscriber"
double_opt_in = false
honeypot_field = "fax"

[[fields]]
name = "email"
label = "Email"
type = "email"
required = true
"#;
    let (t, _dir) = TestStack::with_extra_campaign_files(&[("forms/partner.toml", partner_form)]);
    let partner = "https://partner.example";
    let shop = "https://shop.example";
    let body = json!({"email": "p@example.com"});
    for (form, origin, status) in [
        ("partner", partner, StatusCode::CREATED),
        ("partner", shop, StatusCode::FORBIDDEN),
        ("newsletter", partner, StatusCode::FORBIDDEN),
        ("newsletter", shop, StatusCode::CREATED),
    ] {
        let body = if form == "newsletter" { newsletter("n@example.com") } else { body.clone() };
        let answer = t.send(submission(form, &body, Some(origin))).await;
        assert_eq!(answer.status, status, "{form} from {origin}: {}", answer.text);
        if status == StatusCode::CREATED {
            assert_eq!(answer.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], origin);
        } else {
            assert_eq!(answer.error_code(), "origin_not_allowed");
            assert!(!answer.headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
        }
        let preflight = Request::options(format!("/v1/forms/{form}/submissions"))
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .body(Body::empty())
            .unwrap();
        let expected = if status == StatusCode::CREATED { StatusCode::NO_CONTENT } else { StatusCode::FORBIDDEN };
        assert_eq!(t.send(preflight).await.status, expected, "preflight of {form} from {origin}");
    }
}

/// A copy of the shipped campaigns folder with `change` applied, checked by `voronka validate`.
/// Returns its exit status and everything it printed; it must finish within seconds.
fn validate_with(change: impl FnOnce(&Path)) -> (bool, String) {
    let dir = TempFolder::new("limits");
    for file in voronka_campaigns::bundled_files() {
        let target = dir.path().join(&file.path);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(target, file.text).unwrap();
    }
    change(dir.path());
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_voronka"))
        .args(["validate", "--campaigns"])
        .arg(dir.path())
        .output()
        .expect("voronka runs");
    assert!(started.elapsed() < Duration::from_secs(20), "validate took {:?}", started.elapsed());
    let printed = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), printed)
}

fn refused(change: impl FnOnce(&Path), file: &str, words: &str) {
    let (ok, printed) = validate_with(change);
    assert!(!ok, "validate accepted it:\n{printed}");
    let named = printed.lines().any(|line| line.contains(file) && line.contains(words));
    assert!(named, "no line names {file} with `{words}`:\n{printed}");
    assert!(!printed.contains("panicked") && !printed.contains("overflow"), "{printed}");
}

#[test]
fn the_shipped_folder_validates() {
    let (ok, printed) = validate_with(|_| {});
    assert!(ok, "{printed}");
}

#[test]
fn a_huge_campaign_file_is_refused_unread() {
    refused(
        |dir| {
            // 50 MB without writing them: a sparse file.
            let file = std::fs::File::create(dir.join("templates/huge.toml")).unwrap();
            file.set_len(50 * 1024 * 1024).unwrap();
        },
        "templates/huge.toml",
        "is 52428800 bytes; a campaign file holds at most 262144 bytes",
    );
}

#[test]
fn a_template_of_a_megabyte_is_refused() {
    let template = format!(
        "id = \"big\"\ndescription = \"d\"\nclass = \"marketing\"\n[locales.ru]\nsubject = \"s\"\ntext = \"t\"\nhtml = \"{}\"\n",
        "x".repeat(1024 * 1024)
    );
    refused(
        |dir| std::fs::write(dir.join("templates/big.toml"), template).unwrap(),
        "templates/big.toml",
        "at most 262144 bytes",
    );
}

fn wide_form(fields: usize) -> String {
    let mut form = String::from(
        "id = \"wide\"\ntitle = \"Wide\"\ntarget_stage = \"subscriber\"\ndouble_opt_in = false\nhoneypot_field = \"fax\"\n",
    );
    form.push_str("[[fields]]\nname = \"email\"\nlabel = \"E\"\ntype = \"email\"\nrequired = true\n");
    for i in 1..fields {
        form.push_str(&format!("[[fields]]\nname = \"f{i}\"\nlabel = \"F\"\ntype = \"text\"\n"));
    }
    form
}

#[test]
fn a_form_with_ten_thousand_fields_is_refused() {
    // Ten thousand fields do not fit in a campaign file; a hundred and one do, and are counted.
    refused(|dir| std::fs::write(dir.join("forms/wide.toml"), wide_form(10_000)).unwrap(), "forms/wide.toml", "bytes");
    refused(
        |dir| std::fs::write(dir.join("forms/wide.toml"), wide_form(101)).unwrap(),
        "forms/wide.toml",
        "a form has at most 100 fields (this one has 101)",
    );
}

#[test]
fn deeply_nested_toml_is_refused_without_overflowing_the_stack() {
    let depth = 100_000;
    let nested = format!("id = \"deep\"\nx = {}1{}\n", "[".repeat(depth), "]".repeat(depth));
    refused(|dir| std::fs::write(dir.join("journeys/deep.toml"), nested).unwrap(), "journeys/deep.toml", "");
    let tables = format!("id = \"deep\"\nx = {}1{}\n", "{a = ".repeat(20_000), "}".repeat(20_000));
    refused(|dir| std::fs::write(dir.join("bots/deep.toml"), tables).unwrap(), "bots/deep.toml", "");
}

#[test]
fn a_template_that_loops_without_end_is_refused() {
    let template = r#"
id = "endless"
description = "d"
class = "marketing"
[locales.ru]
subject = "s"
text = "{% for a in range(100000) %}{% for b in range(100000) %}{{ b }}{% endfor %}{% endfor %}"
html = "<p>h</p>"
"#;
    refused(
        |dir| std::fs::write(dir.join("templates/endless.toml"), template).unwrap(),
        "templates/endless.toml",
        "a loop without end",
    );
}

#[cfg(unix)]
#[test]
fn a_folder_link_back_up_is_refused_not_followed_forever() {
    refused(
        |dir| std::os::unix::fs::symlink(dir.join("forms"), dir.join("forms/again")).unwrap(),
        "forms/again/again/again",
        "folders nest at most 4 deep",
    );
}
