//! The qualification bot end to end through `voronka serve`: the real binary on loopback, its
//! workers sending mail into the outbox folder, a conversation that survives a restart.

use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

mod support;

use support::serve::{BINARY, Server, data_dir};

async fn post(base: &str, path: &str, body: &Value) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .header(reqwest::header::ORIGIN, base)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_qualified_conversation_through_voronka_serve_survives_a_restart_and_mails_sales() {
    let dir = data_dir("qualified");
    let server = Server::start(&dir);
    let (status, started) = post(&server.base, "/v1/bot/b2b_demo/sessions", &json!({"locale": "en"})).await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    let session = started["session_id"].as_str().unwrap().to_string();
    let answers = ["https://acme.example", "201+", "founder", "this_month", "lead@acme.example", "yes"];
    let answer_path = format!("/v1/bot/sessions/{session}/answers");
    for (i, value) in answers[..3].iter().enumerate() {
        let (status, body) = post(&server.base, &answer_path, &json!({"seq": i + 1, "value": value})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    drop(server);

    // The conversation lives in the data folder, not in the process.
    let server = Server::start(&dir);
    let mut last = Value::Null;
    for (i, value) in answers.iter().enumerate().skip(3) {
        let (status, body) = post(&server.base, &answer_path, &json!({"seq": i + 1, "value": value})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        last = body;
    }
    assert_eq!(last["outcome"]["kind"], "qualified", "{last}");

    let outbox = dir.join("outbox");
    let deadline = Instant::now() + Duration::from_secs(20);
    let sales_mail = loop {
        let found = std::fs::read_dir(&outbox).ok().and_then(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                .find(|text| text.lines().any(|l| l.starts_with("To:") && l.contains("sales@shop.example")))
        });
        if let Some(text) = found {
            break text;
        }
        assert!(Instant::now() < deadline, "the sales email reached the outbox within 20 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let parsed = mail_parser::MessageParser::default().parse(sales_mail.as_bytes()).unwrap();
    let body = parsed.body_text(0).unwrap();
    assert!(body.contains("https://acme.example") && body.contains("What is your role?"), "the transcript: {body}");
    let export = Command::new(BINARY).args(["export", "contacts", "--data-dir"]).arg(&dir).output().unwrap();
    drop(server);
    assert!(export.status.success(), "{}", String::from_utf8_lossy(&export.stderr));
    let contacts: Vec<Value> =
        String::from_utf8(export.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let lead = contacts.iter().find(|c| c["email"] == "lead@acme.example").expect("the chat's contact");
    assert_eq!(lead["stage"], "sql");
    std::fs::remove_dir_all(&dir).ok();
}
