//! A submitted email address or phone number never reaches the logs. Alone in its test binary:
//! `tracing` caches which call sites are enabled per process, so a scoped subscriber is only
//! reliable when no other test runs beside it.

mod support;

use support::doubles::Captured;

use axum::body::Body;
use http::{Request, StatusCode, header};
use serde_json::{Value, json};
use support::inprocess::TestStack;

#[tokio::test(flavor = "current_thread")]
async fn logs_are_json_and_never_contain_an_email_address_or_phone() {
    let captured = Captured::default();
    let writer = captured.clone();
    let _guard = tracing::subscriber::set_default(voronka_telemetry::json_subscriber(move || writer.clone()));
    let t = TestStack::new();
    let answer = t
        .submit_json(
            "consultation",
            json!({"name": "Secret Person", "email": "Secret.Person@Example.com", "phone": "+7 916 555-44-33",
                   "company_size": "1-10", "consent": true}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED);
    let id = answer.json()["contact_id"].as_str().unwrap().to_string();
    t.submit_json("newsletter", json!({"email": "broken@", "consent": true})).await;
    let batch = json!({"events": [{"event_id": "x1", "type": "page_view", "email": "Secret.Person@Example.com"}]});
    let request = Request::post("/v1/events")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(batch.to_string()))
        .unwrap();
    t.send(request).await;

    let logs = captured.text();
    let lines: Vec<Value> = logs.lines().map(|l| serde_json::from_str(l).expect("every log line is JSON")).collect();
    assert!(lines.iter().any(|l| l["fields"]["contact_id"] == id.as_str()), "the submission was logged: {logs}");
    let lowered = logs.to_lowercase();
    for secret in ["secret.person", "example.com", "broken@", "555-44-33", "79165554433"] {
        assert!(!lowered.contains(secret), "`{secret}` appeared in the logs:\n{logs}");
    }
}
