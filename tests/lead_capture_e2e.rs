//! End to end through `voronka serve`: the real binary, real HTTP on loopback, data in a folder
//! that must survive the server being killed and started again.

use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header;
use serde_json::{Value, json};

mod support;

use support::serve::{BINARY, Server, data_dir};

fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

async fn post_json(base: &str, path: &str, body: &Value) -> (StatusCode, Value) {
    let response = client().post(format!("{base}{path}")).json(body).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn error_fields(body: &Value) -> Vec<String> {
    let mut fields: Vec<String> =
        body["error"]["fields"].as_array().unwrap().iter().map(|f| f["field"].as_str().unwrap().to_string()).collect();
    fields.sort();
    fields
}

#[tokio::test]
async fn leads_are_captured_over_http_and_survive_a_restart() {
    let dir = data_dir("restart");
    let server = Server::start(&dir);
    let base = server.base.clone();

    let (status, created) =
        post_json(&base, "/v1/forms/newsletter/submissions", &json!({"email": "anna@example.com", "consent": true}))
            .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["status"], "created");
    let id = created["contact_id"].as_str().unwrap().to_string();

    let (status, again) = post_json(
        &base,
        "/v1/forms/newsletter/submissions",
        &json!({"email": "  ANNA@EXAMPLE.COM ", "consent": "on", "first_name": "Anna"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(again["contact_id"], id.as_str(), "the same address in other spelling is the same contact");
    assert_eq!(again["status"], "updated");

    let html = client()
        .post(format!("{base}/v1/forms/consultation/submissions"))
        .header(header::ACCEPT, "text/html")
        .form(&[
            ("name", "Ivan Petrov"),
            ("email", "ivan@example.com"),
            ("phone", "+7 916 000-11-22"),
            ("company_size", "11-50"),
            ("consent", "on"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(html.status(), StatusCode::SEE_OTHER);
    let location = html.headers()[header::LOCATION].to_str().unwrap().to_string();
    assert_eq!(location, format!("{base}/v1/forms/consultation/thanks"));
    let thanks = client().get(&location).send().await.unwrap();
    assert_eq!(thanks.status(), StatusCode::OK);

    server.kill();
    let restarted = Server::start(&dir);
    let (status, after) = post_json(
        &restarted.base,
        "/v1/forms/newsletter/submissions",
        &json!({"email": "Anna@Example.com", "consent": true}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(after["contact_id"], id.as_str(), "contacts survive the restart");

    let export = Command::new(BINARY).args(["export", "contacts", "--data-dir"]).arg(&dir).output().unwrap();
    assert!(export.status.success(), "{}", String::from_utf8_lossy(&export.stderr));
    let lines: Vec<Value> =
        String::from_utf8(export.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    let anna = lines.iter().find(|c| c["id"] == id.as_str()).expect("exported");
    assert_eq!(anna["email"], "Anna@Example.com");
    assert_eq!(anna["form_submissions"]["newsletter"], 3);
    assert!(lines.iter().all(|c| c.get("version").is_none()), "no internal bookkeeping in exports");
    drop(restarted);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn every_kind_of_bad_input_gets_its_status_and_a_json_error() {
    let dir = data_dir("errors");
    let server = Server::start(&dir);
    let base = server.base.clone();

    let (status, body) = post_json(&base, "/v1/forms/nope/submissions", &json!({"email": "a@example.com"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("form_not_found")));

    let response = client()
        .post(format!("{base}/v1/forms/newsletter/submissions"))
        .header(header::CONTENT_TYPE, "text/xml")
        .body("<email/>")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(response.json::<Value>().await.unwrap()["error"]["code"], "unsupported_media_type");

    let huge = json!({"email": "a@example.com", "consent": true, "first_name": "x".repeat(100_000)});
    let (status, body) = post_json(&base, "/v1/forms/newsletter/submissions", &huge).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large")));

    let (status, body) =
        post_json(&base, "/v1/forms/newsletter/submissions", &json!({"email": "nope", "first_name": "A"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_fields(&body), ["consent", "email"]);

    let (status, body) = post_json(&base, "/v1/events", &json!({"events": "nope"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_fields(&body), ["events"]);

    let mut limited = None;
    for i in 0..40 {
        let (status, body) = post_json(
            &base,
            "/v1/forms/newsletter/submissions",
            &json!({"email": format!("r{i}@example.com"), "consent": true}),
        )
        .await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(body);
            break;
        }
        assert_eq!(status, StatusCode::CREATED);
    }
    let limited = limited.expect("one client address is limited within 40 requests a minute");
    assert_eq!(limited["error"]["code"], "rate_limited");
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn concurrent_submissions_of_one_address_make_exactly_one_contact() {
    let dir = data_dir("concurrent");
    let server = Server::start(&dir);
    let spellings = ["maria@example.com", "Maria@Example.com", " MARIA@EXAMPLE.COM", "maria@EXAMPLE.com  "];
    let mut tasks = Vec::new();
    for i in 0..20 {
        let base = server.base.clone();
        let email = spellings[i % spellings.len()].to_string();
        tasks.push(tokio::spawn(async move {
            post_json(&base, "/v1/forms/newsletter/submissions", &json!({"email": email, "consent": true})).await
        }));
    }
    let mut ids = std::collections::BTreeSet::new();
    let mut created = 0;
    for task in tasks {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{body}");
        ids.insert(body["contact_id"].as_str().unwrap().to_string());
        created += usize::from(body["status"] == "created");
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(created, 1);
    drop(server);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn the_demo_page_carries_real_forms_with_a_signed_render_timestamp() {
    let dir = data_dir("page");
    let server = Server::start(&dir);
    let page = client().get(format!("{}/", server.base)).send().await.unwrap().text().await.unwrap();
    assert!(page.contains(r#"action="/v1/forms/newsletter/submissions""#));
    assert!(page.contains(r#"action="/v1/forms/consultation/submissions""#));
    let token = page.split(r#"name="_rt" value=""#).nth(1).and_then(|rest| rest.split('"').next()).unwrap();
    assert!(token.contains('.'), "a signed token: {token}");

    // Submitting at once is what a bot does: answered like a success, stored nowhere.
    let fast = client()
        .post(format!("{}/v1/forms/newsletter/submissions", server.base))
        .header(header::ORIGIN, server.base.as_str())
        .form(&[("email", "quick@example.com"), ("consent", "on"), ("_rt", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(fast.status(), StatusCode::CREATED);
    assert_eq!(fast.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], server.base.as_str());
    let export = Command::new(BINARY).args(["export", "contacts", "--data-dir"]).arg(&dir).output().unwrap();
    assert!(export.status.success());
    assert!(export.stdout.is_empty(), "a form sent faster than a person can fill it is not stored");
    drop(server);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn double_opt_in_works_through_the_outbox_of_voronka_serve() {
    let dir = data_dir("optin");
    let server = Server::start(&dir);
    let (status, body) = post_json(
        &server.base,
        "/v1/forms/newsletter/submissions",
        &json!({"email": "olga@example.com", "first_name": "Olga", "consent": true, "locale": "en"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body["double_opt_in"], "pending");

    // The sender runs inside `voronka serve`: the confirmation lands in the outbox.
    let outbox = dir.join("outbox");
    let deadline = Instant::now() + Duration::from_secs(20);
    let eml = loop {
        let found = std::fs::read_dir(&outbox).ok().and_then(|entries| {
            entries.flatten().map(|e| e.path()).find(|p| p.extension().is_some_and(|x| x == "eml"))
        });
        if let Some(path) = found {
            break std::fs::read_to_string(path).unwrap();
        }
        assert!(Instant::now() < deadline, "no confirmation email within 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let page = client().get(format!("{}/outbox", server.base)).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Please confirm your subscription"), "the outbox lists it: {page}");

    let unfolded = eml.replace("=\r\n", "");
    let start = unfolded.find(&format!("{}/v1/confirm?token=", server.base)).expect("a confirmation link");
    let link: String = unfolded[start..].chars().take_while(|c| !c.is_whitespace() && *c != '"' && *c != '<').collect();
    let link = link.replace("=3D", "=");
    let page = client().get(&link).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("method=\"post\""), "following the link only shows the button: {page}");
    let confirmed = client().post(&link).send().await.unwrap();
    assert_eq!(confirmed.status(), StatusCode::OK);
    assert!(confirmed.text().await.unwrap().contains("Subscription confirmed"));

    let export = Command::new(BINARY).args(["export", "contacts", "--data-dir"]).arg(&dir).output().unwrap();
    let contact: Value = serde_json::from_slice(export.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(contact["consents"]["email"]["double_opt_in"], "confirmed");
    drop(server);
    std::fs::remove_dir_all(&dir).ok();
}
